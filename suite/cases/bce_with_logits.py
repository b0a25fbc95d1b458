"""``F.binary_cross_entropy_with_logits`` / ``nn.BCEWithLogitsLoss``: loss on logits, optional element
weights and per-class ``pos_weight``.

Exact loss: ``w (pw y softplus(-x) + (1 - y) softplus(x))`` for any logit ``x`` (including +-inf) and
``y`` in [0, 1]; ``softplus(x) = log(1 + e^x) = -log(1 - sigmoid(x))``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import mpmath
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from suite.cases.base import Case, InputSpec
from suite.exact_math import ONE, condition_number, sigmoid, softplus, times
from suite.truth import Reference

FINITE = sys.float_info.max


def reference(sample: Mapping[str, list[Any]]) -> Reference:
    """Exact BCE-with-logits of one element, its gradients with respect to ``input`` and ``target``, and the
    gradients' condition numbers from the second derivatives."""
    x, y = sample["input"][0], sample["target"][0]
    w = sample["weight"][0] if "weight" in sample else ONE
    pw = sample["pos_weight"][0] if "pos_weight" in sample else ONE
    s_pos, s_neg = sigmoid(x), sigmoid(-x)
    value = times(w, times(pw * y, softplus(-x)) + times(ONE - y, softplus(x)))
    grad_x = times(w, times(ONE - y, s_pos) - times(pw * y, s_neg))
    if mpmath.isinf(x):
        grad_y = times(w, times(pw, softplus(-x)) - softplus(x))
    else:  # pw softplus(-x) - softplus(x) = (pw - 1) softplus(-x) - x, free of cancellation at pw = 1
        grad_y = times(w, times(pw - ONE, softplus(-x)) - x)
    # d(grad_x)/dx = w (1 - y + pw y) s(x) s(-x); d(grad_x)/dy = d(grad_y)/dx = -w (s(x) + pw s(-x))
    dgx_dx = times(w, times(ONE - y + pw * y, s_pos * s_neg))
    cross = -times(w, s_pos + times(pw, s_neg))
    return Reference([value], {"input": [grad_x], "target": [grad_y]}, grad_condition={
        "input": [condition_number([times(x, dgx_dx), times(y, cross)], grad_x)],
        "target": [condition_number([times(x, cross)], grad_y)]})


def forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(t["input"], t["target"], weight=t.get("weight"),
                                              pos_weight=t.get("pos_weight"), reduction=reduction)


def module_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    loss = nn.BCEWithLogitsLoss(weight=t.get("weight"), pos_weight=t.get("pos_weight"), reduction=reduction)
    return loss(t["input"], t["target"])


LOGIT = InputSpec("input", "logit")
TARGET = InputSpec("target", "target", 0.0, 1.0)
WEIGHT = InputSpec("weight", "weight", -FINITE, FINITE, differentiable=False, role="parameter")
POS_WEIGHT = InputSpec("pos_weight", "pos_weight", -FINITE, FINITE, differentiable=False, role="parameter")

CASES = (
    Case("bce_with_logits", "bce_with_logits", "F.binary_cross_entropy_with_logits(x, y)", (LOGIT, TARGET),
         forward, reference, module_forward=module_forward),
    Case("bce_with_logits_weight", "bce_with_logits", "F.binary_cross_entropy_with_logits(x, y, weight=w)",
         (LOGIT, TARGET, WEIGHT), forward, reference, module_forward=module_forward),
    Case("bce_with_logits_pos_weight", "bce_with_logits",
         "F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)", (LOGIT, TARGET, POS_WEIGHT),
         forward, reference, module_forward=module_forward),
)
