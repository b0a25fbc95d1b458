"""torch's own formulas of each loss and gradient, replayed on :class:`suite.kernel_arithmetic.Kernel`: the
operations torch's CPU code makes, in its order, with its constants (the -100 log clamp, the 1e-12 gradient
epsilon) and its stores of intermediate tensors.

A replay takes the batch's inputs as spans, the kernel to replay and the reduction's divisor, and returns the
span of the element's value.  ``REPLAYS[case][quantity]`` names the replay of a registered case; a case that is
not there has none.  Each was checked value for value against torch 2.13's float16 and bfloat16 CPU kernels on
the full grids (``tests/unit/test_kernel_replays.py`` keeps checking it for the installed torch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from suite import array_math
from suite.inputs.thresholds import GRAD_EPSILON, LOG_CLAMP
from suite.kernel_arithmetic import Kernel, Span

#: A replay: the kernel, the batch's inputs (spans, by the case's input names) and the reduction's divisor
#: (1 for none and sum; N as the kernel holds it, which a float16 conversion may have changed) -> the span of
#: each element of the quantity.
Replay = Callable[[Kernel, Mapping[str, Span], float], Span]


def _upstream(k: Kernel, divisor: float) -> Span:
    """The gradient that autograd sends into an elementwise loss: 1, or a mean's ``1 / N`` (a division by a
    scalar, computed in float32 and stored)."""
    one = k.constant(1.0)
    return one if divisor == 1 else k.div(one, Span.of(np.float64(divisor)))


def _divided(k: Kernel, value: Span, divisor: float) -> Span:
    """A gradient that torch's own backward divides by the mean's ``N`` (``grad_input.div_(numel)``)."""
    return value if divisor == 1 else k.div(value, Span.of(np.float64(divisor)))


def _weighted(k: Kernel, value: Span, t: Mapping[str, Span]) -> Span:
    """``value.mul_(weight)`` where the case has a weight."""
    return k.mul(value, t["weight"]) if "weight" in t else value


# ------------------------------------------------------------------------------------------------ BCE


def _bce_loss_of(k: Kernel, p: Span, y: Span) -> Span:
    """``(y - 1) max(log1p(-p), -100) - y max(log p, -100)`` (torch's CPU forward)."""
    clamp = k.constant(float(LOG_CLAMP))
    first = k.mul(k.sub(y, k.constant(1.0)), k.maximum(k.function(np.log1p, k.neg(p)), clamp))
    return k.sub(first, k.mul(y, k.maximum(k.function(np.log, p), clamp)))


def _bce_grad_of(k: Kernel, p: Span, y: Span, upstream: Span | None = None) -> Span:
    """``grad (p - y) / max((1 - p) p, 1e-12)`` with the ``upstream`` grad (default 1: torch's CPU backward, which
    divides by a mean's ``N`` last), 1e-12 the kernel's constant (:attr:`Kernel.literals`: float32's in eager's
    kernels, float64's in a compiled float64 kernel; they differ in float64 alone)."""
    eps = k.constant(float(GRAD_EPSILON))
    grad = k.constant(1.0) if upstream is None else upstream
    return k.div(k.mul(grad, k.sub(p, y)), k.maximum(k.mul(k.sub(k.constant(1.0), p), p), eps))


def _logit(k: Kernel, p: Span) -> Span:
    """``log(p / (1 - p))`` of torch's logit kernel: each operation stored on CPU (``1 - p`` is 1 in float16 for
    ``p < 2^-12``), in float32 and stored once by CUDA's (its ``acc_type``)."""

    def logit(c: Kernel) -> Span:
        return c.function(np.log, c.div(p, c.sub(c.constant(1.0), p)))
    return k.either(logit(k), k.fused(logit))


def bce_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    return _weighted(k, _bce_loss_of(k, t["input"], t["target"]), t)


def bce_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """The gradient with upstream grad 1, weighted, divided by a mean's ``N``.  Code built with ``-ffast-math``
    may reassociate: torch 2.1's compiled float64 backward multiplies the mean's loop-invariant ``1 / N`` into the
    upstream grad, so ``(1 / N) (p - y)`` comes first (subnormal, and rounded or flushed, at the smallest normal
    p, where the division last is exact)."""
    p, y = t["input"], t["target"]
    last = _divided(k, _weighted(k, _bce_grad_of(k, p, y), t), divisor)
    if not k.fast_math or divisor == 1:
        return last
    return k.either(last, _weighted(k, _bce_grad_of(k, p, y, _upstream(k, divisor)), t))


def bce_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``-logit(p) * grad * weight / N`` (``binary_cross_entropy_target_backward``)."""
    return _divided(k, _weighted(k, k.mul(k.neg(_logit(k, t["input"])), k.constant(1.0)), t), divisor)


# ------------------------------------------------------------------------------------------------ BCE-with-logits


#: ULPs of float32 by which torch's sigmoid ``1 / (1 + exp(-x))`` may miss the exact one: exp's, the sum's and
#: the quotient's.
SIGMOID_ULPS = 3.0


def _sigmoid(k: Kernel, x: Span) -> Span:
    """torch's sigmoid kernel, ``1 / (1 + exp(-x))`` in float32: within :data:`SIGMOID_ULPS`, and 0 where
    ``exp(-x)`` overflows (a sigmoid that bfloat16 holds as a subnormal number is lost)."""
    s = k.function(array_math.sigmoid, x, SIGMOID_ULPS)
    overflows = -x.low > np.log(k.compute.max_finite)
    return Span(np.where(overflows, 0.0, s.low), s.high, s.nan)


def _pos_weighted(k: Kernel, t: Mapping[str, Span]) -> Span | None:
    """``pos_weight * target`` where the case has a pos_weight."""
    return k.mul(t["pos_weight"], t["target"]) if "pos_weight" in t else None


def bce_with_logits_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``(1 - y) x - log_sigmoid(x) ((pw - 1) y + 1)`` (torch's composite forward), times the weight."""
    x, y, one = t["input"], t["target"], k.constant(1.0)
    log_sigmoid = k.function(array_math.log_sigmoid, x)
    if "pos_weight" in t:
        log_sigmoid = k.mul(log_sigmoid, k.add(k.mul(k.sub(t["pos_weight"], one), y), one))
    return _weighted(k, k.sub(k.mul(k.sub(one, y), x), log_sigmoid), t)


def bce_with_logits_loss_log_of_exps(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``(1 - y) x + m + log(exp(-m) + exp(-x - m))`` with ``m = max(-x, 0)``, the log's term times
    ``(pw - 1) y + 1`` with a pos_weight, times the weight: the composite forward of torch's older releases (the
    registry's ``bce-with-logits-log-of-exps``), which rounds the sum ``1 + exp(-|x|)`` before its log."""
    x, y, one = t["input"], t["target"], k.constant(1.0)
    m = k.maximum(k.neg(x), k.constant(0.0))
    log_sum = k.function(np.log, k.add(k.function(np.exp, k.neg(m)), k.function(np.exp, k.sub(k.neg(x), m))))
    linear = k.mul(k.sub(one, y), x)
    if "pos_weight" in t:
        log_weight = k.add(k.mul(k.sub(t["pos_weight"], one), y), one)
        return _weighted(k, k.add(linear, k.mul(log_weight, k.add(log_sum, m))), t)
    return _weighted(k, k.add(k.add(linear, m), log_sum), t)


def bce_with_logits_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``(pw y + 1 - y) sigmoid(x) - pw y``, or ``sigmoid(x) - y`` (``binary_cross_entropy_with_logits_backward``)."""
    x, y, one = t["input"], t["target"], k.constant(1.0)
    sigmoid = _sigmoid(k, x)
    pw_y = _pos_weighted(k, t)
    grad = k.sub(sigmoid, y) if pw_y is None else k.sub(k.mul(k.sub(k.add(pw_y, one), y), sigmoid), pw_y)
    return _divided(k, _weighted(k, k.mul(grad, one), t), divisor)


def bce_with_logits_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``log_sigmoid(-x) - pw log_sigmoid(x)``, or ``-x``
    (``binary_cross_entropy_with_logits_target_backward``)."""
    x = t["input"]
    if "pos_weight" in t:
        negative, positive = (k.function(array_math.log_sigmoid, v) for v in (k.neg(x), x))
        grad = k.sub(negative, k.mul(positive, t["pos_weight"]))
    else:
        grad = k.neg(x)
    return _divided(k, _weighted(k, k.mul(grad, k.constant(1.0)), t), divisor)


# ------------------------------------------------------------------------------------------------ kl_div


def _xlogy(k: Kernel, a: Span, b: Span) -> Span:
    """torch's xlogy kernel: ``a * log(b)`` in float32, stored once (float16), or with ``log(b)`` stored first
    (bfloat16, whose ``std::log`` c10 overloads); 0 where ``a = 0``, NaN where ``b`` is."""
    value = k.either(k.fused(lambda c: c.mul(a, c.function(np.log, b))), k.mul(a, k.function(np.log, b)))
    zero = Span.of(np.zeros(np.broadcast_shapes(a.low.shape, b.low.shape)))
    return k.where(np.isnan(b.low), Span.of(np.full(zero.low.shape, np.nan)), k.where(a.low == 0, zero, value))


def kl_div_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``xlogy(t, t) - t x`` (torch's composite kl_div)."""
    x, y = t["input"], t["target"]
    return k.sub(_xlogy(k, y, y), k.mul(y, x))


def kl_div_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """autograd through ``- t x``: ``(-g) t``, with the upstream ``g`` of the reduction."""
    return k.mul(k.neg(_upstream(k, divisor)), t["target"])


def kl_div_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """autograd through ``xlogy(t, t) - t x``: xlogy's two gradients ``xlogy(g, t)`` (0 where ``t = 0``) and
    ``g t / t`` added first, then the product's ``(-g) x``, in autograd's order."""
    x, y, g = t["input"], t["target"], _upstream(k, divisor)
    own = k.where(y.low == 0, Span.of(np.zeros(y.low.shape)), _xlogy(k, g, y))
    other = k.div(k.mul(g, y), y)
    product = k.mul(k.neg(g), x)
    return k.add(k.add(own, other), product)


def kl_div_log_target_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``exp(lt) (lt - x)`` (torch's composite kl_div with ``log_target``)."""
    x, lt = t["input"], t["target"]
    return k.mul(k.function(np.exp, lt), k.sub(lt, x))


def kl_div_log_target_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """autograd through ``exp(lt) (lt - x)``: ``-(g exp(lt))``."""
    return k.neg(k.mul(_upstream(k, divisor), k.function(np.exp, t["target"])))


def kl_div_log_target_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """autograd through ``exp(lt) (lt - x)``: ``g exp(lt)`` from the difference plus ``(g (lt - x)) exp(lt)``
    from the exponential."""
    x, lt, g = t["input"], t["target"], _upstream(k, divisor)
    e = k.function(np.exp, lt)
    return k.add(k.mul(g, e), k.mul(k.mul(g, k.sub(lt, x)), e))


# ------------------------------------------------------------------------------------------------ sigmoid then BCE


def sigmoid_bce_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """BCE's forward on torch's sigmoid tensor."""
    return _bce_loss_of(k, _sigmoid(k, t["input"]), t["target"])


def sigmoid_bce_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """BCE's backward on the sigmoid tensor (divided by the mean's ``N``), in the stored format or in float32 (CPU
    autocast runs BCE in float32 on the 16-bit sigmoid) and stored, then sigmoid's backward kernel
    ``g (1 - s) s``: each operation stored (float16) or in float32, stored once (bfloat16)."""
    s, y, wide = _sigmoid(k, t["input"]), t["target"], k.computing()
    g = k.either(_divided(k, _bce_grad_of(k, s, y), divisor), k.stored(_divided(wide, _bce_grad_of(wide, s, y),
                                                                                   divisor)))

    def backward(c: Kernel) -> Span:
        return c.mul(c.mul(g, c.sub(c.constant(1.0), s)), s)
    return k.either(backward(k), k.fused(backward))


def sigmoid_bce_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """``-logit(s)`` of the sigmoid tensor (BCE's target backward)."""
    return _divided(k, k.mul(k.neg(_logit(k, _sigmoid(k, t["input"]))), k.constant(1.0)), divisor)


# ---------------------------------------------------------------------------------------- log_softmax then kl_div

def _row_sum(k: Kernel, terms: Span) -> Span:
    """A sum over the last axis as torch's row kernels for 16-bit types form it, accumulating in the stored
    format in an order the replay does not follow: within one rounding of it per term (the additions and the
    store), relative to the sum of magnitudes, of the sum of either ends of the terms' spans."""
    total = np.sum(terms.low, axis=-1, keepdims=True)
    magnitude = np.maximum(np.sum(np.abs(terms.low), axis=-1, keepdims=True),
                           np.sum(np.abs(terms.high), axis=-1, keepdims=True))
    high_total = np.sum(terms.high, axis=-1, keepdims=True)
    error = terms.low.shape[-1] * k.store.unit_roundoff * magnitude
    low = k.approximately(total, error)
    high = k.approximately(high_total, error)
    return Span(low.low, high.high, low.nan | high.nan | np.isnan(high_total))


def _log_softmax(k: Kernel, x: Span) -> Span:
    """torch's log_softmax over the last axis: ``x - (max + log(sum(exp(x - max))))`` in float32, stored once,
    with the exponentials and their sum stored (the sum within :func:`_row_sum`) and the logarithm stored or
    not; a tensor of the inputs' dtype, which kl_div's kernels read (a fused float32 kernel too)."""
    most = Span.of(np.max(x.low, axis=-1, keepdims=True))
    total = _row_sum(k, k.fused(lambda c: c.function(np.exp, c.sub(x, most))))
    log_sum = k.either(k.function(np.log, total), k.computing().function(np.log, total))
    return k.materialised(k.fused(lambda c: c.sub(x, c.add(most, log_sum))))


def _on_log_softmax(k: Kernel, t: Mapping[str, Span]) -> dict[str, Span]:
    return {**t, "input": _log_softmax(k, t["input"])}


def log_softmax_kl_div_loss(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """kl_div's forward on torch's log_softmax tensor."""
    return kl_div_loss(k, _on_log_softmax(k, t), divisor)


def log_softmax_kl_div_grad_target(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """kl_div's target gradient on torch's log_softmax tensor."""
    return kl_div_grad_target(k, _on_log_softmax(k, t), divisor)


def log_softmax_kl_div_grad_input(k: Kernel, t: Mapping[str, Span], divisor: float) -> Span:
    """kl_div's input gradient ``go`` on the log_softmax tensor ``o``, then log_softmax's backward
    ``go - exp(o) sum(go)`` over the row (the sum as in :func:`_row_sum`), each operation stored or in float32,
    stored once."""
    o = _log_softmax(k, t["input"])
    go = kl_div_grad_input(k, t, divisor)
    row_sum = _row_sum(k, go)

    def backward(c: Kernel) -> Span:
        return c.sub(go, c.mul(c.function(np.exp, o), row_sum))
    return k.either(backward(k), k.fused(backward))


_BCE: dict[str, Replay] = {"loss": bce_loss, "grad_input": bce_grad_input, "grad_target": bce_grad_target}
_BCE_WITH_LOGITS: dict[str, Replay] = {
    "loss": bce_with_logits_loss, "grad_input": bce_with_logits_grad_input, "grad_target": bce_with_logits_grad_target}

REPLAYS: dict[str, dict[str, Replay]] = {
    "bce": _BCE, "bce_weight": _BCE,
    "bce_with_logits": _BCE_WITH_LOGITS, "bce_with_logits_weight": _BCE_WITH_LOGITS,
    "bce_with_logits_pos_weight": _BCE_WITH_LOGITS,
    "sigmoid_bce": {"loss": sigmoid_bce_loss, "grad_input": sigmoid_bce_grad_input,
                    "grad_target": sigmoid_bce_grad_target},
    "kl_div": {"loss": kl_div_loss, "grad_input": kl_div_grad_input, "grad_target": kl_div_grad_target},
    "log_softmax_kl_div": {"loss": log_softmax_kl_div_loss, "grad_input": log_softmax_kl_div_grad_input,
                           "grad_target": log_softmax_kl_div_grad_target},
    "kl_div_log_target": {"loss": kl_div_log_target_loss, "grad_input": kl_div_log_target_grad_input,
                          "grad_target": kl_div_log_target_grad_target},
}
