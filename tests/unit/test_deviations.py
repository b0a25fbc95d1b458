"""The known-deviation registry: entries load, regions select elements, and ``max_ulps`` is a widened budget
on the algorithmic ULP error (an ill-conditioned element's inherent error does not count against it)."""

from __future__ import annotations

import math
from dataclasses import replace

import mpmath
import numpy as np
import pytest

from suite import cases, deviations, dtypes, error_scales, judge, run
from suite.deviations import Deviation
from suite.metrics import Label


def _entry(max_ulps: float | None) -> Deviation:
    return Deviation(id="test", description="d", reason="r", torch=">=1.0", cases=("kl_div_log_target",),
                     dtypes=("float16",), quantities=("grad_target",), labels=("inaccurate",),
                     region={"target": ((-1.0, 0.0),)}, max_ulps=max_ulps)


def test_max_ulps_bounds_the_algorithmic_error() -> None:
    labels = np.full(4, int(Label.INACCURATE))
    algorithmic = np.array([3.0, 4.0, 5.0, math.nan])
    assert _entry(4.0).explains(labels, algorithmic).tolist() == [True, True, False, False]
    assert _entry(None).explains(labels, algorithmic).tolist() == [True, True, True, True]
    assert not _entry(None).explains(np.array([int(Label.NAN)]), np.array([0.0])).any()


def test_max_ulps_per_element_scales_with_the_batch_and_is_for_reductions_only() -> None:
    entry = replace(_entry(None), reductions=("sum", "mean"), max_ulps_per_element=1.0)
    labels = np.full(3, int(Label.INACCURATE))
    algorithmic = np.array([99.0, 100.0, 101.0])
    assert entry.ulp_bound(100) == 100.0 and entry.explains(labels, algorithmic, 100).tolist() == [True, True, False]
    assert replace(entry, max_ulps=50.0).ulp_bound(100) == 50.0  # both set: the smaller
    with pytest.raises(ValueError, match="reductions only"):
        deviations._parse({"id": "x", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["kl_div"],
                           "dtypes": ["float32"], "quantity": "loss", "label": "inaccurate", "region": {},
                           "max_ulps_per_element": 1})


def test_region_is_closed_intervals_per_input() -> None:
    inputs = {"input": np.zeros(5), "target": np.array([-2.0, -1.0, -0.5, 0.0, 0.5])}
    assert _entry(None).in_region(inputs, (5,), "float16").tolist() == [False, True, True, True, False]


def test_registry_ids_are_unique_and_budgets_positive() -> None:
    entries = deviations.load()
    assert len({d.id for d in entries}) == len(entries)
    assert all(d.max_ulps is None or d.max_ulps > 0 for d in entries)


def test_ill_conditioned_half_gradient_is_judged_by_its_algorithmic_error() -> None:
    # Found by the suite (issue 3): float16 kl_div(log_target) target gradient exp(lt) (lt - x + 1) / N at
    # x = 1.0009765625, lt = -0.00048875808715820312, where lt - x + 1 = -0.00146... cancels: about 680 ULPs
    # of the error are inherent (condition number ~680), torch's 16-bit arithmetic adds the rest.
    case = cases.get("kl_div_log_target")
    inputs = {"input": np.full((6, 8), -np.inf), "target": np.full((6, 8), -np.inf)}
    inputs["input"][4, 5], inputs["target"][4, 5] = 1.0009765625, -0.00048875808715820312
    result = run.evaluate(case, inputs, "float16", reductions=("batchmean",))
    q = result.get("batchmean", "grad_target")
    x, lt = mpmath.mpf(1.0009765625), mpmath.mpf(-0.00048875808715820312)
    with mpmath.workprec(200):
        assert q.truth.hi[4, 5] == float(mpmath.exp(lt) * (lt - x + 1) / 6)  # batchmean: 6 rows
    assert q.metrics.ulp_error[4, 5] > 1024 > 1.0 > q.metrics.algorithmic_ulp[4, 5] - 1.0
    half = next(d for d in deviations.load() if d.id == "half-arithmetic-grad-target")
    assert half.explains(q.metrics.labels[4, 5], q.metrics.algorithmic_ulp[4, 5])
    assert not judge.judge(result, q).unexplained[4, 5]


