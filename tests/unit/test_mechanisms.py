"""Mechanisms of known deviations (:mod:`suite.mechanisms`): the values of torch's clamped or truncated formulas,
against hand values, numpy and mpmath, and the judge's use of them (a wrong value inside a clamp region is not
excused)."""

from __future__ import annotations

import dataclasses
import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from suite import cases, deviations, dtypes, fp_environment, judge, mechanisms, run
from suite.metrics import Label
from tests.conftest import replay_formula, skip_where_torch_raises

F64, F32, F16, BF16 = dtypes.FLOAT64, dtypes.FLOAT32, dtypes.FLOAT16, dtypes.BFLOAT16


def _hull(name: str, inputs: dict[str, np.ndarray], shape: tuple[int, ...], fmt: dtypes.FloatFormat,
          divisor: int = 1, input_fmt: dtypes.FloatFormat | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The least and greatest value of the mechanism's branches at each element, and whether it may give NaN."""
    low, high, nan = mechanisms.outcomes(name, inputs, shape, fmt, divisor, input_fmt)
    return np.fmin.reduce(low, axis=0), np.fmax.reduce(high, axis=0), nan


def _interval(name: str, fmt: dtypes.FloatFormat, divisor: int = 1, **inputs: float) -> tuple[float, float]:
    """The mechanism's hull for one element, its ends as float64 numbers."""
    low, high, _ = _hull(name, {k: np.array([v]) for k, v in inputs.items()}, (1,), fmt, divisor)
    return float(low[0]), float(high[0])


def test_the_log_clamp_caps_each_log_at_100() -> None:
    # p = 0 and p = 1 put one log at -inf, clamped to -100: the loss is 100 times that log's coefficient
    assert _interval("bce_log_clamp", F32, input=0.0, target=0.5) == (50.0, 50.0)
    assert _interval("bce_log_clamp", F32, input=1.0, target=0.25) == (75.0, 75.0)
    assert _interval("bce_log_clamp", F32, input=0.0, target=0.5, weight=-3.0) == (-150.0, -150.0)
    # p = 1e-300 clamps log p (-690.8) but not log(1 - p) (-1e-300): 25 + 0.75e-300 rounds to 25
    assert _interval("bce_log_clamp", F64, input=1e-300, target=0.25) == (25.0, 25.0)
    # outside the clamp it is the exact loss: -log(0.5) = log 2
    assert _interval("bce_log_clamp", F64, input=0.5, target=1.0) == (math.log(2), math.log(2))


def test_a_flushing_kernel_reads_a_subnormal_probability_as_0() -> None:
    # float32 p = 1e-39 is subnormal: log1p(-p) flushed is 0, so with y = 0 the loss 3 p = 3e-39 (a normal number)
    # becomes 0, give or take three subnormal roundings before the weight 3; eager's 3 p is not this mechanism
    p32 = float(np.float32(1e-39))
    low, high = _interval("bce_flushed_probability", F32, input=p32, target=0.0, weight=3.0)
    assert (low, high) == (-3 * 1.5 * 2.0**-149, 3 * 1.5 * 2.0**-149)
    kept = mechanisms.distance_ulps("bce_flushed_probability", {"input": np.array([p32]), "target": np.zeros(1),
                                                                "weight": np.array([3.0])}, np.array([3 * p32]), 1, F32)
    assert kept[0] > 1e6
    # y = 1/2: the log of p kept (-log 1e-39 / 2, from mpmath) or flushed (log 0 clamped: 100 / 2), nothing between
    inputs = {"input": np.full(3, p32), "target": np.full(3, 0.5)}
    kept_log = float(np.float32(-mpmath.log(mpmath.mpf(p32)) / 2))  # the float32 result
    distance = mechanisms.distance_ulps("bce_flushed_probability", inputs, np.array([kept_log, 50.0, 47.0]), 1, F32)
    assert distance[0] == distance[1] == 0 and distance[2] > 1e5
    # a normal p is read as it is: the clamped loss, -log(0.75) at p = 1/4, y = 0
    assert _interval("bce_flushed_probability", F64, input=0.25, target=0.0) == (-math.log(0.75), -math.log(0.75))


def test_a_kernel_run_with_flush_to_zero_is_the_flushed_probability_mechanism() -> None:
    # torch's float32 BCE on this CPU with flush-to-zero and denormals-are-zero on: a flushing kernel to check the
    # mechanism against (CUDA's compiled one, which the registry entry is about, needs a GPU); without them torch
    # keeps p, and where that matters (y = 0, w p a normal number: not at 2^-149, within the rounding slack, nor
    # with y > 0, where y log p dwarfs p) the mechanism does not hold
    p = np.array([1e-45, 1e-40, 1.1e-38, 1e-39, 1e-39, 1e-39, 0.25], dtype=np.float32)
    y = np.array([0.0, 0.0, 0.0, 0.5, 1.0, 0.25, 0.0], dtype=np.float32)
    w = np.full(p.shape, 3.0e8, dtype=np.float32)
    inputs = {"input": p.astype(np.float64), "target": y.astype(np.float64), "weight": w.astype(np.float64)}

    def loss() -> np.ndarray:
        value = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y), weight=torch.from_numpy(w),
                                       reduction="none")
        return value.numpy().astype(np.float64)

    try:
        with fp_environment.flushing_subnormals():
            flushed = loss()
    except RuntimeError:
        pytest.skip("this CPU has no flush-to-zero mode")
    assert mechanisms.distance_ulps("bce_flushed_probability", inputs, flushed, 1, F32).max() <= 6
    assert (mechanisms.distance_ulps("bce_flushed_probability", inputs, loss(), 1, F32)[1:3] > 1e11).all()


