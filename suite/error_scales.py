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

Each scale is computed in float64 from the rounded inputs (broadcast to the batch), as the sum of the magnitudes
of the terms torch's kernel forms, each term's rounding error counted once: a bound of the error's order, whose
constant ``k`` comes from counting the roundings of the formula.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from suite.dtypes import FloatFormat

FloatArray = npt.NDArray[np.float64]
Scale = Callable[[Mapping[str, FloatArray], tuple[int, ...], FloatFormat], FloatArray]


def _get(inputs: Mapping[str, FloatArray], name: str, shape: tuple[int, ...], default: float = 1.0) -> FloatArray:
    """Input ``name`` broadcast to ``shape`` (``default`` where the case has no such input, a weight)."""
    value = inputs.get(name)
    return np.broadcast_to(np.asarray(default if value is None else value, dtype=np.float64), shape)


def _times(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a * b`` with ``0 * inf = 0``: a zero term contributes no error however large its factor."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where((a == 0) | (b == 0), 0.0, a * b)


def _sigmoid(x: FloatArray) -> FloatArray:
    """``1 / (1 + exp(-x))`` as ``exp(-softplus(-x))``, without overflow."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -x)))


def pos_weight_grad_input(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat) -> FloatArray:
    """BCEWithLogits with ``pos_weight``: torch's input gradient is ``w ((pw y + 1 - y) sigmoid(x) - pw y)``
    (``binary_cross_entropy_with_logits_backward``), terms ``|pw y|, 1, |y|`` times ``sigmoid(x)``, and ``|pw y|``."""
    x, y = _get(inputs, "input", shape), _get(inputs, "target", shape)
    pw_y = np.abs(_times(_get(inputs, "pos_weight", shape), y))
    with np.errstate(over="ignore", invalid="ignore"):
        terms = _times(pw_y + 1.0 + np.abs(y), _sigmoid(x)) + pw_y
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
                                  ) -> FloatArray:
    """log_softmax then kl_div: torch's logit gradient is ``exp(lsm) sum(t) - t`` (log_softmax's backward of
    ``-t``), where ``exp`` turns the log-probability's absolute error into a relative one: terms
    ``p sum|t| (2 + |x - max| + |log sum| + L)`` and ``|t|``."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    p, size = _log_softmax_parts(x)
    with np.errstate(over="ignore", invalid="ignore"):
        row = np.broadcast_to(np.sum(np.abs(t), axis=-1, keepdims=True), shape)
        return _times(_times(p, row), 2.0 + size) + np.abs(t)


def log_softmax_kl_div_loss(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat) -> FloatArray:
    """log_softmax then kl_div: torch's loss is ``xlogy(t, t) - t lsm``, terms ``|t log t|`` and ``|t|`` times
    the log-probability's error size ``|x - max| + |log sum| + L`` (plus its magnitude, rounded once)."""
    x, t = _get(inputs, "input", shape), _get(inputs, "target", shape)
    _, size = _log_softmax_parts(x)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return _times(np.abs(t), np.abs(np.log(np.abs(t))) + 1.0 + 2.0 * size)


def sigmoid_bce_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                            ) -> FloatArray:
    """sigmoid then BCE: torch's target gradient is ``w (log(1 - p) - log(p))`` of the rounded ``p =
    sigmoid(x)``: terms ``|log p|`` and ``|log(1 - p)|``, and the rounding of ``p``, which ``log`` turns into an
    absolute error of about 1 (``1 + eta / (u p)`` where ``p`` is subnormal, ``eta`` half the smallest
    subnormal), and ``log(1 - p)`` into one of ``p / (1 - p) = exp(x)``."""
    x = _get(inputs, "input", shape)
    p = _sigmoid(x)
    underflow = fmt.smallest_subnormal / 2 / fmt.unit_roundoff
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        terms = np.abs(np.log(p)) + np.abs(np.log(_sigmoid(-x))) + 2.0 + 2.0 * np.exp(x) + underflow / p
    return np.abs(_times(_get(inputs, "weight", shape), terms))


def pos_weight_grad_target(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], fmt: FloatFormat,
                           ) -> FloatArray:
    """BCEWithLogits with ``pos_weight``: torch's target gradient is ``w (log_sigmoid(-x) - pw log_sigmoid(x))``,
    terms ``softplus(x)`` and ``|pw| softplus(-x)``."""
    x = _get(inputs, "input", shape)
    pw = np.abs(_get(inputs, "pos_weight", shape))
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.logaddexp(0.0, x) + _times(pw, np.logaddexp(0.0, -x))
    return np.abs(_times(_get(inputs, "weight", shape), terms))


#: Scale name (the registry's ``error_scale``) -> function of the batch's inputs and shape.
SCALES: dict[str, Scale] = {
    "pos_weight_grad_input": pos_weight_grad_input,
    "pos_weight_grad_target": pos_weight_grad_target,
    "log_softmax_kl_div_grad_input": log_softmax_kl_div_grad_input,
    "log_softmax_kl_div_loss": log_softmax_kl_div_loss,
    "sigmoid_bce_grad_target": sigmoid_bce_grad_target,
}


def scale(name: str, inputs: Mapping[str, npt.ArrayLike], shape: tuple[int, ...], fmt: FloatFormat) -> FloatArray:
    """The scale ``name`` of a batch of ``shape`` in ``fmt`` (a reduced value: pass its batch's shape and sum)."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    return np.asarray(SCALES[name](arrays, shape, fmt), dtype=np.float64)
