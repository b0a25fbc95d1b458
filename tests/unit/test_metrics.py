"""suite.metrics on hand-made truths whose errors are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from suite import metrics
from suite.dtypes import FLOAT16, FLOAT32, FLOAT64, FloatFormat
from suite.metrics import Label
from suite.truth import BIG_SHIFT, Status, Truth
from tests.unit.helpers_float import torch_next


def _truth(hi: list[float], lo: list[float] | None = None, status: list[int] | None = None,
           infinite: list[bool] | None = None) -> Truth:
    n = len(hi)
    return Truth(np.array(hi, dtype=np.float64), np.array(lo or [0.0] * n, dtype=np.float64),
                 np.array(status or [Status.DETERMINED] * n, np.int8),
                 np.array(infinite or [False] * n, bool))


@pytest.mark.parametrize("fmt", [FLOAT32, FLOAT16], ids=str)
def test_one_step_away(fmt: FloatFormat) -> None:
    """got = nextafter(t): ordinal distance 1, 1 bit, ULP error 1 (or 1/2 below a power of two)."""
    t = np.array([1.5, 3.0, 1.0, fmt.smallest_subnormal * 5, 0.0])
    up = torch_next(t, np.inf, fmt.name)
    down = torch_next(t, -np.inf, fmt.name)
    truth = _truth(t.tolist())
    for got, expected_ulps in ((up, [1, 1, 1, 1, 1]), (down, [1, 1, 0.5, 1, 1])):
        np.testing.assert_array_equal(metrics.ordinal_distance(got, truth, fmt), 1.0)
        np.testing.assert_array_equal(metrics.ulp_error(got, truth, fmt), expected_ulps)
        m = metrics.measure(got, truth, fmt, budget=4.0)
        np.testing.assert_array_equal(m.bits_error, 1.0)
        np.testing.assert_array_equal(m.absolute_error, np.abs(got - t))


def test_signed_zeros_are_zero_apart() -> None:
    truth = _truth([0.0, -0.0])
    got = np.array([-0.0, 0.0])
    np.testing.assert_array_equal(metrics.ordinal_distance(got, truth, FLOAT32), 0.0)
    np.testing.assert_array_equal(metrics.ulp_error(got, truth, FLOAT32), 0.0)
    assert (metrics.measure(got, truth, FLOAT32, 4.0).labels == Label.EXACT).all()


def test_exact_exponent_just_below_powers_of_two() -> None:
    hi = np.array([1.0, 1.0, -1.0, -1.0, 1.5, 2.0 ** -1000, 2.0 ** 1000])
    lo = np.array([-2.0 ** -60, 2.0 ** -60, 2.0 ** -60, -2.0 ** -60, -2.0 ** -60, -2.0 ** -1070, 0.0])
    assert metrics.exact_exponent(hi, lo).tolist() == [-1, 0, -1, 0, 0, -1001, 1000]


def test_truth_ulp_uses_exact_exponent() -> None:
    truth = _truth([1.0, 1.0, 0.0, 1e-45, np.inf], [-2.0 ** -60, 0.0, 0.0, 0.0, 0.0])
    u = metrics.truth_ulp(truth, FLOAT32)
    assert u[:4].tolist() == [2.0 ** -24, 2.0 ** -23, 2.0 ** -149, 2.0 ** -149]
    assert np.isnan(u[4])


def test_relative_and_ulp_error_of_hand_made_result() -> None:
    truth = _truth([1.0, 2.0])
    got = np.array([1.0 + 2.0 ** -20, 2.0 - 2.0 ** -21])
    m = metrics.measure(got, truth, FLOAT32, budget=4.0)
    assert m.ulp_error.tolist() == [8.0, 2.0]  # ulp_32(2) = 2^-22
    assert m.ordinal_distance.tolist() == [8.0, 4.0]  # below 2 the spacing is 2^-23
    assert m.relative_error.tolist() == [2.0 ** -20, 2.0 ** -22]
    assert m.labels.tolist() == [Label.INACCURATE, Label.OK]


def test_infinities_and_nan_in_errors() -> None:
    truth = _truth([np.inf, 1.0, 1.0, np.inf], infinite=[True, False, False, False])
    got = np.array([np.inf, np.inf, np.nan, np.inf])
    err = metrics.ulp_error(got, truth, FLOAT32)
    assert err[0] == 0 and err[1] == np.inf and np.isnan(err[2])
    m = metrics.measure(got, truth, FLOAT32, budget=4.0)
    assert [Label(v) for v in m.labels] == [Label.EXACT, Label.SPURIOUS_INF, Label.NAN, Label.OVERFLOW]


def test_correct_overflow_has_no_error_and_wrong_infinities_unbounded_error() -> None:
    """1e5 rounds to +inf in float16 (above 65520): inf is its correct rounding, error 0 as for an infinite
    truth met exactly; -inf there, or +inf for -inf, is infinitely wrong; 100 for +inf (BCE's clamp) too."""
    truth = _truth([1e5, 1e5, -np.inf, np.inf, np.inf], infinite=[False, False, True, True, True])
    got = np.array([np.inf, -np.inf, np.inf, 100.0, np.inf])
    m = metrics.measure(got, truth, FLOAT16, budget=1.0)
    assert m.ulp_error.tolist() == [0.0, np.inf, np.inf, np.inf, 0.0]
    assert [Label(v) for v in m.labels] == [Label.OVERFLOW, Label.INACCURATE, Label.INACCURATE, Label.CLAMPED,
                                           Label.EXACT]
    assert m.histogram()[">16"] == 3 and m.histogram()["0"] == 2


def _beyond_float64(value: float, *, big: bool = True) -> Truth:
    """A truth ``value * 2^BIG_SHIFT`` (beyond float64), with its scaled parts or, ``big`` false, without."""
    truth = _truth([np.inf])
    if big:
        truth.big_hi[:] = value
    return truth


def test_finite_result_against_truth_beyond_float64() -> None:
    """2^1024 (float64's max + 1 ULP of 2^971) against float64's max: exactly 1 ULP, judged from the scaled
    parts; float16's 65504 against it is clamped with a huge but finite error; without the scaled parts
    float64's max cannot be judged (it may be the truth's rounding) and float16's 65504 is still clamped."""
    truth = _beyond_float64(2.0 ** (1024 - BIG_SHIFT))
    assert metrics.ulp_error(np.array([FLOAT64.max_finite]), truth, FLOAT64).tolist() == [1.0]
    assert metrics.measure(np.array([FLOAT64.max_finite]), truth, FLOAT64, 4.0).labels.tolist() == [Label.OK]
    err16 = metrics.ulp_error(np.array([65504.0]), truth, FLOAT16)
    assert err16[0] == pytest.approx(2.0 ** (1024 - 5))  # (2^1024 - 65504) / 2^5, float16's top-binade ULP
    assert metrics.measure(np.array([65504.0]), truth, FLOAT16, 1.0).labels.tolist() == [Label.CLAMPED]
    unknown = _beyond_float64(0.0, big=False)
    assert np.isnan(metrics.ulp_error(np.array([FLOAT64.max_finite]), unknown, FLOAT64)[0])
    assert metrics.measure(np.array([FLOAT64.max_finite]), unknown, FLOAT64, 4.0).labels.tolist() == [
        Label.UNDETERMINED]
    assert metrics.measure(np.array([65504.0]), unknown, FLOAT16, 1.0).labels.tolist() == [Label.CLAMPED]


def test_nan_is_a_failure_where_the_truth_is_undetermined() -> None:
    """An unsettled truth is still defined: NaN there is wrong, a number cannot be judged."""
    truth = _truth([np.nan, np.nan], status=[Status.UNDETERMINED] * 2)
    labels = metrics.measure(np.array([np.nan, 1.0]), truth, FLOAT32, 4.0).labels
    assert labels.tolist() == [Label.NAN, Label.UNDETERMINED]


def test_ordinal_distance_across_float64_range_does_not_wrap() -> None:
    """-inf to +inf in float64 is twice the bit pattern of +inf (numpy's view), beyond int64."""
    inf_pattern = float(np.array([np.inf]).view(np.int64)[0])
    truth = _truth([-np.inf], infinite=[True])
    assert metrics.ordinal_distance(np.array([np.inf]), truth, FLOAT64).tolist() == [2 * inf_pattern]
    near = np.nextafter(1e300, np.inf)
    assert metrics.ordinal_gap([near, -5e-324], [1e300, 5e-324], FLOAT64).tolist() == [1.0, 2.0]


def test_condition_separates_inherent_from_algorithmic_error() -> None:
    truth = _truth([1.0, 1.0])
    got = np.array([1.0 + 2.0 ** -13, 1.0 + 2.0 ** -13])  # 1024 ULPs of float32
    m = metrics.measure(got, truth, FLOAT32, budget=4.0, condition=np.array([1.0, 2.0 ** 12]))
    np.testing.assert_array_equal(m.inherent_ulp, [0.5, 2.0 ** 11])
    np.testing.assert_array_equal(m.algorithmic_ulp, [1024.0, 0.5])
    assert m.ill_conditioned.tolist() == [False, True]
    assert m.labels.tolist() == [Label.INACCURATE, Label.OK]


def test_failure_labels_every_element() -> None:
    m = metrics.measure(np.full(3, np.nan), _truth([1.0, 2.0, 3.0]), FLOAT32, 4.0, failure=Label.DEVICE_ASSERT)
    assert (m.labels == Label.DEVICE_ASSERT).all()


def test_ulp_histogram_buckets() -> None:
    errors = [0.0, 0.3, 0.5, 0.7, 1.0, 1.5, 3.0, 10.0, 100.0, np.inf, np.nan]
    assert metrics.ulp_histogram(errors) == {"0": 1, "<=0.5": 2, "<=1": 2, "<=2": 1, "<=4": 1, "<=16": 1, ">16": 2}


def test_label_counts_lists_every_label() -> None:
    counts = metrics.label_counts(np.array([Label.NAN, Label.NAN, Label.EXACT], np.int8))
    assert set(counts) == {label.text for label in Label}
    assert counts["nan"] == 2 and counts["exact"] == 1 and sum(counts.values()) == 3


def test_bits_of_error() -> None:
    np.testing.assert_array_equal(metrics.bits_of_error([0, 1, 3, 1023]), [0.0, 1.0, 2.0, 10.0])
