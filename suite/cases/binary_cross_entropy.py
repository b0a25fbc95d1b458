"""``F.binary_cross_entropy`` / ``nn.BCELoss``: loss on probabilities, optional element weights.

Exact loss: ``-w (y log p + (1 - y) log(1 - p))`` for ``p, y`` in [0, 1], with ``0 * log 0 = 0`` and
``BCE(p=0, y=1) = +inf`` (torch clamps each log at -100; the truth does not).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from suite.cases.base import Case, InputSpec
from suite.exact_math import (
    backend_agnostic,
    condition_number,
    conditions_wanted,
    log,
    log1m,
    reciprocal,
    times,
    unit_interval_scale,
)
from suite.truth import Reference

FINITE = sys.float_info.max


@backend_agnostic
def reference(sample: Mapping[str, list[Any]]) -> Reference:
    """Exact BCE of one element, its gradients with respect to ``input`` (p) and ``target`` (y), and the
    gradients' condition numbers from the second derivatives."""
    p, y = sample["input"][0], sample["target"][0]
    w = sample["weight"][0] if "weight" in sample else 1
    inv_p, inv_q = reciprocal(p), reciprocal(1 - p)
    value = times(w, times(y, -log(p)) + times(1 - y, -log1m(p)))
    grad_p = times(w, times(1 - y, inv_q) - times(y, inv_p))
    grad_y = times(w, log1m(p) - log(p))
    grads = {"input": [grad_p], "target": [grad_y]}
    if not conditions_wanted():
        return Reference([value], grads)
    # d(grad_p)/dp = w ((1-y)/(1-p)^2 + y/p^2), d(grad_p)/dy = -w (1/(1-p) + 1/p), d(grad_y)/dp = the same
    # A weight contributes w d/dw of a w-multiple: the quantity itself.
    dgp_dp = times(w, times(1 - y, inv_q * inv_q) + times(y, inv_p * inv_p))
    cross = -times(w, inv_q + inv_p)
    # p and y are perturbed relative to the nearer of 0 and 1 (exact_math.unit_interval_scale)
    weighted, sp, sy = "weight" in sample, unit_interval_scale(p), unit_interval_scale(y)
    value_terms = [times(sp, grad_p), times(sy, grad_y), *([value] if weighted else [])]
    gp_terms = [times(sp, dgp_dp), times(sy, cross), *([grad_p] if weighted else [])]
    gy_terms = [times(sp, cross), *([grad_y] if weighted else [])]
    return Reference([value], grads, condition=[condition_number(value_terms, value)], grad_condition={
        "input": [condition_number(gp_terms, grad_p)], "target": [condition_number(gy_terms, grad_y)]})


def forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy(t["input"], t["target"], weight=t.get("weight"), reduction=reduction)


def module_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return nn.BCELoss(weight=t.get("weight"), reduction=reduction)(t["input"], t["target"])


PROBABILITY = InputSpec("input", "probability", 0.0, 1.0)
TARGET = InputSpec("target", "target", 0.0, 1.0)
WEIGHT = InputSpec("weight", "weight", -FINITE, FINITE, differentiable=False, role="parameter")

CASES = (
    Case("bce", "bce", "F.binary_cross_entropy(p, y)", (PROBABILITY, TARGET), forward, reference,
         module_forward=module_forward),
    Case("bce_weight", "bce", "F.binary_cross_entropy(p, y, weight=w)", (PROBABILITY, TARGET, WEIGHT),
         forward, reference, module_forward=module_forward),
)
