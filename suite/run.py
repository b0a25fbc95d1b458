"""Evaluate a case on a batch for one dtype and device: torch's values, gradients and reduced values next to
their exact truths and error measures.  Nothing here formats for humans.

    from suite import cases, run
    result = run.evaluate(cases.get("bce_with_logits"), {"input": x, "target": y}, dtype="float32")
    result.get("none", "loss").metrics.labels
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from suite import budgets, dtypes, modes, plugins, probes, truth, truth_cache
from suite.cases.base import REDUCTION_DIVISORS, Case
from suite.dtypes import FloatArray, FloatFormat
from suite.metrics import ElementMetrics, Label, measure

LOSS = "loss"


def grad_name(input_name: str) -> str:
    """Name of the quantity holding the gradient with respect to an input."""
    return f"grad_{input_name}"


@dataclass
class QuantityResult:
    """One quantity (the loss, or the gradient with respect to one input) under one reduction."""

    quantity: str
    reduction: str
    got: FloatArray
    truth: truth.Truth
    metrics: ElementMetrics
    fmt: FloatFormat
    error: str | None = None  # the exception torch raised, if it did


@dataclass
class CaseResult:
    """Everything measured for a case on a batch: inputs as used (rounded to the dtype), the truth set and a
    :class:`QuantityResult` per ``(reduction, quantity)``."""

    case: Case
    fmt: FloatFormat
    device: str
    mode: str
    inputs: dict[str, FloatArray]
    truth: truth.TruthSet
    quantities: dict[tuple[str, str], QuantityResult] = field(default_factory=dict)

    def get(self, reduction: str = "none", quantity: str = LOSS) -> QuantityResult:
        try:
            return self.quantities[(reduction, quantity)]
        except KeyError:
            raise KeyError(f"no result for reduction {reduction!r}, quantity {quantity!r}; have "
                           f"{sorted(self.quantities)}") from None


def to_tensor(values: FloatArray, fmt: FloatFormat, device: str, requires_grad: bool = False) -> torch.Tensor:
    """Exact conversion of carrier values (already representable in ``fmt``) to a tensor."""
    t = torch.tensor(values, dtype=torch.float64).to(fmt.torch_dtype).to(device)
    return t.requires_grad_(requires_grad)


def to_carrier(t: torch.Tensor) -> FloatArray:
    """Exact float64 copy of a floating tensor's values."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


def prepare_inputs(case: Case, inputs: Mapping[str, npt.ArrayLike], fmt: FloatFormat) -> dict[str, FloatArray]:
    """Check the input names, round every input to the dtype (truth is for the inputs torch sees) and
    broadcast the data inputs to the batch shape (torch requires input and target of one shape; parameters
    such as ``weight`` keep their own shape and broadcast inside torch)."""
    expected = {s.name for s in case.inputs}
    if set(inputs) != expected:
        raise ValueError(f"case {case.name!r} takes inputs {sorted(expected)}, got {sorted(inputs)}")
    rounded = {name: dtypes.round_array(np.asarray(v, dtype=np.float64), fmt) for name, v in inputs.items()}
    data = [s.name for s in case.inputs if s.role == "data"]
    shape = np.broadcast_shapes(*(rounded[name].shape for name in data))
    for name in data:
        rounded[name] = np.broadcast_to(rounded[name], shape).copy()
    return rounded


