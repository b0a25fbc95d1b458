"""Mechanisms of known deviations: the values torch's own formula gives where a documented clamp, or a term
it loses, makes it differ from the exact loss.

A label and a region say *where* torch is wrong, not *how*: inside BCE's clamp region a kernel that clamps the
whole loss at 100, or ignores the target there, is as far from the exact (infinite or huge) loss as torch's
per-log clamp, carries the same label, and a region alone would excuse it.  An entry with ``mechanism = NAME``
and ``mechanism_ulps = k`` explains an element only where torch's value is within ``k`` ULPs of the result's
format of the interval ``[low, high]`` that the mechanism gives for the element's inputs: a single value for a
clamp, a range for a term torch may lose in part (a sigmoid that underflows to 0 or to any subnormal number).
``k`` counts the roundings of torch's formula, each at most one ULP of the result where its terms share a sign.

The interval is exact mathematics on the exact (already rounded) inputs, with torch's constants (the -100 log
clamp, the 1e-12 gradient epsilon, as :mod:`suite.inputs.thresholds` records them): mpmath at
:data:`PRECISION` bits, divided by the reduction's divisor (a mean's ``1/N`` scales torch's gradients), each
end rounded once to float64.  Values are cached per element, since the modes and reductions of a job judge the
same inputs again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt
from mpmath import mpf

from suite import dtypes
from suite.dtypes import FLOAT32, FLOAT64, FloatFormat
from suite.exact_math import ONE, ZERO, log, log1m, sigmoid, times
from suite.inputs.thresholds import GRAD_EPSILON, LOG_CLAMP

#: Bits of working precision: every mechanism is a few operations without cancellation beyond what this
#: resolves, so the one rounding to float64 is that of the exact value.
PRECISION = 256

FloatArray = npt.NDArray[np.float64]
Sample = Mapping[str, Any]
#: A mechanism: the exact inputs of one element (``mpf``) and the result's format -> the interval
#: ``(low, high)`` of values torch's formula gives there (``nan`` ends where it gives none).
Mechanism = Callable[[Sample, FloatFormat], tuple[Any, Any]]

_NAN = mpf("nan")


def bce_log_clamp(sample: Sample, fmt: FloatFormat) -> tuple[Any, Any]:
    """BCE's loss with each log clamped at -100, as torch's forward computes it:
    ``w (y min(-log p, 100) + (1 - y) min(-log(1 - p), 100))``."""
    p, y, w = sample["input"], sample["target"], sample.get("weight", ONE)
    cap = -LOG_CLAMP
    value = times(w, times(y, min(-log(p), cap)) + times(1 - y, min(-log1m(p), cap)))
    return value, value


def grad_epsilons(fmt: FloatFormat) -> tuple[float, ...]:
    """The values of BCE backward's 1e-12 in a kernel for ``fmt``: torch's constant as a float32 or a float64
    number, in ``fmt``, or in float32 for a 16-bit format (the kernels compute 16-bit types in float32);
    float16 has 0."""
    constants = np.array([float(GRAD_EPSILON), float(dtypes.round_fraction(
        GRAD_EPSILON.numerator, GRAD_EPSILON.denominator, FLOAT32))])
    formats = (fmt, FLOAT32) if fmt.precision < FLOAT32.precision else (fmt,)
    return tuple(sorted({float(v) for f in formats for v in dtypes.round_array(constants, f)}))


def bce_grad_epsilon(sample: Sample, fmt: FloatFormat) -> tuple[Any, Any]:
    """BCE's input gradient with its denominator clamped, as torch's backward computes it:
    ``w (p - y) / max(p (1 - p), eps)`` for each value of ``eps`` (:func:`grad_epsilons`); ``0 / 0`` gives
    none."""
    p, y, w = sample["input"], sample["target"], sample.get("weight", ONE)
    values = [times(w, _quotient(p - y, max(p * (1 - p), mpf(eps)))) for eps in grad_epsilons(fmt)]
    return _hull(values)


def sigmoid_underflow_grad(sample: Sample, fmt: FloatFormat) -> tuple[Any, Any]:
    """BCE-with-logits' input gradient ``w ((pw y + 1 - y) s - pw y)`` (``pw = 1`` without ``pos_weight``:
    ``w (s - y)``), with torch's sigmoid ``s`` anywhere from 0 (``exp(-x)`` overflowed) to ``sigmoid(x)``
    rounded up to ``fmt``'s subnormal grid (half its smallest subnormal above)."""
    x, y = sample["input"], sample["target"]
    w, pw = sample.get("weight", ONE), sample.get("pos_weight", ONE)
    coefficient, constant = times(pw, y) + 1 - y, times(pw, y)
    highest = sigmoid(x) + mpf(fmt.smallest_subnormal) / 2
    return _hull([times(w, times(coefficient, s) - constant) for s in (ZERO, highest)])


