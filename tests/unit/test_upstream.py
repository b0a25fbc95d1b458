"""suite.upstream: the upstream gradients it uses, the elements it judges, torch passing and broken backwards
failing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from suite import cases, dtypes, upstream
from tests.accuracy.mutants import MUTANTS


def test_scales_cycle_over_elements_or_rows() -> None:
    assert upstream.scales_for((2, 2), rows=False).tolist() == [[4.0, 2.0], [8.0, 4.0]]
    assert upstream.scales_for((3, 2), rows=True).tolist() == [[4.0, 4.0], [2.0, 2.0], [8.0, 8.0]]


def test_ordinary_inputs_leave_out_subnormals_and_values_near_overflow() -> None:
    fmt = dtypes.FLOAT16
    used = {"input": np.array([0.5, 6e-8, 0.0, 0.25]), "target": np.array([1.0, 1.0, 0.0, 1.0]),
            "weight": np.array([1.0, 1.0, 1.0, 65504.0])}
    assert upstream.ordinary(cases.get("bce_weight"), used, fmt, (4,)).tolist() == [True, False, True, False]
    rows = {"input": np.array([[0.5, 1e-40], [0.5, 1.0]]), "target": np.array([[0.5, 0.5], [0.5, 0.5]])}
    assert upstream.ordinary(cases.get("log_softmax_kl_div"), rows, dtypes.FLOAT32, (2, 2)).tolist() == [
        [False, False], [True, True]]


X = np.array([[-3.0, 0.5, 2.0], [0.25, -1.0, 7.0]])
Y = np.array([[0.0, 1.0, 0.5], [0.25, 0.5, 0.25]])
ORDINARY = {"bce_with_logits": {"input": X, "target": Y},
            "bce_weight": {"input": 1 / (1 + np.exp(-X)), "target": Y, "weight": np.array([2.0, 0.5, 1.0])},
            "kl_div": {"input": -np.abs(X), "target": Y},
            "log_softmax_kl_div": {"input": X, "target": Y}}


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_torch_gradients_scale_with_the_upstream_gradient(name: str) -> None:
    assert upstream.problems(cases.get(name), ORDINARY[name], "float32", "cpu") == []


@pytest.fixture(params=["bce_with_logits_ignores_upstream", "kl_div_first_upstream_for_all"])
def broken(request: pytest.FixtureRequest) -> Iterator[cases.Case]:
    case = cases.register(MUTANTS[request.param].case())
    try:
        yield case
    finally:
        cases.unregister(case.name)


def test_a_backward_that_misuses_the_upstream_gradient_is_found(broken: cases.Case) -> None:
    inputs = {"input": np.array([-3.0, -0.5, -2.0, -0.25]), "target": np.array([0.0, 1.0, 0.5, 0.25])}
    found = upstream.problems(broken, inputs, "float32", "cpu", reductions=("none",))
    assert any(p.kind == upstream.FACTOR and p.text.startswith("none grad_input: ") for p in found)


def test_an_overflow_with_the_larger_upstream_is_its_own_kind() -> None:
    """torch's sigmoid-then-BCE in float16 on CPU (a registered behaviour): -1 for ones, -inf for 2."""
    known = upstream.known_overflow("sigmoid_bce", "float16", "cpu", "autocast", "2.13.0")
    assert known is not None and upstream.known_overflow("sigmoid_bce", "bfloat16", "cpu", "autocast",
                                                         "2.13.0") is None
    inputs = {k: np.array(v) for k, v in known.witness.items()}
    found = upstream.problems(cases.get("sigmoid_bce"), inputs, "float16", "cpu", "autocast", ("none",))
    assert [p.kind for p in found] == [upstream.OVERFLOW] and "gradient -inf" in found[0].text

