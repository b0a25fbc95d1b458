"""On-disk cache of truth sets, so that a second report run does not recompute mpmath truths.

A truth depends only on the mathematics and the exact inputs, never on torch, so it is keyed by the case's
reference source code (and that of :mod:`suite.exact_math`), the input domains, the precision settings and
the bytes of the (already rounded) inputs.  Entries are ``.npz`` files without pickle, written atomically.
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

from suite import atomic, exact_math, truth
from suite.cases.base import Case

#: 2: hidden tails looked for; 3: and at midpoints; 4: and at ties of lo; 5: big parts; 6: their tails
CACHE_VERSION = "6"
DEFAULT_DIR = Path(".cache") / "truth"


def cache_folder(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``override``, else ``SUITE_CACHE_DIR``, else ``.cache/truth`` under the cwd."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("SUITE_CACHE_DIR", DEFAULT_DIR))


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
    for part in (CACHE_VERSION, source_of(case.reference), source_of(exact_math), repr(case.inputs),
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
    np.savez_compressed(buffer, allow_pickle=False, **_to_arrays(result))
    atomic.write_bytes(path, buffer.getvalue())
    return result
