"""suite.truth against closed forms, identities, finite differences and exact rational sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import pytest

from suite import cases, metrics, run, truth
from suite.dtypes import FLOAT32, FLOAT64
from suite.metrics import Label
from suite.truth import Reference, Status, Truth

HIGH = 600  # bits for the independent mpmath evaluations


def _dd_exact(hi: float, lo: float) -> Fraction:
    return Fraction(hi) + Fraction(lo)


def _fraction(x: Any) -> Fraction:
    """Exact rational value of a finite mpf."""
    sign, man, exp, _ = x._mpf_
    return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp) if man else Fraction(0)


def _dd_of(compute: Callable[[], Any]) -> tuple[float, float]:
    """Nearest double-double of ``compute()`` evaluated at HIGH bits (independent of suite code)."""
    with mpmath.workprec(HIGH):
        x = compute()
        hi = float(x)
        return hi, float(x - mpmath.mpf(hi))


def _values(case: str, **inputs: Any) -> Truth:
    c = cases.get(case)
    return truth.evaluate(c.reference, inputs, rows=c.rows, in_domain=c.in_domain).values


LOGITS = np.array([-700.0, -100.0, -30.0, -16.0, -1.5, -2.0 ** -30, 0.0, 2.0 ** -40, 0.25, 1.0, 3.0, 17.5,
                   88.0, 200.0, 1e5])


def test_softplus_identity_through_bce_with_logits() -> None:
    """softplus(x) - softplus(-x) = x: value at target 0 minus value at target 1, to double-double accuracy."""
    at0 = _values("bce_with_logits", input=LOGITS, target=np.zeros_like(LOGITS))
    at1 = _values("bce_with_logits", input=LOGITS, target=np.ones_like(LOGITS))
    assert at0.determined.all() and at1.determined.all()
    for i, x in enumerate(LOGITS.tolist()):
        a, b = _dd_exact(at0.hi[i], at0.lo[i]), _dd_exact(at1.hi[i], at1.lo[i])
        scale = max(abs(a), abs(b))
        assert abs((a - b) - Fraction(x)) <= scale * Fraction(2) ** -104, x


def test_bce_with_logits_matches_closed_form() -> None:
    ys = np.array([0.0, 1.0, 0.25, 0.75])
    x, y = np.meshgrid(LOGITS[np.abs(LOGITS) < 1000], ys)
    t = _values("bce_with_logits", input=x.ravel(), target=y.ravel())
    with mpmath.workprec(2500):  # the naive formula needs ~|x|/ln 2 extra bits for 1 - sigmoid(x)
        for i, (xi, yi) in enumerate(zip(x.ravel().tolist(), y.ravel().tolist(), strict=True)):
            xm, ym = mpmath.mpf(xi), mpmath.mpf(yi)
            s = 1 / (1 + mpmath.exp(-xm))
            exact = -(ym * mpmath.log(s) + (1 - ym) * mpmath.log(1 - s)) if 0 < yi < 1 else (
                -mpmath.log(s) if yi == 1 else -mpmath.log(1 - s))
            assert t.hi[i] == float(exact), (xi, yi)
            error = abs(_dd_exact(t.hi[i], t.lo[i]) - _fraction(exact))
            assert error <= abs(_fraction(exact)) * Fraction(2) ** -104 + Fraction(2) ** -1075, (xi, yi)


def test_double_double_keeps_tiny_tail() -> None:
    """softplus(200) = 200 + log1p(e^-200): lo must be the float64 nearest log1p(e^-200), although 128 and
    256 bits both give exactly 200 (the tail is 2^-296 relative)."""
    t = _values("bce_with_logits", input=np.array([200.0]), target=np.array([0.0]))
    with mpmath.workprec(HIGH):
        assert (t.hi[0], t.lo[0]) == (200.0, float(mpmath.log1p(mpmath.exp(-200))))


@pytest.mark.parametrize("x", [180.0, 500.0, 700.0, 740.0, 745.0, 800.0, 1e6])
def test_tails_are_found_down_to_the_subnormal_range(x: float) -> None:
    """softplus(x) = x + log1p(e^-x) and its gradient sigmoid(x) = 1 - e^-x / (1 + e^-x): ``lo`` is the float64
    nearest the tail (a normal number up to x = 708, subnormal to 745, 0 beyond), and the truth is determined."""
    case = cases.get("bce_with_logits")
    t = truth.evaluate(case.reference, {"input": np.array([x]), "target": np.zeros(1)}, in_domain=case.in_domain)
    with mpmath.workprec(4 * 1075):
        tail = mpmath.log1p(mpmath.exp(-x))
        grad_tail = -mpmath.exp(-x) / (1 + mpmath.exp(-x))
        assert (t.values.hi[0], t.values.lo[0]) == (x, float(tail))
        assert (t.grads["input"].hi[0], t.grads["input"].lo[0]) == (1.0, float(grad_tail))
    assert t.values.determined.all() and t.grads["input"].determined.all()
    assert (t.values.lo[0] != 0.0) == (x < 745.2)


def test_a_tail_that_only_the_cap_shows_is_undetermined_not_guessed() -> None:
    """With the precision capped at 1024 bits, softplus(200)'s tail shows only at the cap, where no second
    precision can confirm it: the value is undetermined, and its condition number is still given."""
    reference = cases.get("bce_with_logits").reference
    values, grads, (condition, _), _ = truth.evaluate_sample(reference, {"input": [200.0], "target": [0.0]},
                                                             max_precision=1024)
    assert values == ["undetermined"] and grads["input"] == ["undetermined"]
    assert grads["target"] == [(-200.0, 0.0, False, 0.0, 0.0)]
    assert len(condition) == 1 and condition[0] == pytest.approx(1.0)


def test_a_tail_confirmed_below_a_cap_that_doubling_would_pass_is_determined() -> None:
    """The check at 1147 bits shows softplus(200)'s tail; with the cap at 2048 (less than twice 1147) the last
    doubling ends at the cap and confirms it."""
    reference = cases.get("bce_with_logits").reference
    values, _, _, precision = truth.evaluate_sample(reference, {"input": [200.0], "target": [0.0]},
                                                    max_precision=2048)
    with mpmath.workprec(HIGH):
        assert values == [(200.0, float(mpmath.log1p(mpmath.exp(-200))), False, 0.0, 0.0)]
    assert precision == 2048


def _just_above_a_midpoint(sample: Any) -> Reference:
    """1 + 2^-53 + e^-200 x: at x = 1 just above the midpoint of 1 and 1 + 2^-52, by less than 2^-256."""
    x = sample["x"][0]
    return Reference(values=[1 + mpmath.ldexp(1, -53) + mpmath.exp(-200 * x)])


def test_a_midpoint_with_a_hidden_tail_rounds_hi_the_way_the_tail_says() -> None:
    """At 128 and 256 bits the value is exactly the midpoint 1 + 2^-53, whose float64 rounding is 1 (to even);
    the tail e^-200 above it makes the nearest float64 1 + 2^-52, with lo = -2^-53 + e^-200."""
    values, _, _, _ = truth.evaluate_sample(_just_above_a_midpoint, {"x": [1.0]}, backend="mpmath")
    with mpmath.workprec(HIGH):
        lo = -mpmath.ldexp(1, -53) + mpmath.exp(-200)
        assert values == [(1.0 + 2.0**-52, float(lo), False, 0.0, 0.0)]


def _lo_just_above_a_midpoint(sample: Any) -> Reference:
    """1 + 2^-60 + 2^-113 + e^-200 x: ``lo`` = 2^-60 + 2^-113 is halfway between two float64 numbers, and the
    tail that decides it is 2^-288, below 128 and 256 bits."""
    x = sample["x"][0]
    return Reference(values=[1 + mpmath.ldexp(1, -60) + mpmath.ldexp(1, -113) + mpmath.exp(-200 * x)])


def test_a_tie_in_lo_with_a_hidden_tail_rounds_lo_the_way_the_tail_says() -> None:
    values, _, _, _ = truth.evaluate_sample(_lo_just_above_a_midpoint, {"x": [1.0]}, backend="mpmath")
    assert values == [(1.0, 2.0**-60 + 2.0**-112, False, 0.0, 0.0)]  # not 2^-60, the even neighbour


def test_a_kl_row_that_cancels_below_the_agreeing_precisions_is_not_zero() -> None:
    """KL(t || softmax(x)) for t = (1, 0, 0, 0), x = (184.73..., 0, 2, -inf): the first term is -log_softmax(x)_0
    = log1p(e^-x0 + e^(2 - x0)) = 5e-80, which x0 - logsumexp(x) cancels to exactly 0 at 128 and 256 bits.
    Checked against the log1p form, which does not cancel."""
    x = np.array([[184.7325897216797, 0.0, 2.0, -np.inf]])
    t = np.array([[1.0, 0.0, 0.0, 0.0]])
    values = _values("log_softmax_kl_div", input=x, target=t)
    with mpmath.workprec(HIGH):
        x0 = mpmath.mpf(x[0, 0])
        first = mpmath.log1p(mpmath.exp(-x0) + mpmath.exp(2 - x0))
        assert (values.hi[0, 0], values.lo[0, 0]) == (float(first), float(first - mpmath.mpf(float(first))))
    assert values.determined.all() and (values.hi[0, 1:] == 0.0).all()


def test_reduced_truth_breaks_float16_tie_by_tail() -> None:
    """softplus(200) + softplus(200.125) = 400.125 + tails: a float16 tie that the tails break upward."""
    import torch

    from suite import run
    from suite.dtypes import FLOAT16
    result = run.evaluate(cases.get("bce_with_logits"), {"input": np.array([200.0, 200.125]),
                                                         "target": np.zeros(2)}, torch.float16, reductions=("sum",))
    assert result.get("sum").truth.rounded(FLOAT16) == 400.25


def test_sigmoid_bce_truth_equals_bce_with_logits_truth() -> None:
    x = np.array([-20.0, -1.0, 0.0, 2.5, 40.0])
    y = np.array([0.0, 0.3, 1.0, 0.5, 1.0])
    a, b = _values("sigmoid_bce", input=x, target=y), _values("bce_with_logits", input=x, target=y)
    np.testing.assert_array_equal(a.hi, b.hi)
    np.testing.assert_array_equal(a.lo, b.lo)


@pytest.mark.parametrize("y", [0.0, 0.5, 1.0])
def test_bce_at_one_half_is_log_two(y: float) -> None:
    t = _values("bce", input=np.array([0.5]), target=np.array([y]))
    assert (t.hi[0], t.lo[0]) == _dd_of(lambda: mpmath.log(2))


def test_bce_weight_scales_exactly() -> None:
    t = _values("bce_weight", input=np.array([0.5]), target=np.array([1.0]), weight=np.array([0.25]))
    assert (t.hi[0], t.lo[0]) == _dd_of(lambda: mpmath.log(2) / 4)


def test_kl_of_a_distribution_with_itself_is_zero() -> None:
    """KL(p||p) = 0: pointwise at x = log t with a log target, at t = 1, x = 0, and for uniform rows."""
    lp = np.array([-0.1, -2.0, -17.25, -300.0, 0.0])
    assert (_values("kl_div_log_target", input=lp, target=lp).hi == 0).all()
    one = _values("kl_div", input=np.array([0.0]), target=np.array([1.0]))
    assert one.hi[0] == 0 and one.lo[0] == 0 and one.determined.all()
    for n in (2, 4, 8):
        rows = _values("log_softmax_kl_div", input=np.full((2, n), 0.0), target=np.full((2, n), 1.0 / n))
        assert rows.determined.all() and (rows.hi == 0).all() and (rows.lo == 0).all()


def test_infinite_and_limit_truths() -> None:
    bce = _values("bce", input=np.array([0.0, 1.0, 0.0, 1.0]), target=np.array([1.0, 0.0, 0.0, 1.0]))
    assert bce.hi.tolist() == [np.inf, np.inf, 0.0, 0.0]
    assert bce.infinite.tolist() == [True, True, False, False] and bce.determined.all()
    kl = _values("kl_div", input=np.array([-np.inf, 5.0]), target=np.array([0.0, 0.0]))
    assert kl.hi.tolist() == [0.0, 0.0] and kl.determined.all()
    logits = _values("bce_with_logits", input=np.array([np.inf, -np.inf, np.inf]), target=np.array([0.0, 0.0, 1.0]))
    assert logits.hi.tolist() == [np.inf, 0.0, 0.0] and logits.infinite.tolist() == [True, False, False]


def test_finite_beyond_float64_is_not_infinite() -> None:
    t = _values("kl_div", input=np.array([-1e308]), target=np.array([1e308]))
    assert t.hi[0] == np.inf and not t.infinite[0] and t.determined.all()


FLOAT64_MAX = float(np.finfo(np.float64).max)


@pytest.mark.parametrize("backend", ["mpmath", "mpfr"])
def test_a_divisor_brings_a_finite_truth_beyond_float64_back_into_range(backend: str) -> None:
    # weight w = max float64, x = 4, y = 0: the loss w softplus(4) = 4.018 max lies beyond float64; divided by
    # 8 elements (a mean) it is 0.502 max, representable.  With weight -max the two huge elements cancel.
    c = cases.get("bce_with_logits_weight")
    inputs = {"input": np.full(3, 4.0), "target": np.zeros(3), "weight": np.array([FLOAT64_MAX, FLOAT64_MAX,
                                                                                  -FLOAT64_MAX])}
    t = truth.evaluate(c.reference, inputs, in_domain=c.in_domain, backend=backend).values
    assert t.hi.tolist() == [np.inf, np.inf, -np.inf] and not t.infinite.any() and t.determined.all()
    assert t.beyond.all()
    hi, lo = _dd_of(lambda: mpmath.mpf(FLOAT64_MAX) * mpmath.log1p(mpmath.exp(4)) / 8)
    scaled = t.scaled(8)
    assert (scaled.hi[0], scaled.lo[0]) == (hi, lo) and not scaled.beyond[0]
    assert t.scaled(4).hi[0] == np.inf and t.scaled(4).beyond[0]  # 1.0045 max: still beyond
    mean_of_two = truth.exact_sum(t[:2], 16)  # (2 x 4.018 max) / 16
    assert (mean_of_two.hi[()], mean_of_two.lo[()]) == (hi, lo)
    cancelled = truth.exact_sum(t[1:])  # +4.018 max - 4.018 max
    assert cancelled.status[()] == Status.DETERMINED and cancelled.hi[()] == 0.0
    assert truth.exact_sum(t[:2]).hi[()] == np.inf  # 8.04 max stays beyond, as before


def test_a_mean_of_an_element_beyond_float64_is_judged_with_a_finite_condition() -> None:
    # kl_div float64, x = -1e299: target 1e10 gives an element of 1e309 (beyond float64), targets 1 give 1e299;
    # their mean 1.25e308 is representable and well conditioned: all terms are positive, and the condition of
    # the sum is sum(|x dL/dx| + |t dL/dt|) / sum L with dL/dx = -t, dL/dt = log t + 1 - x (about 2 here)
    inputs = {"input": np.full(8, -1e299), "target": np.array([1e10] + [1.0] * 7)}
    result = run.evaluate(cases.get("kl_div"), inputs, "float64", reductions=("none", "mean"), cache=False)
    q = result.get("mean")
    with mpmath.workprec(HIGH):
        x, ts = mpmath.mpf(-1e299), [mpmath.mpf(t) for t in inputs["target"]]
        terms = [t * (mpmath.log(t) - x) for t in ts]
        assert q.truth.hi[()] == float(mpmath.fsum(terms) / 8)
        sensitivity = mpmath.fsum(abs(t * x) + abs(t * (mpmath.log(t) + 1 - x)) for t in ts)
        assert float(q.metrics.condition) == pytest.approx(float(sensitivity / mpmath.fsum(terms)), rel=1e-9)
    wrong = metrics.measure(q.truth.hi * 1.001, q.truth, FLOAT64, 4.0, q.metrics.condition)
    assert Label(int(wrong.labels)) is Label.INACCURATE


def test_undefined_outside_domain_and_at_nan() -> None:
    t = _values("bce", input=np.array([1.5, -0.25, np.nan, 0.5, 0.5]), target=np.array([1.0, 0.0, 0.0, np.nan, 2.0]))
    assert (t.status == Status.UNDEFINED).all()
    assert np.isnan(t.hi).all()
    row = _values("log_softmax_kl_div", input=np.array([[0.0, np.nan], [0.0, 1.0]]), target=np.full((2, 2), 0.5))
    assert (row.status[0] == Status.UNDEFINED).all() and row.determined[1].all()


def _finite_difference(reference: Any, sample: Mapping[str, list[float]], name: str, j: int) -> Any:
    """Central difference of the sum of a sample's values with respect to element j of one input."""
    with mpmath.workprec(HIGH):
        h = mpmath.mpf(2) ** -150

        def total(shift: Any) -> Any:
            s = {k: [mpmath.mpf(v) for v in vs] for k, vs in sample.items()}
            s[name][j] += shift
            return mpmath.fsum(reference(s).values)

        return (total(h) - total(-h)) / (2 * h)


