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
from suite.exact_math import (
    backend_agnostic,
    condition_number,
    conditions_wanted,
    exp,
    fsum,
    log,
    log_softmax,
    times,
)
from suite.truth import Reference

FINITE = sys.float_info.max


def sigmoid_bce_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy(torch.sigmoid(t["input"]), t["target"], reduction=reduction)


def sigmoid_bce_module(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    return nn.BCELoss(reduction=reduction)(nn.Sigmoid()(t["input"]), t["target"])


@backend_agnostic
def log_softmax_kl_reference(sample: Mapping[str, list[Any]]) -> Reference | None:
    """Exact ``t_i (log t_i - log_softmax(x)_i)`` for each element of a row, the gradients of the row's sum,
    and the condition numbers of each element and each gradient element with respect to the whole row."""
    xs, ts = sample["input"], sample["target"]
    ls = log_softmax(xs)
    if ls is None:
        return None  # softmax of an all -inf row is undefined
    soft = [exp(v) for v in ls]
    total_t = fsum(ts)
    values = [times(t, log(t) - v) for t, v in zip(ts, ls, strict=True)]
    grad_x = [s * total_t - t for s, t in zip(soft, ts, strict=True)]
    grad_t = [log(t) - v + 1 for t, v in zip(ts, ls, strict=True)]
    grads = {"input": grad_x, "target": grad_t}
    if not conditions_wanted():
        return Reference(values, grads)
    width = range(len(xs))

    def delta(i: int, j: int) -> int:
        return 1 if i == j else 0

    condition, cond_gx, cond_gt = [], [], []
    for i in width:
        # dL_i/dx_j = t_i (s_j - delta_ij), dL_i/dt_i = grad_t_i.  Products with x_j are written
        # times(coefficient, x_j): a logit of -inf has s_j = 0 and contributes nothing (the limit).
        terms = [times(ts[i] * (soft[j] - delta(i, j)), xs[j]) for j in width]
        condition.append(condition_number([*terms, times(ts[i], grad_t[i])], values[i]))
        # d(grad_x_i)/dx_j = T s_i (delta_ij - s_j), d(grad_x_i)/dt_j = s_i - delta_ij
        terms = [times(total_t * soft[i] * (delta(i, j) - soft[j]), xs[j]) for j in width]
        terms += [ts[j] * (soft[i] - delta(i, j)) for j in width]
        cond_gx.append(condition_number(terms, grad_x[i]))
        # d(grad_t_i)/dt_i = 1/t_i, d(grad_t_i)/dx_j = s_j - delta_ij
        terms = [times(soft[j] - delta(i, j), xs[j]) for j in width]
        cond_gt.append(condition_number([*terms, 1 if ts[i] != 0 else None], grad_t[i]))
    return Reference(values, grads, condition, {"input": cond_gx, "target": cond_gt})


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
