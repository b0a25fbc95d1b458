"""A plugin module for the report tests: importing it registers a deliberately broken BCE-with-logits,
``log(1 + exp(x)) - y x`` in the input's dtype, judged against the exact BCE-with-logits reference.

It is wrong in known places: ``exp(x)`` overflows to inf above ``log(max of the dtype)`` (88.72 in float32),
so the loss is inf where the truth is finite and its gradient ``exp(x) / (1 + exp(x))`` is inf/inf = NaN;
and for very negative ``x``, ``1 + exp(x)`` rounds to 1, flushing the loss to 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from suite import cases
from suite.cases import Case, InputSpec
from suite.cases.bce_with_logits import reference

NAME = "broken_bce_with_logits"


def forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    x, y = t["input"], t["target"]
    loss = torch.log(1 + torch.exp(x)) - y * x
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


CASE = cases.register(Case(NAME, "user", "log(1 + exp(x)) - y x, a deliberately broken BCE-with-logits",
                           (InputSpec("input", "logit"), InputSpec("target", "target", 0.0, 1.0)), forward,
                           reference, module_forward=forward))
