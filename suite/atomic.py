"""Atomic file output: write to a temporary file in the same folder, then rename over the target, so an
interrupted run never leaves a half-written file and never loses the previous one."""

from __future__ import annotations

import json
import os
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
