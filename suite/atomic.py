"""Atomic file output: write to a temporary file in the same folder, then rename over the target, so an
interrupted run never leaves a half-written file and never loses the previous one."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from suite.errors import UsageError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or a UsageError when no file can be written there: checked before a long run, so
    that a bad output path fails at once and not after the work (the write itself checks again)."""
    target = Path(path)
    if not target.name:
        raise UsageError(f"output path {str(path)!r} names no file")
    if target.is_dir():
        raise UsageError(f"cannot write {target}: it is a folder")
    folder = next((p for p in (target.parent, *target.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise UsageError(f"cannot write to {target.parent}: {folder} is not a folder")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write to {target.parent}: {folder} is not writable")
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating parent folders); bad folders are a UsageError."""
    target = check_writable(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=1, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing, unreadable or malformed file is a UsageError with one clear line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


#: Linux's renameat2 flag that swaps two paths in one step, and the "relative to the working folder" descriptor
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``), so that no reader
    and no crash ever sees ``b`` missing; False where the system or its file system cannot (then nothing moved)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):  # no C library, or none with renameat2 (not Linux, old glibc)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return int(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)) == 0


def replace_folder(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the folder ``new`` in place of ``target`` (a folder or nothing) and delete the previous one.  Atomic
    where :func:`exchange` is; elsewhere ``target`` is moved aside first, and moved back if ``new`` cannot
    take its place."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    if exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now names the previous folder
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, aside / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside / target.name, target)  # the previous folder back where it was
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