def _quotient(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator`` with ``x / 0 = +-inf`` and ``0 / 0 = nan``."""
    if denominator:
        return numerator / denominator
    return _NAN if not numerator else mpmath.inf * mpmath.sign(numerator)


def _hull(values: list[Any]) -> tuple[Any, Any]:
    """The smallest interval holding the values that are not NaN (``(nan, nan)`` for none)."""
    kept = [v for v in values if not mpmath.isnan(v)]
    return (min(kept), max(kept)) if kept else (_NAN, _NAN)


#: Mechanism name (the registry's ``mechanism``) -> function of one element's inputs.
MECHANISMS: dict[str, Mechanism] = {
    "bce_log_clamp": bce_log_clamp,
    "bce_grad_epsilon": bce_grad_epsilon,
    "sigmoid_underflow_grad": sigmoid_underflow_grad,
}


@lru_cache(maxsize=1 << 17)
def interval(name: str, sample: tuple[tuple[str, float], ...], fmt_name: str, divisor: int) -> tuple[float, float]:
    """Mechanism ``name``'s interval for one element (``sample``: its inputs as ``(name, value)`` pairs), divided
    by ``divisor``, each end rounded to float64."""
    fmt = dtypes.get(fmt_name)
    with mpmath.workprec(PRECISION):
        exact = {key: mpf(value) for key, value in sample}
        low, high = MECHANISMS[name](exact, fmt)
        return dtypes.round_mpf(low / divisor, FLOAT64), dtypes.round_mpf(high / divisor, FLOAT64)


def distance_ulps(name: str, inputs: Mapping[str, npt.ArrayLike], got: npt.ArrayLike, divisor: int,
                  fmt: FloatFormat, among: npt.ArrayLike | None = None) -> FloatArray:
    """For each element of ``got`` (torch's values, in ``fmt``) among ``among`` (default: all), how many ULPs of
    ``fmt`` it lies outside mechanism ``name``'s interval for its ``inputs`` (broadcast to ``got``'s shape):
    0 inside, ``inf`` for a NaN value or an interval with none, and ``inf`` outside ``among``."""
    values = np.asarray(got, dtype=np.float64)
    chosen = np.ones(values.shape, dtype=bool) if among is None else np.broadcast_to(np.asarray(among), values.shape)
    arrays = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), values.shape)[chosen] for k, v in inputs.items()}
    names = sorted(arrays)
    ends = [interval(name, tuple(zip(names, row, strict=True)), fmt.name, divisor)
            for row in zip(*(arrays[k].tolist() for k in names), strict=True)]
    out = np.full(values.shape, np.inf)
    if ends:
        low, high = (np.array(column, dtype=np.float64) for column in zip(*ends, strict=True))
        out[chosen] = _outside(values[chosen], low, high, fmt)
    return out


def _outside(got: FloatArray, low: FloatArray, high: FloatArray, fmt: FloatFormat) -> FloatArray:
    """ULPs of ``fmt`` from ``got`` to ``[low, high]``: 0 inside, else to the nearer end (an infinite end only
    matches itself); ``inf`` where ``got`` or an end is NaN."""
    with np.errstate(invalid="ignore"):
        inside = (got >= low) & (got <= high)
    nearest = np.fmin(_ulps_from(got, low, fmt), _ulps_from(got, high, fmt))
    result: FloatArray = np.where(inside, 0.0, nearest)
    return np.where(np.isnan(got) | np.isnan(low) | np.isnan(high), np.inf, result)


def _ulps_from(got: FloatArray, end: FloatArray, fmt: FloatFormat) -> FloatArray:
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.abs(got - end) / dtypes.ulp(end, fmt)
    result: FloatArray = np.where(got == end, 0.0, np.where(np.isfinite(end), distance, np.inf))
    return result