def test_the_gradient_epsilon_is_torchs_float32_constant_in_each_format() -> None:
    eps32 = float(np.float32(1e-12))  # 9.99999996e-13: torch's constant is a float
    assert mechanisms.grad_epsilons(F64) == tuple(sorted({eps32, 1e-12}))
    assert mechanisms.grad_epsilons(F32) == (eps32,)
    # float16 has no 1e-12 (its smallest subnormal is 2^-24 = 6e-8): 0, or float32's where torch computes in it
    assert mechanisms.grad_epsilons(F16) == (0.0, eps32)
    bf16 = {torch.tensor(v, dtype=torch.float64).to(torch.bfloat16).item() for v in (1e-12, eps32)}
    assert mechanisms.grad_epsilons(BF16) == tuple(sorted(bf16 | {eps32}))


def test_the_gradient_epsilon_interval_holds_every_epsilon() -> None:
    # p = 0, y = 0.5: w (p - y) / eps for each epsilon, computed here with numpy's float64 division
    eps = mechanisms.grad_epsilons(F64)
    low, high = _interval("bce_grad_epsilon", F64, input=0.0, target=0.5)
    assert (low, high) == (min(-0.5 / e for e in eps), max(-0.5 / e for e in eps))
    # each epsilon is a branch of its own: torch's float32 constant or a float64 one, nothing between
    between = (low + high) / 2
    distance = mechanisms.distance_ulps("bce_grad_epsilon", {"input": np.zeros(3), "target": np.full(3, 0.5)},
                                        np.array([low, high, between]), 1, F64)
    assert distance[0] == distance[1] == 0 and distance[2] > 1e6
    # a mean over 4 elements divides by 4, exactly
    assert _interval("bce_grad_epsilon", F64, 4, input=0.0, target=0.5) == (low / 4, high / 4)
    # float16: eps = 0 gives -inf, float32's 1e-12 gives -0.5e12: both are torch's formula
    assert _interval("bce_grad_epsilon", F16, input=0.0, target=0.5)[0] == -math.inf
    # p = y = 0: 0 / 0 is no value for eps = 0, and 0 for float32's, give or take the rounding of a subnormal
    # before the weight (half of float16's 2^-24)
    assert _interval("bce_grad_epsilon", F16, input=0.0, target=0.0) == (-(2.0**-25), 2.0**-25)
    # float64, p = 2^-1074, y = 0, w = 1000: (p - y) / 9.99999996e-13 = 4.94e-312 is subnormal, rounded to a
    # multiple of 2^-1074 before the weight multiplies it, so 1000 times half of 2^-1074 either way
    weighted = {"input": np.array([5e-324]), "target": np.zeros(1), "weight": np.array([1000.0])}
    lows, highs, _ = mechanisms.outcomes("bce_grad_epsilon", weighted, (1,), F64, 1)
    branch = mechanisms.grad_epsilons(F64).index(float(np.float32(1e-12)))  # eager's: torch's float32 constant
    quotient = np.longdouble(5e-324) / np.longdouble(float(np.float32(1e-12)))
    bottom, top = lows[branch, 0], highs[branch, 0]
    assert float(top - bottom) == 1000 * 5e-324 and bottom < 1000 * quotient < top
    # an unclamped p: the exact gradient (p - y) / (p (1 - p)) = -1 / (1 - p) at y = 1
    assert _interval("bce_grad_epsilon", F64, input=0.5, target=1.0) == (-2.0, -2.0)


