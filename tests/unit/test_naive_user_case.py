"""A deliberately naive BCE-with-logits registered as a user case is caught, and ill-conditioned kl_div
points are told apart from algorithmic failures."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import torch

from suite import budgets, cases, run
from suite.cases import Case, InputSpec
from suite.cases.bce_with_logits import reference as bce_with_logits_reference
from suite.metrics import Label
from tests.conftest import DEVICES

FAILURES = frozenset(Label[name.upper()] for name in budgets.never_acceptable())


def naive_forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    """-(y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))), in the tensors' dtype."""
    x, y = t["input"], t["target"]
    s = torch.sigmoid(x)
    loss = -(y * torch.log(s) + (1 - y) * torch.log(1 - s))
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


NAIVE = Case("test_naive_bce_with_logits", "user", "naive -(y log s + (1-y) log(1-s))",
             (InputSpec("input", "logit"), InputSpec("target", "target", 0.0, 1.0)), naive_forward,
             bce_with_logits_reference, module_forward=naive_forward)


@pytest.fixture(scope="module")
def naive() -> Iterator[Case]:
    cases.register(NAIVE, replace=True)
    yield cases.get(NAIVE.name)
    cases.unregister(NAIVE.name)


def _labels(case: Case, x: np.ndarray, y: float, device: str = "cpu") -> list[Label]:
    result = run.evaluate(case, {"input": x, "target": np.full_like(x, y)}, torch.float32, device,
                          reductions=("none",), gradients=False)
    return [Label(int(v)) for v in result.get("none").metrics.labels]


#: (y, logits, the only labels allowed): float32 sigmoid rounds to 1 above x = 16.6 (so 1 - s = 0), 1 - s
#: rounds to 1 below -16.6 and sigmoid(x) underflows to 0 below -103.3.
REGIONS = [
    (0.0, [17.0, 30.0, 88.0, 1e4, 3e38], {Label.SPURIOUS_INF}),  # log(1 - s) = log 0
    (1.0, [17.0, 30.0, 87.0, 105.0, 1e4], {Label.NAN}),  # (1 - y) log(1 - s) = 0 * log 0
    (0.0, [-17.5, -30.0, -60.0, -87.0], {Label.FLUSHED}),  # 1 - s rounds to 1 below -17.3: 0 for e^x
    (0.0, [-105.0, -200.0, -1e4], {Label.NAN}),  # y log s = 0 * -inf
    (1.0, [-105.0, -200.0, -1e4], {Label.SPURIOUS_INF}),  # log s = log 0
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("y", "logits", "allowed"), REGIONS, ids=[f"y{r[0]:g}-x{r[1][0]:g}" for r in REGIONS])
def test_naive_case_is_wrong_beyond_saturation(naive: Case, y: float, logits: list[float], allowed: set[Label],
                                               device: str) -> None:
    labels = _labels(naive, np.array(logits), y, device)
    assert set(labels) == allowed
    assert allowed <= FAILURES


@pytest.mark.parametrize("device", DEVICES)
def test_naive_case_fails_everywhere_above_saturation(naive: Case, device: str) -> None:
    """At every float32 logit with 17 <= |x| <= 1e4 one of the two hard targets is a failure."""
    x = np.concatenate([np.geomspace(17.0, 1e4, 60), -np.geomspace(17.0, 1e4, 60)])
    at0, at1 = _labels(naive, x, 0.0, device), _labels(naive, x, 1.0, device)
    assert all(a in FAILURES or b in FAILURES for a, b in zip(at0, at1, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_naive_case_is_fine_for_moderate_logits(naive: Case, device: str) -> None:
    x = np.linspace(-1.0, 1.0, 41)
    for y in (0.0, 0.25, 1.0):
        assert set(_labels(naive, x, y, device)) <= {Label.EXACT, Label.OK}


def _near_log_target(t: np.ndarray, device: str, steps: int = 0) -> run.QuantityResult:
    """kl_div at input = log(t) rounded to float32 (and moved ``steps`` float32 values up): the exact value is
    tiny and ill-conditioned."""
    x32 = torch.log(torch.tensor(t, dtype=torch.float32))
    for _ in range(steps):
        x32 = torch.nextafter(x32, torch.full_like(x32, np.inf))
    x = x32.double().numpy()
    result = run.evaluate(cases.get("kl_div"), {"input": x, "target": t}, torch.float32, device,
                          reductions=("none",), gradients=False)
    return result.get("none")


@pytest.mark.parametrize("device", DEVICES)
def test_kl_div_near_log_target_is_ill_conditioned(device: str) -> None:
    """One float32 step from log(t): torch's t (log t - x) is off by up to 100% of the tiny truth, yet the
    error is inherent (condition ~1e7), not algorithmic."""
    q = _near_log_target(np.array([0.7, 0.3, 0.01, 1e-5, 0.9]), device, steps=1)
    assert q.metrics.ill_conditioned.all()
    assert (q.metrics.condition > 1e6).all()
    assert (q.got != 0).all() and (q.metrics.ulp_error > q.metrics.budget).any()
    assert (q.metrics.algorithmic_ulp <= q.metrics.budget).all()
    assert all(Label(v) not in FAILURES for v in q.metrics.labels)


def test_kl_div_zero_at_ill_conditioned_point_is_not_a_failure() -> None:
    q = _near_log_target(np.array([0.3, 0.01, 1e-5]), "cpu")
    assert (q.got == 0).all() and q.metrics.ill_conditioned.all()
    assert all(Label(v) not in FAILURES for v in q.metrics.labels)
