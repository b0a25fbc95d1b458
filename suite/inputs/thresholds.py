"""Where BCE, BCE-with-logits and kl_div change regime, computed for each format from exact mathematics.

A threshold is a pair of adjacent values of the input format ``fmt``: ``below`` (the largest value still in
the lower regime) and ``above`` (the smallest in the upper one).  Each is found by bisection over the
ordinals of ``fmt`` on a monotone predicate that evaluates the exact function (mpmath at
:data:`PRECISION` bits, or exact rationals) and rounds it with :mod:`suite.dtypes` into the format
``computed_in`` in which torch holds the intermediate: the format itself and, for 16-bit formats, also
float32, because torch's CPU and CUDA kernels compute 16-bit types in float32.  No threshold value is typed
in; only the constants of torch's own code are (the ``-100`` log clamp, the ``1e-12`` gradient epsilon and
the softplus ``threshold=20``).

    from suite.inputs import thresholds
    for t in thresholds.thresholds(dtypes.FLOAT16):
        print(t.name, t.below, t.above, t.reason)
    thresholds.threshold_values(dtypes.FLOAT16, kind="logit", k=3)   # values within 3 ordinals of each
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt

from suite import dtypes, exact_math
from suite.dtypes import FLOAT32, FloatArray, FloatFormat

#: Bits of working precision for the exact predicates (far above the 53 bits of the widest format, so the
#: one rounding into ``computed_in`` is that of the exact value).
PRECISION = 256

#: torch's constants: ``binary_cross_entropy`` clamps each log at -100, its backward divides by
#: ``max(p (1 - p), 1e-12)``, ``F.softplus`` returns ``x`` above ``threshold=20`` (beta=1).
LOG_CLAMP = -100
GRAD_EPSILON = Fraction(1, 10**12)
SOFTPLUS_THRESHOLD = 20

LOGIT_LIKE = ("logit", "log_probability", "log_target")
PROBABILITY_LIKE = ("probability", "target")

Predicate = Callable[[float], bool]


@dataclass(frozen=True)
class Threshold:
    """A regime change of some loss between two adjacent values ``below < above`` of ``fmt``.

    ``kinds`` are the input kinds (:data:`suite.cases.base.INPUT_KINDS`) it concerns; ``computed_in`` the
    format whose rounding defines it; ``reason`` says in one line what changes there.
    """

    name: str
    below: float
    above: float
    kinds: tuple[str, ...]
    computed_in: str
    reason: str
    fmt: FloatFormat


def computing_formats(fmt: FloatFormat) -> tuple[FloatFormat, ...]:
    """Formats torch may hold intermediates in for inputs of ``fmt``: itself, and float32 for 16 bits."""
    return (fmt, FLOAT32) if fmt.bits == 16 else (fmt,)


def _mpf(x: float) -> Any:
    return mpmath.mpf(x)


def _round(x: Any, fmt: FloatFormat) -> float:
    return dtypes.round_mpf(x, fmt)


def _round_fraction(x: Fraction, fmt: FloatFormat) -> float:
    return dtypes.round_fraction(x.numerator, x.denominator, fmt)


def _bisect(fmt: FloatFormat, low: float, high: float, predicate: Predicate) -> tuple[float, float] | None:
    """Adjacent values ``(b, a)`` of ``fmt`` in ``[low, high]`` with ``predicate(b)`` false and
    ``predicate(a)`` true, for a predicate monotone on the interval; None when it does not change there."""
    lo, hi = (int(o) for o in dtypes.to_ordinal([low, high], fmt))
    with mpmath.workprec(PRECISION):
        if predicate(low) or not predicate(high):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if predicate(float(dtypes.from_ordinal(mid, fmt))):
                hi = mid
            else:
                lo = mid
    below, above = dtypes.from_ordinal([lo, hi], fmt).tolist()
    return below, above


def _rounds(fn: Callable[[Any], Any], c: FloatFormat, test: Callable[[float], bool]) -> Predicate:
    """Predicate ``test(round_c(fn(x)))``: the exact ``fn`` rounded once into ``c``."""
    return lambda x: test(_round(fn(_mpf(x)), c))


Spec = tuple[str, float, float, Predicate, tuple[str, ...], str]


def _specs(fmt: FloatFormat, c: FloatFormat) -> list[Spec]:
    """(name, low, high, predicate, kinds, reason) of every threshold computed in ``c``; the predicate turns
    true at ``above``."""
    top = fmt.max_finite
    exp, sigmoid, softplus = exact_math.exp, exact_math.sigmoid, exact_math.softplus
    normal = c.smallest_normal
    log_clamp = mpmath.mpf(LOG_CLAMP)
    return [
        ("exp_overflow", 0.0, top, _rounds(exp, c, math.isinf), LOGIT_LIKE,
         "exp(x) rounds to inf from `above` on: `below` is the largest x with exp(x) finite"),
        ("exp_underflow", -top, 0.0, _rounds(exp, c, lambda v: v > 0), LOGIT_LIKE,
         "exp(x) rounds to 0 up to `below`; `above` is the smallest x with exp(x) > 0 (a subnormal)"),
        ("exp_subnormal", -top, 0.0, _rounds(exp, c, lambda v: v >= normal), LOGIT_LIKE,
         "exp(x) is subnormal (precision lost) up to `below`, normal from `above`"),
        ("exp_rounds_to_one_low", -1.0, 0.0, _rounds(exp, c, lambda v: v == 1), LOGIT_LIKE,
         "exp(x) rounds to 1 from `above` to 0: exp(x) - 1 cancels completely there (expm1 needed)"),
        ("exp_rounds_to_one_high", 0.0, 1.0, _rounds(exp, c, lambda v: v > 1), LOGIT_LIKE,
         "exp(x) rounds to 1 from 0 to `below`: exp(x) - 1 cancels completely there (expm1 needed)"),
        ("sigmoid_one", 0.0, top, _rounds(sigmoid, c, lambda v: v == 1), ("logit",),
         "sigmoid(x) rounds to 1 from `above` on: sigmoid then BCE sees p = 1 (log(1 - p) = -inf, clamped)"),
        ("sigmoid_one_naive", 0.0, top,
         lambda x: _round_fraction(1 + Fraction(_round(exp(-_mpf(x)), c)), c) == 1, ("logit",),
         "1 / (1 + exp(-x)) with each step rounded (torch's float32/64 sigmoid) is 1 from `above` on"),
        ("sigmoid_zero", -top, 0.0, _rounds(sigmoid, c, lambda v: v > 0), ("logit",),
         "sigmoid(x) rounds to 0 up to `below` (p = 0 for sigmoid then BCE), nonzero from `above`"),
        ("sigmoid_subnormal", -top, 0.0, _rounds(sigmoid, c, lambda v: v >= normal), ("logit",),
         "sigmoid(x) is subnormal up to `below`, normal from `above`"),
        ("sigmoid_complement_zero", 0.0, top, _rounds(lambda x: sigmoid(-x), c, lambda v: v == 0), ("logit",),
         "1 - sigmoid(x) = sigmoid(-x) is nonzero up to `below` and rounds to 0 from `above`"),
        ("sigmoid_complement_subnormal", 0.0, top,
         _rounds(lambda x: sigmoid(-x), c, lambda v: v < normal), ("logit",),
         "1 - sigmoid(x) = sigmoid(-x) is normal up to `below` and subnormal from `above`"),
        ("softplus_cancellation", -top, 0.0, _rounds(lambda x: 1 + exp(x), c, lambda v: v > 1), ("logit",),
         "1 + exp(x) rounds to 1 up to `below`: a naive log(1 + exp(x)) returns 0 for a true exp(x) there"),
        ("softplus_is_identity", 1.0, top, lambda x: _round(softplus(_mpf(x)), c) == x, ("logit",),
         "softplus(x) = x + log1p(exp(-x)) rounds to x from `above` on (returning x is then exact)"),
        ("softplus_underflow", -top, 0.0, _rounds(softplus, c, lambda v: v > 0), ("logit",),
         "softplus(x) rounds to 0 up to `below` (the true BCE-with-logits loss at y = 0 is then below tiny)"),
        ("sigmoid_log_clamp", -top, 0.0,
         lambda x: _round(sigmoid(_mpf(x)), c) >= exp(log_clamp), ("logit",),
         "log(sigmoid(x)) with sigmoid rounded to the format is below -100 (BCE clamps) up to `below`"),
        ("one_minus_rounds_to_one", 0.0, 1.0, lambda p: _round_fraction(1 - Fraction(p), c) < 1, PROBABILITY_LIKE,
         "1 - p rounds to 1 up to `below`: log(1 - p) then returns 0 (log1p(-p) needed)"),
        ("one_plus_rounds_to_one", 0.0, 1.0, lambda p: _round_fraction(1 + Fraction(p), c) > 1, PROBABILITY_LIKE,
         "1 + p rounds to 1 up to `below`: log(1 + p) then returns 0 (log1p(p) needed)"),
    ] + [
        (name, low, high, pred, kinds, reason) for name, low, high, pred, kinds, reason in _format_only(fmt)
        if c is fmt
    ]


def _format_only(fmt: FloatFormat) -> list[Spec]:
    """Thresholds on the input values themselves (no rounding of an intermediate)."""
    with mpmath.workprec(PRECISION):
        clamp = mpmath.exp(mpmath.mpf(LOG_CLAMP))
    return [
        ("log_clamp", 0.0, 1.0, lambda p: _mpf(p) >= clamp, PROBABILITY_LIKE,
         "log(p) < -100 up to `below` (BCE clamps the log at -100 there), p >= e^-100 from `above`"),
        ("log1m_clamp", 0.0, 1.0, lambda p: _mpf(1) - _mpf(p) < clamp, PROBABILITY_LIKE,
         "log(1 - p) >= -100 up to `below`, clamped at -100 from `above`"),
        ("log_value_clamp", -fmt.max_finite, 0.0, lambda x: x >= LOG_CLAMP, ("logit", *LOGIT_LIKE[1:]),
         "a log-probability below -100 is what BCE's clamp replaces by -100"),
        ("bce_grad_epsilon_low", 0.0, 0.5, lambda p: Fraction(p) * (1 - Fraction(p)) >= GRAD_EPSILON,
         PROBABILITY_LIKE, "BCE backward divides by max(p (1 - p), 1e-12): the epsilon wins up to `below`"),
        ("bce_grad_epsilon_high", 0.5, 1.0, lambda p: Fraction(p) * (1 - Fraction(p)) < GRAD_EPSILON,
         PROBABILITY_LIKE, "BCE backward divides by max(p (1 - p), 1e-12): the epsilon wins from `above`"),
        ("softplus_threshold", 0.0, fmt.max_finite, lambda x: x > SOFTPLUS_THRESHOLD, ("logit",),
         "F.softplus(x) (beta=1, threshold=20) returns x itself from `above` on"),
    ]


@cache
def thresholds(fmt: FloatFormat) -> tuple[Threshold, ...]:
    """Every threshold of ``fmt`` that lies inside its search interval, named ``name[computed_in]``."""
    found = []
    for c in computing_formats(fmt):
        for name, low, high, predicate, kinds, reason in _specs(fmt, c):
            pair = _bisect(fmt, low, high, predicate)
            if pair is not None:
                found.append(Threshold(f"{name}[{c.name}]", pair[0], pair[1], kinds, c.name, reason, fmt))
    return tuple(found)


def get(fmt: FloatFormat, name: str) -> Threshold:
    """The threshold called ``name`` (``"exp_overflow[float32]"``); KeyError listing the names otherwise."""
    for t in thresholds(fmt):
        if t.name == name:
            return t
    raise KeyError(f"no threshold {name!r} for {fmt.name}; have {', '.join(t.name for t in thresholds(fmt))}")


def neighbours(values: Iterable[float], fmt: FloatFormat, k: int) -> FloatArray:
    """Every value of ``fmt`` within ``k`` ordinals of one of ``values`` (clipped at +-inf), sorted, unique
    by bit pattern (so ``-0`` and ``+0`` both appear when ``0`` is within reach of a negative value)."""
    base = dtypes.to_ordinal(np.asarray(list(values), dtype=np.float64), fmt)
    offsets = np.arange(-k, k + 1, dtype=np.int64)
    ordinals = np.unique(np.clip(base[:, None] + offsets[None, :], -fmt.max_ordinal, fmt.max_ordinal))
    out = dtypes.from_ordinal(ordinals, fmt)
    if (ordinals < 0).any() and (ordinals == 0).any():
        out = np.append(out, -0.0)
    return sort_unique(out)


def threshold_values(fmt: FloatFormat, kind: str | None = None, k: int = 3, *, mirrored: bool = False,
                     ) -> FloatArray:
    """``below`` and ``above`` of every threshold of ``fmt`` (those concerning ``kind`` when given) and the
    values within ``k`` ordinals of them; with ``mirrored`` their negations too (BCE is symmetric under
    ``x -> -x, y -> 1 - y``, so a logit threshold matters at both signs)."""
    chosen = [t for t in thresholds(fmt) if kind is None or kind in t.kinds]
    points = [v for t in chosen for v in (t.below, t.above)]
    if mirrored:
        points += [-v for v in points]
    if not points:
        return np.empty(0)
    return neighbours(points, fmt, k)


def sort_unique(values: npt.ArrayLike) -> FloatArray:
    """Values sorted ascending with ``-0`` before ``+0`` and NaN last (one NaN), unique by bit pattern."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    nan = np.isnan(v)
    finite = v[~nan]
    bits = np.unique(finite.view(np.int64))
    finite = bits.view(np.float64)
    order = np.lexsort((~np.signbit(finite), finite))
    out = finite[order]
    return np.append(out, np.nan) if nan.any() else out
