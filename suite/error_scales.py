"""Error scales of torch's formulas: for a known deviation that is a cancellation in the formula torch
evaluates, the absolute error that formula may make in working precision.

A formula that adds terms ``a_1 + a_2 + ...`` (each computed with a few roundings) has an absolute error of a few
unit roundoffs times ``S = |a_1| + |a_2| + ...`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
ed., ch. 3): where the exact result is much smaller than ``S`` this is any number of ULPs, so a ULP bound cannot
describe it, but ``S`` can.  A deviation entry with ``error_scale = NAME`` and ``max_scaled_error = k`` explains an
element only when ``|torch - exact| <= k (u S + eta) / D`` (``u`` the dtype's unit roundoff, ``eta`` half its
smallest subnormal, the absolute error of an operation whose result underflows, ``D`` the reduction's divisor,
which scales torch's gradients; a reduced value uses the sum of its elements' ``S``): the formula's own rounding,
not a broken kernel (one that keeps an intermediate in 16 bits is off by about ``2^-9 S``).

Autograd multiplies by the gradient ``g = 1 / D`` first, so a product of a backward formula that underflows has an
absolute error of ``eta`` that ``D`` does not divide: ``D`` times the smallest normal number (``eta / u``) in
``S``, which is why a scale is given the divisor.

Each scale is computed in float64 from the rounded inputs (broadcast to the batch), as the sum of the magnitudes
of the terms torch's kernel forms, each term's rounding error counted once: a bound of the error's order, whose
constant ``k`` comes from counting the roundings of the formula.  A scale gets two formats: ``fmt``, the result's,
whose ``u`` the bound is in, and ``input_fmt``, the inputs', to which torch rounds intermediates that are not the
result's dtype (CPU autocast keeps a 16-bit sigmoid or log_softmax and computes the loss from it in float32): such
a rounding enters ``S`` as ``u_input / u`` times its terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from suite.array_math import sigmoid
from suite.dtypes import FLOAT32, FLOAT64, FloatFormat

FloatArray = npt.NDArray[np.float64]
Scale = Callable[[Mapping[str, FloatArray], tuple[int, ...], FloatFormat, FloatFormat, float], FloatArray]


def _get(inputs: Mapping[str, FloatArray], name: str, shape: tuple[int, ...], default: float = 1.0) -> FloatArray:
    """Input ``name`` broadcast to ``shape`` (``default`` where the case has no such input, a weight)."""
    value = inputs.get(name)
    return np.broadcast_to(np.asarray(default if value is None else value, dtype=np.float64), shape)


def _times(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a * b`` with ``0 * inf = 0``: a zero term contributes no error however large its factor."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where((a == 0) | (b == 0), 0.0, a * b)


def bce_with_logits_grad_input(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                               input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """BCEWithLogits: torch's input gradient is ``w ((pw y + 1 - y) sigmoid(x) - pw y)`` with ``pos_weight``, ``w
    (sigmoid(x) - y)`` without (``binary_cross_entropy_with_logits_backward``): terms ``|pw y|, 1, |y|`` times
    ``sigmoid(x)``, and ``|pw y|``, with ``pw = 1`` without ``pos_weight`` (a bound of ``sigmoid(x) + |y|``)."""
    x, y = _get(inputs, "input", shape), _get(inputs, "target", shape)
    pw_y = np.abs(_times(_get(inputs, "pos_weight", shape), y))
    with np.errstate(over="ignore", invalid="ignore"):
        terms = _times(pw_y + 1.0 + np.abs(y), sigmoid(x)) + pw_y
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def _log_softmax_parts(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per element of the rows (last axis) of ``x``: the softmax ``p``, and the error of torch's log-probability
    ``(x - max) - log(sum exp(x - max))`` in unit roundoffs, ``|x - max| + |log sum| + L`` (the sum of ``L``
    exponentials adds ``L`` roundings)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        top = np.max(x, axis=-1, keepdims=True)
        shifted = np.where(np.isfinite(top), x - top, np.where(x == top, 0.0, -np.inf))
        total = np.sum(np.exp(shifted), axis=-1, keepdims=True)
        return np.exp(shifted) / total, np.abs(shifted) + np.abs(np.log(total)) + x.shape[-1]


def log_softmax_kl_div_grad_input(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                                  input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """log_softmax then kl_div: torch's logit gradient is ``exp(lsm) sum(t) - t`` (log_softmax's backward of
    ``-t``), where ``exp`` turns the log-probability's absolute error into a relative one: terms
    ``p sum|t| (2 + |x - max| + |log sum| + L)`` and ``|t|``; and where ``exp(lsm)`` underflows, its absolute
    error ``eta`` times ``sum|t|``, in ``S``'s units ``sum|t|`` times the smallest normal number (a row whose
    targets sum to far above 1 makes a product beyond the subnormals of a probability that underflowed)."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    p, size = _log_softmax_parts(x)
    with np.errstate(over="ignore", invalid="ignore"):
        row = np.broadcast_to(np.sum(np.abs(t), axis=-1, keepdims=True), shape)
        return _times(_times(p, row), 2.0 + size) + np.abs(t) + row * fmt.smallest_normal