GRADIENT_POINTS = [
    ("bce", {"input": [0.3], "target": [0.8]}),
    ("bce", {"input": [1e-6], "target": [0.0]}),
    ("bce_weight", {"input": [0.7], "target": [0.25], "weight": [3.0]}),
    ("bce_with_logits", {"input": [-3.5], "target": [0.75]}),
    ("bce_with_logits", {"input": [40.0], "target": [1.0]}),
    ("bce_with_logits_pos_weight", {"input": [2.0], "target": [0.5], "pos_weight": [2.5]}),
    ("bce_with_logits_weight", {"input": [-0.5], "target": [0.1], "weight": [0.5]}),
    ("kl_div", {"input": [-1.25], "target": [0.375]}),
    ("kl_div_log_target", {"input": [-0.75], "target": [-2.0]}),
    ("sigmoid_bce", {"input": [1.5], "target": [0.0]}),
    ("log_softmax_kl_div", {"input": [0.5, 1.0, -2.0, 0.8], "target": [0.3, 0.4, 0.2, 0.1]}),
]


@pytest.mark.parametrize(("name", "sample"), GRADIENT_POINTS, ids=[p[0] for p in GRADIENT_POINTS])
def test_gradients_match_finite_differences(name: str, sample: dict[str, list[float]]) -> None:
    case = cases.get(name)
    arrays = {k: np.array([v]) if case.rows else np.array(v) for k, v in sample.items()}
    ts = truth.evaluate(case.reference, arrays, rows=case.rows)
    for input_name in case.differentiable:
        g = ts.grads[input_name]
        for j in range(len(sample[input_name])):
            exact = _finite_difference(case.reference, sample, input_name, j)
            at = (0, j) if case.rows else (j,)
            assert g.determined[at]
            got = _dd_exact(g.hi[at], g.lo[at])
            assert abs(got - _fraction(exact)) <= abs(got) * Fraction(2) ** -100 + Fraction(2) ** -250, (
                input_name, j, float(exact), g.hi[at])


