"""The compositions people write instead of the fused losses: ``sigmoid`` then BCE (fused form:
BCE-with-logits) and ``log_softmax`` then ``kl_div`` over rows (the distillation loss).

Their truth is the exact composite mathematics: ``BCE(sigmoid(x), y)`` with the exact sigmoid equals the
exact BCE-with-logits, so the same reference serves both and the comparison is fair.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from suite.cases import bce_with_logits
from suite.cases.base import Case, InputSpec
from suite.exact_math import ONE, condition_number, exp, log, logsumexp, times
from suite.truth import Reference

FINITE = sys.float_info.max


def sigmoid_bce_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy(torch.sigmoid(t["input"]), t["target"], reduction=reduction)


def sigmoid_bce_module(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return nn.BCELoss(reduction=reduction)(nn.Sigmoid()(t["input"]), t["target"])


def log_softmax_kl_reference(sample: Mapping[str, list[Any]]) -> Reference | None:
    """Exact ``t_i (log t_i - log_softmax(x)_i)`` for each element of a row, the gradients of the row's sum,
    and each element's condition number with respect to the whole row."""
    xs, ts = sample["input"], sample["target"]
    lse = logsumexp(xs)
    if lse == -ONE * float("inf"):
        return None  # softmax of an all -inf row is undefined
    ls = [x - lse for x in xs]
    soft = [exp(v) for v in ls]
    total_t = sum(ts)
    values = [times(t, log(t) - v) for t, v in zip(ts, ls, strict=True)]
    grad_x = [s * total_t - t for s, t in zip(soft, ts, strict=True)]
    grad_t = [log(t) - v + ONE for t, v in zip(ts, ls, strict=True)]
    condition = []
    for i, (t, value) in enumerate(zip(ts, values, strict=True)):
        terms = [x * t * (s - (ONE if j == i else 0)) for j, (x, s) in enumerate(zip(xs, soft, strict=True))]
        terms.append(times(t, grad_t[i]))
        condition.append(condition_number(terms, value))
    return Reference(values, {"input": grad_x, "target": grad_t}, condition)


def log_softmax_kl_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return F.kl_div(F.log_softmax(t["input"], dim=-1), t["target"], reduction=reduction)


def log_softmax_kl_module(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return nn.KLDivLoss(reduction=reduction)(nn.LogSoftmax(dim=-1)(t["input"]), t["target"])


CASES = (
    Case("sigmoid_bce", "composition", "F.binary_cross_entropy(torch.sigmoid(x), y)",
         (InputSpec("input", "logit"), InputSpec("target", "target", 0.0, 1.0)), sigmoid_bce_forward,
         bce_with_logits.reference, module_forward=sigmoid_bce_module, fused="bce_with_logits"),
    Case("log_softmax_kl_div", "composition", "F.kl_div(F.log_softmax(x, dim=-1), t)",
         (InputSpec("input", "logit", -float("inf"), FINITE), InputSpec("target", "target", 0.0, FINITE)),
         log_softmax_kl_forward, log_softmax_kl_reference, reductions=("none", "mean", "sum", "batchmean"),
         module_forward=log_softmax_kl_module, rows=True),
)