def evaluate(case: Case, inputs: Mapping[str, npt.ArrayLike], dtype: Any, device: str = "cpu", *,
             reductions: tuple[str, ...] | None = None, gradients: bool = True,
             budget: float | None = None, truth_set: truth.TruthSet | None = None,
             mode: str = "eager", workers: int | None = None, cache: bool = False,
             screen: bool | None = None) -> CaseResult:
    """Run ``case`` on ``inputs`` in ``dtype`` on ``device`` in ``mode`` (see :mod:`suite.modes`) and
    measure every quantity.  Under autocast, ``dtype`` is the autocast dtype and the inputs its values.

    ``reductions`` defaults to all of the case's; ``budget`` (ULPs of algorithmic error) to the budget
    registry's value for the format each quantity is returned in (:func:`quantity_budget`); ``truth_set`` may
    be passed when already computed for the same rounded inputs, else it is computed (with ``workers``
    processes; read from and stored in the on-disk cache with ``cache``).
    ``screen``: first run the batch in a child process (:func:`needs_screening` decides when None).
    """
    fmt = dtypes.get(dtype)
    modes.check(mode)
    used = prepare_inputs(case, inputs, fmt)
    if truth_set is None:
        truth_set = truth_cache.cached_truth(case, used, workers=workers, cache=cache)
    result = CaseResult(case, fmt, device, mode, used, truth_set)
    shape = truth_set.values.shape
    wanted = tuple(reductions or case.reductions)
    for reduction in wanted:
        if reduction not in case.reductions:
            raise ValueError(f"case {case.name!r} has no reduction {reduction!r}")
    if screen is None:
        screen = needs_screening(case, used, device)
    screened = probes.screen(case, used, fmt.name, device, mode, wanted) if screen else {}
    for reduction in wanted:
        for q in _run_reduction(case, used, fmt, device, mode, reduction, gradients, truth_set, shape, budget,
                                screened.get(reduction)):
            result.quantities[(reduction, q.quantity)] = q
    return result


def needs_screening(case: Case, used: Mapping[str, FloatArray], device: str) -> bool:
    """Whether a batch must first run in a child process (:func:`suite.probes.screen`): on CUDA, an input
    outside its domain (or NaN) may trigger a device-side assert, which would poison this process's CUDA
    context for good.  Only cases a child resolves by name (built in, or of a loaded plugin:
    :func:`suite.plugins.resolvable`) can run in a child; others run here as they are."""
    if torch.device(device).type != "cuda" or not plugins.resolvable(case):
        return False
    return any(bool((~((values >= spec.low) & (values <= spec.high))).any())
               for spec in case.inputs for values in [np.asarray(used[spec.name])])


def _screen_failure(kind: str, message: str) -> tuple[Label, str] | None:
    """The label and message of a screened outcome that must not be repeated here (None: safe to run)."""
    if kind not in probes.FATAL:
        return None
    label = Label.DEVICE_ASSERT if kind == probes.DEVICE_ASSERT else Label.RAISED
    return label, f"{kind} in a child process: {message}"


def quantity_budget(case: Case, fmt: FloatFormat, device: str, budget: float | None = None) -> float:
    """The ULP budget of a quantity returned in ``fmt``: ``budget`` when given, else the registry's for that
    format, which is not the inputs' dtype under autocast (a float32 loss from float16 inputs is judged as the
    float32 computation it is, as :func:`suite.judge.residual_budget` and :mod:`suite.promotion` judge it)."""
    return budget if budget is not None else budgets.ulp_budget(case.name, fmt.name, device)


