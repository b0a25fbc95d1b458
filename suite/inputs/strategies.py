"""Hypothesis strategies for the inputs of every case, in every format.

Every value drawn is exactly a value of the format (carried as a Python / NumPy float64).  Values come from
four sources mixed by ``one_of`` (earlier sources are where shrinking goes):

1. the format's special values (:func:`suite.inputs.grids.specials`: +-0, +-inf, subnormal and normal
   edges, 1 and its neighbours, the largest finite value),
2. the thresholds of :mod:`suite.inputs.thresholds` and the values within :data:`REACH` ordinals of them,
3. the whole range, binade by binade: a binade ``[2^e, 2^(e+1))`` of the range (subnormal ones included, either
   sign) is chosen uniformly, then a value uniformly inside it, so every magnitude from the smallest
   subnormal to the largest finite value is as likely as another,
4. the same over the moderate :data:`~suite.inputs.grids.BAND` of magnitudes, where losses are mostly
   evaluated and where the whole range puts few draws (in float64, 1 in 70),

and NaN as a fifth source where ``allow_nan``.  Bounds are validated like ``hypothesis.strategies.floats``:
they are rounded inward to the format and an empty range is an ``InvalidArgument``.

    from suite.inputs import strategies as xs
    @given(xs.case_inputs(cases.get("bce_with_logits_pos_weight"), dtypes.FLOAT16))
    def test_something(inputs): ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from suite import dtypes
from suite.cases.base import INPUT_KINDS, Case, InputSpec
from suite.dtypes import FloatArray, FloatFormat
from suite.inputs import grids
from suite.inputs.thresholds import threshold_values

#: Ordinals either side of each threshold that are drawn with high probability.
REACH = 3


def _bound(value: float | None, default: float, name: str) -> float:
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} must be a real number or None")
    if math.isnan(value):
        raise InvalidArgument(f"{name} must not be NaN")
    return float(value)


def _inward(low: float, high: float, fmt: FloatFormat, allow_infinity: bool) -> tuple[int, int]:
    """Ordinals of the smallest and largest values of ``fmt`` in ``[low, high]`` (finite ones only unless
    ``allow_infinity``); InvalidArgument when there is none."""
    inner = (low, high) if allow_infinity else (max(low, -fmt.max_finite), min(high, fmt.max_finite))
    try:
        return grids.inward_ordinals(*inner, fmt)
    except ValueError:
        raise InvalidArgument(f"no {'finite ' if not allow_infinity else ''}value of {fmt.name} lies in "
                              f"[{low!r}, {high!r}]") from None


def floats_of(fmt: Any, *, min_value: float | None = None, max_value: float | None = None,
              allow_nan: bool = False, allow_infinity: bool = True, allow_subnormal: bool = True,
              kind: str | None = None) -> st.SearchStrategy[float]:
    """Values of ``fmt`` (a :class:`FloatFormat`, its name or a ``torch.dtype``) in
    ``[min_value, max_value]``.

    Args:
        min_value, max_value: inclusive bounds (None: unbounded), rounded inward to ``fmt``; ``-0.0`` and
            ``+0.0`` are both inside any range containing 0.
        allow_nan: also draw NaN (which lies outside any ordering, so bounds do not exclude it).
        allow_infinity: draw +-inf where the bounds include them.
        allow_subnormal: draw subnormal values (when False, draws that would be subnormal become the nearest
            of 0 and +-smallest normal inside the bounds).
        kind: favour the thresholds of this input kind (None: every threshold of ``fmt``).
    """
    fmt = dtypes.get(fmt)
    if kind is not None and kind not in INPUT_KINDS:
        raise InvalidArgument(f"kind={kind!r} must be one of {', '.join(INPUT_KINDS)}")
    low = _bound(min_value, -math.inf, "min_value")
    high = _bound(max_value, math.inf, "max_value")
    if low > high:
        raise InvalidArgument(f"min_value={low!r} is greater than max_value={high!r}")
    lo, hi = _inward(low, high, fmt, allow_infinity)
    lo_v, hi_v = (float(v) for v in dtypes.from_ordinal([lo, hi], fmt))
    subnormal = int(dtypes.to_ordinal(fmt.smallest_normal, fmt))  # ordinals 1 .. subnormal - 1 are subnormal

    def allowed(v: float) -> bool:
        if not (lo_v <= v <= hi_v):
            return False
        return allow_subnormal or v == 0 or not abs(v) < fmt.smallest_normal

    if not allow_subnormal and not any(allowed(v) for v in (0.0, lo_v, hi_v, fmt.smallest_normal,
                                                             -fmt.smallest_normal)):
        raise InvalidArgument(f"[{low!r}, {high!r}] holds only subnormal values of {fmt.name}")

    def from_ordinal(o: int) -> float:
        value = float(dtypes.from_ordinal(o, fmt))
        if not allow_subnormal and 0 < abs(o) < subnormal:
            candidates = [0.0, math.copysign(fmt.smallest_normal, o), -math.copysign(fmt.smallest_normal, o)]
            return nearest(value, [c for c in candidates if allowed(c)])
        return value

    sources: list[st.SearchStrategy[float]] = []
    for notable in (grids.specials(fmt), threshold_values(fmt, kind, REACH, mirrored=True)):
        inside = [v for v in notable.tolist() if allowed(v)]
        if inside:
            sources.append(st.sampled_from(inside))
    for exponents in (grids.exponents(fmt), grids.exponents(fmt, grids.BAND)):
        binades = grids.binades(lo, hi, fmt, exponents)
        if binades:
            sources.append(_in_binades(binades).map(from_ordinal))
    if not sources:  # a range of +-0 or +-inf alone has no binade: its values are drawn as ordinals
        sources.append(st.integers(lo, hi).map(from_ordinal))
    if allow_nan:
        sources.append(st.just(math.nan))
    return st.one_of(sources)


def nearest(value: float, candidates: Sequence[float]) -> float:
    """The candidate nearest to ``value`` (the first of equally near ones): where a subnormal draw goes when
    subnormals are not allowed."""
    return min(candidates, key=lambda c: abs(c - value))


def _in_binades(binades: Sequence[tuple[int, int]]) -> st.SearchStrategy[int]:
    """An ordinal of a binade chosen uniformly from ``binades`` (first ordinal, count), uniform inside it.

    Both choices are made of bytes (:func:`uniform_bits`): Hypothesis' generator copies drawn integers into
    other integer choices, and a binade index copied into the fraction bits would put most draws in the
    first quarter of a binade.
    """
    bits = max(count for _, count in binades).bit_length()
    return st.tuples(uniform_bits(16), uniform_bits(bits)).map(
        lambda drawn: _scaled_into(binades[(drawn[0] * len(binades)) >> 16], drawn[1], bits))


def _scaled_into(binade: tuple[int, int], fraction: int, bits: int) -> int:
    """The ordinal at ``fraction / 2^bits`` of the way through ``binade`` (first ordinal, count)."""
    first, count = binade
    return first + ((fraction * count) >> bits)


def uniform_bits(bits: int) -> st.SearchStrategy[int]:
    """Integers uniform in ``[0, 2^bits)``, shrinking toward 0.

    Hypothesis draws an integer within 256 of 0 uniformly but a wider one with a bias toward small values
    (6.15x: a log Student-t), which would put nearly every draw at a binade's two ends (its first values, and
    the last of its negative mirror): the bits are drawn a byte at a time instead.
    """
    size = -(-bits // 8)
    return st.tuples(*[st.integers(0, 255)] * size).map(
        lambda chunks: int.from_bytes(bytes(chunks), "big") >> (8 * size - bits))


def logits(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """Logits: the whole line with +-inf (keywords as :func:`floats_of`)."""
    return floats_of(fmt, kind="logit", **kw)


def probabilities(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """Probabilities in [0, 1] (with -0)."""
    return floats_of(fmt, **{"min_value": 0.0, "max_value": 1.0, "kind": "probability", **kw})


def hard_targets(fmt: Any) -> st.SearchStrategy[float]:
    """Targets 0 and 1."""
    dtypes.get(fmt)
    return st.sampled_from([0.0, 1.0])


def targets(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """Hard or soft targets, [0, 1]."""
    return st.one_of(hard_targets(fmt), floats_of(fmt, **{"min_value": 0.0, "max_value": 1.0,
                                                         "kind": "target", **kw}))


def log_probabilities(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """kl_div inputs: the whole line with +-inf (log-probabilities are <= 0, but kl_div takes any value)."""
    return floats_of(fmt, kind="log_probability", **kw)


def log_targets(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """kl_div targets as logs (``log_target=True``): [-inf, largest finite]."""
    f = dtypes.get(fmt)
    return floats_of(f, **{"max_value": f.max_finite, "kind": "log_target", **kw})


def weights(fmt: Any, *, min_value: float = 0.0, max_value: float | None = None,
            **kw: Any) -> st.SearchStrategy[float]:
    """Finite element weights, by default nonnegative: the grid's meaningful set
    (:func:`suite.inputs.grids.weight_values`) or any value in range."""
    f = dtypes.get(fmt)
    high = f.max_finite if max_value is None else max_value
    meaningful = [v for v in grids.weight_values(f).tolist() if min_value <= v <= high]
    drawn = floats_of(f, **{"min_value": min_value, "max_value": high, "allow_infinity": False,
                            "kind": "weight", **kw})
    return st.one_of(st.sampled_from(meaningful), drawn) if meaningful else drawn


def pos_weights(fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """Finite nonnegative weights of positive examples (``pos_weight``)."""
    return weights(fmt, **kw)


KIND_STRATEGIES: dict[str, Callable[..., st.SearchStrategy[float]]] = {
    "logit": logits,
    "probability": probabilities,
    "target": targets,
    "log_probability": log_probabilities,
    "log_target": log_targets,
    "weight": weights,
    "pos_weight": pos_weights,
}


def for_kind(kind: str, fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """The strategy of an input kind (:data:`suite.cases.base.INPUT_KINDS`); keywords go to it."""
    try:
        strategy = KIND_STRATEGIES[kind]
    except KeyError:
        raise InvalidArgument(f"kind={kind!r} must be one of {', '.join(INPUT_KINDS)}") from None
    return strategy(fmt, **kw)


#: One target in this many is drawn above 1 where the domain allows it (kl_div: distributions are the usual
#: targets, but any nonnegative number is one, and a kernel may treat those above 1 wrongly).
ABOVE_ONE_ODDS = 4


def for_spec(spec: InputSpec, fmt: Any, **kw: Any) -> st.SearchStrategy[float]:
    """Values of one input of a case: its kind's strategy within the input's domain (never NaN)."""
    f = dtypes.get(fmt)
    if spec.kind == "target" and spec.low == 0 and spec.high == 1:
        return targets(f)
    if spec.kind == "target" and spec.low == 0 and spec.high > 1:  # kl_div's target: any nonnegative number
        above = floats_of(f, min_value=1.0, max_value=min(spec.high, f.max_finite), kind="target")
        within = targets(f)
        return st.integers(0, ABOVE_ONE_ODDS - 1).flatmap(lambda k: above if k == 0 else within)
    if spec.kind in ("weight", "pos_weight"):
        return for_kind(spec.kind, f, min_value=max(0.0, spec.low), max_value=min(spec.high, f.max_finite))
    low, high = grids.KIND_RANGES[spec.kind]
    high = f.max_finite if high is None else high
    bounds = {"min_value": max(low, spec.low), "max_value": min(high, spec.high)}
    return for_kind(spec.kind, f, **{**bounds, **kw})


# --------------------------------------------------------------------------------------------------
# Whole inputs of a case.

Shape = tuple[int, ...]


def _array(draw: Callable[[st.SearchStrategy[Any]], Any], elements: st.SearchStrategy[float],
           shape: Shape) -> FloatArray:
    result: FloatArray = draw(hnp.arrays(np.float64, shape, elements=elements, fill=st.nothing()))
    return result


def _parameter_shape(draw: Callable[[st.SearchStrategy[Any]], Any], shape: Shape) -> Shape:
    """Shape of a broadcast parameter: the batch's, its last dimension ``(C,)``, or a scalar ``()``."""
    options: list[Shape] = [shape, shape[-1:], ()]
    chosen: Shape = draw(st.sampled_from(options))
    return chosen


