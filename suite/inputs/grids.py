"""Deterministic input grids: uniform in ordinal (bit-pattern) space over each input kind's whole range,
exhaustive for the 16-bit formats, always with the special values and the thresholds of
:mod:`suite.inputs.thresholds` and their neighbours, and for 32/64-bit formats :data:`BAND_POINTS_PER_BINADE`
points in each binade of the moderate :data:`BAND`.  No randomness: a grid is the same on every run.

    from suite import cases, dtypes
    from suite.inputs import grids
    inputs = grids.case_grid(cases.get("bce_with_logits"), dtypes.FLOAT16)   # every float16 logit x 3 targets
    result = run.evaluate(case, inputs, "float16")
    x = grids.main_values(case, inputs)                                      # plot errors along x

Sizes (points = loss elements whose truth must be computed) are given by :func:`grid_size`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import mpmath
import numpy as np
import numpy.typing as npt

from suite import dtypes
from suite.cases.base import INPUT_KINDS, Case, InputSpec
from suite.dtypes import FloatArray, FloatFormat
from suite.inputs.thresholds import PRECISION, sort_unique, threshold_values

#: Ordinal-uniform points of a 32/64-bit kind when ``count`` is not given.
DEFAULT_COUNT = 4096
#: Magnitudes ``[low, high)`` of the moderate band: probabilities from 1/32 up, logits up to 1024 (past
#: float64's exp overflow at 709.8), where vectorised kernels switch between polynomial segments and cut-offs (a
#: softplus threshold, a series) that neither the thresholds nor ordinal-uniform points reach often.
BAND = (2.0**-5, 2.0**10)
#: Points in each binade of :data:`BAND` (either sign, inside the kind's range) that full 32/64-bit grids add.
#: The ordinal-uniform points leave about one float64 point per binade there (eight in float32), so a segment of
#: a sixteenth of a binade that is wrong went unseen by the grid; 32 put two points in every such segment.
BAND_POINTS_PER_BINADE = 32
#: Where a band point lies inside its 1/32 of a binade: the golden ratio's fraction, so that its mantissa has
#: all its bits in play rather than being a short dyadic fraction (``1 + k / 32``) that a kernel's range
#: reduction handles exactly.
_BAND_OFFSET = (6180339887, 10**10)
#: Ordinal-uniform points of the main input of a quick grid.
QUICK_COUNT = 96
#: Ordinals either side of each threshold in full and quick grids.
THRESHOLD_REACH = 3
QUICK_THRESHOLD_REACH = 1

#: The other inputs crossed with the main one (rounded to the format).  Targets: hard 0 and 1 and a
#: label-smoothing value whose complement is inexact in decimal; weights: 0 (the ``0 * inf`` rule) and 3
#: (not a power of two, so the product rounds; large losses overflow); pos_weight: below and above 1.
TARGETS = (0.0, 0.9, 1.0)
QUICK_TARGETS = (0.0, 0.1, 0.5, 0.9, 1.0)
#: Targets above 1 where the domain allows them (kl_div's: any nonnegative number), in the full and quick grids:
#: an unnormalised one here, and the format's largest finite value, whose t log t overflows.
ABOVE_ONE_TARGETS = (2.0,)
WEIGHTS = (0.0, 3.0)
POS_WEIGHTS = (0.3, 3.0)
#: Rows cases: width, the companions of the swept logit (slot 0), and target rows (dyadic, so each sums to
#: exactly 1 in every format, with zeros, one of them facing the ``-inf`` companion).
ROW_COMPANIONS = (0.0, 2.0, -math.inf)
TARGET_ROWS = ((1.0, 0.0, 0.0, 0.0), (0.625, 0.25, 0.125, 0.0))

#: Natural range of each kind (inclusive).  Weights are a fixed set of meaningful values instead.
KIND_RANGES: dict[str, tuple[float, float | None]] = {
    "logit": (-math.inf, math.inf),
    "log_probability": (-math.inf, math.inf),
    "probability": (0.0, 1.0),
    "target": (0.0, 1.0),
    "log_target": (-math.inf, None),  # None: the format's largest finite value
}
WEIGHT_KINDS = ("weight", "pos_weight")
#: Kinds whose thresholds matter at both signs (BCE is symmetric under ``x -> -x, y -> 1 - y``).
MIRRORED_KINDS = ("logit", "log_probability")


def _check_kind(kind: str) -> None:
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r}; choose from {', '.join(INPUT_KINDS)}")


def ceil_to(x: float, fmt: FloatFormat) -> float:
    """Smallest value of ``fmt`` that is ``>= x``."""
    with np.errstate(over="ignore"):
        r = float(dtypes.round_array(x, fmt))
    return float(dtypes.next_toward(r, math.inf, fmt)) if r < x else r


def floor_to(x: float, fmt: FloatFormat) -> float:
    """Largest value of ``fmt`` that is ``<= x``."""
    with np.errstate(over="ignore"):
        r = float(dtypes.round_array(x, fmt))
    return float(dtypes.next_toward(r, -math.inf, fmt)) if r > x else r


def ordinal_grid(fmt: FloatFormat, low: float, high: float, count: int) -> FloatArray:
    """``count`` values of ``fmt`` equally spaced in ordinal (bit-pattern) space from ``low`` to ``high``
    (inclusive, rounded inward to the format, may be +-inf), sorted and unique; every value of the interval
    when it holds no more than ``count``.  ``+0`` stands for both zeros (they share ordinal 0)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if math.isnan(low) or math.isnan(high):
        raise ValueError("grid bounds must not be NaN")
    lo, hi = inward_ordinals(low, high, fmt)
    span = hi - lo
    if count == 1:
        ordinals = [lo]
    elif span < count:
        ordinals = list(range(lo, hi + 1))
    else:  # Python integers: the span of float64 ordinals exceeds int64
        ordinals = [lo + (i * span) // (count - 1) for i in range(count)]
    return sort_unique(dtypes.from_ordinal(np.array(ordinals, dtype=np.int64), fmt))


def inward_ordinals(low: float, high: float, fmt: FloatFormat) -> tuple[int, int]:
    """Ordinals of the smallest and largest values of ``fmt`` in ``[low, high]`` (ValueError: there is none)."""
    lo_v, hi_v = ceil_to(low, fmt), floor_to(high, fmt)
    if lo_v > hi_v:
        raise ValueError(f"no value of {fmt.name} lies in [{low!r}, {high!r}]")
    lo, hi = (int(o) for o in dtypes.to_ordinal([lo_v, hi_v], fmt))
    return lo, hi


def exponents(fmt: FloatFormat, magnitudes: tuple[float, float] | None = None) -> range:
    """Exponents ``e`` of the binades ``[2^e, 2^(e+1))`` of ``fmt`` (subnormal ones included) that lie wholly in
    ``magnitudes = [low, high)`` (None: all of them)."""
    smallest = fmt.emin - fmt.precision + 1
    if magnitudes is None:
        return range(smallest, fmt.emax + 1)
    low, high = magnitudes
    return range(max(math.ceil(math.log2(low)), smallest), min(math.floor(math.log2(high)), fmt.emax + 1))


@functools.lru_cache(maxsize=256)
def binades(lo: int, hi: int, fmt: FloatFormat, exps: range) -> tuple[tuple[int, int], ...]:
    """The binades of exponents ``exps`` (negative and positive) inside the ordinals ``[lo, hi]``, each as its
    first ordinal and its number of values (clipped to the bounds).  Cached: Hypothesis strategies are rebuilt for
    every drawn batch."""
    starts = [math.ldexp(1.0, e) for e in exps]
    ends = [math.ldexp(1.0, e + 1) if e < fmt.emax else math.inf for e in exps]  # the last ends at +inf
    found = []
    for first, end in zip(dtypes.to_ordinal(starts, fmt).tolist(), dtypes.to_ordinal(ends, fmt).tolist(),
                          strict=True):
        for a, b in ((first, end - 1), (-end + 1, -first)):
            a, b = max(a, lo), min(b, hi)
            if a <= b:
                found.append((a, b - a + 1))
    return tuple(found)


def band_values(fmt: FloatFormat, low: float, high: float,
                per_binade: int = BAND_POINTS_PER_BINADE) -> FloatArray:
    """``per_binade`` values of ``fmt`` in each binade of :data:`BAND` (either sign) inside ``[low, high]``, one
    in each ``1/per_binade`` of the binade's values, sorted.  Each lies at the same irrational offset from its
    piece's lowest ordinal: the smallest magnitude of a positive piece, the largest of a negative one, so the two
    signs share no magnitude."""
    try:
        lo, hi = inward_ordinals(low, high, fmt)
    except ValueError:
        return np.array([])
    num, den = _BAND_OFFSET
    ordinals = [first + (count * (k * den + num)) // (per_binade * den)
                for first, count in binades(lo, hi, fmt, exponents(fmt, BAND)) for k in range(per_binade)]
    return sort_unique(dtypes.from_ordinal(np.array(ordinals, dtype=np.int64), fmt))


def all_values(fmt: FloatFormat) -> FloatArray:
    """The value of every bit pattern of a 16-bit format, indexed by pattern (``out[0x3C00] == 1.0`` in
    float16): 65,536 values, NaN patterns as NaN (2,046 in float16, 254 in bfloat16).  ValueError for wider
    formats."""
    if fmt.bits != 16:
        raise ValueError(f"all_values enumerates 16-bit formats only, not {fmt.name}")
    patterns = np.arange(1 << 16, dtype=np.int64)
    magnitude = patterns & 0x7FFF
    is_number = magnitude <= fmt.max_ordinal
    values = np.full(patterns.shape, np.nan)
    values[is_number] = dtypes.from_ordinal(magnitude[is_number], fmt)
    result: FloatArray = np.where(patterns & 0x8000, -values, values)  # negating +0 gives -0
    return result


def specials(fmt: FloatFormat) -> FloatArray:
    """Values every grid holds where in range: +-0, +-inf, the smallest and largest subnormal, the smallest
    normal, the largest finite value, 1 and its neighbours, 0.5 and 2, at both signs."""
    below_one, above_one = dtypes.next_toward([1.0, 1.0], [0.0, 2.0], fmt).tolist()
    tiny, normal = fmt.smallest_subnormal, fmt.smallest_normal
    positive = [0.0, tiny, normal - tiny, normal, 0.5, below_one, 1.0, above_one, 2.0, fmt.max_finite,
                math.inf]
    return sort_unique(positive + [-v for v in positive])


def _range(kind: str, fmt: FloatFormat) -> tuple[float, float]:
    low, high = KIND_RANGES[kind]
    return low, fmt.max_finite if high is None else high


def _within(values: FloatArray, low: float, high: float) -> FloatArray:
    kept: FloatArray = values[(values >= low) & (values <= high)]
    return kept


def weight_values(fmt: FloatFormat) -> FloatArray:
    """The weight / pos_weight grid: 0, the smallest subnormal, fractions (0.3, 0.5), 1, 3, 1000 and the
    largest finite value, rounded to ``fmt``."""
    chosen = [0.0, fmt.smallest_subnormal, 0.3, 0.5, 1.0, 3.0, 1000.0, fmt.max_finite]
    return sort_unique(dtypes.round_array(chosen, fmt))


def input_grid(kind: str, fmt: FloatFormat, *, count: int | None = None, include_nan: bool = True,
               reach: int = THRESHOLD_REACH) -> FloatArray:
    """Sorted values of ``fmt`` for one input kind over its natural range: every value of a 16-bit format
    when ``count`` is None, else ``count`` ordinal-uniform points (when None, :data:`DEFAULT_COUNT` for 32/64 bits
    and :func:`band_values`), always with :func:`specials` in range and every threshold of the kind within
    ``reach`` ordinals; one NaN last when ``include_nan``.

    Ranges: logit and log_probability the whole line with +-inf; probability and target [0, 1] (with -0);
    log_target [-inf, max finite]; weight and pos_weight :func:`weight_values`.
    """
    _check_kind(kind)
    if kind in WEIGHT_KINDS:
        values = weight_values(fmt)
    else:
        low, high = _range(kind, fmt)
        if count is None and fmt.bits == 16:
            every = all_values(fmt)
            base = _within(every[~np.isnan(every)], low, high)
        elif count is None:
            base = np.concatenate([ordinal_grid(fmt, low, high, DEFAULT_COUNT), band_values(fmt, low, high)])
        else:
            base = ordinal_grid(fmt, low, high, count)
        extra = np.concatenate([specials(fmt),
                                threshold_values(fmt, kind, reach, mirrored=kind in MIRRORED_KINDS)])
        values = sort_unique(np.concatenate([base, _within(extra, low, high)]))
    return np.append(values, np.nan) if include_nan else values


# --------------------------------------------------------------------------------------------------
# Grids of a whole case.


def other_values(spec: InputSpec, fmt: FloatFormat, *, quick: bool = False) -> FloatArray:
    """The small set crossed with the main input for a non-main input, rounded to ``fmt``, in its domain."""
    if spec.kind in ("target", "probability"):
        values = dtypes.round_array(QUICK_TARGETS if quick else TARGETS, fmt)
        if spec.kind == "target" and spec.high > 1:
            values = np.concatenate([values, dtypes.round_array(ABOVE_ONE_TARGETS, fmt), [fmt.max_finite]])
    elif spec.kind == "log_target":
        with mpmath.workprec(PRECISION):
            logs = [dtypes.round_mpf(mpmath.log(mpmath.mpf(t)), fmt) if t > 0 else -math.inf
                    for t in (QUICK_TARGETS if quick else TARGETS)]
        values = np.array(logs)
    elif spec.kind == "weight":
        values = dtypes.round_array(WEIGHTS, fmt)
    elif spec.kind == "pos_weight":
        values = dtypes.round_array(POS_WEIGHTS, fmt)
    else:
        values = input_grid(spec.kind, fmt, count=8, include_nan=False)
    values = sort_unique(values)
    return np.array([v for v in values.tolist() if spec.contains(v)])


def main_grid(case: Case, fmt: FloatFormat, *, quick: bool = False, count: int | None = None,
              include_nan: bool = False) -> FloatArray:
    """Values of the main input: :func:`input_grid` of its kind restricted to the input's domain."""
    spec = case.main_input
    if quick and count is None:
        count = QUICK_COUNT
    reach = QUICK_THRESHOLD_REACH if quick else THRESHOLD_REACH
    values = input_grid(spec.kind, fmt, count=count, include_nan=False, reach=reach)
    values = values[(values >= spec.low) & (values <= spec.high)]
    return np.append(values, np.nan) if include_nan else values


def case_grid(case: Case, fmt: FloatFormat, *, quick: bool = False, count: int | None = None,
              include_nan: bool = False) -> dict[str, FloatArray]:
    """The inputs dict of ``case`` for :func:`suite.run.evaluate`: the main input (:func:`main_grid`, the
    fastest-varying last axis) crossed with the small sets of :func:`other_values` of every other input.

    Elementwise cases get full arrays of shape ``(n_other_1, ..., n_main)`` (torch's BCE wants input and
    target of one shape).  Rows cases get rows of width 4 along the last axis: the swept logit in slot 0,
    :data:`ROW_COMPANIONS` after it, crossed with :data:`TARGET_ROWS`: shape ``(n_target_rows, n_main, 4)``.
    ``include_nan`` adds one NaN main value (BCE then raises for the whole batch: keep it apart).
    """
    main = main_grid(case, fmt, quick=quick, count=count, include_nan=include_nan)
    if case.rows:
        return _rows_grid(case, fmt, main)
    others = case.inputs[1:]
    axes = [other_values(spec, fmt, quick=quick) for spec in others] + [main]
    mesh = np.meshgrid(*axes, indexing="ij")
    grid = {case.main_input.name: mesh[-1]}
    grid.update({spec.name: m for spec, m in zip(others, mesh[:-1], strict=True)})
    return {spec.name: np.ascontiguousarray(grid[spec.name]) for spec in case.inputs}


def _rows_grid(case: Case, fmt: FloatFormat, main: FloatArray) -> dict[str, FloatArray]:
    if len(case.inputs) != 2:
        raise ValueError(f"rows case {case.name!r}: grids know rows of (logits, targets) only")
    companions = dtypes.round_array(ROW_COMPANIONS, fmt)
    rows = np.empty((len(main), 1 + len(companions)))
    rows[:, 0] = main
    rows[:, 1:] = companions
    targets = dtypes.round_array(np.array(TARGET_ROWS), fmt)
    logits = np.broadcast_to(rows, (len(targets), *rows.shape))
    target = np.broadcast_to(targets[:, None, :], logits.shape)
    return {case.inputs[0].name: np.ascontiguousarray(logits),
            case.inputs[1].name: np.ascontiguousarray(target)}


def main_values(case: Case, inputs: Mapping[str, npt.ArrayLike]) -> FloatArray:
    """For each loss element of ``inputs``, the value of the main input it belongs to: the element's own
    value for elementwise cases, the row's slot-0 value (the swept logit of :func:`case_grid`) for rows."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    main = np.broadcast_to(arrays[case.main_input.name], shape)
    if case.rows:
        main = np.broadcast_to(main[..., :1], shape)
    return np.array(main)


def grid_size(case: Case, fmt: FloatFormat, *, quick: bool = False, count: int | None = None) -> int:
    """Number of loss elements (truth evaluations) of :func:`case_grid`."""
    grid = case_grid(case, fmt, quick=quick, count=count)
    return math.prod(np.broadcast_shapes(*(a.shape for a in grid.values())))
