"""On-disk cache of truth sets, so that a second report run does not recompute mpmath truths.

A truth depends only on the mathematics and the exact inputs, never on torch, so it is keyed by the case's
reference source code, the source of every module that computes truths (:data:`TRUTH_MODULES`: an edit of
the precision escalation or of the rounding to double-doubles is a new key, with no version to bump by hand),
the input domains, the precision settings and the bytes of the (already rounded) inputs.  Entries are ``.npz``
files of plain numeric arrays (read with ``allow_pickle=False``), written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from suite import atomic, dtypes, exact_math, truth
from suite.cases.base import Case
from suite.errors import UsageError

#: the layout of an entry (the arrays :func:`_to_arrays` writes); the code that computes them is keyed by source
CACHE_VERSION = "7"
#: the modules whose code computes a truth: the evaluation and escalation, the exact functions, the roundings
TRUTH_MODULES = (truth, exact_math, dtypes)
DEFAULT_DIR = Path(".cache") / "truth"


def _folder_and_origin(override: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The cache folder and what chose it: ``override`` (``--cache-dir``), else ``SUITE_CACHE_DIR``, else
    ``.cache/truth`` under the cwd."""
    if override is not None:
        return Path(override), "--cache-dir"
    if "SUITE_CACHE_DIR" in os.environ:
        return Path(os.environ["SUITE_CACHE_DIR"]), "SUITE_CACHE_DIR"
    return DEFAULT_DIR, "the truth cache"


def cache_folder(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``override``, else ``SUITE_CACHE_DIR``, else ``.cache/truth`` under the cwd."""
    return _folder_and_origin(override)[0]


def check_folder(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder, or a UsageError naming where it came from when no entry can be written there: checked
    before a command starts, not at its first new truth after minutes of mpmath work."""
    folder, origin = _folder_and_origin(override)
    try:
        atomic.check_writable(folder / "entry.npz")
    except UsageError as exc:
        raise UsageError(f"{origin} {folder}: {exc}") from None
    return folder


def source_of(obj: Any, unreadable: str | None = None) -> str:
    """Source of a function or module (through ``functools.partial``); when unavailable, ``unreadable``, else
    the object's qualified name."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        if unreadable is not None:
            return unreadable
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


def cache_key(case: Case, inputs: Mapping[str, np.ndarray], precision: int, max_precision: int) -> str:
    """Hex digest identifying the truth of ``case`` at ``inputs`` (cases sharing a reference and domains,
    like ``sigmoid_bce`` and ``bce_with_logits``, share entries)."""
    digest = hashlib.sha256()
    sources = [source_of(module) for module in TRUTH_MODULES]
    for part in (CACHE_VERSION, source_of(case.reference), *sources, repr(case.inputs),
                 str(case.rows), str(precision), str(max_precision)):
        digest.update(part.encode())
        digest.update(b"\0")
    add_arrays(digest, inputs)
    return digest.hexdigest()


def add_arrays(digest: Any, inputs: Mapping[str, np.ndarray]) -> None:
    """Feed named arrays (names, shapes and float64 bytes, in name order) to a hashlib ``digest``."""
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name], dtype=np.float64)
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())


def _to_arrays(ts: truth.TruthSet) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"condition": ts.condition, "precision": ts.precision}
    arrays.update({f"grad_condition.{k}": v for k, v in ts.grad_condition.items()})
    for prefix, t in [("values", ts.values), *((f"grad.{k}", v) for k, v in ts.grads.items())]:
        arrays.update({f"{prefix}.hi": t.hi, f"{prefix}.lo": t.lo, f"{prefix}.status": t.status,
                       f"{prefix}.infinite": t.infinite, f"{prefix}.big_hi": t.big_hi, f"{prefix}.big_lo": t.big_lo})
    return arrays


def _from_arrays(arrays: Mapping[str, np.ndarray]) -> truth.TruthSet:
    def part(prefix: str) -> truth.Truth:
        return truth.Truth(arrays[f"{prefix}.hi"], arrays[f"{prefix}.lo"], arrays[f"{prefix}.status"],
                           arrays[f"{prefix}.infinite"], arrays[f"{prefix}.big_hi"], arrays[f"{prefix}.big_lo"])

    grads = sorted({k.split(".")[1] for k in arrays if k.startswith("grad.")})
    return truth.TruthSet(part("values"), {g: part(f"grad.{g}") for g in grads}, arrays["condition"],
                          arrays["precision"], {g: arrays[f"grad_condition.{g}"] for g in grads})


def cache_path(case: Case, inputs: Mapping[str, np.ndarray], cache_dir: str | os.PathLike[str] | None = None,
               precision: int = truth.DEFAULT_PRECISION, max_precision: int = truth.MAX_PRECISION) -> Path:
    """The file holding the truth of ``case`` at ``inputs`` in the cache folder (it may not exist yet)."""
    name = getattr(case.reference, "__name__", "reference")
    return cache_folder(cache_dir) / f"{name}-{cache_key(case, inputs, precision, max_precision)[:32]}.npz"


def cached_truth(case: Case, inputs: Mapping[str, np.ndarray], *, workers: int | None = None, cache: bool = True,
               cache_dir: str | os.PathLike[str] | None = None,
               precision: int = truth.DEFAULT_PRECISION, max_precision: int = truth.MAX_PRECISION,
               ) -> truth.TruthSet:
    """The truth of ``case`` at already-rounded ``inputs``; with ``cache``, read from or stored in the cache
    folder (a corrupt entry is recomputed and replaced)."""
    if not cache:
        return truth.evaluate(case.reference, inputs, rows=case.rows, in_domain=case.in_domain,
                              differentiable=case.differentiable, precision=precision,
                              max_precision=max_precision, workers=workers)
    path = cache_path(case, inputs, cache_dir, precision, max_precision)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return _from_arrays({k: data[k] for k in data.files})
        except (OSError, ValueError, KeyError):
            pass  # unreadable entry: recompute below
    result = cached_truth(case, inputs, workers=workers, cache=False, precision=precision,
                        max_precision=max_precision)
    buffer = io.BytesIO()
    # plain numeric arrays, nothing to pickle; no allow_pickle keyword, which numpy 1.x would store as an array
    arrays: dict[str, Any] = _to_arrays(result)
    np.savez_compressed(buffer, **arrays)
    atomic.write_bytes(path, buffer.getvalue())
    return result