def log_softmax_kl_div_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                            input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """log_softmax then kl_div: torch's loss is ``xlogy(t, t) - t lsm``, terms ``|t log t|`` and ``|t|``, and
    ``|t|`` times the log-probability's error size ``|x - max| + |log sum| + L``, rounded by its own computation
    and again to the inputs' dtype (``u_in / u`` units; CPU autocast keeps it in 16 bits), plus its magnitude."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    _, size = _log_softmax_parts(x)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        roundings = 1.0 + _input_units(fmt, input_fmt)
        return _times(np.abs(t), np.abs(np.log(np.abs(t))) + 1.0 + roundings * size)


def sigmoid_bce_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                            input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """sigmoid then BCE: torch's target gradient is ``w (log(1 - p) - log(p))`` of the rounded ``p =
    sigmoid(x)``: terms ``|log p|`` and ``|log(1 - p)|``, and the rounding of ``p``, which ``log`` turns into an
    absolute error of about 1 (``1 + eta / (u p)`` where ``p`` is subnormal, ``eta`` half the smallest
    subnormal), and ``log(1 - p)`` into one of ``p / (1 - p) = exp(x)``."""
    x = _get(inputs, "input", shape)
    p = sigmoid(x)
    underflow = fmt.smallest_subnormal / 2 / fmt.unit_roundoff
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        terms = np.abs(np.log(p)) + np.abs(np.log(sigmoid(-x))) + 2.0 + 2.0 * np.exp(x) + underflow / p
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def pos_weight_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                           input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """BCEWithLogits with ``pos_weight``: torch's target gradient is ``w (log_sigmoid(-x) - pw log_sigmoid(x))``,
    terms ``softplus(x)`` and ``|pw| softplus(-x)``."""
    x = _get(inputs, "input", shape)
    pw = np.abs(_get(inputs, "pos_weight", shape))
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.logaddexp(0.0, x) + _times(pw, np.logaddexp(0.0, -x))
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def bce_with_logits_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                         input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """BCEWithLogits: torch's loss is ``w ((1 - y) x - lw log_sigmoid(x))`` with ``lw = (pw - 1) y + 1`` (1
    without pos_weight) and ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``
    (``binary_cross_entropy_with_logits``): terms ``|(1 - y) x|`` and ``(|(pw - 1) y| + 1)`` (a bound of ``|lw|``
    and of its own rounding) times ``|min(x, 0)| + log1p(exp(-|x|))``, which may be subnormal: an absolute error of
    a subnormal step or so, twice the smallest normal number in unit roundoffs (as in :func:`weighted_bce_loss`);
    for ``x < 0`` and ``y`` near 0 the first two cancel."""
    x, y = _get(inputs, "input", shape), _get(inputs, "target", shape)
    with np.errstate(over="ignore", invalid="ignore"):
        weight_of_log = np.abs(_times(_get(inputs, "pos_weight", shape) - 1.0, y)) + 1.0  # 1 without pos_weight
        log_sigmoid = np.abs(np.minimum(x, 0.0)) + np.log1p(np.exp(-np.abs(x))) + 2.0 * fmt.smallest_normal
        terms = np.abs(_times(1.0 - y, x)) + _times(weight_of_log, log_sigmoid)
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def weighted_bce_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                      input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """BCE with a weight: torch's loss is ``-w (y max(log p, -100) + (1 - y) max(log1p(-p), -100))``, whose
    products ``y log p`` and ``(1 - y) log1p(-p)`` may be subnormal, an absolute error of half the smallest
    subnormal each (``eta / u``, the smallest normal number, in unit roundoffs) before ``w`` scales them: terms
    ``|w|`` times ``|y log p|``, ``|(1 - y) log1p(-p)|`` and twice the smallest normal number."""
    p, y = _get(inputs, "input", shape), _get(inputs, "target", shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.minimum(np.abs(np.log(p)), 100.0)
        log_q = np.minimum(np.abs(np.log1p(-p)), 100.0)
        terms = _times(np.abs(y), log_p) + _times(np.abs(1.0 - y), log_q) + 2.0 * fmt.smallest_normal
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def _underflow_after_gradient(divisor: float, fmt: FloatFormat) -> float:
    """A backward product with ``g = 1 / D`` that underflows, an absolute error of ``eta``, in ``S``'s units
    (``u S / D``): ``D eta / u``, ``D`` times the smallest normal number."""
    return divisor * fmt.smallest_normal


def kl_div_log_target_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                                  input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """kl_div with ``log_target``: torch's target gradient is the sum of the backward's two products, ``(g (t -
    x)) e`` (the product's) and ``g e`` (the exponential's), ``e = exp(t)``: terms ``e |t - x|`` and ``e``, which
    cancel to 0 where ``t - x = -1``.  Where ``e`` is subnormal its rounding is an absolute error of a subnormal
    step that both products carry, ``(e + smallest normal) (|t - x| + 1)``, and each product may underflow
    (:func:`_underflow_after_gradient`)."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(t) + fmt.smallest_normal
        return _times(e, np.abs(t - x) + 1.0) + 2.0 * _underflow_after_gradient(divisor, fmt)