#: Rows cases: one batch in this many has one or two wide rows, of a length in WIDE_ROW_SIDES: vectorised row
#: kernels (log_softmax's) take other paths for rows of one or more full registers (8 or 16 float32 lanes) and
#: their tails, which the usual rows of at most ``max_batch`` elements never reach.
WIDE_ROW_ODDS = 4
WIDE_ROW_SIDES = (9, 48)


@st.composite
def case_inputs(draw: Callable[[st.SearchStrategy[Any]], Any], case: Case, fmt: Any, *,
                max_batch: int = 8) -> dict[str, FloatArray]:
    """The inputs dict of ``case`` for :func:`suite.run.evaluate`, every value a value of ``fmt``, none NaN.

    Data inputs have one batch shape ``(B,)`` or ``(B, C)`` with sides up to ``max_batch`` (``B`` > 1 is
    common, for ``batchmean``; ``B = C`` often, where a parameter's axis is ambiguous); ``weight`` has
    that shape, ``(C,)`` or ``()``, ``pos_weight`` ``(C,)`` or ``()`` (it broadcasts over the last
    dimension).  Rows cases get ``(B, K)`` rows with ``K >= 2`` (one batch in :data:`WIDE_ROW_ODDS`: one or two
    rows of :data:`WIDE_ROW_SIDES` elements): logit rows may hold ``-inf`` but are never all ``-inf``, target
    rows are targets of the domain (:func:`for_spec`) with zeros, sometimes normalised to sum to about 1
    (rounded to ``fmt``).
    """
    f = dtypes.get(fmt)
    if max_batch < 2:
        raise InvalidArgument(f"max_batch={max_batch!r} must be at least 2")
    min_side = 2 if case.rows else 1
    shape: Shape = draw(hnp.array_shapes(min_dims=1 if not case.rows else 2, max_dims=2, min_side=min_side,
                                         max_side=max_batch))
    if len(shape) == 2 and shape[0] != shape[1] and draw(st.integers(0, 3)) == 0:
        shape = (shape[0], shape[0])  # square: a per-class weight (C,) with C = B, which must not act per sample
    if case.rows and draw(st.integers(0, WIDE_ROW_ODDS - 1)) == 0:
        shape = (draw(st.integers(1, 2)), draw(st.integers(*WIDE_ROW_SIDES)))
    out: dict[str, FloatArray] = {}
    for spec in case.inputs:
        elements = for_spec(spec, f)
        if spec.role == "parameter":
            param_shape = _parameter_shape(draw, shape)
            if spec.kind == "pos_weight" and param_shape == shape and len(shape) > 1:
                param_shape = shape[-1:]
            out[spec.name] = _array(draw, elements, param_shape)
        elif case.rows and spec.kind == "target":
            out[spec.name] = _target_rows(draw, elements, shape, f)
        else:
            if spec.kind == "target":
                elements = st.one_of(elements, st.just(0.0))
            out[spec.name] = _array(draw, elements, shape)
    if case.rows:
        main = case.main_input.name
        out[main] = _not_all_minus_inf(draw, out[main], f)
    return out