def test_the_lost_sigmoid_spans_zero_to_the_rounded_up_sigmoid() -> None:
    # float32, x = -100, y = 0.5, pw = 3: w ((pw y + 1 - y) s - pw y) for s from 0 to sigmoid(-100) + 2^-150
    with mpmath.workprec(300):
        top = mpmath.sigmoid(-100) + mpmath.mpf(2) ** -150
        expected_high = float((3 * mpmath.mpf(0.5) + 1 - mpmath.mpf(0.5)) * top - 3 * mpmath.mpf(0.5))
    low, high = _interval("sigmoid_underflow_grad", F32, input=-100.0, target=0.5, pos_weight=3.0)
    assert (low, high) == (-1.5, expected_high)
    # float64, x = -800: sigmoid is 3.7e-348, far below half the smallest subnormal (2^-1075), the top of
    # torch's sigmoid; the gradient's own rounding before the weight adds 2^-1075 either way: from -2^-1075 to
    # 2^-1074, so 0 and a sigmoid rounded up to 2^-1074 are inside, 2^-1073 is half an ULP beyond
    inputs = {"input": np.array([-800.0, -800.0, -800.0]), "target": np.zeros(3)}
    ends = _hull("sigmoid_underflow_grad", inputs, (3,), F64)
    assert ends[0][0] == -np.ldexp(np.longdouble(1), -1075) and ends[1][0] == np.ldexp(np.longdouble(1), -1074)
    assert mechanisms.distance_ulps("sigmoid_underflow_grad", inputs, np.array([0.0, 5e-324, 1e-323]), 1,
                                    F64).tolist() == [0.0, 0.0, 1.0]


def test_distance_in_ulps_to_the_interval() -> None:
    inputs = {"input": np.zeros(6), "target": np.full(6, 0.5)}
    spacing50 = float(np.spacing(np.float32(50.0)))
    got = np.array([50.0, 50.0 + 3 * spacing50, 100.0, math.nan, -math.inf, 49.0])
    distance = mechanisms.distance_ulps("bce_log_clamp", inputs, got, 1, F32)
    # numpy's spacing is the float32 ULP at 50 (and below it, 49 is in the same binade [32, 64))
    assert distance.tolist() == [0.0, 3.0, 50.0 / spacing50, math.inf, math.inf, 1.0 / spacing50]
    # an infinite end matches only itself
    grad = {"input": np.zeros(2), "target": np.full(2, 0.5)}
    assert mechanisms.distance_ulps("bce_grad_epsilon", grad, np.array([-math.inf, math.inf]), 1, F16).tolist() == [
        0.0, math.inf]


def _clamp_result() -> tuple[run.CaseResult, run.QuantityResult]:
    # float32 BCE at p = 0 and p = 1e-45 (below e^-100) with soft targets: torch's loss is 100 y per element
    inputs = {"input": np.array([0.0, 1.401298464324817e-45, 0.0]), "target": np.array([0.5, 0.25, 1.0])}
    result = run.evaluate(cases.get("bce"), inputs, "float32", reductions=("none",), gradients=False)
    return result, result.get("none", "loss")


def test_the_clamp_entry_explains_torchs_value_and_not_another_clamp() -> None:
    result, q = _clamp_result()
    assert q.got.tolist() == [50.0, 25.0, 100.0]
    entry = deviations.get("bce-log-clamp-100")
    assert judge.judge(result, q).known[entry.id].all()
    assert set(q.metrics.labels.tolist()) <= {int(Label.CLAMPED), int(Label.INACCURATE), int(Label.EXACT)}
    # a kernel that clamps the whole loss at 100 is as far from the exact loss (its labels kept here), but not
    # torch's formula, except where y = 1
    wrong = dataclasses.replace(q, got=np.full(3, 100.0))
    explained = judge.explains(entry, result, wrong)
    assert explained.tolist() == [False, False, True]
    assert judge.mechanism_distance(entry, result, wrong)[:2].min() > 6


def test_a_mechanism_and_its_ulps_go_together_and_name_a_known_mechanism() -> None:
    base = {"id": "x", "description": "d", "reason": "r", "torch": ">=1.0", "cases": ["bce"], "dtypes": ["float32"],
            "quantity": "loss", "label": ["clamped"], "region": {}}
    with pytest.raises(ValueError, match="go together"):
        deviations._parse({**base, "mechanism": "bce_log_clamp"})
    with pytest.raises(ValueError, match="unknown mechanism"):
        deviations._parse({**base, "mechanism": "no_such", "mechanism_ulps": 1})
    parsed = deviations._parse({**base, "mechanism": "bce_log_clamp", "mechanism_ulps": 6})
    assert (parsed.mechanism, parsed.mechanism_ulps) == ("bce_log_clamp", 6)


