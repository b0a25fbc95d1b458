"""A reduced loss is judged against the exact reduction of torch's own elements as well as against the truth:
a faithful reduction passes the elements' errors on, a wrong one (a 16-bit accumulator, a wrong divisor) is a
failure of its own that no deviation about the elements may excuse.

kl_div with target 1 makes the elements exactly ``-x``, so every expected value is known by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite import cases, deviations, dtypes, judge, run
from suite.cases import Case
from suite.metrics import Label
from tests.accuracy.mutants import Tensors, reduce, sum_one_by_one


def _sum_one_by_one(t: Tensors, reduction: str) -> torch.Tensor:
    return sum_one_by_one(F.kl_div(t["input"], t["target"], reduction="none"), reduction)


def _sum_in_bfloat16(t: Tensors, reduction: str) -> torch.Tensor:
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    return sum_one_by_one(loss.to(torch.bfloat16), reduction).to(loss.dtype)


def _batchmean_over_numel(t: Tensors, reduction: str) -> torch.Tensor:
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    return reduce(loss, "mean" if reduction == "batchmean" else reduction)


@pytest.fixture
def variant(request: pytest.FixtureRequest) -> Iterator[Case]:
    case = cases.register(replace(cases.get("kl_div"), name=f"test_{request.param.__name__}", known_as="kl_div",
                                  forward=request.param, module_forward=None))
    yield case
    cases.unregister(case.name)


# float16 elements 2048, 1, 1, 1, 1: the exact sum 2052 is representable (ulp 2 above 2048); one at a time,
# 2048 + 1 = 2049 rounds to 2048 (ties to even) every time, so the sum stays 2048, 2 ULPs short.
ELEMENTS = np.array([2048.0, 1.0, 1.0, 1.0, 1.0])


def _evaluate(case: Case, elements: np.ndarray, reduction: str) -> run.CaseResult:
    return run.evaluate(case, {"input": -elements, "target": np.ones_like(elements)}, "float16",
                        reductions=("none", reduction), gradients=False)


def test_torch_sum_is_faithful_to_its_elements() -> None:
    result = _evaluate(cases.get("kl_div"), ELEMENTS, "sum")
    q = result.get("sum")
    assert float(q.got) == 2052.0
    residual = judge.reduction_residual(result, q)
    assert residual is not None and float(residual.ulp_error) == 0.0
    assert judge.reduction_is_faithful(result, q)
    assert judge.reduction_residual(result, result.get("none")) is None  # only reduced losses have one


@pytest.mark.parametrize("variant", [_sum_one_by_one], indirect=True)
def test_a_16_bit_accumulator_is_a_failure_of_the_reduction(variant: Case) -> None:
    result = _evaluate(variant, ELEMENTS, "sum")
    q = result.get("sum")
    assert float(q.got) == 2048.0
    residual = judge.reduction_residual(result, q)
    assert residual is not None and float(residual.ulp_error) == 2.0
    assert Label(int(residual.labels)) is Label.INACCURATE and not judge.reduction_is_faithful(result, q)
    # half-arithmetic-loss (any float16 loss within 8 ULPs, whole domain) would excuse 2 ULPs of an element;
    # it says nothing about the reduction
    verdict = judge.judge(result, q)
    assert bool(verdict.unexplained) and not verdict.known


@pytest.mark.parametrize("variant", [_batchmean_over_numel], indirect=True)
def test_a_wrong_divisor_is_a_failure_of_the_reduction(variant: Case) -> None:
    elements = np.array([[1.0, 2.0], [3.0, 4.0]])  # batchmean: 10 / 2 rows = 5; mean: 10 / 4 = 2.5
    result = _evaluate(variant, elements, "batchmean")
    q = result.get("batchmean")
    assert float(q.got) == 2.5 and float(q.truth.hi) == 5.0
    assert not judge.reduction_is_faithful(result, q) and bool(judge.judge(result, q).unexplained)


@pytest.mark.parametrize("variant", [_sum_one_by_one], indirect=True)
def test_an_overflowing_accumulator_is_explained_only_by_a_deviation_about_reductions(variant: Case) -> None:
    # float16 40000 + 40000 overflows to inf before the division, while the exact mean 40000 is representable
    # (torch's own float16 mean accumulates in float32 and returns 40000): the reduction is wrong by itself,
    # and loss-sum-overflow-before-mean, an entry about reductions only, is what torch is known to do there
    result = _evaluate(variant, np.array([40000.0, 40000.0]), "mean")
    q = result.get("mean")
    assert float(q.got) == np.inf and Label(int(q.metrics.labels)) is Label.SPURIOUS_INF
    assert not judge.reduction_is_faithful(result, q)
    verdict = judge.judge(result, q)
    assert set(verdict.known) == {"loss-sum-overflow-before-mean"} and not bool(verdict.unexplained)
    assert float(_evaluate(cases.get("kl_div"), np.array([40000.0, 40000.0]), "mean").get("mean").got) == 40000.0


def test_a_compiled_sum_off_by_its_accumulation_keeps_the_label_its_elements_explain() -> None:
    # sigmoid_bce at x = +inf: the exact loss is inf, torch's element is BCE's clamp (50 at y = 0.5, explained
    # by sigmoid-bce-saturation), so the sum is "clamped" because of that element.  The compiled CPU sum adds
    # the other 20,000 elements (x = 1) one running accumulator at a time: more than the float32 budget from
    # the exact sum of torch's own elements.  That reduction error is compile-cpu-sum-accumulates-
    # sequentially's (an entry about reductions); the label stays the element's.
    x = np.concatenate([[np.inf], np.ones(20000)])
    result = run.evaluate(cases.get("sigmoid_bce"), {"input": x, "target": np.full_like(x, 0.5)}, "float32",
                          reductions=("none", "sum"), gradients=False, mode="compile")
    q = result.get("sum")
    residual = judge.reduction_residual(result, q)
    assert residual is not None and Label(int(residual.labels)) is Label.INACCURATE
    assert Label(int(q.metrics.labels)) is Label.CLAMPED and not judge.reduction_is_faithful(result, q)
    verdict = judge.judge(result, q)
    assert set(verdict.known) == {"compile-cpu-sum-accumulates-sequentially"} and not bool(verdict.unexplained)
    eager = run.evaluate(cases.get("sigmoid_bce"), {"input": x, "target": np.full_like(x, 0.5)}, "float32",
                         reductions=("none", "sum"), gradients=False)
    assert judge.reduction_is_faithful(eager, eager.get("sum"))  # eager's cascade sum is within budget


def _half_spacings(elements: list[float], divisor: float, exact: float) -> float:
    """sum(ulp(g_i) / 2) / divisor in ULPs of ``exact``, from numpy's float16 spacing (an independent ULP)."""
    spacing = [float(np.spacing(np.float16(abs(g)))) for g in elements]
    return 0.5 * sum(spacing) / divisor / float(np.spacing(np.float16(abs(exact))))


