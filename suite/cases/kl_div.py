"""``F.kl_div`` / ``nn.KLDivLoss`` (knowledge distillation): pointwise ``t (log t - x)`` of a
log-probability ``x`` and a target ``t`` given as a probability or (``log_target=True``) as its log.

Exact loss with ``0 * log 0 = 0``: a zero target contributes 0 whatever ``x`` is, so
``kl_div(input=-inf, target=0) = 0``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from suite.cases.base import Case, InputSpec
from suite.exact_math import backend_agnostic, condition_number, conditions_wanted, exp, log, times
from suite.truth import Reference

FINITE = sys.float_info.max
REDUCTIONS = ("none", "mean", "sum", "batchmean")


@backend_agnostic
def reference(sample: Mapping[str, list[Any]]) -> Reference:
    """Exact pointwise KL term with a probability target, its gradients and their condition numbers."""
    x, t = sample["input"][0], sample["target"][0]
    grad_t = log(t) - x + 1
    values, grads = [times(t, log(t) - x)], {"input": [-t], "target": [grad_t]}
    if not conditions_wanted():
        return Reference(values, grads)
    # grad_x = -t has condition 1; d(grad_t)/dt = 1/t, d(grad_t)/dx = -1
    return Reference(values, grads, grad_condition={
        "input": [condition_number([-t], -t)],
        "target": [condition_number([1 if t != 0 else None, -x], grad_t)]})


@backend_agnostic
def reference_log_target(sample: Mapping[str, list[Any]]) -> Reference:
    """Exact pointwise KL term with a log-probability target ``lt`` (``t = e^lt``), its gradients and their
    condition numbers."""
    x, lt = sample["input"][0], sample["target"][0]
    t = exp(lt)
    grad_lt = times(t, lt - x + 1)
    values, grads = [times(t, lt - x)], {"input": [-t], "target": [grad_lt]}
    if not conditions_wanted():
        return Reference(values, grads)
    # d(-e^lt)/dlt = -e^lt; d(grad_lt)/dlt = e^lt (lt - x + 2), d(grad_lt)/dx = -e^lt
    return Reference(values, grads, grad_condition={
        "input": [condition_number([times(lt, -t)], -t)],
        "target": [condition_number([times(lt, times(t, lt - x + 2)), times(x, -t)], grad_lt)]})


def forward(t: Mapping[str, torch.Tensor], reduction: str, log_target: bool = False) -> torch.Tensor:
    return F.kl_div(t["input"], t["target"], reduction=reduction, log_target=log_target)


def module_forward(t: Mapping[str, torch.Tensor], reduction: str, log_target: bool = False) -> torch.Tensor:
    return nn.KLDivLoss(reduction=reduction, log_target=log_target)(t["input"], t["target"])


LOG_PROBABILITY = InputSpec("input", "log_probability")
TARGET = InputSpec("target", "target", 0.0, FINITE)
LOG_TARGET = InputSpec("target", "log_target", -float("inf"), FINITE)

CASES = (
    Case("kl_div", "kl_div", "F.kl_div(x, t)", (LOG_PROBABILITY, TARGET), forward, reference,
         reductions=REDUCTIONS, module_forward=module_forward),
    Case("kl_div_log_target", "kl_div", "F.kl_div(x, lt, log_target=True)", (LOG_PROBABILITY, LOG_TARGET),
         partial(forward, log_target=True), reference_log_target, reductions=REDUCTIONS,
         module_forward=partial(module_forward, log_target=True), params={"log_target": True}),
)
