"""A catalogue of deliberately broken loss implementations, each the kind of mistake a real implementation
makes: a wrong formula, a lost tail, a low-precision intermediate, a missing term of a gradient, a
misapplied parameter, a wrong divisor of a reduction.

Each mutant is judged against the exact reference of the loss it imitates (``base``), so the suite must find
it with the same machinery that judges torch.  ``quantity`` and ``reductions`` say where the mutant is wrong:
the tests check that the failure the suite reports is that one, not an accident elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from suite import cases, fp_environment

Tensors = Mapping[str, torch.Tensor]
Forward = Callable[[Tensors, str], torch.Tensor]


@dataclass(frozen=True)
class Mutant:
    """One broken implementation: the built-in case it imitates, its forward, the dtype and reductions to
    judge it in, the quantity (``loss``, ``grad_input``, ``grad_target``) it gets wrong, the mode
    (:mod:`suite.modes`) it is wrong in and the property that catches it."""

    name: str
    base: str
    forward: Forward
    dtype: str
    quantity: str = "loss"
    reductions: tuple[str, ...] = ("none",)
    mode: str = "eager"
    #: The property that catches it: ``budget`` (errors within budget, :func:`tests.accuracy.harness.check`),
    #: ``nan`` (NaN inputs reach exactly what depends on them, :func:`tests.accuracy.harness.check_nan`), or
    #: ``grid`` (errors within budget on the report's full deterministic grid: a bug so narrow that the few hundred
    #: derandomised batches of the mutation test do not meet it), or ``upstream`` (gradients scale with the
    #: upstream gradient, :func:`tests.accuracy.harness.check_upstream`), or ``bias`` (rounding unbiased over the
    #: population of ordinary inputs, :mod:`suite.bias`: an error within budget everywhere, always one way).
    judged_by: str = "budget"

    def case(self) -> cases.Case:
        """The mutant as a case: the base case's inputs, reference and registered deviations (``known_as``),
        with the broken forward and no module form."""
        base = cases.get(self.base)
        return replace(base, name=f"mutant_{self.name}", description=self.forward.__doc__ or self.name,
                       forward=self.forward, module_forward=None, known_as=base.name)


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Torch's reductions of an elementwise loss (``batchmean`` divides the sum by the batch size)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "batchmean":
        return loss.sum() / (loss.shape[0] if loss.ndim else 1)
    return loss.mean()


class _InjectGradient(torch.autograd.Function):
    """Identity on ``loss`` whose backward also sends ``upstream * grad`` to ``source``: with ``source``
    detached in the loss, ``grad`` replaces the true gradient with respect to it."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, source: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return upstream, upstream * grad, None


def with_gradient(forward: Forward, name: str, wrong: Callable[[Tensors], torch.Tensor]) -> Forward:
    """``forward`` whose elementwise gradient with respect to input ``name`` is ``wrong(tensors)``; the loss
    and the other gradients stay torch's."""

    def mutated(t: Tensors, reduction: str) -> torch.Tensor:
        detached = {**t, name: t[name].detach()}
        loss = forward(detached, "none")
        with torch.no_grad():
            grad = wrong(detached).to(loss.dtype)
        return reduce(_InjectGradient.apply(loss, t[name], grad), reduction)

    mutated.__doc__ = wrong.__doc__
    return mutated


# --------------------------------------------------------------------------------------------------
# Wrong forward formulas.