def _truth(hi: list[float], lo: list[float], status: list[int] | None = None) -> Truth:
    n = len(hi)
    return Truth(np.array(hi), np.array(lo), np.array(status or [0] * n, np.int8), np.isinf(np.array(hi)))


def test_exact_sum_against_fraction_and_fsum() -> None:
    rng = np.random.default_rng(4)
    hi = rng.standard_normal(500) * 10.0 ** rng.integers(-30, 30, 500)
    hi[::7] *= -1e20  # heavy cancellation
    lo = hi * rng.uniform(-2 ** -54, 2 ** -54, 500)
    exact = sum(Fraction(v) for v in hi.tolist()) + sum(Fraction(v) for v in lo.tolist())
    for divisor in (1, 3, 500):
        s = truth.exact_sum(_truth(hi.tolist(), lo.tolist()), divisor)
        assert s.determined[()]
        assert float(s.hi) == float(exact / divisor)
        assert float(s.lo) == float(exact / divisor - Fraction(float(s.hi)))
    s = truth.exact_sum(_truth(hi.tolist(), lo.tolist()))
    assert float(s.hi) == math.fsum(hi.tolist() + lo.tolist())


def test_exact_sum_special_cases() -> None:
    assert truth.exact_sum(_truth([np.inf, 1.0], [0.0, 0.0])).hi[()] == np.inf
    assert truth.exact_sum(_truth([np.inf, -np.inf], [0.0, 0.0])).status[()] == Status.UNDEFINED
    assert truth.exact_sum(_truth([1.0, np.nan], [0.0, 0.0], [0, 2])).status[()] == Status.UNDETERMINED
    assert truth.exact_sum(_truth([1.0, np.nan], [0.0, 0.0], [0, 1])).status[()] == Status.UNDEFINED
    tiny = truth.exact_sum(_truth([1e-320, 1e-320], [0.0, 0.0]), 2)
    assert tiny.hi[()] == 1e-320 and tiny.lo[()] == 0


