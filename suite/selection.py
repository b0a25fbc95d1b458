"""The device and mode names a person passes to any command, checked before anything runs: a name torch cannot
run here (``gpu``, ``mps``, ``cuda`` without a GPU, a mode the suite does not have) is a
:class:`~suite.errors.UsageError`, one line and exit status 2, rather than a torch traceback after the truth has
been computed, or a silent empty table."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from suite import cases, dtypes, modes
from suite.cases.base import Case
from suite.errors import UsageError

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda")


def names(values: Iterable[str] | str | None, option: str) -> list[str]:
    """Comma-separated (and repeated) values of ``option``, in order, without duplicates.  A blank item
    (``--cases bce,,``, ``--modes ""``) is a UsageError: it is a typo or an empty variable, and dropping it
    would run something other than what was asked."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values or []:
        items = [n.strip() for n in value.split(",")]
        if not all(items):
            raise UsageError(f"{option} {value!r} has an empty name; separate names with single commas")
        out += [n for n in dict.fromkeys(items) if n not in out]
    return out


def case_list(values: Iterable[str] | str | None, option: str = "--cases",
              default: Iterable[str] | None = None) -> list[Case]:
    """The registered cases an option names, or those of ``default`` (every case when None) when it names
    none; an unknown name is a UsageError that lists the known ones."""
    chosen = names(values, option) or list(cases.names() if default is None else default)
    try:
        return [cases.get(n) for n in chosen]
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def dtype_names(values: Iterable[str] | str | None, option: str = "--dtypes") -> list[str]:
    """The canonical dtype names an option names (aliases such as ``bf16`` resolved), or every dtype when it
    names none; an unknown name is a UsageError."""
    chosen = names(values, option) or list(dtypes.NAMES)
    try:
        return list(dict.fromkeys(dtypes.get(d).name for d in chosen))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def default_devices() -> list[str]:
    """CPU, and CUDA when torch sees a GPU."""
    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def require_device(name: str) -> str:
    """``name`` when torch can run the suite on it here, else a UsageError that says why."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}; choose from {', '.join(SUPPORTED_DEVICE_TYPES)} "
                         "(cuda:N for one GPU)") from None
    if device.type not in SUPPORTED_DEVICE_TYPES:
        raise UsageError(f"device {name!r}: only {' and '.join(SUPPORTED_DEVICE_TYPES)} are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} requested but torch.cuda.is_available() is false")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA devices")
    return name


def require_mode(name: str) -> str:
    """``name`` when it is one of :data:`suite.modes.MODES`, else a UsageError that lists them."""
    if name not in modes.MODES:
        raise UsageError(f"unknown mode {name!r}; choose from {', '.join(modes.MODES)}")
    return name


def devices(values: Iterable[str] | str | None, option: str = "--devices") -> list[str]:
    """The checked devices of an option, or :func:`default_devices` when it is not given."""
    return [require_device(d) for d in names(values, option)] or default_devices()


def mode_names(values: Iterable[str] | str | None, default: Iterable[str] = ("eager",),
               option: str = "--modes") -> list[str]:
    """The checked modes of an option, or ``default`` when it is not given."""
    return [require_mode(m) for m in names(values, option)] or list(default)