def bce_clamp_27(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE whose logs are clamped at -27 instead of -100."""
    p, y = t["input"], t["target"]
    return reduce(-(y * torch.log(p).clamp(min=-27) + (1 - y) * torch.log1p(-p).clamp(min=-27)), reduction)


def bce_log_one_minus(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE with ``log(1 - p)`` instead of ``log1p(-p)``."""
    p, y = t["input"], t["target"]
    return reduce(-(y * torch.log(p).clamp(min=-100) + (1 - y) * torch.log(1 - p).clamp(min=-100)), reduction)


def bce_clamps_the_loss(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE clamped as a whole at 100 instead of log by log at -100: the same where the target is 0 or 1, too
    large where a soft target meets a clamped log (``p = 0, y = 0.5`` gives 100; torch's rule gives 50)."""
    p, y = t["input"], t["target"]
    return reduce((-(torch.xlogy(y, p) + torch.special.xlog1py(1 - y, -p))).clamp(max=100), reduction)


def bce_with_logits_in_half(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits computed internally in float16, returned in the input dtype."""
    x, y = t["input"], t["target"]
    loss = F.binary_cross_entropy_with_logits(x.half(), y.half(), reduction="none")
    return reduce(loss.to(x.dtype), reduction)


def bce_with_logits_bfloat16_tail(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits as torch forms it, ``(1 - y) x - log_sigmoid(x)``, with a fast path for ``x < -1`` that
    keeps the small term of ``log_sigmoid(x) = x - log1p(exp(x))`` in bfloat16: wrong only at negative logits,
    where torch's own cancellation is registered (its error scale must still catch this)."""
    x, y = t["input"], t["target"]
    tail = torch.log1p(torch.exp(x)).to(torch.bfloat16).to(x.dtype)
    log_sigmoid = torch.where(x < -1, x - tail, F.logsigmoid(x))
    return reduce((1 - y) * x - log_sigmoid, reduction)


def sigmoid_bce_through_tanh(t: Tensors, reduction: str) -> torch.Tensor:
    """sigmoid then BCE with the sigmoid as ``(1 + tanh(x / 2)) / 2``, an identity some kernels use, which
    cancels for negative logits: the probability keeps only the digits above ulp(1/2), so ``-log p`` loses them
    where torch's own rounded sigmoid is registered (its error scale must still catch this)."""
    x, y = t["input"], t["target"]
    p = (1 + torch.tanh(x / 2)) / 2
    return F.binary_cross_entropy(p, y, reduction=reduction)


def bce_stored_through_bfloat16(t: Tensors, reduction: str) -> torch.Tensor:
    """float16 BCE computed in float32 but stored through bfloat16, 3 bits fewer: within 4 ULPs of the exact loss,
    as torch's own 16-bit rounding is, so only a replay of torch's kernel (half-arithmetic-loss's mechanism)
    tells it apart."""
    p, y = t["input"], t["target"]
    loss = F.binary_cross_entropy(p.float(), y.float(), reduction="none")
    return reduce(loss.to(torch.bfloat16).to(p.dtype), reduction)


def bce_with_logits_overflowing_softplus(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits with ``softplus(x) = log(1 + exp(x))``, which overflows above ~88 in float32."""
    x, y = t["input"], t["target"]
    return reduce(y * torch.log1p(torch.exp(-x)) + (1 - y) * torch.log(1 + torch.exp(x)), reduction)


def bce_with_logits_through_sigmoid(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits as BCE of ``sigmoid(x)`` without the -100 clamp: ``1 - sigmoid(x)`` is 0 from
    x ~ 37 in float64, so the loss is inf where the truth is x."""
    x, y = t["input"], t["target"]
    s = torch.sigmoid(x)
    return reduce(-(torch.xlogy(y, s) + torch.xlogy(1 - y, 1 - s)), reduction)


def bce_with_logits_pos_weight_on_negatives(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits with ``pos_weight`` multiplying the negative term ``(1 - y) softplus(x)``."""
    x, y, pw = t["input"], t["target"], t["pos_weight"]
    return reduce(y * F.softplus(-x) + pw * (1 - y) * F.softplus(x), reduction)


def bce_with_logits_weight_ignored(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits that drops its ``weight``."""
    return F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction=reduction)


def kl_div_without_zero_rule(t: Tensors, reduction: str) -> torch.Tensor:
    """Pointwise KL ``t (log t - x)`` without the ``0 log 0 = 0`` rule."""
    x, target = t["input"], t["target"]
    return reduce(target * (torch.log(target) - x), reduction)


def kl_div_log_target_through_exp(t: Tensors, reduction: str) -> torch.Tensor:
    """KL with a log target computed as ``t = exp(lt)``, then ``xlogy(t, t) - t x``: ``log(exp(lt))`` loses
    ``lt`` where ``exp(lt)`` is subnormal or 0."""
    x, lt = t["input"], t["target"]
    p = torch.exp(lt)
    return reduce(torch.xlogy(p, p) - p * x, reduction)


def log_softmax_kl_div_through_softmax(t: Tensors, reduction: str) -> torch.Tensor:
    """Distillation KL with ``log(softmax(x))`` instead of ``log_softmax(x)``: an underflowing probability
    gives ``-inf`` where the log-probability is finite."""
    return F.kl_div(torch.log(torch.softmax(t["input"], dim=-1)), t["target"], reduction=reduction)


# --------------------------------------------------------------------------------------------------
# Wrong reductions.


def kl_div_batchmean_over_numel(t: Tensors, reduction: str) -> torch.Tensor:
    """KL whose ``batchmean`` divides by the number of elements (torch's ``mean``), not the batch size."""
    return F.kl_div(t["input"], t["target"], reduction="mean" if reduction == "batchmean" else reduction)


def bce_flushing_subnormals(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE run with flush-to-zero and denormals-are-zero: a subnormal probability reads as 0, so its log is
    clamped to -100 where the exact one is about -103 (float32)."""
    with fp_environment.flushing_subnormals():
        return F.binary_cross_entropy(t["input"], t["target"], reduction=reduction)


def kl_div_flushing_subnormals(t: Tensors, reduction: str) -> torch.Tensor:
    """KL run with flush-to-zero and denormals-are-zero: a subnormal target reads as 0, and a subnormal
    pointwise term becomes 0."""
    with fp_environment.flushing_subnormals():
        return F.kl_div(t["input"], t["target"], reduction=reduction)


def bce_with_logits_strided_loop_in_half(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits whose loop for non-contiguous inputs computes in float16 (its vectorised loop for
    contiguous ones is torch's): right on every contiguous batch, wrong on a strided one."""
    if all(v.is_contiguous() for v in t.values()):
        return F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction=reduction)
    return bce_with_logits_in_half(t, reduction)


def sum_one_by_one(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``sum`` and ``mean`` adding the elements one at a time, each partial sum rounded to the loss's dtype
    (a 16-bit accumulator)."""
    if reduction == "none":
        return loss
    flat = loss.reshape(-1)
    total = torch.zeros((), dtype=loss.dtype)
    for value in flat:
        total = total + value
    return total if reduction == "sum" else total / flat.numel()


def bce_with_logits_sum_in_half(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits whose ``sum`` and ``mean`` add the elements one by one in the 16-bit dtype."""
    return sum_one_by_one(F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction="none"), reduction)


class _MeanUndivided(torch.autograd.Function):
    """The mean, with the backward of the sum (the gradient not divided by N)."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor) -> torch.Tensor:
        ctx.shape = loss.shape
        return loss.mean()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> torch.Tensor:
        return upstream.expand(ctx.shape).clone()


def bce_mean_gradient_undivided(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE whose ``mean`` back-propagates like ``sum``: every gradient N times too large."""
    loss = F.binary_cross_entropy(t["input"], t["target"], reduction="none")
    return _MeanUndivided.apply(loss) if reduction == "mean" else reduce(loss, reduction)


# --------------------------------------------------------------------------------------------------
# Wrong gradients (the loss itself is torch's).


def _one_minus_sigmoid_of_minus_x(t: Tensors) -> torch.Tensor:
    """BCE-with-logits input gradient as ``1 - sigmoid(-x) - y``: flushes to 0 for very negative ``x``."""
    return 1 - torch.sigmoid(-t["input"]) - t["target"]


def _bfloat16_sigmoid_minus_target(t: Tensors) -> torch.Tensor:
    """BCE-with-logits input gradient ``sigmoid(x) - y`` computed in float32 and stored through bfloat16."""
    return (torch.sigmoid(t["input"].float()) - t["target"].float()).to(torch.bfloat16)


def _zero_target_gradient(t: Tensors) -> torch.Tensor:
    """BCE-with-logits target gradient forgotten (returned as 0)."""
    return torch.zeros_like(t["target"])


def _two_term_bce_gradient(t: Tensors) -> torch.Tensor:
    """BCE input gradient as ``-y/p + (1 - y)/(1 - p)``: cancels where ``p ~ y`` and is NaN at ``p = y = 0``."""
    p, y = t["input"], t["target"]
    return -y / p + (1 - y) / (1 - p)


def _kl_target_gradient_without_one(t: Tensors) -> torch.Tensor:
    """KL target gradient ``log t - x`` (the ``+ 1`` forgotten)."""
    return torch.log(t["target"]) - t["input"]


def _kl_log_target_target_gradient_flushed_exp(t: Tensors) -> torch.Tensor:
    """KL with a log target, target gradient ``exp(t) (t - x + 1)`` whose ``exp(t)`` is flushed to 0 where it is
    subnormal (an exp without gradual underflow)."""
    e = torch.exp(t["target"])
    e = torch.where(e < torch.finfo(e.dtype).tiny, torch.zeros_like(e), e)
    return e * (t["target"] - t["input"] + 1)


def _sigmoid_bce_gradient_clamped_probability(t: Tensors) -> torch.Tensor:
    """sigmoid then BCE logit gradient ``p - y`` with the probability clamped to ``[1e-7, 1 - 1e-7]`` (Keras's
    epsilon), as hand-written losses do to keep the logs finite: wrong wherever sigmoid saturates."""
    return torch.sigmoid(t["input"]).clamp(1e-7, 1 - 1e-7) - t["target"]


def _bfloat16(values: torch.Tensor) -> torch.Tensor:
    """``values`` rounded to bfloat16 and back: an intermediate kept in a 16-bit buffer."""
    return values.to(torch.bfloat16).to(values.dtype)


def _pos_weight_gradient_bfloat16_sigmoid(t: Tensors) -> torch.Tensor:
    """BCE-with-logits ``pos_weight`` input gradient ``(pw y + 1 - y) sigmoid(x) - pw y`` with the sigmoid
    kept in bfloat16."""
    x, y, pw = t["input"], t["target"], t["pos_weight"]
    return (pw * y + 1 - y) * _bfloat16(torch.sigmoid(x)) - pw * y


def _log_softmax_gradient_bfloat16_softmax(t: Tensors) -> torch.Tensor:
    """Distillation KL logit gradient ``softmax(x) sum(t) - t`` with the softmax kept in bfloat16."""
    return _bfloat16(torch.softmax(t["input"], dim=-1)) * t["target"].sum(dim=-1, keepdim=True) - t["target"]


def _sigmoid_bce_target_gradient_bfloat16_sigmoid(t: Tensors) -> torch.Tensor:
    """sigmoid then BCE target gradient ``log(1 - p) - log(p)`` with the sigmoid kept in bfloat16."""
    p = _bfloat16(torch.sigmoid(t["input"]))
    return torch.log1p(-p) - torch.log(p)


def _bce_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy(t["input"], t["target"], reduction=reduction)


def _bce_with_logits_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction=reduction)


def _kl_div_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.kl_div(t["input"], t["target"], reduction=reduction)


def _bce_with_logits_pos_weight_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(t["input"], t["target"], pos_weight=t["pos_weight"],
                                              reduction=reduction)


def _sigmoid_bce_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy(torch.sigmoid(t["input"]), t["target"], reduction=reduction)


def _log_softmax_kl_div_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.kl_div(F.log_softmax(t["input"], dim=-1), t["target"], reduction=reduction)


class _SwapValues(torch.autograd.Function):
    """Returns ``values`` but back-propagates as ``base``: a mutant wrong in its loss only, whose gradients are
    torch's."""

    @staticmethod
    def forward(ctx: Any, base: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return values.detach().clone()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        return upstream, None


def loss_only(base: Forward, wrong: Forward) -> Forward:
    """The loss values of ``wrong`` (unreduced, then reduced as torch does) with the gradients of ``base``."""

    def mutated(t: Tensors, reduction: str) -> torch.Tensor:
        return reduce(_SwapValues.apply(base(t, "none"), wrong(t, "none")), reduction)

    mutated.__doc__ = wrong.__doc__
    return mutated


# --------------------------------------------------------------------------------------------------
# Further mutants (discovery-power probe): gaps in quantities, reductions, dtypes, special values and bands.


def bce_with_logits_bfloat16_truncating_store(t: Tensors, reduction: str) -> torch.Tensor:
    """bfloat16 BCE-with-logits computed in float32 and stored by truncating the low 16 bits (round toward
    zero, the ``bits >> 16`` conversion of hand-written kernels) instead of rounding to nearest: up to 1 ULP."""
    x, y = t["input"], t["target"]
    wide = F.binary_cross_entropy_with_logits(x.float(), y.float(), reduction="none")
    truncated = (wide.detach().view(torch.int32) & -65536).view(torch.float32).to(x.dtype)
    loss = wide.to(x.dtype)
    return reduce(loss + (truncated - loss).detach(), reduction)


def bce_with_logits_float32_toward_zero(t: Tensors, reduction: str) -> torch.Tensor:
    """float32 BCE-with-logits computed in float64 and stored rounding toward zero (a conversion with the wrong
    rounding mode) instead of to nearest: within 1 ULP of the exact loss everywhere, always below it."""
    x, y = t["input"], t["target"]
    wide = F.binary_cross_entropy_with_logits(x.double(), y.double(), reduction="none")
    nearest = wide.float()
    away = torch.isfinite(nearest) & (nearest.double().abs() > wide.abs())
    step = torch.nextafter(nearest, torch.zeros_like(nearest)) - nearest
    return reduce(torch.where(away, nearest + step.detach(), nearest), reduction)


def bce_with_logits_softplus_threshold_25(t: Tensors, reduction: str) -> torch.Tensor:
    """float64 BCE-with-logits as ``y softplus(-x) + (1 - y) softplus(x)`` with ``F.softplus(threshold=25)``
    (a cut-off tuned for float32 reused in float64): ``softplus(z) = z`` for 25 < z, where the dropped
    ``log1p(exp(-z))`` is still thousands of float64 ULPs up to z ~ 36.7."""
    x, y = t["input"], t["target"]
    return reduce(y * F.softplus(-x, threshold=25) + (1 - y) * F.softplus(x, threshold=25), reduction)


#: One sixteenth of a binade of ``|x|`` where :func:`bce_with_logits_softplus_segment_off` is wrong.
SOFTPLUS_SEGMENT = (1.5, 1.5625)


def bce_with_logits_softplus_segment_off(t: Tensors, reduction: str) -> torch.Tensor:
    """float64 BCE-with-logits 2^-40 too large (thousands of ULPs) for ``|x|`` in :data:`SOFTPLUS_SEGMENT`, a
    sixteenth of one binade: a piecewise-polynomial softplus with one segment's coefficient wrong, right
    everywhere else.  Ordinal-uniform grid points leave that segment empty in float64."""
    x, y = t["input"], t["target"]
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    low, high = SOFTPLUS_SEGMENT
    segment = (x.abs() >= low) & (x.abs() < high)
    return reduce(torch.where(segment, loss * (1 + 2.0**-40), loss), reduction)


def bce_with_logits_tensorflow_formula(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits as TensorFlow's ``max(x, 0) - x y + log1p(exp(-|x|))``: ``inf - inf = NaN`` at
    x = +inf with a soft target, where the exact loss is +inf."""
    x, y = t["input"], t["target"]
    return reduce(x.clamp(min=0) - x * y + torch.log1p(torch.exp(-x.abs())), reduction)


def kl_div_log_target_clamped_exponent(t: Tensors, reduction: str) -> torch.Tensor:
    """KL with a log target whose ``exp(lt)`` is computed on ``lt`` clamped at -87.3 "to avoid denormals":
    for lt < -87.3 the target probability is 1.2e-38 instead of exp(lt), a wrong loss by any factor."""
    x, lt = t["input"], t["target"]
    return reduce(torch.exp(lt.clamp(min=-87.3)) * (lt - x), reduction)


def log_softmax_kl_div_global_max(t: Tensors, reduction: str) -> torch.Tensor:
    """Distillation KL whose log-softmax subtracts the max of the whole batch, not of each row: a row far
    below the batch max underflows, ``log(sum(exp)) = -inf``, log-probabilities +inf."""
    x = t["input"]
    shifted = x - x.max()
    ls = shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))
    return F.kl_div(ls, t["target"], reduction=reduction)


def kl_div_target_clamped_to_one(t: Tensors, reduction: str) -> torch.Tensor:
    """KL whose kernel assumes targets are probabilities and clamps them to [0, 1]: right for distributions,
    wrong by any factor for a target above 1, which kl_div's domain allows."""
    return F.kl_div(t["input"], t["target"].clamp(max=1.0), reduction=reduction)


#: Row width from which :func:`log_softmax_kl_div_wide_rows_in_bfloat16` takes its wrong path: a vectorised
#: kernel's loop for rows of at least one 16-lane register.
WIDE_ROW = 16


def log_softmax_kl_div_wide_rows_in_bfloat16(t: Tensors, reduction: str) -> torch.Tensor:
    """Distillation KL whose log_softmax, for rows of :data:`WIDE_ROW` or more, keeps its log-probabilities in
    bfloat16 (a vectorised path with a 16-bit buffer): right for the narrow rows of most tests."""
    x = t["input"]
    ls = F.log_softmax(x, dim=-1)
    if x.shape[-1] >= WIDE_ROW:
        ls = ls + (ls.to(torch.bfloat16).to(x.dtype) - ls).detach()
    return F.kl_div(ls, t["target"], reduction=reduction)


def kl_div_sum_drops_vector_tail(t: Tensors, reduction: str) -> torch.Tensor:
    """KL whose ``sum`` (and ``mean``) has a vector loop over chunks of 8 and, once there is a full chunk,
    forgets the scalar remainder loop: the last ``numel % 8`` elements are dropped."""
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    if reduction in ("none", "batchmean"):
        return reduce(loss, reduction)
    flat = loss.reshape(-1)
    n = flat.numel()
    total = flat[: n // 8 * 8].sum() if n >= 8 else flat.sum()
    return total if reduction == "sum" else total / n


def _pairwise_overlapping(v: torch.Tensor) -> torch.Tensor:
    n = v.numel()
    if n <= 2:
        return v.sum()
    half = (n + 1) // 2  # off by one: the halves overlap on the middle element when n is odd
    return _pairwise_overlapping(v[:half]) + _pairwise_overlapping(v[n - half:])


def sigmoid_bce_mean_pairwise_overlap(t: Tensors, reduction: str) -> torch.Tensor:
    """sigmoid then BCE whose ``sum``/``mean`` is a pairwise sum with overlapping halves: for an odd length
    the middle element is added twice."""
    loss = F.binary_cross_entropy(torch.sigmoid(t["input"]), t["target"], reduction="none")
    if reduction == "none":
        return loss
    total = _pairwise_overlapping(loss.reshape(-1))
    return total if reduction == "sum" else total / loss.numel()


class _ScaleGradient(torch.autograd.Function):
    """Identity whose backward multiplies the upstream gradient by ``factor``."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return value.clone()

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        return upstream * ctx.factor, None


def kl_div_log_target_batchmean_backward_over_numel(t: Tensors, reduction: str) -> torch.Tensor:
    """KL with a log target whose ``batchmean`` forward is right but whose backward divides by the number of
    elements (``mean``'s), not the batch size: gradients C times too small for a (B, C) batch."""
    loss = F.kl_div(t["input"], t["target"], reduction=reduction, log_target=True)
    if reduction != "batchmean" or t["input"].ndim < 2:
        return loss
    x = t["input"]
    return _ScaleGradient.apply(loss, x.shape[0] / x.numel())


def _kl_div_log_target_forward(t: Tensors, reduction: str) -> torch.Tensor:
    return F.kl_div(t["input"], t["target"], reduction=reduction, log_target=True)


def _kl_log_target_input_gradient_raw(t: Tensors) -> torch.Tensor:
    """KL (log target) input gradient ``-lt``: the backward forgets that the target is a log (``-exp(lt)``)."""
    return -t["target"]


def _bce_gradient_zero_where_log_clamped(t: Tensors) -> torch.Tensor:
    """BCE input gradient torch's ``(p - y) / max(p (1 - p), 1e-12)`` but 0 wherever a log is clamped at -100
    (p < e^-100 or p = 1): the clamp's zero derivative applied to the whole gradient."""
    p, y = t["input"], t["target"]
    g = (p - y) / torch.clamp(p * (1 - p), min=1e-12)
    clamped = (torch.log(p) < -100) | (torch.log1p(-p) < -100)
    return torch.where(clamped, torch.zeros_like(g), g)


def _bce_gradient_without_epsilon(t: Tensors) -> torch.Tensor:
    """BCE input gradient ``(p - y) / (p (1 - p))`` without the epsilon: +inf at p = -0 with y > 0 (the sign
    of zero: the exact one-sided gradient is -inf), NaN at p = y in {0, 1}."""
    p, y = t["input"], t["target"]
    return (p - y) / (p * (1 - p))


def bce_weight_per_sample_heuristic(t: Tensors, reduction: str) -> torch.Tensor:
    """Weighted BCE that treats a 1-D weight whose length equals the batch size as per-sample
    (``w.view(-1, 1)``): a per-class weight of a square ``(C, C)`` batch is applied along the wrong axis."""
    p, y, w = t["input"], t["target"], t["weight"]
    if w.ndim == 1 and p.ndim == 2 and w.shape[0] == p.shape[0]:
        w = w.view(-1, 1)
    return F.binary_cross_entropy(p, y, weight=w.expand_as(p), reduction=reduction)


def bce_with_logits_nan_input_to_zero(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits that "sanitises" NaN logits to 0 (``torch.where(isnan(x), 0, x)``): a NaN input gives
    log 2 instead of NaN."""
    x = t["input"]
    clean = torch.where(torch.isnan(x), torch.zeros_like(x), x)
    return F.binary_cross_entropy_with_logits(clean, t["target"], reduction=reduction)


def kl_div_nan_skipping_sum(t: Tensors, reduction: str) -> torch.Tensor:
    """KL whose ``sum`` skips NaN elements (``nansum``, "robust" to a bad sample): the reduced loss of a batch
    with a NaN input is a number."""
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    return loss.nansum() if reduction == "sum" else reduce(loss, reduction)


def _bce_gradient_half_reciprocals(t: Tensors) -> torch.Tensor:
    """float16 BCE input gradient ``(p - y) (1/p + 1/(1 - p))`` computed in float32 with the reciprocals held
    in a float16 buffer's range: 1/p overflows to inf for p < 2^-16 (1.5e-5), so the gradient is +-inf where
    it is about 1 (y = 0)."""
    p, y = t["input"].float(), t["target"].float()
    inv_p, inv_q = 1 / p, 1 / (1 - p)
    big = torch.finfo(torch.float16).max
    inv_p = torch.where(inv_p.abs() > big, inv_p.sign() * torch.inf, inv_p)
    inv_q = torch.where(inv_q.abs() > big, inv_q.sign() * torch.inf, inv_q)
    return (p - y) * (inv_p + inv_q)


def bce_with_logits_pos_weight_unguarded_softplus(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits with a pos_weight as ``(1 - y) x + (1 + (pw - 1) y) log1p(exp(-x))`` where that overflows
    (``exp(-x)`` does for x below -88.7 in float32), torch's value elsewhere: an inf where the loss is finite,
    inside the region (x <= 0) of torch's own pos_weight overflow, which only its replayed formula tells apart."""
    x, y, pw = t["input"], t["target"], t["pos_weight"]
    unguarded = (1 - y) * x + (1 + (pw - 1) * y) * torch.log1p(torch.exp(-x))
    torch_loss = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    return reduce(torch.where(torch.isinf(unguarded) & (x < 0), unguarded, torch_loss), reduction)


def _upstream_rewritten(rewrite: Callable[[torch.Tensor], torch.Tensor], doc: str) -> type[torch.autograd.Function]:
    """An identity on the loss whose backward passes ``rewrite(upstream)`` on instead of the upstream gradient."""

    class Rewritten(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, loss: torch.Tensor) -> torch.Tensor:
            return loss.clone()

        @staticmethod
        def backward(ctx: Any, upstream: torch.Tensor) -> torch.Tensor:
            return rewrite(upstream)

    Rewritten.__doc__ = doc
    return Rewritten


_UpstreamIgnored = _upstream_rewritten(torch.ones_like, "ones, whatever the upstream gradient")
_FirstUpstreamForAll = _upstream_rewritten(lambda u: u.reshape(-1)[:1].expand_as(u).clone(),
                                           "the first element's upstream gradient for every element")


def bce_with_logits_ignores_upstream(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits whose backward forgets to multiply by the upstream gradient (``grad_output``): right
    for the ones every other test back-propagates, wrong under loss scaling or a weighted sum of losses."""
    loss = F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction="none")
    return reduce(_UpstreamIgnored.apply(loss), reduction)


def kl_div_first_upstream_for_all(t: Tensors, reduction: str) -> torch.Tensor:
    """KL whose backward broadcasts the first element's upstream gradient to every element (a kernel that reads
    ``grad_output`` as a scalar): right wherever the upstream gradient is uniform."""
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    return reduce(_FirstUpstreamForAll.apply(loss), reduction)


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("bce_clamp_27", "bce", bce_clamp_27, "float32"),
    Mutant("bce_log_one_minus", "bce", bce_log_one_minus, "float32"),
    Mutant("bce_clamps_the_loss", "bce", bce_clamps_the_loss, "float32"),
    Mutant("bce_stored_through_bfloat16", "bce", bce_stored_through_bfloat16, "float16"),
    Mutant("bce_with_logits_in_half", "bce_with_logits", bce_with_logits_in_half, "float32"),
    Mutant("bce_with_logits_strided_loop_in_half", "bce_with_logits", bce_with_logits_strided_loop_in_half,
           "float32", mode="strided"),
    Mutant("bce_with_logits_bfloat16_tail", "bce_with_logits", bce_with_logits_bfloat16_tail, "float32"),
    Mutant("sigmoid_bce_through_tanh", "sigmoid_bce", sigmoid_bce_through_tanh, "float32"),
    Mutant("bce_with_logits_overflowing_softplus", "bce_with_logits", bce_with_logits_overflowing_softplus,
           "float32"),
    Mutant("bce_with_logits_through_sigmoid", "bce_with_logits", bce_with_logits_through_sigmoid, "float64"),
    Mutant("bce_with_logits_pos_weight_on_negatives", "bce_with_logits_pos_weight",
           bce_with_logits_pos_weight_on_negatives, "float32"),
    Mutant("bce_with_logits_weight_ignored", "bce_with_logits_weight", bce_with_logits_weight_ignored, "float32"),
    Mutant("kl_div_without_zero_rule", "kl_div", kl_div_without_zero_rule, "float32"),
    Mutant("kl_div_log_target_through_exp", "kl_div_log_target", kl_div_log_target_through_exp, "float32"),
    Mutant("log_softmax_kl_div_through_softmax", "log_softmax_kl_div", log_softmax_kl_div_through_softmax,
           "float32"),
    Mutant("bce_flushing_subnormals", "bce", bce_flushing_subnormals, "float32"),
    Mutant("kl_div_flushing_subnormals", "kl_div", kl_div_flushing_subnormals, "float32"),
    Mutant("kl_div_batchmean_over_numel", "kl_div", kl_div_batchmean_over_numel, "float32",
           reductions=("batchmean",)),
    Mutant("bce_with_logits_sum_in_half", "bce_with_logits", bce_with_logits_sum_in_half, "float16",
           reductions=("sum",)),
    Mutant("bce_mean_gradient_undivided", "bce", bce_mean_gradient_undivided, "float32", "grad_input",
           reductions=("mean",)),
    Mutant("bce_with_logits_gradient_one_minus_sigmoid", "bce_with_logits",
           with_gradient(_bce_with_logits_forward, "input", _one_minus_sigmoid_of_minus_x), "float32",
           "grad_input"),
    Mutant("bce_with_logits_gradient_through_bfloat16", "bce_with_logits",
           with_gradient(_bce_with_logits_forward, "input", _bfloat16_sigmoid_minus_target), "float16", "grad_input"),
    Mutant("bce_with_logits_target_gradient_dropped", "bce_with_logits",
           with_gradient(_bce_with_logits_forward, "target", _zero_target_gradient), "float32", "grad_target"),
    Mutant("bce_two_term_gradient", "bce", with_gradient(_bce_forward, "input", _two_term_bce_gradient),
           "float64", "grad_input"),
    Mutant("bce_with_logits_pos_weight_gradient_bfloat16_sigmoid", "bce_with_logits_pos_weight",
           with_gradient(_bce_with_logits_pos_weight_forward, "input", _pos_weight_gradient_bfloat16_sigmoid),
           "float32", "grad_input"),
    Mutant("log_softmax_kl_div_gradient_bfloat16_softmax", "log_softmax_kl_div",
           with_gradient(_log_softmax_kl_div_forward, "input", _log_softmax_gradient_bfloat16_softmax),
           "float32", "grad_input"),
    Mutant("sigmoid_bce_gradient_clamped_probability", "sigmoid_bce",
           with_gradient(_sigmoid_bce_forward, "input", _sigmoid_bce_gradient_clamped_probability), "float32",
           "grad_input"),
    Mutant("sigmoid_bce_target_gradient_bfloat16_sigmoid", "sigmoid_bce",
           with_gradient(_sigmoid_bce_forward, "target", _sigmoid_bce_target_gradient_bfloat16_sigmoid),
           "float32", "grad_target"),
    Mutant("kl_div_target_gradient_without_one", "kl_div",
           with_gradient(_kl_div_forward, "target", _kl_target_gradient_without_one), "float32", "grad_target"),
    Mutant("kl_div_log_target_target_gradient_flushed_exp", "kl_div_log_target",
           with_gradient(_kl_div_log_target_forward, "target", _kl_log_target_target_gradient_flushed_exp),
           "float64", "grad_target"),
    Mutant("bce_with_logits_bfloat16_truncating_store", "bce_with_logits", bce_with_logits_bfloat16_truncating_store,
           "bfloat16"),
    Mutant("bce_with_logits_float32_toward_zero", "bce_with_logits", bce_with_logits_float32_toward_zero, "float32",
           judged_by="bias"),
    Mutant("bce_with_logits_softplus_threshold_25", "bce_with_logits",
           loss_only(_bce_with_logits_forward, bce_with_logits_softplus_threshold_25),
           "float64"),
    Mutant("bce_with_logits_softplus_segment_off", "bce_with_logits",
           loss_only(_bce_with_logits_forward, bce_with_logits_softplus_segment_off), "float64", judged_by="grid"),
    Mutant("bce_with_logits_tensorflow_formula", "bce_with_logits",
           loss_only(_bce_with_logits_forward, bce_with_logits_tensorflow_formula), "float32"),
    Mutant("kl_div_log_target_clamped_exponent", "kl_div_log_target",
           loss_only(_kl_div_log_target_forward, kl_div_log_target_clamped_exponent),
           "float32"),
    Mutant("log_softmax_kl_div_global_max", "log_softmax_kl_div", log_softmax_kl_div_global_max, "float32"),
    Mutant("kl_div_target_clamped_to_one", "kl_div", loss_only(_kl_div_forward, kl_div_target_clamped_to_one),
           "float32"),
    Mutant("log_softmax_kl_div_wide_rows_in_bfloat16", "log_softmax_kl_div",
           loss_only(_log_softmax_kl_div_forward, log_softmax_kl_div_wide_rows_in_bfloat16), "float32"),
    Mutant("kl_div_sum_drops_vector_tail", "kl_div", kl_div_sum_drops_vector_tail, "float32",
           reductions=("sum",)),
    Mutant("sigmoid_bce_mean_pairwise_overlap", "sigmoid_bce", sigmoid_bce_mean_pairwise_overlap, "float32",
           reductions=("mean",)),
    Mutant("kl_div_log_target_batchmean_backward_over_numel", "kl_div_log_target",
           kl_div_log_target_batchmean_backward_over_numel, "float32", "grad_input", reductions=("batchmean",)),
    Mutant("kl_div_log_target_input_gradient_raw_log_target", "kl_div_log_target",
           with_gradient(_kl_div_log_target_forward, "input", _kl_log_target_input_gradient_raw), "float32",
           "grad_input"),
    Mutant("bce_gradient_zero_where_log_clamped", "bce",
           with_gradient(_bce_forward, "input", _bce_gradient_zero_where_log_clamped), "float64", "grad_input"),
    Mutant("bce_gradient_without_epsilon", "bce",
           with_gradient(_bce_forward, "input", _bce_gradient_without_epsilon), "float32", "grad_input"),
    Mutant("bce_weight_per_sample_heuristic", "bce_weight", bce_weight_per_sample_heuristic, "float32"),
    Mutant("bce_with_logits_nan_input_to_zero", "bce_with_logits", bce_with_logits_nan_input_to_zero, "float32",
           judged_by="nan"),
    Mutant("kl_div_nan_skipping_sum", "kl_div", kl_div_nan_skipping_sum, "float32", reductions=("sum",),
           judged_by="nan"),
    Mutant("log_softmax_kl_div_global_max_spreads_nan", "log_softmax_kl_div", log_softmax_kl_div_global_max,
           "float32", judged_by="nan"),
    Mutant("bce_gradient_half_reciprocals", "bce",
           with_gradient(_bce_forward, "input", _bce_gradient_half_reciprocals), "float16", "grad_input"),
    Mutant("bce_with_logits_pos_weight_unguarded_softplus", "bce_with_logits_pos_weight",
           loss_only(_bce_with_logits_pos_weight_forward, bce_with_logits_pos_weight_unguarded_softplus), "float32"),
    Mutant("bce_with_logits_ignores_upstream", "bce_with_logits", bce_with_logits_ignores_upstream, "float32",
           "grad_input", reductions=("none", "mean"), judged_by="upstream"),
    Mutant("kl_div_first_upstream_for_all", "kl_div", kl_div_first_upstream_for_all, "float32", "grad_input",
           judged_by="upstream"),
)}