def test_torchs_sigmoid_may_be_off_by_a_few_roundings_and_lose_a_subnormal_value() -> None:
    with mpmath.workprec(200):
        s = mpmath.sigmoid(3)
        u = mpmath.mpf(2) ** -24
        expected = (float(s * (1 - 4 * u) - u * 2**-126 / 2), float(s * (1 + 4 * u) + u * 2**-126 / 2))
    low, high = mechanisms.torch_sigmoid_range(np.array([3.0], dtype=np.longdouble), F32)
    assert abs(float(low[0]) - expected[0]) < 1e-16 and abs(float(high[0]) - expected[1]) < 1e-16
    # sigmoid(-100) = 3.7e-44 is a float32 subnormal: 1 / (1 + exp(100)) is 0 there (exp overflows)
    low, high = mechanisms.torch_sigmoid_range(np.array([-100.0], dtype=np.longdouble), F32)
    assert low[0] == 0 and 3.7e-44 < high[0] < 3.8e-44


def test_sigmoid_bce_gradient_where_sigmoid_rounds_to_one() -> None:
    # float16, x = 12, y = 0.5: sigmoid(12) = 0.9999939.  Eager's float16 sigmoid may be 1, where BCE's
    # (p - y) / max(0, eps) is inf (eps = 0, or 5e11 stored in float16), times sigmoid's 0: NaN; a fused kernel
    # with float32's eps keeps 5e11 and gives 0.  Below 1 the chain rule gives p - y, largest for a fused
    # kernel's float32 sigmoid: the largest float32 at most sigmoid(12) (1 + 4 * 2^-24), minus 0.5.
    with mpmath.workprec(200):
        top = float(mpmath.sigmoid(12) * (1 + 4 * mpmath.mpf(2) ** -24))
    largest = np.float32(top)
    largest = largest if float(largest) <= top else np.nextafter(largest, np.float32(0))
    inputs = {"input": np.array([12.0, 12.0, 12.0]), "target": np.full(3, 0.5)}
    low, high, nan = _hull("sigmoid_bce_grad", inputs, (3,), F16)
    assert (float(low[0]), float(high[0]), bool(nan[0])) == (0.0, float(largest) - 0.5, True)
    distance = mechanisms.distance_ulps("sigmoid_bce_grad", inputs, np.array([math.nan, 0.25, 1.0]), 1, F16)
    # 1.0 is 1.5 - largest beyond the top, in float16 ULPs there (2^-12, numpy's spacing just below 0.5)
    assert float(np.spacing(np.float16(0.5 - 2**-12))) == 2**-12
    assert distance.tolist() == [0.0, 0.0, (1.5 - float(largest)) * 2**12]


def test_sigmoid_bce_gradient_of_a_mean_may_overflow_before_the_division() -> None:
    # float16, x = -17.25 (sigmoid 3.2e-8, rounding to 2^-24 or 0), y = 0.9, mean over 2^17 elements: BCE's
    # (p - y) / (p (1 - p)) = -1.5e7 overflows float16 before torch divides it by N, so -inf is its value
    inputs = {"input": np.array([-17.25]), "target": np.array([0.89990234375])}
    low, high, _ = _hull("sigmoid_bce_grad", inputs, (1,), F16, 2**17)
    assert low[0] == -np.inf and high[0] == 0


def test_sigmoid_bce_loss_where_the_clamp_decides() -> None:
    # x = 20, y = 0.9 (float32's 0.89999998): sigmoid(20) = 1 - 2.1e-9 rounds to 1 in float32, where BCE's clamp
    # gives (1 - y) 100 = 10.0000024;
    # a fused kernel's float32 sigmoid just below 1 gives less (-0.1 log(1 - p) of at most 16.6 for p = 1 - 2^-24)
    inputs = {"input": np.array([20.0, 20.0, 20.0]), "target": np.full(3, np.float32(0.9), dtype=np.float64)}
    low, high, nan = _hull("sigmoid_bce_loss", inputs, (3,), F32)
    clamped = 100 * (1 - float(np.float32(0.9)))
    assert abs(float(high[0]) - clamped) < 1e-12 and float(low[0]) < 2 and not nan[0]
    distance = mechanisms.distance_ulps("sigmoid_bce_loss", inputs, np.array([clamped, 100.0, 0.0]), 1, F32)
    assert distance[0] < 1 and distance[1] > 1e6 and distance[2] > 1e6
    # CPU autocast: a float16 sigmoid (1 from x = 12 on) and a float32 loss
    inputs = {"input": np.array([12.0]), "target": np.array([0.5])}
    assert _hull("sigmoid_bce_loss", inputs, (1,), F32, 1, F16)[1][0] == 50
    assert _hull("sigmoid_bce_loss", inputs, (1,), F32)[1][0] < 10


