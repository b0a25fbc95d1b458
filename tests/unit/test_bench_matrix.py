"""The benchmark matrix: stable ids, the required coverage, and workloads built from the real cases."""

from __future__ import annotations

import pytest
import torch

from suite import cases
from suite.bench import matrix, workload
from suite.bench.matrix import Point
from suite.errors import UsageError


def test_ids_are_stable_and_unique() -> None:
    point = Point("bce_with_logits_pos_weight", "mean", "float32", "cpu", "compile", "fwdbwd", 24)
    assert point.id == "bce_with_logits_pos_weight-mean-float32-cpu-compile-fwdbwd-2p24"
    assert point.shape == (16384, 1024) and point.numel == 1 << 24 and point.backward
    full = matrix.points(full=True)
    assert len({p.id for p in full}) == len(full)


def test_default_matrix_covers_the_issue() -> None:
    cpu = [p for p in matrix.points(full=False) if p.device == "cpu"]
    # 6 losses x 2 reductions x float32 x 2 modes x 2 directions x 2 sizes
    assert len(cpu) == 6 * 2 * 1 * 2 * 2 * 2
    assert {p.case for p in cpu} == {"bce", "bce_with_logits", "bce_with_logits_pos_weight", "kl_div",
                                     "sigmoid_bce", "log_softmax_kl_div"}
    assert {p.log2_numel for p in cpu} == {16, 24}
    assert max(p.log2_numel for p in matrix.points(full=True) if p.device == "cuda") == 28
    assert {p.dtype for p in matrix.points(full=True)} == {"float64", "float32", "float16", "bfloat16"}


def test_full_matrix_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(matrix.FULL_ENV, "1")
    assert matrix.points() == matrix.points(full=True)
    monkeypatch.setenv(matrix.FULL_ENV, "0")
    assert matrix.points() == matrix.points(full=False)


def test_points_reject_what_a_case_does_not_have() -> None:
    with pytest.raises(ValueError):
        Point("bce", "batchmean", "float32", "cpu", "eager", "fwd", 16)
    with pytest.raises(KeyError):
        Point("no_such_loss", "mean", "float32", "cpu", "eager", "fwd", 16)


def test_inputs_are_realistic() -> None:
    gen_shape = (64, matrix.CLASSES)
    bce = workload.make_inputs(cases.get("bce_with_logits_pos_weight"), gen_shape, torch.float32, "cpu")
    assert abs(float(bce["input"].std()) - workload.LOGIT_SCALE) < 0.1
    assert float(bce["target"].min()) >= 0 and float(bce["target"].max()) < 1
    assert bce["pos_weight"].shape == (matrix.CLASSES,) and float(bce["pos_weight"].min()) >= 0.5
    p = workload.make_inputs(cases.get("bce"), gen_shape, torch.bfloat16, "cpu")["input"]
    assert float(p.min()) > 0 and float(p.max()) < 1  # strictly inside (0, 1) even in bfloat16
    kl = workload.make_inputs(cases.get("kl_div"), gen_shape, torch.float32, "cpu")
    torch.testing.assert_close(kl["target"].sum(-1), torch.ones(64))  # rows are distributions
    torch.testing.assert_close(kl["input"].exp().sum(-1), torch.ones(64))
    assert not any(bool((t == 0).any()) for t in [*bce.values(), p, *kl.values()])  # never zeros


def test_workload_traffic_and_injection() -> None:
    point = Point("bce_with_logits", "none", "float32", "cpu", "eager", "fwdbwd", 16)
    work = workload.build(point, inject=frozenset({"bce_with_logits"}))
    assert work.repeat == 2
    work()
    assert work.tensors["input"].grad is not None and work.tensors["target"].grad is None
    n = 4 << 16  # bytes of one float32 tensor of 2^16 elements
    assert work.traffic().total == (2 * n + n) + (n + 2 * n) + n  # fwd: x, y, loss; bwd: dL, x, y, dx
    assert workload.build(point).repeat == 1


def test_injected_cases_are_checked() -> None:
    assert workload.injected_cases("bce, kl_div") == frozenset({"bce", "kl_div"})
    assert workload.injected_cases("") == frozenset()
    with pytest.raises(UsageError, match="unknown cases no_such_loss"):
        workload.injected_cases("bce,no_such_loss")
    with pytest.raises(UsageError, match="empty name"):
        workload.injected_cases("bce,")


def test_plan_loops_short_calls_and_bounds_rounds() -> None:
    assert workload.plan(0.01) == (40, 1)     # 0.4 s in all
    assert workload.plan(1e-4) == (100, 20)   # 20 calls per 2 ms round, at most 100 rounds
    assert workload.plan(1.0) == (5, 1)       # at least 5 rounds
    assert workload.plan(1e-9) == (100, 2000000)
