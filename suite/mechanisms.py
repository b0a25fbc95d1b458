"""Mechanisms of known deviations: the values torch's own formula gives where a documented clamp, or a term
it loses, makes it differ from the exact loss.

A label and a region say *where* torch is wrong, not *how*: inside BCE's clamp region a kernel that clamps the
whole loss at 100, or ignores the target there, is as far from the exact (infinite or huge) loss as torch's
per-log clamp, carries the same label, and a region alone would excuse it.  An entry with ``mechanism = NAME``
and ``mechanism_ulps = k`` explains an element only where torch's value is within ``k`` ULPs of the result's
format of an interval that the mechanism gives for the element's inputs (a NaN only where the mechanism gives
NaN): a single value for a clamp, a range where torch's formula may take any value between two (a sigmoid that
underflows to 0 or to a subnormal number, a sigmoid that is not correctly rounded), and one interval for each of
its branches where it takes one of a few (an epsilon that is a float32 or a float64 constant).  ``k`` counts the
roundings of torch's formula, each at most one ULP of the result where it changes a product, a quotient or a sum
of terms of one sign.

A mechanism is the formula's mathematics on the exact (already rounded) inputs, with torch's constants (the -100
log clamp, the 1e-12 gradient epsilon, as :mod:`suite.inputs.thresholds` records them), divided by the
reduction's divisor (a mean's ``1/N`` scales torch's gradients).  It is evaluated on the whole batch at once in
``numpy.longdouble`` (mpmath, element by element, is too slow for the float16 grids): on x86-64 the x87 extended
format, 64 significand bits and exponents to 2^+-16382, so that no float64 value or product of two overflows or
underflows.  Its own roundings, :func:`evaluation_ulps` of the result, are added to ``k``: a small fraction of an
ULP there, and 16 ULPs of a float64 result where ``longdouble`` is float64 (some ARM platforms).  Inputs are
taken as the numbers they are: ``-0`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from suite import dtypes, kernel_arithmetic, kernel_replays
from suite.array_math import sigmoid
from suite.dtypes import FLOAT16, FLOAT32, FLOAT64, FloatFormat
from suite.inputs.thresholds import GRAD_EPSILON, LOG_CLAMP
from suite.kernel_arithmetic import Kernel, Span

#: The working format of the mechanisms.
WORKING = np.longdouble
#: Roundings of the working format that a mechanism's evaluation makes, at most (each within an ULP of the
#: working format, a ``log`` within two): the size of :func:`evaluation_ulps`.
EVALUATION_ROUNDINGS = 16
#: Unit roundoffs (relative to sigmoid(x), plus half the smallest subnormal) by which torch's sigmoid
#: ``1 / (1 + exp(-x))`` may be off: exp's ULP, the sum, the quotient and a 16-bit result's rounding.
SIGMOID_ROUNDINGS = 4

FloatArray = npt.NDArray[np.float64]
WorkArray = npt.NDArray[Any]
#: One way torch's formula may go: values of it at each element, any value between whose least and greatest it
#: may take (a NaN among them: it may give NaN).
Branch = list[WorkArray]
#: A mechanism: the batch's inputs (in :data:`WORKING`, broadcast to its shape), the result's format, the inputs'
#: format (CPU autocast computes BCE in float32 from a 16-bit sigmoid) and the reduction's divisor -> its
#: branches (a constant that is a float32 or a float64 number: one branch each, not anything between).
Mechanism = Callable[[Mapping[str, WorkArray], FloatFormat, FloatFormat, int], list[Branch]]


def evaluation_ulps(fmt: FloatFormat) -> float:
    """ULPs of ``fmt`` that the evaluation of a mechanism in :data:`WORKING` may be off by."""
    working_precision = np.finfo(WORKING).nmant + 1
    return float(EVALUATION_ROUNDINGS * 2.0 ** (fmt.precision - working_precision))


def _w(value: Any) -> WorkArray:
    return np.asarray(value, dtype=WORKING)


def _times(coefficient: WorkArray, value: WorkArray) -> WorkArray:
    """``coefficient * value`` with ``0 * inf = 0``: a term whose coefficient is 0 is absent."""
    return np.where(coefficient == 0, _w(0.0), coefficient * value)


def torch_sigmoid_range(x: WorkArray, fmt: FloatFormat) -> tuple[WorkArray, WorkArray]:
    """Where torch's sigmoid of ``x`` in ``fmt`` may lie: within :data:`SIGMOID_ROUNDINGS` unit roundoffs of
    sigmoid(x), and half the smallest subnormal, inside [0, 1]; from 0 where sigmoid(x) is subnormal, where
    ``1 / (1 + exp(-x))`` loses it (``exp(-x)`` overflows float32 and float64 there)."""
    s = sigmoid(x)
    relative, eta = _w(SIGMOID_ROUNDINGS * fmt.unit_roundoff), _w(fmt.smallest_subnormal) / 2  # float64: not 0
    low = np.where(s < _w(fmt.smallest_normal), _w(0.0), np.maximum(s * (1 - relative) - eta, _w(0.0)))
    return low, np.minimum(s * (1 + relative) + eta, _w(1.0))


def computing_formats(fmt: FloatFormat) -> tuple[FloatFormat, ...]:
    """The formats torch's kernels hold intermediates in for a result in ``fmt``: ``fmt``, and float32 for a
    16-bit format (the kernels compute 16-bit types in float32, and a fused kernel keeps them there)."""
    return (fmt, FLOAT32) if fmt.precision < FLOAT32.precision else (fmt,)


def literal_formats(fmt: FloatFormat) -> tuple[FloatFormat, ...]:
    """The formats torch's code writes its constants in, for a kernel that computes ``fmt``
    (:attr:`suite.kernel_arithmetic.Kernel.literals`): float32 (eager's C++ kernels), and float64 where the kernel
    computes in float64 (inductor's code for float64); a float32 kernel holds either as the same number."""
    return (FLOAT32, FLOAT64) if fmt.precision > FLOAT32.precision else (FLOAT32,)


def grad_epsilons(fmt: FloatFormat) -> tuple[float, ...]:
    """The values of BCE backward's 1e-12 in a kernel for ``fmt``: torch's constant written in each of
    :func:`literal_formats`, in each of :func:`computing_formats` (float16 has 0)."""
    return tuple(sorted({float(Kernel(f, literals=literals).constant(float(GRAD_EPSILON)).low)
                         for f in computing_formats(fmt) for literals in literal_formats(f)}))


def _clamped_quotient(numerator: WorkArray, product: WorkArray, eps: float) -> WorkArray:
    """``numerator / max(product, eps)`` in IEEE arithmetic: ``x / 0 = +-inf``, ``0 / 0 = nan``."""
    return numerator / np.maximum(product, _w(eps))


def _clamped_bce(p: WorkArray, y: WorkArray, p_of_log1p: WorkArray | None = None) -> WorkArray:
    """``y min(-log p, 100) + (1 - y) min(-log(1 - p), 100)``: BCE with each log clamped at -100, ``log(1 - p)``
    taken of ``p_of_log1p`` where a kernel reads ``p`` differently there (default ``p``)."""
    cap = _w(-LOG_CLAMP)
    q = p if p_of_log1p is None else p_of_log1p
    return _times(y, np.minimum(-np.log(p), cap)) + _times(1 - y, np.minimum(-np.log1p(-q), cap))


#: Operations of BCE's loss before the weight (two products and their sum) whose results, when subnormal, each
#: round by up to half the smallest subnormal.
LOSS_SUBNORMAL_ROUNDINGS = 3


def _weighted(w: WorkArray, value: WorkArray, fmt: FloatFormat, divisor: int, roundings: int = 1) -> Branch:
    """``w value / divisor`` where torch rounds ``value`` to ``fmt`` before it multiplies by the weight: a value in
    the subnormal range is then off by up to half the smallest subnormal for each of its ``roundings``, which the
    weight scales (float64 BCE's gradient ``2^-1074 / 1e-12``, times 1000, is 500 ULPs off), so both ends."""
    eta = roundings * _w(fmt.smallest_subnormal) / 2
    return [_times(w, value - eta) / divisor, _times(w, value + eta) / divisor]


def bce_log_clamp(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                  divisor: int) -> list[Branch]:
    """BCE's loss with each log clamped at -100, as torch's forward computes it:
    ``w (y min(-log p, 100) + (1 - y) min(-log(1 - p), 100))``, the weight applied last (:func:`_weighted`), its
    two products and sum each rounded in the subnormal range: eager's kernel stays within one such rounding, the
    compiled one is a whole subnormal step off (float64 compile_dynamic, p = 1.5e-323, y = 5e-324, w = 1.8e308:
    104 steps for 103, found by the property test)."""
    p, y = t["input"], t["target"]
    return [_weighted(t.get("weight", _w(1.0)), _clamped_bce(p, y), fmt, divisor, LOSS_SUBNORMAL_ROUNDINGS)]


def bce_flushed_probability(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                            divisor: int) -> list[Branch]:
    """BCE's clamped loss (:func:`bce_log_clamp`) as a float32 kernel that flushes subnormal numbers to zero
    computes it: ``log1p(-p)`` of a float32-subnormal ``p`` is 0, and ``log p`` either the exact one (a log that
    keeps subnormal arguments) or ``log 0``, clamped to -100 (one that flushes them too): one branch each, the
    same where ``p`` is a normal number."""
    p, y, w = t["input"], t["target"], t.get("weight", _w(1.0))
    flushed = np.where(np.abs(p) < _w(FLOAT32.smallest_normal), _w(0.0), p)
    return [_weighted(w, _clamped_bce(q, y, flushed), fmt, divisor, LOSS_SUBNORMAL_ROUNDINGS) for q in (p, flushed)]


def bce_grad_epsilon(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                     divisor: int) -> list[Branch]:
    """BCE's input gradient with its denominator clamped, as torch's backward computes it:
    ``w (p - y) / max(p (1 - p), eps)`` for each value of ``eps`` (:func:`grad_epsilons`), the weight applied
    last (:func:`_weighted`)."""
    p, y, w = t["input"], t["target"], t.get("weight", _w(1.0))
    return [_weighted(w, _clamped_quotient(p - y, p * (1 - p), eps), fmt, divisor) for eps in grad_epsilons(fmt)]


def sigmoid_underflow_grad(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                           divisor: int) -> list[Branch]:
    """BCE-with-logits' input gradient ``w ((pw y + 1 - y) s - pw y)`` (``pw = 1`` without ``pos_weight``:
    ``w (s - y)``), with torch's sigmoid ``s`` anywhere in :func:`torch_sigmoid_range` (from 0 where it is
    subnormal)."""
    x, y = t["input"], t["target"]
    w, pw = t.get("weight", _w(1.0)), t.get("pos_weight", _w(1.0))
    pw_y = _times(pw, y)
    return [[end for s in torch_sigmoid_range(x, fmt) for end in _weighted(w, _times(pw_y + 1 - y, s) - pw_y, fmt,
                                                                            divisor)]]


def mean_divisor_overflow(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                          divisor: int) -> list[Branch]:
    """A mean's gradient ``g / N`` whose ``N`` overflowed ``fmt`` (inf beyond its range, so ``1 / N = 0``): 0."""
    return [[np.zeros(np.broadcast_shapes(*(v.shape for v in t.values())), dtype=WORKING)]]


def _sigmoid_values(x: WorkArray, input_fmt: FloatFormat,
                    turns: list[WorkArray]) -> list[tuple[FloatFormat, WorkArray]]:
    """Values of torch's sigmoid of ``x`` where a function of it that is monotone between ``turns`` takes its
    extremes: for each format of :func:`computing_formats` of the inputs' (eager's sigmoid is a tensor of
    theirs; a fused kernel keeps float32's), the first and last values of :func:`torch_sigmoid_range` in it and
    the values next to each turn, clipped into the range, each with the format it is a value of."""
    out = []
    for held in computing_formats(input_fmt):
        low, high = torch_sigmoid_range(x, held)
        first, last = _values_around(low, held)[1], _values_around(high, held)[0]
        sides = [side for point in turns for side in _values_around(point, held)]
        out += [(held, np.clip(p, first, last)) for p in (first, last, *sides)]
    return out


def sigmoid_bce_loss(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                     divisor: int) -> list[Branch]:
    """sigmoid then BCE: BCE's clamped loss (:func:`bce_log_clamp`) of torch's sigmoid ``p``
    (:func:`_sigmoid_values`), monotone between ``p = y`` and the clamp's edges."""
    x, y = t["input"], t["target"]
    edge = _w(np.exp(_w(LOG_CLAMP)))
    return [[_clamped_bce(p, y) / divisor for _, p in _sigmoid_values(x, input_fmt, [y, edge, 1 - edge])]]


def sigmoid_bce_grad(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                     divisor: int) -> list[Branch]:
    """sigmoid then BCE: the logit gradient ``g p (1 - p)`` of torch's chain rule, BCE's gradient
    ``g = (p - y) / (N max(p (1 - p), eps))`` times sigmoid's ``p (1 - p)``, for each ``eps``
    (:func:`grad_epsilons`) and torch's sigmoid ``p`` (:func:`_sigmoid_values`), monotone between ``p = y`` and
    the clamp's edges ``p (1 - p) = eps``.  With eager's sigmoid, a tensor of the inputs' format, ``g`` may be
    stored in ``fmt`` (inf where ``(p - y) / max(p (1 - p), eps)``, before torch divides it by N, is beyond its
    range, then inf times ``p (1 - p)``, NaN where that is 0); a fused kernel keeps it."""
    x, y = t["input"], t["target"]
    overflow = _w(np.ldexp(2.0 - 2.0 ** -fmt.precision, fmt.emax))  # rounds to inf in fmt from here on
    epsilons = grad_epsilons(fmt)
    small_roots = [_w(2 * eps) / (1 + np.sqrt(_w(1 - 4 * eps))) for eps in epsilons]  # p (1 - p) = eps
    branches: list[Branch] = [[] for _ in epsilons]
    for held, p in _sigmoid_values(x, input_fmt, [y, *small_roots, *(1 - r for r in small_roots)]):
        product = p * (1 - p)
        for eps, values in zip(epsilons, branches, strict=True):
            quotient = _clamped_quotient(p - y, product, eps)
            values.append(quotient / divisor * product)
            if held is input_fmt:  # eager's sigmoid tensor
                stored = np.where(np.abs(quotient) >= overflow, np.copysign(_w(np.inf), quotient), quotient)
                values.append(stored / divisor * product)
    return branches


def kernel_replay(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat, divisor: int, *,
                  case: str, quantity: str, fast_math: bool = False, fast_math_half: bool = False) -> list[Branch]:
    """torch's own formula of ``case``'s ``quantity``, operation by operation (:mod:`suite.kernel_replays`): one
    branch with each operation stored in ``fmt`` (torch's 16-bit kernels as written, and composite losses
    everywhere), one computed in float32 and stored in ``fmt`` at the end (a compiled, fused kernel).  No branch
    where the suite has no replay of the case.  ``fast_math``: in kernels of code built with ``-ffast-math``
    (:class:`suite.kernel_arithmetic.Kernel`), which reassociate, and flush subnormal operands and results to zero
    (FTZ/DAZ) where the process has those modes on: branches flushing and not (the registry's
    ``kernel_replay_fast_math``).  ``fast_math_half``: the fused kernel of such code alone, its float16 result
    stored by c10's conversion built with ``-ffast-math`` (:func:`suite.kernel_arithmetic.fast_math_half`; the
    registry's ``kernel_replay_fast_math_half``), and a mean's ``N`` either as it is (a static shape's constant)
    or stored by that conversion too (a dynamic shape's kernel divides by ``static_cast<half>(N)``): no branch
    for another ``fmt``."""
    replay = kernel_replays.REPLAYS.get(case, {}).get(quantity)
    if replay is None:
        return []
    if fast_math_half:
        if fmt is not FLOAT16:
            return []
        spans = _spans(t)
        kernels = [Kernel(FLOAT32, flush, True, tensor=FLOAT16, half_wraps=True) for flush in (False, True)]
        return [_branch(k.materialised(value)) for k in kernels
                for value in _fast_math_kernel_values(replay, k, spans, divisor, quantity != "loss")]
    if fast_math:
        return [branch for flush in (False, True) for branch in _replayed(replay, t, fmt, divisor, flush, True)]
    return _replayed(replay, t, fmt, divisor)


def _fast_math_kernel_values(replay: kernel_replays.Replay, k: Kernel, spans: Mapping[str, Span], divisor: int,
                             gradient: bool) -> list[Span]:
    """``replay`` in ``k``, a float32 kernel of ``-ffast-math`` code, with a mean's ``N`` as it is (a static
    shape's constant) and as ``static_cast<half>(N)`` holds it (a dynamic shape's kernel, by
    :func:`suite.kernel_arithmetic.fast_math_half`): in torch's order of operations and, for a ``gradient``, as
    inductor's backward orders them too, the unreduced gradient divided by it last."""
    values = [replay(k, spans, divisor)]
    if divisor != 1:
        held = float(kernel_arithmetic.fast_math_half([divisor])[0])
        values.append(replay(k, spans, held))
        if gradient:
            values.append(k.div(replay(k, spans, 1), Span.of(np.float64(held))))
    return values


def bce_with_logits_log_of_exps(t: Mapping[str, WorkArray], fmt: FloatFormat, input_fmt: FloatFormat,
                                divisor: int) -> list[Branch]:
    """BCE-with-logits' loss as torch's older releases computed it, the log of the rounded sum
    ``exp(-m) + exp(-x - m)`` (:func:`suite.kernel_replays.bce_with_logits_loss_log_of_exps`)."""
    return _replayed(kernel_replays.bce_with_logits_loss_log_of_exps, t, fmt, divisor)


def _replayed(replay: kernel_replays.Replay, t: Mapping[str, WorkArray], fmt: FloatFormat,
              divisor: int, flush: bool = False, fast_math: bool = False) -> list[Branch]:
    """``replay`` with each operation stored in ``fmt``, and for a 16-bit ``fmt`` computed in float32 and stored
    once: a branch each, in kernels that flush subnormal numbers where ``flush``, of ``-ffast-math`` code where
    ``fast_math``; a branch for each of :func:`literal_formats` (a float64 kernel's 1e-12 is float32's in
    eager's code, float64's in a compiled kernel's, and a branch each keeps the values between them out)."""
    spans = _spans(t)
    kernels = [Kernel(fmt, flush, fast_math, literals=literals) for literals in literal_formats(fmt)]
    if fmt.precision < FLOAT32.precision:
        kernels.append(Kernel(FLOAT32, flush, fast_math, tensor=fmt))
    result = kernels[0]  # stores in fmt
    return [_branch(result.stored(replay(kernel, spans, divisor))) for kernel in kernels]


def _spans(t: Mapping[str, WorkArray]) -> dict[str, Span]:
    """The batch's inputs as the spans of values known exactly."""
    return {name: Span.of(np.asarray(v, dtype=np.float64)) for name, v in t.items()}


def _branch(span: Span) -> Branch:
    """A replay's span as a mechanism's branch: its ends, and NaN where it may be NaN."""
    return [_w(span.low), _w(span.high), _w(np.where(span.nan, np.nan, span.low))]


def _values_around(v: WorkArray, fmt: FloatFormat) -> tuple[WorkArray, WorkArray]:
    """The largest value of ``fmt`` at most ``v``, and the smallest at least ``v``."""
    nearest = dtypes.round_array(v.astype(np.float64), fmt)
    below = np.where(nearest > v, dtypes.next_toward(nearest, -np.inf, fmt), nearest)
    above = np.where(nearest < v, dtypes.next_toward(nearest, np.inf, fmt), nearest)
    return _w(below), _w(above)


#: Mechanism name (the registry's ``mechanism``) -> function of the batch.
MECHANISMS: dict[str, Mechanism] = {
    "bce_log_clamp": bce_log_clamp,
    "bce_flushed_probability": bce_flushed_probability,
    "bce_grad_epsilon": bce_grad_epsilon,
    "sigmoid_underflow_grad": sigmoid_underflow_grad,
    "mean_divisor_overflow": mean_divisor_overflow,
    "sigmoid_bce_loss": sigmoid_bce_loss,
    "sigmoid_bce_grad": sigmoid_bce_grad,
    "bce_with_logits_log_of_exps": bce_with_logits_log_of_exps,
    "kernel_replay": kernel_replay,  # type: ignore[dict-item]  # takes the case and quantity too
    "kernel_replay_fast_math": partial(kernel_replay, fast_math=True),
    "kernel_replay_fast_math_half": partial(kernel_replay, fast_math_half=True),
}
#: Mechanisms that depend on the case and quantity, not on the inputs alone: called with ``case`` and
#: ``quantity``.
OF_A_FORMULA = frozenset({"kernel_replay", "kernel_replay_fast_math", "kernel_replay_fast_math_half"})
#: Mechanisms that describe a departure from others (the replay in ``-ffast-math`` kernels from the replay in IEEE
#: ones; c10's float16 conversion built with ``-ffast-math`` from both): they explain a value only where they are
#: nearer to it than each of the others (:func:`distance_ulps`), so that an entry about the departure does not
#: also explain what the formula does without it (a log-softmax that underflows to NaN).
DEPARTS_FROM: dict[str, tuple[str, ...]] = {
    "kernel_replay_fast_math": ("kernel_replay",),
    "kernel_replay_fast_math_half": ("kernel_replay", "kernel_replay_fast_math"),
}


def outcomes(name: str, inputs: Mapping[str, npt.ArrayLike], shape: tuple[int, ...], fmt: FloatFormat,
             divisor: int, input_fmt: FloatFormat | None = None, formula: tuple[str, str] = ("", "")
             ) -> tuple[WorkArray, WorkArray, npt.NDArray[np.bool_]]:
    """Mechanism ``name`` on a batch of ``shape`` with a result in ``fmt`` from inputs in ``input_fmt`` (default
    ``fmt``): for each branch (the first axis) and element, the interval ``(low, high)`` of the values it gives
    that are not NaN (NaN ends where it gives none); and per element whether it may give NaN.  ``formula`` is
    the registry's case and the quantity, for the mechanisms of :data:`OF_A_FORMULA` (none of them: no branch,
    an empty first axis)."""
    exact = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).astype(WORKING) + _w(0.0)
             for k, v in inputs.items()}  # + 0 turns -0 into 0
    lows, highs, nan = [], [], np.zeros(shape, dtype=bool)
    mechanism: Callable[..., list[Branch]] = MECHANISMS[name]
    if name in OF_A_FORMULA:
        mechanism = partial(mechanism, case=formula[0], quantity=formula[1])
    with np.errstate(all="ignore"):
        for branch in mechanism(exact, fmt, input_fmt or fmt, divisor):
            values = np.stack([np.broadcast_to(v, shape) for v in branch])
            lows.append(np.fmin.reduce(values, axis=0))
            highs.append(np.fmax.reduce(values, axis=0))
            nan |= np.isnan(values).any(axis=0)
    if not lows:
        empty = np.empty((0, *shape), dtype=WORKING)
        return empty, empty, nan
    return np.stack(lows), np.stack(highs), nan