@pytest.mark.parametrize(("elements", "divisor", "exact", "ulps"), [
    ([2048.0, 1.0, 1.0, 1.0, 1.0], 1, 2052.0, (2 + 4 * 2.0**-10) / 2 / 2),  # same sign: about half an ULP
    ([2.0**-20] * 4, 1, 2.0**-18, 2.0),  # subnormal elements: each one's half ULP is absolute, 2^-25
    ([2.0**-20] * 4, 4, 2.0**-20, 0.5),  # their mean
    ([1000.0, -999.0], 1, 1.0, (0.5 + 0.5) / 2 / 2.0**-10),  # cancellation: the elements' ULPs, not the sum's
    ([np.inf, 1.0], 2, np.inf, 0.0),  # an overflowed element: its error is its own, not the reduction's
])
def test_a_fused_reduction_may_differ_by_half_an_ulp_of_each_element(elements: list[float], divisor: float,
                                                                      exact: float, ulps: float) -> None:
    """A compiled kernel reduces each element before rounding it to float16, so its reduction may be off the
    exact reduction of the returned elements by half an ULP of each, in ULPs of the reduction."""
    got = judge.fused_rounding_ulps(np.array(elements), divisor, exact, dtypes.get("float16"))
    assert got == ulps
    if np.isfinite(exact):
        assert got == _half_spacings(elements, divisor, exact)


SEQUENTIAL = deviations.get("compile-cpu-sum-accumulates-sequentially")
FLOAT32_ELEMENTS = st.lists(st.floats(-2.0**100, 2.0**100, width=32), min_size=2, max_size=48)