def _log_of_exps(x: np.floating, y: np.floating) -> np.floating:
    """BCE-with-logits' older formula in numpy scalars of one type, each operation's result rounded to it (the
    promotion rules of numpy 1 and 2 differ for scalars, so the rounding is explicit)."""
    r = type(x)
    m = max(r(-x), r(0))
    total = r(r(np.exp(r(-m))) + r(np.exp(r(r(-x) - m))))
    return r(r(r(r(r(1) - y) * x) + m) + r(np.log(total)))


def test_the_log_of_exps_formula_rounds_the_sum_before_its_log() -> None:
    # float64, y = 1: 1 + exp(-37.43) rounds to 1 (exp(-37.43) = 5.6e-17 < u/2), so the formula gives 0 (log of
    # a sum within an ULP of 1 either side, as libm's exp may be an ULP off), not log1p(exp(-x)) = 5.6e-17 alone;
    # at x = 2 the interval holds numpy's float64 value, within a few ULPs of 1 (the log's absolute error there)
    low, high = _interval("bce_with_logits_log_of_exps", F64, input=37.4299478, target=1.0)
    assert low <= 0.0 <= high and max(-low, high) <= 2 * math.ulp(1.0)
    assert float(_log_of_exps(np.float64(37.4299478), np.float64(1.0))) == 0.0
    low, high = _interval("bce_with_logits_log_of_exps", F64, input=2.0, target=1.0)
    expected = float(_log_of_exps(np.float64(2.0), np.float64(1.0)))
    assert low <= expected <= high and high - low <= 4 * math.ulp(1.0)
    # float16: numpy's float16 operations round each result as torch's 16-bit CPU ops do; at x = 7.62,
    # y = 1, 1 + exp(-7.62) rounds up to 1 + 2^-10, twice the exact loss 4.9e-4 (the branch computed in float32
    # and stored once, a fused kernel's, gives about the exact loss)
    with np.errstate(all="ignore"):
        for x, y in ((7.62109375, 1.0), (0.5, 0.0), (-3.0, 0.899902344), (9.703125, 1.0)):
            half = float(_log_of_exps(np.float16(x), np.float16(y)))
            low, high = _interval("bce_with_logits_log_of_exps", F16, input=x, target=y)
            assert low <= half <= high, (x, y, half, low, high)
    rounded_up = float(_log_of_exps(np.float16(7.62109375), np.float16(1.0)))
    assert rounded_up == float(np.float16(math.log1p(2.0**-10)))
    assert rounded_up > 1.9 * float(mpmath.log1p(mpmath.exp(-7.62109375)))
    # the pos_weight scales the log's term, (pw - 1) y + 1 = 3 at y = 1, pw = 3; a weight scales the whole loss
    pos = _interval("bce_with_logits_log_of_exps", F64, input=2.0, target=1.0, pos_weight=3.0)
    weighted = _interval("bce_with_logits_log_of_exps", F64, input=2.0, target=1.0, weight=3.0)
    assert pos[0] <= 3 * expected <= pos[1] and weighted[0] <= 3 * expected <= weighted[1]


def test_a_mean_whose_divisor_overflowed_has_a_zero_gradient() -> None:
    # float16 holds no N above 65504: 1 / inf = 0, so every g / N is 0; a 6e-8 (the smallest subnormal) is not
    inputs = {"input": np.array([1.0, 1.0]), "target": np.zeros(2)}
    distance = mechanisms.distance_ulps("mean_divisor_overflow", inputs, np.array([-0.0, 2.0**-24]), 70000, F16)
    assert distance.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("case_name", "inputs", "far"), [
    ("bce", {"input": np.array([1e-4, 0.3, 0.7, 0.999]), "target": np.array([0.0, 0.9, 0.9, 1.0])}, 2),
    # rows of width 3: an element's replay needs its whole row (log_softmax), so the subset keeps whole rows; the
    # replay of a row's 16-bit sum is an interval, which t (log t - log_softmax(x)) may stretch over several ULPs
    ("log_softmax_kl_div", {"input": np.array([[-3.4, 0.0, 2.0], [7.0, -1.0, 0.5], [0.25, -6.0, 3.0]]),
                            "target": np.array([[0.625, 0.25, 0.125], [0.5, 0.5, 0.0], [0.125, 0.25, 0.625]])},
     16),
])
def test_a_mechanism_on_some_elements_is_the_mechanism_on_all_there(case_name: str, inputs: dict, far: int) -> None:
    skip_where_torch_raises(case_name, "float16")
    result = run.evaluate(cases.get(case_name), inputs, "float16", reductions=("none",))
    entry = deviations.get("half-arithmetic-loss")
    q = result.get("none", "loss")
    # torch's value, and one ``far`` ULPs of float16 away: the replay holds the first, not the second
    moved = dataclasses.replace(q, got=q.got + far * dtypes.ulp(q.got, F16))
    for quantity in (q, moved):
        everywhere = judge.explains(entry, result, quantity)
        among = np.zeros(q.got.shape, dtype=bool)
        among.flat[0] = among.flat[-1] = True  # the first and last element (row): not those between
        assert np.array_equal(judge.explains(entry, result, quantity, among)[among], everywhere[among])
    within = entry.within_mechanism(q.got, result.inputs, 1, F16, F16, (case_name, "loss"))
    assert within.all()
    assert not entry.within_mechanism(moved.got, result.inputs, 1, F16, F16, (case_name, "loss")).any()