@st.composite
def with_nans(draw: Callable[[st.SearchStrategy[Any]], Any], inputs: Mapping[str, FloatArray],
              ) -> dict[str, FloatArray]:
    """A copy of ``inputs`` (a case's inputs dict) with NaN at drawn positions: in one input or several, one
    element of it or many, at least one in all."""
    names = draw(st.lists(st.sampled_from(sorted(inputs)), min_size=1, unique=True))
    out = {name: np.array(values, dtype=np.float64) for name, values in inputs.items()}
    for name in names:
        flat = out[name].reshape(-1)
        if flat.size:
            flat[draw(st.lists(st.integers(0, flat.size - 1), min_size=1, unique=True))] = math.nan
    if not any(np.isnan(v).any() for v in out.values()):
        raise InvalidArgument("with_nans needs an input with at least one element")
    return out


def _target_rows(draw: Callable[[st.SearchStrategy[Any]], Any], elements: st.SearchStrategy[float],
                 shape: Shape, fmt: FloatFormat) -> FloatArray:
    rows = _array(draw, st.one_of(st.just(0.0), elements), shape)
    if draw(st.booleans()):
        totals = rows.sum(axis=-1, keepdims=True)
        safe = np.where((totals > 0) & np.isfinite(totals), totals, 1.0)
        rows = dtypes.round_array(rows / safe, fmt)
    return rows


