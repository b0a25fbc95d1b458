"""Comparison of two runs on the same inputs: counts, largest gap, examples, and refusal of unequal inputs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from suite import cases, compare, dtypes, run
from suite.metrics import Label, measure
from tests.conftest import skip_where_torch_raises

INPUTS = {"input": [0.5, 1.0, 2.0, -3.0], "target": [0.0, 0.0, 1.0, 0.5]}


@pytest.fixture(scope="module")
def eager() -> run.CaseResult:
    return run.evaluate(cases.get("bce_with_logits"), INPUTS, "float16", reductions=("none",), gradients=False)


def _with_loss(result: run.CaseResult, got: np.ndarray, budget: float | None = None) -> run.CaseResult:
    """``result`` with the loss ``got``, labelled with ``budget`` (default: the result's own)."""
    other = copy.copy(result)
    other.quantities = dict(result.quantities)
    q = result.get("none", run.LOSS)
    own = q.metrics.budget if budget is None else budget
    other.quantities[("none", run.LOSS)] = run.QuantityResult(
        q.quantity, q.reduction, got, q.truth, measure(got, q.truth, q.fmt, own), q.fmt)
    return other


def test_identical_results_do_not_differ(eager: run.CaseResult) -> None:
    c = compare.compare(eager, eager)
    (q,) = c.quantities
    assert (q.points, q.differing, q.bitwise_differs, q.largest_gap) == (4, 0, 0, 0.0)
    assert q.examples == []


def test_nan_at_one_point_is_a_label_difference(eager: run.CaseResult) -> None:
    got = eager.get().got.copy()
    got[1] = math.nan
    (q,) = compare.compare(eager, _with_loss(eager, got)).quantities
    assert (q.label_differs, q.ulp_differs, q.differing, q.bitwise_differs) == (1, 0, 1, 1)
    assert q.examples[0]["index"] == [1]
    assert q.examples[0]["labels"][1] == Label.NAN.text
    assert q.examples[0]["inputs"] == {"input": 1.0, "target": 0.0}


def test_a_failing_label_difference_is_counted_apart_from_an_exact_ok_flip(eager: run.CaseResult) -> None:
    """One element moved a float16 ULP and judged with a 4-ULP budget (exact against ok: a flip a budget
    allows) and one made NaN: two label differences, one of them failing."""
    fmt = dtypes.FLOAT16
    got = eager.get().got.copy()
    got[0] = float(dtypes.from_ordinal(dtypes.to_ordinal([got[0]], fmt) + 1, fmt)[0])
    got[1] = math.nan
    # both sides judged with the 4-ULP budget, so that only the two changed elements can differ (an element torch
    # gets a few ULPs wrong, as torch before 2.3 does here, is then ok on both sides)
    base, other = _with_loss(eager, eager.get().got, budget=4.0), _with_loss(eager, got, budget=4.0)
    assert [Label(v).text for v in other.get().metrics.labels[:2]] == ["ok", "nan"]
    assert Label(base.get().metrics.labels[0]).text == "exact"
    (q,) = compare.compare(base, other).quantities
    assert (q.label_differs, q.failing_differs, q.differing) == (2, 1, 2)
    assert compare.compare(base, other).to_dict()["quantities"][0]["failing_differs"] == 1


def test_ulp_gap_beyond_budget_is_counted(eager: run.CaseResult) -> None:
    fmt = dtypes.FLOAT16
    got = eager.get().got.copy()
    # 40 representable values away from torch's result: a gap of about 40 ULPs, far beyond any budget
    got[2] = float(dtypes.from_ordinal(dtypes.to_ordinal([got[2]], fmt) + 40, fmt)[0])
    (q,) = compare.compare(eager, _with_loss(eager, got), budget=4.0).quantities
    assert q.differing == 1
    assert q.largest_gap is not None and 39.0 <= q.largest_gap <= 41.0
    assert q.examples[0]["index"] == [2]


def test_different_inputs_are_refused(eager: run.CaseResult) -> None:
    other = run.evaluate(cases.get("bce_with_logits"), {**INPUTS, "input": [0.5, 1.0, 2.0, 3.0]}, "float16",
                         reductions=("none",), gradients=False)
    with pytest.raises(ValueError, match="different case or inputs"):
        compare.compare(eager, other)


def test_inputs_differing_only_in_the_sign_of_zero_are_refused(eager: run.CaseResult) -> None:
    """-0 is another input than +0 (a sign-of-zero effect is not a difference between modes or devices)."""
    other = run.evaluate(cases.get("bce_with_logits"), {**INPUTS, "target": [-0.0, 0.0, 1.0, 0.5]}, "float16",
                         reductions=("none",), gradients=False)
    assert not compare.same_inputs(eager, other)
    with pytest.raises(ValueError, match="different case or inputs"):
        compare.compare(eager, other)


def test_two_different_clamps_of_an_infinite_truth_differ() -> None:
    """BCE at p = 0, y = 1 is +inf: 100 (torch's clamp) and 11 are both infinitely wrong, and far apart: their
    gap is the count of float32 values between them (numpy's bit patterns), not 0."""
    bce = run.evaluate(cases.get("bce"), {"input": [0.0, 0.5], "target": [1.0, 0.0]}, "float32",
                       reductions=("none",), gradients=False)
    assert bce.get().got[0] == 100.0 and Label(bce.get().metrics.labels[0]) == Label.CLAMPED
    got = bce.get().got.copy()
    got[0] = 11.0
    (q,) = compare.compare(bce, _with_loss(bce, got), budget=4.0).quantities
    patterns = np.array([100.0, 11.0], dtype=np.float32).view(np.int32).astype(np.int64)
    assert (q.label_differs, q.ulp_differs, q.bitwise_differs) == (0, 1, 1)
    assert q.largest_gap == float(patterns[0] - patterns[1])


def test_coarser_format() -> None:
    assert compare.coarser(dtypes.FLOAT32, dtypes.FLOAT16) is dtypes.FLOAT16
    assert compare.coarser(dtypes.FLOAT16, dtypes.BFLOAT16) is dtypes.BFLOAT16


def test_autocast_side_is_measured_in_the_coarser_format() -> None:
    skip_where_torch_raises("bce_with_logits", "float16", "cpu", "autocast")
    case = cases.get("bce_with_logits")
    results = compare.evaluate_sides(case, INPUTS, "float16", [("cpu", "eager"), ("cpu", "autocast")],
                                     reductions=("none",), gradients=False, cache=False)
    (q,) = compare.compare(results[("cpu", "eager")], results[("cpu", "autocast")]).quantities
    assert q.formats == ("float16", "float32")
    assert q.unit == "float16"