def test_a_dtype_region_replaces_the_common_region_for_its_dtype_only() -> None:
    entry = deviations._parse({
        "id": "t", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["bce_with_logits"],
        "dtypes": ["float32", "float16"], "quantity": "grad_input", "label": "flushed",
        "region": {"input": [["-inf", -9.7]]}, "dtype_region": {"float32": {"input": [["-inf", -87.3]]}}})
    inputs = {"input": np.array([-100.0, -30.0, -9.0])}
    assert entry.in_region(inputs, (3,), "float32").tolist() == [True, False, False]
    assert entry.in_region(inputs, (3,), "float16").tolist() == [True, True, False]
    # a region on an input the batch does not have (a weight, for the unweighted case) selects nothing
    weighted = replace(entry, dtype_regions={"float32": {"weight": ((1e26, math.inf),)}})
    assert not weighted.in_region(inputs, (3,), "float32").any()


def test_a_dtype_region_for_a_dtype_the_entry_is_not_about_is_rejected() -> None:
    with pytest.raises(ValueError, match="dtype_region names dtypes"):
        deviations._parse({"id": "t", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["bce"],
                           "dtypes": ["float32"], "quantity": "loss", "label": "nan", "region": {},
                           "dtype_region": {"float64": {"input": [[0.0, 0.0]]}}})


def test_a_device_torch_range_replaces_the_common_one_on_that_device_only() -> None:
    base = {"id": "t", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["bce"],
            "dtypes": ["float16"], "quantity": "grad_input", "label": "nan", "region": {}}
    entry = deviations._parse({**base, "device_torch": {"cpu": ">=2.4"}})
    assert not entry.applies("bce", "float16", "cpu", "2.3.1+cu121")
    assert entry.applies("bce", "float16", "cpu", "2.4.1")
    assert entry.applies("bce", "float16", "cuda:0", "2.3.1+cu121")
    assert entry.torch_on("cuda") == ">=1.0" and entry.torch_on("cpu") == ">=2.4"
    with pytest.raises(ValueError, match="device_torch names devices"):
        deviations._parse({**base, "devices": ["cpu"], "device_torch": {"cuda": ">=2.4"}})
    with pytest.raises(ValueError, match="malformed"):
        deviations._parse({**base, "device_torch": {"cpu": "2.4 or later"}})
    # the registry's float16 BCE entries start on CPU where torch's float16 CPU kernel of BCE does
    assert deviations.get("bce-grad-epsilon-half-nan").torch_on("cpu") == ">=2.4"


def test_a_row_key_selects_every_element_of_a_row_holding_a_value_inside() -> None:
    entry = replace(_entry(None), region={"row:target": ((1e38, math.inf),)})
    target = np.array([[0.0, 2e38, 1.0], [0.0, 1.0, 2.0]])
    assert entry.in_region({"target": target}, (2, 3), "float16").tolist() == [[True] * 3, [False] * 3]


def test_every_region_key_names_an_input_of_the_entry_and_row_keys_only_rows_cases() -> None:
    # a misspelt key would select nothing (inputs a case lacks put none of its elements in the region), and a
    # row key on an elementwise case would select whole grid lines: both are registry mistakes
    for d in deviations.load():
        entry_cases = [cases.get(c) for c in d.cases]
        inputs = {s.name for c in entry_cases for s in c.inputs}
        for region in (d.region, *d.dtype_regions.values()):
            for key in region:
                assert key in deviations.DERIVED_KEYS or key.removeprefix(deviations.ROW_PREFIX) in inputs, (d.id, key)
                if key.startswith(deviations.ROW_PREFIX):
                    assert all(c.rows for c in entry_cases), (d.id, key)


def test_an_elements_key_selects_whole_batches_by_their_size() -> None:
    entry = replace(_entry(None), region={"elements": ((65505.0, math.inf),)})
    inputs = {"target": np.zeros(1)}
    assert not entry.in_region(inputs, (2, 32752), "float16").any()  # 65504 elements: N is a float16 number
    assert entry.in_region(inputs, (5, 13101), "float16").all()  # 65505: N rounds to 65504 or overflows
    assert entry.region_inputs("float16") == set()