def _precision_dependent(sample: Mapping[str, list[Any]]) -> Reference:
    """A 'reference' whose value is the working precision itself: it can never be settled."""
    return Reference([mpmath.mpf(mpmath.mp.prec) + sample["input"][0]], {"input": [mpmath.mpf(1)]})


def _settles_late(sample: Mapping[str, list[Any]]) -> Reference:
    """1/3 plus a term that vanishes below double-double resolution only at 512 bits."""
    return Reference([mpmath.mpf(1) / 3 + mpmath.mpf(2) ** (-(mpmath.mp.prec // 2))])


def test_undetermined_when_precisions_never_agree() -> None:
    ts = truth.evaluate(_precision_dependent, {"input": np.array([0.0, 1.0])}, max_precision=1024)
    assert (ts.values.status == Status.UNDETERMINED).all() and np.isnan(ts.values.hi).all()
    assert ts.grads["input"].determined.all() and (ts.grads["input"].hi == 1).all()
    assert (ts.precision == 1024).all()
    assert np.isnan(ts.values.rounded(FLOAT32)).all()


def test_precision_rises_until_settled() -> None:
    ts = truth.evaluate(_settles_late, {"input": np.array([0.0])})
    assert ts.values.determined.all() and ts.precision.tolist() == [512]
    assert (ts.values.hi[0], ts.values.lo[0]) == _dd_of(lambda: mpmath.mpf(1) / 3)


@pytest.mark.parametrize("divisor", [3, 7, 64, 190470])
def test_scaled_matches_exact_division_across_the_range(divisor: int) -> None:
    """Truth.scaled (a mean's 1/N) against exact rational division, including values near both ends of the
    float64 range where the vectorised path must hand over to exact arithmetic."""
    rng = np.random.default_rng(divisor)
    hi = np.concatenate([rng.standard_normal(200) * np.exp(rng.uniform(-700, 700, 200)),
                         [1.7e308, -5.39e300, 3e-310, -2.5e-320, 0.0, -0.0, 1.0, 3.0]])
    lo = np.zeros_like(hi)
    t = Truth(hi, lo, np.zeros(hi.shape, np.int8), np.zeros(hi.shape, bool))
    out = t.scaled(divisor)
    for h, got_hi, got_lo in zip(hi.tolist(), out.hi.tolist(), out.lo.tolist(), strict=True):
        exact = Fraction(h) / divisor
        assert got_hi == float(exact)  # float(Fraction) is correctly rounded
        assert math.copysign(1.0, got_hi) == math.copysign(1.0, float(exact))  # signs too: an exact 0 is +0
        if got_lo != 0.0:
            # 2^-104 relative, or half the smallest subnormal where lo itself is subnormal
            bound = abs(exact) * Fraction(1, 2**104) + Fraction(1, 2**1075)
            assert abs(Fraction(got_hi) + Fraction(got_lo) - exact) <= bound


@pytest.mark.parametrize(("name", "x", "y"), [("bce_with_logits", 17.0, 1.0), ("bce_with_logits", 3.0625, 0.75),
                                              ("bce", 0.75, 1.0), ("bce", 0.9990234375, 0.0)])
def test_a_probability_is_perturbed_relative_to_the_nearer_of_0_and_1(name: str, x: float, y: float) -> None:
    """Above 1/2 a probability's complement is exact (Sterbenz), so the loss's condition number perturbs it
    relative to ``1 - v``: ``sum |min(v, 1 - v) dL/dv| / L`` over the inputs, from mpmath's derivatives.  Relative
    to ``v``, BCEWithLogits(17, 1) = 4e-8 would have the condition 4e8, and any error there, even a flush to 0, would
    pass as inherent."""
    with mpmath.workdps(60):
        def loss(a: Any, b: Any) -> Any:
            if name == "bce":
                return -(b * mpmath.log(a) + (1 - b) * mpmath.log1p(-a))
            return (1 - b) * a + mpmath.log1p(mpmath.exp(-a))  # (1 - y) x + softplus(-x)

        value = loss(mpmath.mpf(x), mpmath.mpf(y))
        scale_x = min(x, 1 - x) if name == "bce" else x
        terms = [scale_x * mpmath.diff(lambda a: loss(a, mpmath.mpf(y)), x),
                 min(y, 1 - y) * mpmath.diff(lambda b: loss(mpmath.mpf(x), b), y)]
        expected = float(mpmath.fsum(abs(t) for t in terms) / abs(value))
    _, _, (condition, _), _ = truth.evaluate_sample(cases.get(name).reference, {"input": [x], "target": [y]})
    assert float(condition[0]) == pytest.approx(expected, rel=1e-12)
    assert float(condition[0]) < 64