def run_forward(case: Case, used: Mapping[str, FloatArray], fmt: FloatFormat, device: str, mode: str,
                reduction: str, differentiable: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """torch's result of one reduction on carrier inputs in ``mode``, and the input tensors (those named in
    ``differentiable`` require gradients); raises what torch raises.  Warnings are silenced: the value is the
    observation."""
    tensors = modes.lay_out({k: to_tensor(v, fmt, device, k in differentiable) for k, v in used.items()}, mode)
    forward = modes.forward_for(case, reduction, mode, device)
    with warnings.catch_warnings(), modes.context(mode, device, fmt.torch_dtype):
        warnings.simplefilter("ignore")
        return forward(tensors), tensors


def backward_carriers(out: torch.Tensor, tensors: Mapping[str, torch.Tensor], names: Sequence[str], mode: str,
                      device: str, fmt: FloatFormat, upstream: torch.Tensor | None = None) -> dict[str, FloatArray]:
    """torch's gradients (carriers) of ``out`` for the inputs ``names`` that got one, with the upstream gradient
    ``upstream`` (default ones), the backward run in the forward's context; raises what torch raises."""
    with modes.context(mode, device, fmt.torch_dtype):  # the backward only: the measures need IEEE arithmetic
        out.backward(torch.ones_like(out) if upstream is None else upstream)
    return {n: to_carrier(g) for n in names if (g := tensors[n].grad) is not None}


def _run_reduction(case: Case, used: dict[str, FloatArray], fmt: FloatFormat, device: str, mode: str,
                   reduction: str, gradients: bool, truth_set: truth.TruthSet, shape: tuple[int, ...],
                   budget: float | None, screened: probes.Outcome | None = None) -> list[QuantityResult]:
    """Every quantity of one reduction.  ``screened``: the outcome of the same run in a child process, when
    the batch needed screening; a device-side assert (or crash) there is recorded, never repeated here."""
    differentiable = [s.name for s in case.inputs if s.differentiable] if gradients else []
    divisor_of = REDUCTION_DIVISORS[reduction]
    divisor = None if divisor_of is None else divisor_of(shape)
    loss_truth, loss_condition = _reduced_truth(truth_set, divisor)

    def failed(label: Label, message: str, names: list[str], loss: bool = True) -> list[QuantityResult]:
        own = quantity_budget(case, fmt, device, budget)
        out = [_failed(LOSS, reduction, loss_truth, fmt, own, message, label)] if loss else []
        return out + [_failed(grad_name(n), reduction, truth_set.grads[n].scaled(divisor or 1), fmt, own, message,
                              label) for n in names]

    fatal = None if screened is None else _screen_failure(screened.kind, screened.message)
    if fatal is not None:
        return failed(*fatal, differentiable)
    try:
        out, tensors = run_forward(case, used, fmt, device, mode, reduction, differentiable)
    except Exception as exc:  # torch's error is the observation
        return failed(Label.RAISED, f"{type(exc).__name__}: {exc}".splitlines()[0], differentiable)
    out_fmt = dtypes.get(out.dtype)
    got = to_carrier(out).reshape(loss_truth.shape)
    results = [QuantityResult(LOSS, reduction, got, loss_truth,
                              measure(got, loss_truth, out_fmt, quantity_budget(case, out_fmt, device, budget),
                                      loss_condition), out_fmt)]
    kind, _, message = ((screened.backward or "") if screened is not None else "").partition(": ")
    backward_fatal = _screen_failure(kind, message)  # the child reports its backward as "kind: message"
    if differentiable and backward_fatal is not None:
        results += failed(*backward_fatal, differentiable, loss=False)
    elif differentiable:
        results += _gradients(out, tensors, differentiable, truth_set, divisor or 1, reduction, case, fmt,
                              device, mode, budget)
    return results


def _gradients(out: torch.Tensor, tensors: dict[str, torch.Tensor], names: list[str], truth_set: truth.TruthSet,
               divisor: int, reduction: str, case: Case, fmt: FloatFormat, device: str, mode: str,
               budget: float | None) -> list[QuantityResult]:
    results = []
    error = None
    try:
        with modes.context(mode, device, fmt.torch_dtype):  # the backward only: the measures need IEEE arithmetic
            out.backward(torch.ones_like(out))
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    for name in names:
        grad_truth = truth_set.grads[name].scaled(divisor)
        grad = tensors[name].grad
        if error is not None or grad is None:
            results.append(_failed(grad_name(name), reduction, grad_truth, fmt,
                                   quantity_budget(case, fmt, device, budget),
                                   error or "torch computed no gradient for this input"))
            continue
        g_fmt = dtypes.get(grad.dtype)
        got = to_carrier(grad)
        condition = truth_set.grad_condition.get(name)
        results.append(QuantityResult(grad_name(name), reduction, got, grad_truth,
                                      measure(got, grad_truth, g_fmt, quantity_budget(case, g_fmt, device, budget),
                                              condition), g_fmt))
    return results


def _failed(quantity: str, reduction: str, t: truth.Truth, fmt: FloatFormat, budget: float,
            message: str, label: Label = Label.RAISED) -> QuantityResult:
    """A quantity torch did not compute: every element gets ``label`` (RAISED or DEVICE_ASSERT)."""
    got = np.full(t.shape, np.nan)
    return QuantityResult(quantity, reduction, got, t, measure(got, t, fmt, budget, failure=label), fmt, message)


def _reduced_truth(truth_set: truth.TruthSet, divisor: int | None) -> tuple[truth.Truth, FloatArray]:
    """Truth and condition number of the loss under a reduction: the elements themselves, or their exact
    sum divided by ``divisor``.  The condition of a sum is ``sum(kappa_i |L_i|) / |sum L_i|`` (an upper
    bound for row cases, whose elements share inputs)."""
    values = truth_set.values
    if divisor is None:
        return values, truth_set.condition
    total = truth.exact_sum(values, divisor)
    return total, np.asarray(truth.sum_condition(truth_set.condition, values, total, divisor))