def distance_ulps(name: str, inputs: Mapping[str, npt.ArrayLike], got: npt.ArrayLike, divisor: int,
                  fmt: FloatFormat, input_fmt: FloatFormat | None = None,
                  formula: tuple[str, str] = ("", "")) -> FloatArray:
    """For each element of ``got`` (torch's values, in ``fmt``), how many ULPs of ``fmt`` it lies outside the
    nearest interval of mechanism ``name``'s branches for its ``inputs`` (broadcast to ``got``'s shape): 0
    inside, to the nearer end outside (an infinite end matches only itself); for a NaN value 0 where the
    mechanism may give NaN, else ``inf`` (everywhere ``inf`` where it has no branch).  For a mechanism of
    :data:`DEPARTS_FROM`, ``inf`` too where the value is no nearer to it than to another mechanism's intervals (a
    value a flushing kernel gives, and an IEEE one may give too, is no sign of flushing; nor is one as near to
    what both give).  ``input_fmt`` is the inputs' format (default ``fmt``), ``formula`` as for
    :func:`outcomes`."""
    values = np.asarray(got, dtype=np.float64)
    low, high, nan = outcomes(name, inputs, values.shape, fmt, divisor, input_fmt, formula)
    if not len(low):
        return np.full(values.shape, np.inf)
    result = _distance(values.astype(WORKING), low, high, nan, fmt)
    for other in DEPARTS_FROM.get(name, ()):
        base = distance_ulps(other, inputs, values, divisor, fmt, input_fmt, formula)
        result = np.where(result < base, result, np.inf)
    return result