def test_error_scales_are_the_magnitudes_of_torchs_terms() -> None:
    # BCEWithLogits pos_weight gradient (pw y + 1 - y) sigmoid(x) - pw y at x = 0, y = 0.5, pw = 3: terms
    # (1.5 + 1 + 0.5) * 0.5 and 1.5; a weight of -2 doubles them; sigmoid(-inf) = 0 leaves |pw y| = 0
    inputs = {"input": np.array([0.0, 0.0, -np.inf]), "target": np.array([0.5, 0.5, 0.0]),
              "pos_weight": np.array([3.0]), "weight": np.array([1.0, -2.0, 1.0])}
    f32 = dtypes.FLOAT32
    assert error_scales.scale("bce_with_logits_grad_input", inputs, (3,), f32).tolist() == [3.0, 6.0, 0.0]
    # log_softmax row [0, 0] (L = 2): p = 1/2, |log sum exp| = log 2; targets [1, 0]
    rows = {"input": np.array([[0.0, 0.0]]), "target": np.array([[1.0, 0.0]])}
    size = math.log(2.0) + 2.0
    grad = error_scales.scale("log_softmax_kl_div_grad_input", rows, (1, 2), f32)
    assert np.allclose(grad, [[0.5 * (2.0 + size) + 1.0, 0.5 * (2.0 + size)]], rtol=1e-15, atol=0)
    loss = error_scales.scale("log_softmax_kl_div_loss", rows, (1, 2), f32)
    assert np.allclose(loss, [[1.0 + 2.0 * size, 0.0]], rtol=1e-15, atol=0)  # |log 1| = 0; t = 0 adds nothing
    # BCEWithLogits at x = -2: |(1 - y) x| and (|(pw - 1) y| + 1) (|min(x, 0)| + log1p(e^-|x|)); y = 0 without
    # pos_weight, then y = 0.5 with pos_weight 3 (weight of the log term bounded by 2), weight -2 doubling it
    log_sigmoid = 2.0 + float(mpmath.log1p(mpmath.exp(-2)))
    plain = error_scales.scale("bce_with_logits_loss", {"input": np.array([-2.0]), "target": np.array([0.0])},
                               (1,), f32)
    assert np.allclose(plain, [2.0 + log_sigmoid], rtol=1e-15, atol=0)
    weighted = {"input": np.array([-2.0]), "target": np.array([0.5]), "pos_weight": np.array([3.0]),
                "weight": np.array([-2.0])}
    assert np.allclose(error_scales.scale("bce_with_logits_loss", weighted, (1,), f32),
                       [2.0 * (1.0 + 2.0 * log_sigmoid)], rtol=1e-15, atol=0)
    # at x = 100, y = 1, pw = 3 the log term is subnormal in float32 (e^-100): it counts twice the smallest normal
    # number too (a subnormal step's absolute error), times pw
    subnormal = {"input": np.array([100.0]), "target": np.array([1.0]), "pos_weight": np.array([3.0])}
    expected_log = float(mpmath.log1p(mpmath.exp(-100))) + 2.0 * 2.0**-126
    assert np.allclose(error_scales.scale("bce_with_logits_loss", subnormal, (1,), f32), [3.0 * expected_log],
                       rtol=1e-15, atol=0)
    # kl_div log_target at x = -1e30, t = -100 in float32: (exp(-100) + 2 smallest normal) |t - x|
    kl = {"input": np.array([-1e30]), "target": np.array([-100.0])}
    expected_kl = (float(mpmath.exp(-100)) + 2.0 * 2.0**-126) * (1e30 - 100.0)
    assert np.allclose(error_scales.scale("kl_div_log_target_loss", kl, (1,), f32), [expected_kl], rtol=1e-15, atol=0)
    # weighted BCE at p = 1/2, y = 1/4, w = -4: |w| (|y log p| + |(1 - y) log1p(-p)| + 2 smallest normal)
    bce = {"input": np.array([0.5]), "target": np.array([0.25]), "weight": np.array([-4.0])}
    expected = 4.0 * (math.log(2.0) + 2.0 * 2.0**-126)
    assert np.allclose(error_scales.scale("weighted_bce_loss", bce, (1,), f32), [expected], rtol=1e-15, atol=0)
    # sigmoid then BCE target gradient at x = -15 in float16, where p = sigmoid(-15) is subnormal: its rounding
    # (half of 2^-24) is a relative error of 2^-25 / p, i.e. 2^-14 / p unit roundoffs (u = 2^-11)
    x = mpmath.mpf(-15)
    p, q = 1 / (1 + mpmath.exp(-x)), 1 / (1 + mpmath.exp(x))
    expected = abs(mpmath.log(p)) + abs(mpmath.log(q)) + 2 + 2 * mpmath.exp(x) + mpmath.mpf(2) ** -14 / p
    got = error_scales.scale("sigmoid_bce_grad_target", {"input": np.array([-15.0])}, (1,), dtypes.FLOAT16)
    assert abs(float(got[0]) - float(expected)) <= 1e-12 * float(expected)

    # kl_div(log_target) target gradient exp(t) (t - x) + exp(t): at t = -0.10546875, x = 0.89453125 the exact
    # gradient is 0 (t - x = -1) while each term is exp(t); at t = 0, x = 3: |e (t - x)| = 3 and e = 1
    cancel = {"input": np.array([0.89453125, 3.0]), "target": np.array([-0.10546875, 0.0])}
    got = error_scales.scale("kl_div_log_target_grad_target", cancel, (2,), dtypes.BFLOAT16)
    assert np.allclose(got, [2.0 * float(mpmath.exp(-0.10546875)), 4.0], rtol=1e-15, atol=0)


