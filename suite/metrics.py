"""Error measures of torch results against exact truths: ULP error, ordinal distance, bits of error,
relative and absolute error, condition numbers, and exactly one label per element (see DESIGN.md).

NaN and infinity are never averaged away: they become labels, and the numeric measures of those elements
are NaN (undefined) or inf (unbounded), never 0 (except the ULP error of an infinite result that is the
correctly rounded truth: an overflow done right has error 0, as any exact result).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from suite import dtypes
from suite.dtypes import FloatArray, FloatFormat
from suite.truth import BIG_SHIFT, Status, Truth

BoolArray = npt.NDArray[np.bool_]

#: Upper edges of the ULP-error histogram; the last bucket is everything above 16.
HISTOGRAM_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0, 16.0)
HISTOGRAM_LABELS = ("0", "<=0.5", "<=1", "<=2", "<=4", "<=16", ">16")


class Label(IntEnum):
    """What happened at one element; every element gets exactly one."""

    EXACT = 0  # equal to the correctly rounded truth
    OK = 1  # within the ULP budget (after allowing for conditioning)
    INACCURATE = 2  # beyond the budget
    NAN = 3  # NaN where the truth is defined
    SPURIOUS_INF = 4  # inf where the truth is finite and representable
    CLAMPED = 5  # finite where the truth is larger or infinite (a saturation)
    FLUSHED = 6  # 0 where the truth is a normal number (and conditioning does not explain the error)
    OVERFLOW = 7  # truth beyond the dtype's range; inf is then correct
    RAISED = 8  # torch raised a Python exception
    DEVICE_ASSERT = 9  # a CUDA device-side assert
    UNDEFINED = 10  # input outside the mathematical domain: behaviour only
    UNDETERMINED = 11  # the truth could not be settled at the precision cap (or is beyond the float64 carrier)

    @property
    def text(self) -> str:
        return self.name.lower()


@dataclass
class ElementMetrics:
    """Per-element measures of one quantity (a loss or a gradient), all the shape of the quantity."""

    ulp_error: FloatArray
    ordinal_distance: FloatArray
    bits_error: FloatArray
    relative_error: FloatArray
    absolute_error: FloatArray
    condition: FloatArray
    inherent_ulp: FloatArray  # condition * u * |t| / ulp(t): error any working-precision algorithm may make
    algorithmic_ulp: FloatArray  # ulp_error / max(1, inherent_ulp): the part a better formula could remove
    ill_conditioned: BoolArray  # inherent_ulp > budget: any algorithm may exceed the budget here
    labels: npt.NDArray[np.int8]
    budget: float

    def count(self) -> dict[str, int]:
        return label_counts(self.labels)

    def histogram(self) -> dict[str, int]:
        return ulp_histogram(self.ulp_error)


def exact_exponent(hi: FloatArray, lo: FloatArray) -> npt.NDArray[np.int64]:
    """``floor(log2|hi + lo|)`` of a normalised double-double (``hi`` nonzero, finite)."""
    mantissa, e2 = np.frexp(hi)
    below_power_of_two = (np.abs(mantissa) == 0.5) & (lo != 0) & (np.sign(lo) != np.sign(hi))
    return (e2 - 1 - below_power_of_two).astype(np.int64)


def truth_ulp(truth: Truth, fmt: FloatFormat) -> FloatArray:
    """``ulp_D(t)`` of the exact truth (DESIGN.md); the smallest subnormal at 0, NaN where undetermined."""
    hi = np.where(np.isfinite(truth.hi) & (truth.hi != 0), truth.hi, 1.0)
    e = np.clip(exact_exponent(hi, truth.lo), fmt.emin, fmt.emax)
    result = np.ldexp(1.0, (e - fmt.precision + 1).astype(np.int32))
    result = np.where(truth.hi == 0, fmt.smallest_subnormal, result)
    return np.where(truth.determined & np.isfinite(truth.hi), result, np.nan)


def _distance(got: FloatArray, truth: Truth) -> FloatArray:
    """``|got - (hi + lo)|``, with 0 for equal infinities and inf where only one side is infinite."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs((got - truth.hi) - truth.lo)
    both_inf = np.isinf(got) & np.isinf(truth.hi) & (got == truth.hi)
    return np.where(both_inf, 0.0, d)


