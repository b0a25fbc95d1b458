"""The rounding-bias measure (:mod:`suite.bias`) against independently known directions: numpy's
``nextafter`` and ``spacing`` for signed ULP errors, round-to-nearest and truncation of exact float64 values
for the mean, and the population's ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from suite import bias, cases, dtypes, metrics, run
from suite.dtypes import FLOAT32, FloatFormat
from suite.truth import Status, Truth


def _truth(values: np.ndarray) -> Truth:
    n = values.size
    return Truth(values.astype(np.float64), np.zeros(n), np.full(n, Status.DETERMINED, np.int8), np.zeros(n, bool))


def test_signed_error_is_negative_toward_zero_and_positive_away() -> None:
    t = np.array([1.5, -1.5, 3.0, -3.0])
    toward = np.nextafter(t.astype(np.float32), np.float32(0)).astype(np.float64)
    away = np.nextafter(t.astype(np.float32), np.copysign(np.float32(np.inf), t.astype(np.float32))).astype(np.float64)
    spacing = np.spacing(np.abs(t).astype(np.float32)).astype(np.float64)
    np.testing.assert_array_equal(metrics.signed_ulp_error(toward, _truth(t), FLOAT32), -(np.abs(t - toward) / spacing))
    np.testing.assert_array_equal(metrics.signed_ulp_error(away, _truth(t), FLOAT32), [1.0, 1.0, 1.0, 1.0])


def test_signed_error_has_no_direction_at_zero_infinities_and_nan() -> None:
    t = np.array([0.0, 1.0, np.inf, 1.0])
    got = np.array([1e-45, np.inf, np.inf, np.nan])
    assert np.isnan(metrics.signed_ulp_error(got, _truth(t), FLOAT32)).all()


def _quantity(got: np.ndarray, exact: np.ndarray, fmt: FloatFormat) -> run.QuantityResult:
    truth = _truth(exact)
    return run.QuantityResult("loss", "none", got, truth, metrics.measure(got, truth, fmt, 4.0), fmt)


def _spread(n: int = 4000) -> np.ndarray:
    """Exact values spread over [1/64, 64], of both signs."""
    rng = np.random.default_rng(7)
    return rng.uniform(1 / 64, 64, n) * rng.choice([-1.0, 1.0], n)


@pytest.mark.parametrize("fmt", [dtypes.FLOAT32, dtypes.BFLOAT16, dtypes.FLOAT16], ids=str)
def test_round_to_nearest_is_unbiased(fmt: FloatFormat) -> None:
    exact = _spread()
    fair = bias.measure(_quantity(dtypes.round_array(exact, fmt), exact, fmt))
    assert fair.elements > 3900 and abs(fair.mean) < 5 * fair.stderr and not fair.biased
    assert 0.45 < fair.toward_zero < 0.55


def test_truncation_is_half_an_ulp_toward_zero() -> None:
    """float32 values rounded toward zero (numpy's nextafter toward 0 where rounding to nearest went away)."""
    exact = _spread()
    nearest = exact.astype(np.float32)
    went_away = np.abs(nearest.astype(np.float64)) > np.abs(exact)
    truncated = np.where(went_away, np.nextafter(nearest, np.float32(0)), nearest).astype(np.float64)
    found = bias.measure(_quantity(truncated, exact, FLOAT32))
    assert found.biased and found.toward_zero == 1.0 and math.isclose(found.mean, -0.5, abs_tol=0.05)


def test_too_few_elements_are_never_a_bias() -> None:
    found = bias.Bias(mean=-0.5, stderr=0.01, elements=bias.MIN_ELEMENTS - 1, toward_zero=1.0)
    assert not found.biased and bias.Bias(-0.5, 0.01, bias.MIN_ELEMENTS, 1.0).biased
    assert not bias.Bias(-0.5, 0.2, 10_000, 1.0).biased  # within Z_SCORE standard errors of 0


def test_the_population_is_fixed_and_within_each_inputs_ordinary_range() -> None:
    for case in cases.all_cases():
        a, b = bias.population(case), bias.population(case)
        for spec in case.inputs:
            low, high, _ = bias.KIND_RANGES[spec.kind]
            values = a[spec.name]
            np.testing.assert_array_equal(values, b[spec.name])
            assert values.min() >= max(low, spec.low) and values.max() <= min(high, spec.high)
            rows = (bias.POPULATION // bias.ROW, bias.ROW)
            assert values.shape == ((bias.ROW,) if spec.kind == "pos_weight" else rows)