def test_error_scales_count_the_underflows_of_the_backward_after_the_divisor() -> None:
    # kl_div(log_target) in float64 at t = -745, x = -1e300, mean over D = 8: exp(-745) is subnormal, a rounding of
    # a subnormal step (the smallest normal number in unit roundoffs) that |t - x| + 1 multiplies, and the two
    # backward products may each underflow by half a subnormal step whatever D: 2 D smallest normal
    f64, tiny = dtypes.FLOAT64, 2.0**-1022
    kl = {"input": np.array([-1e300]), "target": np.array([-745.0])}
    expected = (float(mpmath.exp(-745)) + tiny) * (1e300 - 745.0 + 1.0) + 2.0 * 8.0 * tiny
    got = error_scales.scale("kl_div_log_target_grad_target", kl, (1,), f64, divisor=8.0)
    assert np.allclose(got, [expected], rtol=1e-15, atol=0)
    # kl_div's target gradient g log t + (g t) / t - g x in float16 at t = 2^-24, the smallest subnormal, x =
    # -16.640625, D = 8: g t = 2^-27 underflows to 0, an error of 2^-27 that the quotient makes 1/8; in the
    # unit u S / D with u = 2^-11 that is S = D (2^-14 / t): |log t| + 1 + |x| + 2 D 2^-14 + D 2^-14 / 2^-24
    f16 = dtypes.FLOAT16
    grad = {"input": np.array([-16.640625, -16.640625]), "target": np.array([2.0**-24, 0.0])}
    got = error_scales.scale("kl_div_grad_target", grad, (2,), f16, divisor=8.0)
    lost_one = 8.0 * 2.0**-14 / 2.0**-24
    assert f16.unit_roundoff * lost_one / 8.0 == 2.0**-25 / 2.0**-24  # eta / t: half the smallest subnormal over t
    expected = 24.0 * math.log(2.0) + 1.0 + 16.640625 + 2.0 * 8.0 * 2.0**-14 + lost_one
    assert np.allclose(got[0], expected, rtol=1e-15, atol=0)
    assert math.isinf(got[1])  # t = 0: |log t| is infinite, the quotient 0 / 0 adds nothing
    # log_softmax then kl_div: the log-probability's terms are (2 + u_in / u) times its error size; a row [0, 0]
    # in float32 from float32 inputs: size = log 2 + 2, three times over
    rows = {"input": np.array([[0.0, 0.0]]), "target": np.array([[1.0, 0.5]])}
    got = error_scales.scale("log_softmax_kl_div_grad_target", rows, (1, 2), dtypes.FLOAT32, divisor=1.0)
    size, tiny32 = math.log(2.0) + 2.0, 2.0**-126
    row = [0.0 + 1.0 + 3.0 * size + 2.0 * tiny32 + tiny32, math.log(2.0) + 1.0 + 3.0 * size + 2.0 * tiny32
           + tiny32 / 0.5]
    assert np.allclose(got, [row], rtol=1e-15, atol=0)


