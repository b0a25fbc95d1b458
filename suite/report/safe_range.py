"""Safe operating range: the largest interval of a case's main input, around its typical value (0 for a
logit, 0.5 for a probability...), on which no element fails: every quantity stays within its ULP budget and
no never-acceptable label appears, for every value of the other inputs on the grid.

The interval is stated in grid values (both ends were measured); between grid points nothing was run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from suite.dtypes import FloatArray

#: Where a person's values usually lie, per input kind: the centre the safe interval grows from.
TYPICAL: dict[str, float] = {"logit": 0.0, "probability": 0.5, "log_probability": -1.0, "target": 0.5,
                             "log_target": -1.0, "weight": 1.0, "pos_weight": 1.0}


@dataclass
class SafeRange:
    """``[low, high]`` around ``center`` (grid values), or ``status`` ``"none"`` when the grid value nearest
    the centre already fails.  ``limits`` says what fails at the first grid value beyond each end."""

    center: float
    low: float | None
    high: float | None
    status: str  # "range", "whole_grid" or "none"
    limits: dict[str, str | None] = field(default_factory=dict)


def _reasons_at(value: float, x: FloatArray, failures: Mapping[str, npt.NDArray[np.bool_]]) -> str:
    at = x == value
    names = [name for name, bad in failures.items() if bool((bad & at).any())]
    return f"{', '.join(names)} at {value!r}"


def safe_range(x: npt.ArrayLike, failures: Mapping[str, npt.ArrayLike], center: float) -> SafeRange:
    """Largest interval of grid values of ``x`` around ``center`` without a failing element.

    ``x`` holds the main input of every element; ``failures`` maps a reason (``"grad_input: nan"``) to a
    boolean array of the same shape marking the elements that fail for it.  NaN inputs are ignored.
    """
    xs_all = np.asarray(x, dtype=np.float64).reshape(-1)
    masks = {k: np.asarray(v, dtype=bool).reshape(-1) for k, v in failures.items()}
    keep = ~np.isnan(xs_all)
    xs_all = xs_all[keep]
    masks = {k: v[keep] for k, v in masks.items()}
    if xs_all.size == 0:
        return SafeRange(center, None, None, "none", {"low": "no grid values", "high": "no grid values"})
    any_bad = np.zeros(xs_all.shape, bool)
    for bad in masks.values():
        any_bad |= bad
    values, inverse = np.unique(xs_all, return_inverse=True)
    bad_value = np.bincount(inverse, weights=any_bad.astype(np.float64), minlength=values.size) > 0
    finite = np.isfinite(values)
    distance = np.where(finite, np.abs(values - center), np.inf)
    start = int(np.argmin(distance))
    if bad_value[start]:
        reason = _reasons_at(float(values[start]), xs_all, masks)
        return SafeRange(center, None, None, "none", {"low": reason, "high": reason})
    bad_index = np.flatnonzero(bad_value)
    below, above = bad_index[bad_index < start], bad_index[bad_index > start]
    lo = int(below[-1]) + 1 if below.size else 0
    hi = int(above[0]) - 1 if above.size else values.size - 1
    limits = {"low": _reasons_at(float(values[lo - 1]), xs_all, masks) if below.size else None,
              "high": _reasons_at(float(values[hi + 1]), xs_all, masks) if above.size else None}
    status = "whole_grid" if not below.size and not above.size else "range"
    return SafeRange(center, float(values[lo]), float(values[hi]), status, limits)
