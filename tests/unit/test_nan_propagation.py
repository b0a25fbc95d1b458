"""NaN propagation: which elements depend on a NaN input, and each kind of mishandling is named, on cases
built here whose behaviour is known by construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from suite import cases, nan_propagation
from tests.accuracy.mutants import reduce

NAN = math.nan


def test_a_nan_weight_of_a_class_reaches_its_column() -> None:
    case = cases.get("bce_with_logits_weight")
    used = {"input": np.zeros((3, 2)), "target": np.zeros((3, 2)), "weight": np.array([1.0, NAN])}
    np.testing.assert_array_equal(nan_propagation.dependent(case, used), [[False, True]] * 3)


def test_a_nan_logit_reaches_its_softmax_row_and_a_nan_target_its_row_of_gradients() -> None:
    case = cases.get("log_softmax_kl_div")
    x = np.zeros((2, 3))
    x[0, 1] = NAN
    t = np.full((2, 3), 0.25)
    t[1, 2] = NAN
    used = {"input": x, "target": t}
    np.testing.assert_array_equal(nan_propagation.dependent(case, used),
                                  [[True, True, True], [False, False, True]])
    np.testing.assert_array_equal(nan_propagation.dependent(case, used, gradient=True), [[True] * 3, [True] * 3])


@pytest.fixture
def register() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        cases.unregister(name)


def _variant(register: list[str], name: str,
             forward: Callable[[Mapping[str, torch.Tensor], str], torch.Tensor]) -> cases.Case:
    case = dataclasses.replace(cases.get("bce_with_logits"), name=f"nan_test_{name}", forward=forward,
                               module_forward=None, known_as="bce_with_logits")
    register.append(case.name)
    return cases.register(case)


CLEAN = {"input": np.array([1.0, -2.0, 3.0, 0.5]), "target": np.array([0.0, 1.0, 0.5, 1.0])}
POISONED = {"input": np.array([1.0, NAN, 3.0, 0.5]), "target": np.array([0.0, 1.0, 0.5, 1.0])}


def test_torch_propagates_nan_through_bce_with_logits() -> None:
    assert nan_propagation.problems(cases.get("bce_with_logits"), CLEAN, POISONED, "float32", "cpu") == []


def test_a_refusal_passes() -> None:
    """BCE checks 0 <= p <= 1, which NaN fails: torch raises, a clear answer."""
    clean = {"input": np.array([0.25, 0.5]), "target": np.array([0.0, 1.0])}
    poisoned = {"input": np.array([NAN, 0.5]), "target": np.array([0.0, 1.0])}
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(torch.tensor([NAN, 0.5]), torch.tensor([0.0, 1.0]))
    assert nan_propagation.problems(cases.get("bce"), clean, poisoned, "float32", "cpu") == []


def _sanitising(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    x = torch.nan_to_num(t["input"], nan=0.0)
    return reduce(F.binary_cross_entropy_with_logits(x, t["target"], reduction="none"), reduction)


def _spreading(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction="none")
    return reduce(loss + 0 * loss.sum(), reduction)  # every element sees the whole batch


def _nan_skipping(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(t["input"], t["target"], reduction="none")
    return loss if reduction == "none" else loss.nansum() if reduction == "sum" else loss.nanmean()


def test_a_swallowed_nan_is_named(register: list[str]) -> None:
    found = nan_propagation.problems(_variant(register, "sanitising", _sanitising), CLEAN, POISONED, "float32",
                                     "cpu")
    assert any(line.startswith("none loss: 1 element(s) that depend on a NaN input are numbers; first at (1,): "
                               f"{float(np.float32(math.log(2)))!r}")  # BCE-with-logits at x = 0, y = 1
               for line in found), found
    assert any(line.startswith("sum loss:") for line in found) and any(line.startswith("mean loss:")
                                                                        for line in found)


def test_a_spread_nan_is_named(register: list[str]) -> None:
    found = nan_propagation.problems(_variant(register, "spreading", _spreading), CLEAN, POISONED, "float32", "cpu")
    assert [line.split(";")[0] for line in found if line.startswith("none loss")] == [
        "none loss: NaN spread to 3 element(s) that depend on no NaN input"]
    assert [line.split(":")[0] for line in found] == ["none loss"], found  # sums of a NaN are NaN: right


def test_a_reduction_that_skips_nan_is_named(register: list[str]) -> None:
    found = nan_propagation.problems(_variant(register, "skipping", _nan_skipping), CLEAN, POISONED, "float32",
                                     "cpu")
    assert [line.split(":")[0] for line in found] == ["mean loss", "sum loss"], found
