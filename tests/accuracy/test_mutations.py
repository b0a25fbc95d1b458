"""Mutation check: deliberately broken loss implementations, registered as user cases with the exact
references of the real losses, must each be caught by the same property test that judges torch, with a
shrunk counter-example and a reproducer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite import cases
from suite.inputs import strategies
from tests.accuracy.harness import check, evaluate

Tensors = Mapping[str, torch.Tensor]


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def bce_clamp_27(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE whose logs are clamped at -27 instead of -100."""
    p, y = t["input"], t["target"]
    loss = -(y * torch.log(p).clamp(min=-27) + (1 - y) * torch.log1p(-p).clamp(min=-27))
    return _reduce(loss, reduction)


def bce_log_one_minus(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE with ``log(1 - p)`` instead of ``log1p(-p)``."""
    p, y = t["input"], t["target"]
    loss = -(y * torch.log(p).clamp(min=-100) + (1 - y) * torch.log(1 - p).clamp(min=-100))
    return _reduce(loss, reduction)


def bce_with_logits_in_half(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits computed internally in float16, returned in the input dtype."""
    x, y = t["input"], t["target"]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x.half(), y.half(), reduction="none")
    return _reduce(loss.to(x.dtype), reduction)


def kl_div_without_zero_rule(t: Tensors, reduction: str) -> torch.Tensor:
    """Pointwise KL ``t (log t - x)`` without the ``0 log 0 = 0`` rule."""
    x, target = t["input"], t["target"]
    return _reduce(target * (torch.log(target) - x), reduction)


def bce_with_logits_overflowing_softplus(t: Tensors, reduction: str) -> torch.Tensor:
    """BCE-with-logits with ``softplus(x) = log(1 + exp(x))``, which overflows above ~88 in float32."""
    x, y = t["input"], t["target"]
    loss = y * torch.log1p(torch.exp(-x)) + (1 - y) * torch.log(1 + torch.exp(x))
    return _reduce(loss, reduction)


MUTANTS: dict[str, tuple[str, Callable[[Tensors, str], torch.Tensor], str]] = {
    "bce_clamp_27": ("bce", bce_clamp_27, "float32"),
    "bce_log_one_minus": ("bce", bce_log_one_minus, "float32"),
    "bce_with_logits_in_half": ("bce_with_logits", bce_with_logits_in_half, "float32"),
    "kl_div_without_zero_rule": ("kl_div", kl_div_without_zero_rule, "float32"),
    "bce_with_logits_overflowing_softplus": ("bce_with_logits", bce_with_logits_overflowing_softplus, "float32"),
}


@pytest.fixture
def mutant(request: pytest.FixtureRequest) -> Iterator[tuple[cases.Case, str]]:
    name = request.param
    base, forward, dtype = MUTANTS[name]
    case = replace(cases.get(base), name=f"mutant_{name}", description=forward.__doc__ or name, forward=forward,
                   module_forward=None, reductions=("none", "mean", "sum"), known_as=base)
    cases.register(case)
    try:
        yield case, dtype
    finally:
        cases.unregister(case.name)


@pytest.mark.parametrize("mutant", sorted(MUTANTS), indirect=True)
def test_broken_implementation_is_caught(mutant: tuple[cases.Case, str]) -> None:
    case, dtype = mutant

    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def property_holds(data: st.DataObject) -> None:
        inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
        check(evaluate(case, inputs, dtype, "cpu", ("none",)), ("none",))

    with pytest.raises(AssertionError) as caught:
        property_holds()
    message = str(caught.value)
    assert case.name in message and "Reproducer" in message
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    # Hypothesis shrinks and reports the minimal example ("Falsifying example" before 6.16x, "Failing test
    # case" after), with the drawn batch
    assert ("Falsifying example" in notes or "Failing test case" in notes) and "Draw 1 (inputs)" in notes, notes