@pytest.mark.parametrize("variant", [_sum_one_by_one], indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(elements=FLOAT32_ELEMENTS, reduction=st.sampled_from(["sum", "mean"]))
def test_any_order_of_summation_is_within_n_algorithmic_ulps(variant: Case, elements: list[float],
                                                              reduction: str) -> None:
    # Higham's bound |s' - s| <= (N - 1) u sum |x_i| for a sum in any order (here one at a time, in the order
    # Hypothesis draws, cancelling or not) is N - 1 of the residual's inherent ULPs: the per-element bound of
    # an entry about the order of summation holds whatever the order, so it excuses exactly that
    batch = np.array(elements)
    result = run.evaluate(variant, {"input": -batch, "target": np.ones_like(batch)}, "float32",
                          reductions=("none", reduction), gradients=False)
    q = result.get(reduction)
    residual = judge.reduction_residual(result, q)
    assert residual is not None
    assert float(residual.algorithmic_ulp) <= len(elements) - 1 + (0.5 if reduction == "mean" else 0.0)
    assert (judge.reduction_is_faithful(result, q)
            or SEQUENTIAL.explains(residual.labels, residual.algorithmic_ulp, len(elements)).all())


@pytest.mark.parametrize("variant", [_sum_in_bfloat16], indirect=True)
def test_a_sum_beyond_any_order_of_summation_is_not_excused_as_one(variant: Case) -> None:
    # float32 elements 256, 1, ..., 1 (10 ones) added in bfloat16 (8 significant bits): 256 + 1 rounds back to
    # 256 every time, so the sum is 256 for the exact 266, 10 / ulp(266) = 10 * 2^15 float32 ULPs off, where
    # any order of float32 summation stays within N - 1 = 10 inherent ULPs (about 1 each here).  Judged as a
    # compiled CPU sum, the entry about the order of compiled summation does not explain it (a fixed bound of
    # 2^20 ULPs would have).
    batch = np.concatenate([[256.0], np.ones(10)])
    eager = run.evaluate(variant, {"input": -batch, "target": np.ones_like(batch)}, "float32",
                         reductions=("none", "sum"), gradients=False)
    result = replace(eager, mode="compile")
    q = result.get("sum")
    residual = judge.reduction_residual(result, q)
    assert float(q.got) == 256.0 and residual is not None
    assert float(residual.ulp_error) == 10 * 2.0**15 and Label(int(residual.labels)) is Label.INACCURATE
    assert SEQUENTIAL.applies("kl_div", "float32", "cpu", "2.13.0", "compile", "loss", "sum")
    assert SEQUENTIAL.in_region(result.inputs, batch.shape, "float32").all()
    verdict = judge.judge(result, q)
    assert SEQUENTIAL.id not in verdict.known and bool(verdict.unexplained)


def test_a_reduced_loss_inherits_an_entrys_mechanism_from_its_elements() -> None:
    # float16 BCE at p = 1, y = 0 is clamped at 100 (exact inf), so the mean is clamped: bce-log-clamp-100's
    # mechanism gives that element.  Judged as torch 2.1.2's compiled mean, the fast-math entries (label clamped,
    # everywhere, each with a mechanism) apply too, but their mechanisms give no element of this batch (a
    # float16 store beyond the range, a subnormal flushed): they do not explain the mean of the elements
    p = np.array([1.0, 0.5, 0.25])
    result = run.evaluate(cases.get("bce"), {"input": p, "target": np.zeros_like(p)}, "float16",
                          reductions=("none", "mean"), gradients=False, mode="compile")
    q = result.get("mean")
    assert Label(int(q.metrics.labels)) is Label.CLAMPED and judge.reduction_is_faithful(result, q)
    applicable = {d.id for d in deviations.applicable("bce", "float16", "cpu", "2.1.2", "compile", "loss", "mean")}
    fast_math = {"compile-cpu-fast-math-half-conversion-wraps", "compile-cpu-fast-math-flushes-subnormals"}
    assert fast_math <= applicable
    verdict = judge.judge(result, q, torch_version="2.1.2")
    assert "bce-log-clamp-100" in verdict.known and not fast_math & set(verdict.known)


def _nan_at_half_target(t: Tensors, reduction: str) -> torch.Tensor:
    loss = F.kl_div(t["input"], t["target"], reduction="none")
    return reduce(torch.where(t["target"] == 0.5, torch.nan, loss), reduction)


@pytest.mark.parametrize("variant", [_nan_at_half_target], indirect=True)
def test_a_reduced_loss_inherits_nothing_from_a_batch_with_an_unexplained_element(variant: Case) -> None:
    # float32 t = 3.4e38, x = 1.0000001: t log t and t x both overflow, torch's NaN is kl-div-product-overflow's
    # (its replayed formula gives it); at t = 0.5 the variant's NaN is its own.  torch's kl_div has only the
    # first, and its sum inherits the entry; the variant's sum, NaN for both reasons, is unexplained
    inputs = {"input": np.array([1.0000001192092896, 0.25]), "target": np.array([3.4028234663852886e+38, 0.5])}
    for case, explained in ((cases.get("kl_div"), True), (variant, False)):
        result = run.evaluate(case, inputs, "float32", reductions=("none", "sum"), gradients=False)
        root = judge.judge(result, result.get("none"))
        assert "kl-div-product-overflow" in root.known and bool(root.unexplained.any()) is not explained
        verdict = judge.judge(result, result.get("sum"))
        assert Label(int(result.get("sum").metrics.labels)) is Label.NAN and judge.reduction_is_faithful(
            result, result.get("sum"))
        assert bool(verdict.unexplained) is not explained