def ulp_error(got: FloatArray, truth: Truth, fmt: FloatFormat) -> FloatArray:
    """``|g - t| / ulp_D(t)`` (DESIGN.md), with the exponent of ``ulp_D`` at most ``emax``.

    An infinite ``g`` that is the correctly rounded truth (an overflow, or an infinite truth) has error 0; any
    other infinite ``g`` (a spurious inf, or one of the wrong sign) and a finite ``g`` for an infinite truth have
    error inf.  A finite ``g`` for a finite truth beyond float64 is measured exactly from the truth's scaled
    parts (inf beyond even those).  NaN where ``g`` is NaN, the truth is not determined, or ``g`` is float64's
    largest value and the truth one beyond float64 without its scaled parts (:func:`_unjudgeable_float64_max`).
    """
    u = truth_ulp(truth, fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        err = _distance(got, truth) / u
    determined = truth.determined
    finite_g = np.isfinite(got)
    correctly_rounded_inf = ~finite_g & (got == truth.rounded(fmt))
    unbounded = determined & ((~finite_g & ~np.isnan(got) & ~correctly_rounded_inf) | (finite_g & np.isinf(truth.hi)))
    err = np.where(unbounded, np.inf, err)
    err = np.where(finite_g & truth.beyond, _error_beyond_float64(got, truth, fmt), err)
    err = np.where(correctly_rounded_inf, 0.0, err)
    result: FloatArray = np.where(_unjudgeable_float64_max(got, truth), np.nan, err)
    return result


def signed_ulp_error(got: FloatArray, truth: Truth, fmt: FloatFormat) -> FloatArray:
    """``(g - t) / ulp_D(t)`` signed so that a result nearer 0 than the truth is negative: how far, and which
    way, a finite ``g`` rounds a finite nonzero truth; NaN elsewhere (an infinity, a NaN, a zero or undetermined
    truth, one beyond float64), where rounding has no direction."""
    u = truth_ulp(truth, fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        err = ((got - truth.hi) - truth.lo) / u * np.sign(truth.hi)
    usable = np.isfinite(got) & np.isfinite(truth.hi) & (truth.hi != 0)  # hi is NaN where undetermined
    result: FloatArray = np.where(usable, err, np.nan)
    return result


def _unjudgeable_float64_max(got: FloatArray, truth: Truth) -> BoolArray:
    """Float64's largest finite value against a finite truth beyond float64 carried as inf without its scaled
    parts: it may be the truth's correct rounding, so neither its error nor its label can be settled."""
    result: BoolArray = (truth.determined & np.isinf(truth.hi) & ~truth.infinite & ~truth.beyond
                         & (np.abs(got) == dtypes.FLOAT64.max_finite))
    return result


def _error_beyond_float64(got: FloatArray, truth: Truth, fmt: FloatFormat) -> FloatArray:
    """``|g - t| / ulp_D(t)`` of finite ``g`` against truths beyond float64, whose ``big_hi + big_lo`` holds
    ``t 2^-BIG_SHIFT``; ``ulp_D(t)`` is the ULP of ``fmt``'s top binade (the exponent is capped at ``emax``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = (truth.big_hi - np.ldexp(got, -BIG_SHIFT)) + truth.big_lo
        return np.abs(np.ldexp(scaled, BIG_SHIFT - (fmt.emax - fmt.precision + 1)))


def ordinal_distance(got: FloatArray, truth: Truth, fmt: FloatFormat) -> FloatArray:
    """Number of representable values of ``fmt`` between ``g`` and the correctly rounded truth
    (``+0`` and ``-0`` are 0 apart); NaN where either is NaN."""
    rounded = truth.rounded(fmt)
    valid = ~np.isnan(got) & ~np.isnan(rounded)
    out = np.full(got.shape, np.nan)
    if valid.any():
        out[valid] = ordinal_gap(got[valid], rounded[valid], fmt)
    return out


def ordinal_gap(a: npt.ArrayLike, b: npt.ArrayLike, fmt: FloatFormat) -> FloatArray:
    """Number of values of ``fmt`` between ``a`` and ``b`` (``+0`` and ``-0`` are 0 apart), as float64: exact
    where both have one sign, and where they straddle zero the sum of two magnitudes, which in float64's
    ordinals (up to 2^63 - 2^52 each) overflows int64 and is exact to 2^53."""
    x, y = dtypes.to_ordinal(a, fmt), dtypes.to_ordinal(b, fmt)
    straddle = (x < 0) != (y < 0)
    within = np.abs(x - np.where(straddle, x, y)).astype(np.float64)  # no int64 overflow: one sign
    across = np.abs(x).astype(np.float64) + np.abs(y).astype(np.float64)
    result: FloatArray = np.where(straddle, across, within)
    return result


def measure(got: npt.ArrayLike, truth: Truth, fmt: FloatFormat, budget: float,
            condition: npt.ArrayLike | None = None, failure: Label | None = None) -> ElementMetrics:
    """All measures and labels of torch results ``got`` (float64 carrier of values of ``fmt``).

    ``budget`` is the ULP budget for algorithmic error; ``failure`` (RAISED or DEVICE_ASSERT) labels every
    element when torch produced no value.
    """
    g = np.asarray(got, dtype=np.float64)
    if g.shape != truth.shape:
        g = np.broadcast_to(g, truth.shape).copy()
    kappa = np.full(g.shape, np.nan) if condition is None else np.broadcast_to(
        np.asarray(condition, dtype=np.float64), g.shape)
    err = ulp_error(g, truth, fmt)
    dist = ordinal_distance(g, truth, fmt)
    inherent = inherent_ulp(truth, fmt, kappa)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        absolute = _distance(g, truth)
        relative = np.where(absolute == 0, 0.0, absolute / np.abs(truth.hi))
        algorithmic = err / np.maximum(np.nan_to_num(inherent, nan=0.0), 1.0)
    labels = _labels(g, truth, fmt, algorithmic, budget, failure)
    return ElementMetrics(
        ulp_error=err, ordinal_distance=dist, bits_error=bits_of_error(dist), relative_error=relative,
        absolute_error=absolute, condition=np.asarray(kappa, dtype=np.float64), inherent_ulp=inherent,
        algorithmic_ulp=algorithmic, ill_conditioned=np.nan_to_num(inherent, nan=0.0) > budget, labels=labels,
        budget=budget)


def inherent_ulp(truth: Truth, fmt: FloatFormat, condition: npt.ArrayLike) -> FloatArray:
    """Error in ULPs that a relative perturbation of the inputs by one unit roundoff causes:
    ``condition * u * |t| / ulp(t)``.  About ``condition / 2`` to ``condition`` for normal results, far less
    for subnormal ones (where a ULP is not relative), so conditioning never excuses an underflow."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(condition, dtype=np.float64) * fmt.unit_roundoff * np.abs(truth.hi) / truth_ulp(truth, fmt)


def _labels(g: FloatArray, truth: Truth, fmt: FloatFormat, algorithmic: FloatArray, budget: float,
            failure: Label | None) -> npt.NDArray[np.int8]:
    rounded = truth.rounded(fmt)
    finite_g = np.isfinite(g)
    beyond = truth.determined & np.isinf(rounded)  # infinite truth, or beyond the dtype's range
    with np.errstate(invalid="ignore"):
        smaller = finite_g & (np.abs(g) < np.abs(truth.hi))
    conditions: list[tuple[Any, Label]] = [
        (np.full(g.shape, failure is not None), failure or Label.RAISED),
        (truth.status == Status.UNDEFINED, Label.UNDEFINED),
        (np.isnan(g), Label.NAN),  # wrong wherever the truth is defined, settled or not
        (truth.status == Status.UNDETERMINED, Label.UNDETERMINED),
        (beyond & (g == rounded) & truth.infinite, Label.EXACT),
        (beyond & (g == rounded), Label.OVERFLOW),
        (_unjudgeable_float64_max(g, truth), Label.UNDETERMINED),
        (beyond & finite_g & ~truth.infinite & (algorithmic <= budget), Label.OK),  # max for a truth just past it
        (beyond & finite_g, Label.CLAMPED),
        (beyond, Label.INACCURATE),  # infinity of the wrong sign
        (np.isinf(g), Label.SPURIOUS_INF),
        (g == rounded, Label.EXACT),
        (algorithmic <= budget, Label.OK),
        ((g == 0) & (np.abs(rounded) >= fmt.smallest_normal), Label.FLUSHED),
    ]
    labels = np.select([c for c, _ in conditions], [int(v) for _, v in conditions], default=int(Label.INACCURATE))
    labels = labels.astype(np.int8)
    _mark_plateaus(labels, g, smaller)
    return labels


def _mark_plateaus(labels: npt.NDArray[np.int8], g: FloatArray, smaller: BoolArray) -> None:
    """Relabel as CLAMPED the inaccurate elements where torch returns, below the truth's magnitude, the very
    value it returns where the truth is infinite or beyond range: its saturation value (BCE's 100)."""
    saturation = np.unique(g[(labels == Label.CLAMPED) & (g != 0)])
    if saturation.size == 0:
        return
    candidates = (labels == Label.INACCURATE) & smaller & np.isin(g, saturation)
    labels[candidates] = Label.CLAMPED


def label_counts(labels: npt.ArrayLike) -> dict[str, int]:
    """Count of every label (all labels present, zeros included)."""
    arr = np.asarray(labels).reshape(-1)
    counts = np.bincount(arr.astype(np.int64), minlength=len(Label))
    return {label.text: int(counts[label]) for label in Label}


def ulp_histogram(ulp_errors: npt.ArrayLike) -> dict[str, int]:
    """Counts of finite-or-infinite ULP errors in the buckets 0, <=0.5, <=1, <=2, <=4, <=16, >16 (NaN errors,
    which have labels of their own, are not counted)."""
    e = np.asarray(ulp_errors, dtype=np.float64).reshape(-1)
    e = e[~np.isnan(e)]
    counts = {HISTOGRAM_LABELS[0]: int((e == 0).sum())}
    previous = 0.0
    for edge, name in zip(HISTOGRAM_EDGES[1:], HISTOGRAM_LABELS[1:-1], strict=True):
        counts[name] = int(((e > previous) & (e <= edge)).sum())
        previous = edge
    counts[HISTOGRAM_LABELS[-1]] = int((e > previous).sum())
    return counts


def bits_of_error(ordinal_distance_value: npt.ArrayLike) -> FloatArray:
    """Herbie-style bits of error, ``log2(1 + ordinal distance)``."""
    return np.log2(1.0 + np.asarray(ordinal_distance_value, dtype=np.float64))