def _distance(g: WorkArray, low: WorkArray, high: WorkArray, nan: npt.NDArray[np.bool_],
              fmt: FloatFormat) -> FloatArray:
    """:func:`distance_ulps` of the values ``g`` from the intervals ``low`` to ``high`` (a branch each, on the
    first axis) and the elements ``nan`` where NaN is an outcome."""
    with np.errstate(invalid="ignore"):
        inside = (g >= low) & (g <= high)
    nearest = np.fmin(_ulps_from(g, low, fmt), _ulps_from(g, high, fmt))
    result = np.min(np.where(inside, 0.0, nearest), axis=0)
    result = np.where(np.isnan(g), np.where(nan, 0.0, np.inf), result)
    return np.asarray(result, dtype=np.float64)


def _ulps_from(got: WorkArray, end: WorkArray, fmt: FloatFormat) -> FloatArray:
    """``|got - end|`` in ULPs of ``fmt`` at ``end``: 0 where ``got`` is ``end`` rounded to ``fmt`` (an end
    beyond its range rounds to inf), ``inf`` from an end that is NaN or rounds to inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        near = end.astype(np.float64)  # beyond float64: inf, as in fmt
        rounded = dtypes.round_array(near, fmt)
        finite = np.isfinite(rounded)
        unit = dtypes.ulp(np.where(finite, near, 0.0), fmt).astype(WORKING)  # the ULP at the end itself
        distance = np.asarray(np.abs(got - end) / unit, dtype=np.float64)
    result: FloatArray = np.where(got == rounded, 0.0, np.where(finite, distance, np.inf))
    return result