def _to_precision(value: mpmath.mpf, fmt: dtypes.FloatFormat) -> mpmath.mpf:
    """``value`` rounded to nearest with ``fmt``'s significand bits by mpmath (normal values only)."""
    with mpmath.workprec(fmt.precision):
        return +value


def _rounding_ratio(x: float, fmt: dtypes.FloatFormat) -> float:
    """How much of half an ULP rounding ``sigmoid(x)`` to ``fmt`` costs, relative to ``p``."""
    p = 1 / (1 + mpmath.exp(-mpmath.mpf(x)))
    return float(abs(_to_precision(p, fmt) - p) / p / fmt.unit_roundoff)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autocast_scales_measure_the_16_bit_rounding_of_the_intermediate(dtype: str) -> None:
    # CPU autocast rounds sigmoid(x) to the 16-bit dtype and computes -log p from it in float32 (y = 1): the
    # loss's error is |log p16 - log p|, which in float32 unit roundoffs of the scale is at most 1 and, at the
    # logit whose probability rounds worst, close to 1 (the scale is neither loose nor too tight)
    fmt, f32 = dtypes.get(dtype), dtypes.FLOAT32
    logits = [float(_to_precision(mpmath.mpf(v), fmt)) for v in np.linspace(-6.0, 6.0, 1201)]
    x = max(logits, key=lambda v: _rounding_ratio(v, fmt))
    p = 1 / (1 + mpmath.exp(-mpmath.mpf(x)))
    error = float(abs(mpmath.log(_to_precision(p, fmt)) - mpmath.log(p)))
    inputs = {"input": np.array([x]), "target": np.array([1.0])}
    unit = f32.unit_roundoff * error_scales.scale("sigmoid_bce_loss", inputs, (1,), f32, fmt)[0]
    assert 0.9 <= error / unit <= 1.0
    # log_softmax then kl_div, row [0, x], t = [1, 0]: the loss error is |lsm16 - lsm| of the first element
    row = {"input": np.array([[0.0, x]]), "target": np.array([[1.0, 0.0]])}
    lsm = -mpmath.log(1 + mpmath.exp(mpmath.mpf(x)))
    lsm16 = _to_precision(lsm, fmt)
    unit = f32.unit_roundoff * error_scales.scale("log_softmax_kl_div_loss", row, (1, 2), f32, fmt)[0, 0]
    assert float(abs(lsm16 - lsm)) <= unit
    assert error_scales.scale("log_softmax_kl_div_loss", row, (1, 2), f32, fmt)[0, 1] == 0.0  # t = 0


def test_an_error_scale_bounds_the_absolute_error_by_unit_roundoffs() -> None:
    entry = replace(_entry(None), error_scale="bce_with_logits_grad_input", max_scaled_error=8.0)
    inputs = {"input": np.array([0.0, 0.0]), "target": np.array([0.5, 0.5]), "pos_weight": np.array([3.0])}
    f32 = dtypes.FLOAT32
    eta = float(np.finfo(np.float32).smallest_subnormal) / 2  # an underflowing operation's error
    bound = 8 * (2.0**-24 * 3.0 + eta) / 4  # S = 3 each, under a mean of 4 elements
    errors = np.array([bound, math.nextafter(bound, 1.0)])
    assert entry.within_error_scale(errors, inputs, (2,), 4, f32).tolist() == [True, False]
    scalar = 8 * (2.0**-24 * 6.0 + eta) / 4  # a reduced value: the sum of its batch's S
    assert bool(entry.within_error_scale(np.float64(scalar), inputs, (2,), 4, f32))
    assert not entry.within_error_scale(np.float64(math.nextafter(scalar, 1.0)), inputs, (2,), 4, f32)
    assert _entry(None).within_error_scale(errors, inputs, (2,), 4, f32).all()  # no scale: no bound
    base = {"id": "x", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["kl_div"], "dtypes": ["float32"],
            "quantity": "loss", "label": "inaccurate", "region": {}}
    with pytest.raises(ValueError, match="unknown error_scale"):
        deviations._parse({**base, "error_scale": "nope", "max_scaled_error": 8})
    with pytest.raises(ValueError, match="go together"):
        deviations._parse({**base, "error_scale": "bce_with_logits_grad_input"})