def _kl_div_grad_target(t: FloatArray, x_terms: FloatArray, fmt: FloatFormat, divisor: float) -> FloatArray:
    """kl_div's target gradient ``g log t + (g t) / t - g x`` (xlogy's two backward terms, then the product's):
    terms ``|log t|`` and 1, ``x_terms`` for ``g x`` and its input's error, the underflow of ``g log t`` and
    of ``g x`` (:func:`_underflow_after_gradient`), and the quotient's: ``g t`` underflows for a subnormal ``t``
    once ``g < 1``, an absolute error of ``eta`` that the division by ``t`` makes ``eta / t``, ``D`` smallest
    normal ``/ t`` (at ``t = 0`` the quotient is ``0 / 0``, a NaN no bound covers: nothing is added)."""
    underflow = _underflow_after_gradient(divisor, fmt)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        quotient = np.where(t == 0, 0.0, underflow / np.abs(t))
        return np.abs(np.log(np.abs(t))) + 1.0 + x_terms + 2.0 * underflow + quotient


def kl_div_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                       input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """kl_div: :func:`_kl_div_grad_target` with the input ``x`` as given, a term ``|x|``."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    return _kl_div_grad_target(t, np.abs(x), fmt, divisor)


def log_softmax_kl_div_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                                   input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """log_softmax then kl_div: :func:`_kl_div_grad_target` of the log-probability ``x``, whose magnitude and
    error are bounded by its error size ``|z - max| + |log sum| + L`` (:func:`_log_softmax_parts`), rounded by
    its own computation and again to the inputs' dtype (as in :func:`log_softmax_kl_div_loss`)."""
    z, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    _, size = _log_softmax_parts(z)
    with np.errstate(over="ignore", invalid="ignore"):
        x_terms = (2.0 + _input_units(fmt, input_fmt)) * size
    return _kl_div_grad_target(t, x_terms, fmt, divisor)