def _near_subnormal_grid(dtype: torch.dtype) -> np.ndarray:
    """Values about the computing format's subnormal range and the logits whose exponentials reach it."""
    tiny = float(torch.finfo(torch.float32 if dtype == torch.bfloat16 else dtype).tiny)
    log_tiny = math.log(tiny)
    return np.array([0.0, tiny / 2, tiny, 1.5 * tiny, 3 * tiny, -tiny / 2, -1.5 * tiny, log_tiny - 0.7, log_tiny,
                     log_tiny + 0.7, -log_tiny - 0.7, -log_tiny, -log_tiny + 0.7, 0.5, 1.0, -1.0])


FLUSHED_LOSSES = {
    "bce": lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
    "bce_with_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
    "kl_div": lambda x, y: F.kl_div(x, y, reduction="none"),
    "kl_div_log_target": lambda x, y: F.kl_div(x, y, reduction="none", log_target=True),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", sorted(FLUSHED_LOSSES))
def test_torchs_kernels_with_flush_to_zero_on_are_the_flushing_replay(case: str, dtype: torch.dtype) -> None:
    """An independent check of ``kernel_replay_fast_math``: torch's own eager kernels run with flush-to-zero and
    denormals-are-zero on (``torch.set_flush_denormal``) give, at every point about the subnormal range, the
    IEEE replay's value or the flushing one's, and the IEEE replay alone misses some."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode (torch.set_flush_denormal returned False)")
    fmt = dtypes.get(str(dtype).removeprefix("torch."))
    skip_where_torch_raises(case, fmt.name)
    grid = _near_subnormal_grid(dtype)
    if case == "bce":
        grid = grid[(grid >= 0) & (grid <= 1)]
    targets = np.concatenate([grid[(grid >= 0) & (grid <= 1)], [0.5]]) if case != "kl_div_log_target" else grid
    x = np.repeat(grid, targets.size)
    y = np.tile(targets, grid.size)
    inputs = torch.tensor(x, dtype=dtype).requires_grad_()
    target = torch.tensor(y, dtype=dtype).requires_grad_()
    with fp_environment.flushing_subnormals():
        loss = FLUSHED_LOSSES[case](inputs, target)
        grads = torch.autograd.grad(loss.sum(), [inputs, target])
    exact = {"input": inputs.detach().double().numpy(), "target": target.detach().double().numpy()}
    bound = deviations.get("compile-cpu-fast-math-flushes-subnormals").mechanism_ulps
    assert bound is not None
    missed_by_ieee = 0
    for quantity, got in zip(("loss", "grad_input", "grad_target"), (loss, *grads), strict=True):
        if replay_formula(case, fmt.name, "cpu", quantity)[0] != "kernel_replay":
            continue  # this torch computes an older formula, which has no flushing replay
        values = got.detach().double().numpy()
        ieee = mechanisms.distance_ulps("kernel_replay", exact, values, 1, fmt, formula=(case, quantity))
        flushing = mechanisms.distance_ulps("kernel_replay_fast_math", exact, values, 1, fmt,
                                            formula=(case, quantity))
        outside = np.fmin(ieee, flushing) > bound
        assert not outside.any(), (quantity, x[outside], y[outside])
        assert not ((ieee == 0) & (flushing < np.inf)).any()  # a departure only where the IEEE replay misses
        missed_by_ieee += int((ieee > bound).sum())
    assert missed_by_ieee > 0


def test_the_fast_math_replay_explains_only_a_departure_from_the_ieee_one() -> None:
    tiny = float(np.finfo(np.float64).tiny)
    inputs = {"input": np.array([0.5, tiny, 0.5]), "target": np.zeros(3)}
    # log 2 at p = 0.5 is what both kernels give: the IEEE replay explains it, the flushing one does not; at the
    # smallest normal p, log1p(-p) is -p or, where its intermediate -p / (2 - p) is flushed, 0; the float64 three
    # after log 2 (numpy's nextafter) is as far from both (their log is within an ULP), so it is no sign of
    # -ffast-math either
    beyond = np.nextafter(np.nextafter(np.nextafter(math.log(2.0), 1.0), 1.0), 1.0)
    got = np.array([math.log(2.0), 0.0, beyond])
    ieee = mechanisms.distance_ulps("kernel_replay", inputs, got, 1, F64, formula=("bce", "loss"))
    fast = mechanisms.distance_ulps("kernel_replay_fast_math", inputs, got, 1, F64, formula=("bce", "loss"))
    assert ieee[0] == 0 and ieee[1] > 1e15 and 0 < ieee[2] < 3
    assert fast.tolist() == [math.inf, 0.0, math.inf]


def test_the_fast_math_replay_of_a_mean_bce_gradient_may_multiply_by_1_over_n_first() -> None:
    # torch 2.1.2's compiled float64 backward (-ffast-math) hoists the mean's 1/N into the upstream grad: at the
    # smallest normal p, y = 0, (1/615) p is subnormal and flushed, so the gradient is 0 (measured), where the
    # division last gives p / 1e-12 / 615 = 3.6e-299
    tiny = float(np.finfo(np.float64).tiny)
    inputs = {"input": np.array([tiny, 0.25]), "target": np.zeros(2)}
    got = np.array([0.0, 1 / 0.75 / 615])
    fast = mechanisms.distance_ulps("kernel_replay_fast_math", inputs, got, 615, F64, formula=("bce", "grad_input"))
    ieee = mechanisms.distance_ulps("kernel_replay", inputs, got, 615, F64, formula=("bce", "grad_input"))
    assert fast.tolist() == [0.0, math.inf] and ieee[0] > 1e15 and ieee[1] == 0.0
    # unreduced, there is no 1/N to hoist
    unreduced = mechanisms.distance_ulps("kernel_replay_fast_math", inputs, np.zeros(2), 1, F64,
                                         formula=("bce", "grad_input"))
    assert unreduced[0] > 1e15
    # without flush-to-zero (the 2.1.2 quick report with --jobs 1, measured) the hoisted order gives
    # 3.618006273995617e-299, 316 ULPs from the division last with either 1e-12 (float32's, eager's; float64's, a
    # compiled kernel's): a replay branch per constant, not the span between them, leaves it to the fast-math one
    hoisted = np.array([3.618006273995617e-299, 3.6180062739954496e-299])
    smallest = {"input": np.full(2, tiny), "target": np.zeros(2)}
    gradient = ("bce", "grad_input")
    fast = mechanisms.distance_ulps("kernel_replay_fast_math", smallest, hoisted, 615, F64, formula=gradient)
    ieee = mechanisms.distance_ulps("kernel_replay", smallest, hoisted, 615, F64, formula=gradient)
    assert fast.tolist() == [0.0, math.inf] and ieee.tolist() == [316.0, 0.0]


def test_the_fast_math_half_replay_explains_torch_2_1s_compiled_float16_results_beyond_its_range() -> None:
    """torch 2.1.2's compiled float16 values (the quick report's reproducers, measured) where the exact value
    and the IEEE replay are infinite: the mean BCE input gradient of 560 elements at p = 1, y = 0 (the float32
    gradient 1e12 / 560 stored by -ffast-math's conversion) and at p = -0, y = 0.1; BCEWithLogits' target
    gradient -w x at x = 65504, w = 3."""
    bce = {"input": np.array([1.0, -0.0, 0.5]), "target": np.array([0.0, 0.0999755859375, 0.0])}
    got = np.array([0.415771484375, -0.04156494140625, 0.003570556640625])  # the last: 1 / 560, IEEE's too
    half = dtypes.FLOAT16
    fast = mechanisms.distance_ulps("kernel_replay_fast_math_half", bce, got, 560, half, formula=("bce", "grad_input"))
    ieee = mechanisms.distance_ulps("kernel_replay", bce, got, 560, half, formula=("bce", "grad_input"))
    assert fast.tolist() == [0.0, 0.0, math.inf] and ieee.tolist() == [math.inf, math.inf, 0.0]
    logits = {"input": np.array([65504.0]), "target": np.array([1.0]), "weight": np.array([3.0])}
    torchs = -3.045797348022461e-05
    neighbour = float(np.nextafter(np.float16(torchs), np.float16(0.0)))  # numpy's next float16 toward 0
    for value, expected in ((torchs, 0.0), (-np.inf, math.inf), (neighbour, 1.0)):
        distance = mechanisms.distance_ulps("kernel_replay_fast_math_half", logits, np.array([value]), 1, half,
                                            formula=("bce_with_logits_weight", "grad_target"))
        assert distance[0] == expected, value
    # the conversion concerns float16 alone
    assert mechanisms.distance_ulps("kernel_replay_fast_math_half", bce, got, 560, dtypes.BFLOAT16,
                                    formula=("bce", "grad_input")).tolist() == [math.inf] * 3


def test_the_fast_math_half_replay_divides_by_a_dynamic_shapes_n_as_float16_holds_it() -> None:
    """torch 2.1.2's compile_dynamic float16 BCEWithLogits mean gradients at x = 1, y = 0 (measured): the kernel
    divides by static_cast<half>(N), which -ffast-math's conversion makes NaN for N = 70,000 and -3.2e-5 for
    N = 200,000 (input gradient sigmoid(1) / -3.2e-5 = -22,800, target gradient -1 / -3.2e-5 = 31,184); the
    IEEE and fast-math replays, with N as it is, give 3.7e-6 and -5e-6."""
    logits = {"input": np.array([1.0]), "target": np.array([0.0])}
    half = dtypes.FLOAT16
    for quantity, measured in (("grad_input", -22800.0), ("grad_target", 31184.0)):
        for n, got in ((200000, measured), (70000, math.nan)):
            value = np.array([got])
            fast = mechanisms.distance_ulps("kernel_replay_fast_math_half", logits, value, n, half,
                                            formula=("bce_with_logits", quantity))
            ieee = mechanisms.distance_ulps("kernel_replay", logits, value, n, half,
                                            formula=("bce_with_logits", quantity))
            assert fast.tolist() == [0.0] and ieee[0] > 1e9, (quantity, n)
    # kl_div's target gradient (1 - x) / N at x = 8.25, t = 1 over N = 190,470 (-2.77e-5 as float16 holds it):
    # 262,144.6 divided last, just above 2^18, which the conversion stores as +2^-14 (measured), where 1 / N
    # multiplied in first (eager's order) lands below 2^18, at -2^-14
    kl = {"input": np.array([8.25]), "target": np.array([1.0])}
    fast = mechanisms.distance_ulps("kernel_replay_fast_math_half", kl, np.array([2.0**-14, -(2.0**-14)]), 190470,
                                    half, formula=("kl_div", "grad_target"))
    assert fast.tolist() == [0.0, 0.0]


def test_the_fast_math_half_replay_reads_log_softmax_as_the_float16_tensor_autograd_saved() -> None:
    """torch 2.1.2's compile_dynamic float16 distillation gradients over 126,978 rows of 4 (measured): the
    kernel reads log_softmax's output as the float16 tensor the forward stored, and divides by N = 507,912 as
    -ffast-math's conversion stores it in float16, so the gradients are thousands.  Replayed with log_softmax
    kept in float32 instead, five of them lie 1 to 4 ULPs outside the replay."""
    inf, nan = math.inf, math.nan
    inputs = {"input": np.array([[4.0625, 0.0, 2.0, -inf], [2.400390625, 0.0, 2.0, -inf],
                                 [-28.34375, 0.0, 2.0, -inf]]),
              "target": np.array([[1.0, 0.0, 0.0, 0.0], [0.625, 0.25, 0.125, 0.0], [0.625, 0.25, 0.125, 0.0]])}
    measured = {"grad_input": np.array([[-1067.0, 126.875, 939.5], [-483.25, -1679.0, 2160.0],
                                        [-5284.0, -1106.0, 6392.0]]),
                "grad_target": np.array([[9600.0, nan, nan], [9264.0, 21824.0, -956.5],
                                         [-6.103515625e-05, 14720.0, -8056.0]])}
    for quantity, got in measured.items():
        finite = np.isfinite(got)
        values = np.concatenate([got, np.zeros((3, 1))], axis=1)  # the -inf logit's column: eager's value
        distance = mechanisms.distance_ulps("kernel_replay_fast_math_half", inputs, values, 507912, dtypes.FLOAT16,
                                            formula=("log_softmax_kl_div", quantity))
        assert np.all(distance[:, :3][finite] == 0.0), (quantity, distance)