def _exact_kl_div_grad_target(t: float, x: float, divisor: float, log_target: bool) -> mpmath.mpf:
    """The exact target gradient of kl_div at one element, divided by the reduction's ``divisor``."""
    t_, x_ = mpmath.mpf(t), mpmath.mpf(x)
    return (mpmath.exp(t_) * (t_ - x_ + 1) if log_target else mpmath.log(t_) + 1 - x_) / divisor


@pytest.mark.parametrize(("entry_id", "t", "x", "log_target"), [
    ("kl-div-target-grad-subnormal-target", 5e-324, -744.0, False),  # g t = 2^-1075 rounds to 0: the + 1/2 is lost
    ("kl-div-log-target-subnormal", -744.07, -1e300, True),  # exp(-744.07) = 1.45 subnormal steps rounds to 1
])
def test_subnormal_kl_div_gradients_are_within_their_error_scale_and_near_it(entry_id: str, t: float, x: float,
                                                                            log_target: bool) -> None:
    # torch's formulas replayed in float64 numpy (the order of torch 2.13's autograd, bit for bit on CPU) at a
    # mean over D = 2: the error is the subnormal rounding the scale counts, within the entry's bound and more than
    # a quarter of one unit (the scale is not loose by orders of magnitude)
    entry, g, f64 = deviations.get(entry_id), np.float64(0.5), dtypes.FLOAT64
    tt, xx = np.float64(t), np.float64(x)
    with np.errstate(under="ignore"):
        if log_target:
            e = np.exp(tt)
            got = (g * (tt - xx)) * e + g * e
        else:
            got = (g * np.log(tt) + (g * tt) / tt) - g * xx
    error = float(abs(mpmath.mpf(float(got)) - _exact_kl_div_grad_target(t, x, 2.0, log_target)))
    unit = float(entry.error_unit({"input": np.array([x]), "target": np.array([t])}, (1,), 2, f64)[0])
    assert entry.max_scaled_error is not None
    assert 0.25 <= error / unit <= entry.max_scaled_error


def test_a_softmax_underflow_times_a_huge_target_sum_is_the_logit_gradients_rounding() -> None:
    """The targeted search's row (torch 2.13, float64): exp(-960) underflows to 0 in torch's exp(lsm) sum(t), and
    the targets' sum 1.8e308 makes the exact gradient 2.2e-109, a normal number: flushed, within the error scale
    of the formula's underflow (eta sum|t|), not beyond it as a kernel that dropped the whole sum would be."""
    row = {"input": np.array([[745.1332191019414, -100.00000000000003, -1.1102230246251562e-16, 959.9885561190845,
                               -0.0, 31.401946388208533]]),
           "target": np.array([[0.9999999999989999, 1.0000000000010002e-12, 0.0, 1.7976931348623157e+308, 0.0,
                                0.0]])}
    result = run.evaluate(cases.get("log_softmax_kl_div"), row, "float64", reductions=("none",))
    q = result.get("none", "grad_input")
    assert Label(int(q.metrics.labels[0, 2])) == Label.FLUSHED and q.got[0, 2] == 0.0
    verdict = judge.judge(result, q)
    assert verdict.known["log-softmax-kl-div-grad-cancellation"][0, 2]
    scale = error_scales.scale("log_softmax_kl_div_grad_input", row, (1, 6), dtypes.FLOAT64)
    assert scale[0, 2] == pytest.approx(1.7976931348623157e+308 * dtypes.FLOAT64.smallest_normal, rel=1e-12)
