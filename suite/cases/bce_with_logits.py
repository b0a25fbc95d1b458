"""``F.binary_cross_entropy_with_logits`` / ``nn.BCEWithLogitsLoss``: loss on logits, optional element
weights and per-class ``pos_weight``.

Exact loss: ``w (pw y softplus(-x) + (1 - y) softplus(x))`` for any logit ``x`` (including +-inf) and
``y`` in [0, 1]; ``softplus(x) = log(1 + e^x) = -log(1 - sigmoid(x))``.
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
    isinf,
    logistic,
    times,
    unit_interval_scale,
)
from suite.truth import Reference

FINITE = sys.float_info.max


@backend_agnostic
def reference(sample: Mapping[str, list[Any]]) -> Reference:
    """Exact BCE-with-logits of one element, its gradients with respect to ``input`` and ``target``, and the
    gradients' condition numbers from the second derivatives."""
    x, y = sample["input"][0], sample["target"][0]
    w = sample["weight"][0] if "weight" in sample else 1
    pw = sample["pos_weight"][0] if "pos_weight" in sample else 1
    s_pos, s_neg, sp_pos, sp_neg = logistic(x)  # sigmoid(x), sigmoid(-x), softplus(x), softplus(-x)
    value = times(w, times(pw * y, sp_neg) + times(1 - y, sp_pos))
    grad_x = times(w, times(1 - y, s_pos) - times(pw * y, s_neg))
    # pw softplus(-x) - softplus(x) is -x at pw = 1 (free of cancellation there); otherwise the direct form,
    # whose cancellation the precision escalation resolves ((pw - 1) softplus(-x) - x would cancel exactly,
    # and identically at every precision, when pw - 1 rounds to -1)
    grad_y = times(w, -x if pw == 1 and not isinf(x) else times(pw, sp_neg) - sp_pos)
    grads = {"input": [grad_x], "target": [grad_y]}
    if not conditions_wanted():
        return Reference([value], grads)
    # d(grad_x)/dx = w (1 - y + pw y) s(x) s(-x); d(grad_x)/dy = d(grad_y)/dx = -w (s(x) + pw s(-x)).
    # The parameters count too: w d/dw of a w-multiple is itself; pw d/dpw of the loss is w pw y softplus(-x),
    # of grad_x is -w pw y s(-x), of grad_y is w pw softplus(-x).
    dgx_dx = times(w, times(1 - y + pw * y, s_pos * s_neg))
    cross = -times(w, s_pos + times(pw, s_neg))
    # y is perturbed relative to the nearer of 0 and 1 (exact_math.unit_interval_scale)
    sy = unit_interval_scale(y)
    value_terms = [times(x, grad_x), times(sy, grad_y)]
    gx_terms = [times(x, dgx_dx), times(sy, cross)]
    gy_terms = [times(x, cross)]
    if "weight" in sample:
        value_terms.append(value)
        gx_terms.append(grad_x)
        gy_terms.append(grad_y)
    if "pos_weight" in sample:
        value_terms.append(times(w, times(pw * y, sp_neg)))
        gx_terms.append(-times(w, times(pw * y, s_neg)))
        gy_terms.append(times(w, times(pw, sp_neg)))
    return Reference([value], grads, condition=[condition_number(value_terms, value)], grad_condition={
        "input": [condition_number(gx_terms, grad_x)], "target": [condition_number(gy_terms, grad_y)]})


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