def _not_all_minus_inf(draw: Callable[[st.SearchStrategy[Any]], Any], rows: FloatArray,
                       fmt: FloatFormat) -> FloatArray:
    """Replace one entry of every all ``-inf`` row by a finite logit (softmax is undefined there)."""
    rows = rows.copy()
    for index in np.ndindex(*rows.shape[:-1]):
        if np.all(rows[index] == -math.inf):
            slot = draw(st.integers(0, rows.shape[-1] - 1))
            rows[(*index, slot)] = draw(logits(fmt, allow_infinity=False))
    return rows


def drawn_classes(values: Sequence[float], fmt: FloatFormat) -> set[str]:
    """Which special classes occur among ``values``: ``nan``, ``+inf``, ``-inf``, ``+0``, ``-0``,
    ``subnormal``, ``normal``, ``threshold`` (within :data:`REACH` ordinals of a threshold of ``fmt``)."""
    near = set(threshold_values(fmt, None, REACH, mirrored=True).tolist())
    classes = set()
    for v in values:
        if math.isnan(v):
            classes.add("nan")
        elif math.isinf(v):
            classes.add("+inf" if v > 0 else "-inf")
        elif v == 0:
            classes.add("-0" if math.copysign(1.0, v) < 0 else "+0")
        else:
            classes.add("subnormal" if abs(v) < fmt.smallest_normal else "normal")
        if v in near and not (v == 0 or math.isinf(v)):
            classes.add("threshold")
    return classes