def kl_div_log_target_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                           input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """kl_div with ``log_target``: torch's loss is ``exp(t) (t - x)``, whose ``exp(t)`` may be subnormal, an
    absolute error of a subnormal step or so (twice the smallest normal number in unit roundoffs, as in
    :func:`weighted_bce_loss`) that ``t - x`` multiplies: ``(exp(t) + 2 eta) |t - x|``."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return _times(np.exp(t) + 2.0 * fmt.smallest_normal, np.abs(t - x))


def _input_units(fmt: FloatFormat, input_fmt: FloatFormat) -> float:
    """``u_input / u``: a rounding to the inputs' dtype in units of the result's unit roundoff."""
    return input_fmt.unit_roundoff / fmt.unit_roundoff


#: BCE clamps each log at -100: below this probability its error is the clamp's, not a rounding's.
BCE_LOG_FLOOR = math.exp(-100.0)


def _sigmoid_vanishes(x: FloatArray, fmt: FloatFormat) -> npt.NDArray[np.bool_]:
    """Where torch's sigmoid ``1 / (1 + exp(-x))`` of ``fmt`` values may be 0 or a truncated subnormal however
    large the exact value: where that is subnormal in the precision it is computed in (float64 for float64, float32
    for the others), ``exp(-x)`` overflows, or nearly (the region of ``bce-with-logits-grad-sigmoid-underflow``)."""
    compute = FLOAT64 if fmt.name == FLOAT64.name else FLOAT32
    return np.asarray(x < math.log(compute.smallest_normal))


def sigmoid_bce_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                     input_fmt: FloatFormat, divisor: float) -> FloatArray:
    """sigmoid then BCE: torch rounds ``p = sigmoid(x)`` to the inputs' dtype (an error up to ``delta = u_in p +
    eta_in``; CPU autocast keeps it in 16 bits) and computes ``-w (y log p + (1 - y) log(1 - p))`` from it in the
    result's.  ``log`` turns the rounding into absolute errors up to ``-log(1 - delta / p)`` and ``-log(1 - delta /
    (1 - p))`` (about ``delta / p``; infinite where ``p`` or ``1 - p`` may round below ``e^-100``, where BCE's clamp
    of the log at -100 decides, which the entry's region, not its scale, confines), in input unit roundoffs; the
    loss's own formula adds terms ``|y log p|`` and ``|(1 - y) log(1 - p)|``."""
    x, y = _get(inputs, "input", shape), _get(inputs, "target", shape)
    p, q = sigmoid(x), sigmoid(-x)  # q = 1 - p without cancellation
    delta = np.where(_sigmoid_vanishes(x, input_fmt), p, input_fmt.unit_roundoff * p + input_fmt.smallest_subnormal / 2)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        weights = np.abs(y), np.abs(1.0 - y)
        shifts = [np.where(side - delta > BCE_LOG_FLOOR, -np.log1p(-delta / side), np.inf) for side in (p, q)]
        intermediate = (_times(weights[0], shifts[0]) + _times(weights[1], shifts[1])) / input_fmt.unit_roundoff
        own = _times(weights[0], -np.log(p)) + _times(weights[1], -np.log(q))
        terms = _input_units(fmt, input_fmt) * intermediate + own
    return np.abs(_times(_get(inputs, "weight", shape), terms))


#: Scale name (the registry's ``error_scale``) -> function of the batch's inputs and shape.
SCALES: dict[str, Scale] = {
    "bce_with_logits_grad_input": bce_with_logits_grad_input,
    "kl_div_log_target_loss": kl_div_log_target_loss,
    "pos_weight_grad_target": pos_weight_grad_target,
    "log_softmax_kl_div_grad_input": log_softmax_kl_div_grad_input,
    "log_softmax_kl_div_loss": log_softmax_kl_div_loss,
    "sigmoid_bce_grad_target": sigmoid_bce_grad_target,
    "bce_with_logits_loss": bce_with_logits_loss,
    "weighted_bce_loss": weighted_bce_loss,
    "sigmoid_bce_loss": sigmoid_bce_loss,
    "kl_div_log_target_grad_target": kl_div_log_target_grad_target,
    "kl_div_grad_target": kl_div_grad_target,
    "log_softmax_kl_div_grad_target": log_softmax_kl_div_grad_target,
}


def scale(name: str, inputs: Mapping[str, npt.ArrayLike], shape: tuple[int, ...], fmt: FloatFormat,
          input_fmt: FloatFormat | None = None, divisor: float = 1.0) -> FloatArray:
    """The scale ``name`` of a batch of ``shape`` whose result is in ``fmt`` and inputs in ``input_fmt`` (default
    ``fmt``), reduced with ``divisor``; a reduced value: pass its batch's shape and sum."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    return np.asarray(SCALES[name](arrays, shape, fmt, input_fmt or fmt, divisor), dtype=np.float64)
