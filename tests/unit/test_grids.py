"""Deterministic grids and computed thresholds: ordinal uniformity, exhaustiveness of 16-bit grids against
numpy's and torch's own bit patterns, specials present, and each threshold checked by torch itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from suite import cases, dtypes
from suite.inputs import grids, thresholds

FORMATS = list(dtypes.FORMATS.values())
SIXTEEN = [dtypes.FLOAT16, dtypes.BFLOAT16]


def _torch(values: list[float], fmt: dtypes.FloatFormat) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(fmt.torch_dtype)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as bit patterns of float64 (NaNs equal to each other, -0 distinct from +0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))))


# --------------------------------------------------------------------------------------------------
# ordinal_grid and all_values


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_ordinal_grid_is_uniform_in_ordinal_space(fmt: dtypes.FloatFormat) -> None:
    values = grids.ordinal_grid(fmt, -math.inf, math.inf, 1001)
    ordinals = dtypes.to_ordinal(values, fmt)
    steps = np.diff(ordinals)
    assert len(values) == 1001
    assert values[0] == -math.inf and values[-1] == math.inf
    assert steps.min() >= steps.max() - 1  # equal spacing up to integer division
    assert steps.min() > 0


def test_ordinal_grid_rounds_bounds_inward_and_is_exhaustive_when_small() -> None:
    # float16 values in [1, 2]: 2^10 mantissas plus 2 itself, counted from numpy's bit patterns
    patterns = np.arange(0x3C00, 0x4001, dtype=np.uint16).view(np.float16).astype(np.float64)
    got = grids.ordinal_grid(dtypes.FLOAT16, 0.99999, 2.0001, 5000)
    assert _same(got, patterns)
    with pytest.raises(ValueError, match="no value"):
        grids.ordinal_grid(dtypes.FLOAT16, 0.1, 0.1, 3)


def test_all_values_match_numpy_float16_bit_patterns() -> None:
    expected = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)
    got = grids.all_values(dtypes.FLOAT16)
    assert got.shape == (65536,)
    assert _same(got, expected)


def test_all_values_match_torch_bfloat16_bit_patterns() -> None:
    patterns = torch.from_numpy(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.int16))
    expected = patterns.view(torch.bfloat16).to(torch.float64).numpy()
    got = grids.all_values(dtypes.BFLOAT16)
    assert got.shape == (65536,)
    assert _same(got, expected)


@pytest.mark.parametrize("fmt", [dtypes.FLOAT32, dtypes.FLOAT64], ids=str)
def test_all_values_refuses_wide_formats(fmt: dtypes.FloatFormat) -> None:
    with pytest.raises(ValueError, match="16-bit"):
        grids.all_values(fmt)


# --------------------------------------------------------------------------------------------------
# input_grid and case_grid


@pytest.mark.parametrize("fmt", SIXTEEN, ids=str)
def test_logit_grid_is_every_16_bit_value(fmt: dtypes.FloatFormat) -> None:
    every = grids.all_values(fmt)
    got = grids.input_grid("logit", fmt)
    assert np.isnan(got[-1]) and not np.isnan(got[:-1]).any()
    distinct = np.unique(every[~np.isnan(every)].view(np.int64))  # -0 and +0 both count
    assert len(got) - 1 == len(distinct)
    assert np.all(np.diff(got[:-1]) >= 0)


@pytest.mark.parametrize("fmt", SIXTEEN, ids=str)
def test_probability_grid_is_every_16_bit_value_in_unit_interval(fmt: dtypes.FloatFormat) -> None:
    every = grids.all_values(fmt)
    inside = every[(every >= 0) & (every <= 1)]  # NaN compares false; -0 is inside
    got = grids.input_grid("probability", fmt, include_nan=False)
    assert len(got) == len(inside)
    assert got.min() == 0 and got.max() == 1


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("kind", ["logit", "log_probability", "probability", "target", "log_target"])
def test_input_grid_holds_specials_and_threshold_neighbours(kind: str, fmt: dtypes.FloatFormat) -> None:
    count = 257 if fmt.bits == 16 else None
    got = grids.input_grid(kind, fmt, count=count)
    assert dtypes.is_representable(got, fmt).all()
    finite = got[~np.isnan(got)]
    present = {(float(v), bool(np.signbit(v))) for v in finite}
    low, high = grids.KIND_RANGES[kind]
    high = fmt.max_finite if high is None else high
    for v in [0.0, -0.0, fmt.smallest_subnormal, fmt.smallest_normal, 0.5, 1.0, fmt.max_finite, math.inf,
              -math.inf]:
        if low <= v <= high:
            assert (v, math.copysign(1, v) < 0) in present, v
    for t in thresholds.thresholds(fmt):
        if kind in t.kinds:
            assert t.below in finite and t.above in finite, t.name
            after = float(dtypes.next_toward(t.above, math.inf, fmt))
            assert after in finite or after > high, t.name
    assert np.isnan(got[-1])
    assert finite.min() >= low and finite.max() <= high


def test_weight_grid_is_a_small_meaningful_set() -> None:
    got = grids.input_grid("weight", dtypes.FLOAT16, include_nan=False)
    assert {0.0, 1.0, 0.5, dtypes.FLOAT16.max_finite} <= set(got.tolist())
    assert len(got) <= 10 and np.isfinite(got).all()


def test_default_wide_grid_has_the_default_count_plus_extras() -> None:
    got = grids.input_grid("logit", dtypes.FLOAT32, include_nan=False)
    uniform = grids.ordinal_grid(dtypes.FLOAT32, -math.inf, math.inf, grids.DEFAULT_COUNT)
    assert set(uniform.tolist()) <= set(got.tolist())
    assert grids.DEFAULT_COUNT < len(got) < 2 * grids.DEFAULT_COUNT


def _points_per_sixteenth(values: np.ndarray, kind: str, fmt: dtypes.FloatFormat) -> dict[tuple[int, int, int], int]:
    """How many of ``values`` lie in each sixteenth of each binade ``[2^e, 2^(e+1))`` of the band (either sign,
    keyed by sign, ``e`` and the sixteenth), for the sixteenths inside the kind's range; numpy's ``frexp``
    tells where a value lies."""
    low, high = grids.KIND_RANGES[kind]
    high = fmt.max_finite if high is None else high
    first, last = (int(math.log2(b)) for b in grids.BAND)
    counts = {(sign, e, k): 0 for sign in (1, -1) for e in range(first, last) for k in range(16)
              if all(low <= sign * math.ldexp(1 + j / 16, e) <= high for j in (k, k + 1))}
    nonzero = values[np.isfinite(values) & (values != 0)]
    mantissas, exponents = np.frexp(nonzero)  # v = m 2^x with |m| in [0.5, 1): binade x - 1
    sixteenths = np.floor((2 * np.abs(mantissas) - 1) * 16).astype(int)
    for key in zip(np.sign(nonzero).astype(int).tolist(), (exponents - 1).tolist(), sixteenths.tolist(), strict=True):
        if key in counts:
            counts[key] += 1
    return counts


@pytest.mark.parametrize("fmt", [dtypes.FLOAT64, dtypes.FLOAT32], ids=str)
@pytest.mark.parametrize("kind", ["logit", "log_probability", "probability", "target", "log_target"])
def test_full_wide_grids_hold_two_points_in_every_sixteenth_of_the_band(kind: str, fmt: dtypes.FloatFormat) -> None:
    """A kernel wrong in a sixteenth of one binade (a polynomial segment, a cut-off) is seen by the grid only if
    every sixteenth of the moderate band holds grid points: in float64 the ordinal-uniform points alone leave
    most of them empty (about one point per binade there), and the band's points fill each with two."""
    full = _points_per_sixteenth(grids.input_grid(kind, fmt, include_nan=False), kind, fmt)
    assert full and min(full.values()) >= 2, [key for key, n in full.items() if n < 2][:5]
    if fmt is dtypes.FLOAT64:
        low, high = grids.KIND_RANGES[kind]
        uniform = grids.ordinal_grid(fmt, low, fmt.max_finite if high is None else high, grids.DEFAULT_COUNT)
        empty = [key for key, n in _points_per_sixteenth(uniform, kind, fmt).items() if n == 0]
        assert len(empty) > len(full) / 2


def test_exponents_are_of_the_binades_wholly_inside_the_magnitudes() -> None:
    assert grids.exponents(dtypes.FLOAT64, grids.BAND) == range(-5, 10)  # [1/32, 1024): 15 binades
    assert grids.exponents(dtypes.FLOAT64, (0.03, 3.0)) == range(-5, 1)  # [1/32, 1/16) .. [1, 2); not [2, 4)
    assert grids.exponents(dtypes.FLOAT64, (3.0, 17.0)) == range(2, 4)  # [4, 8) and [8, 16)
    assert grids.exponents(dtypes.FLOAT16) == range(-24, 16)  # subnormal binades from 2^-24 up to [2^15, 2^16)


@pytest.mark.parametrize("fmt", [dtypes.FLOAT64, dtypes.FLOAT32], ids=str)
def test_band_points_have_full_mantissas(fmt: dtypes.FloatFormat) -> None:
    """Band points are not short dyadic fractions such as ``1 + k / 32``, which a kernel's range reduction can
    handle exactly: each has nonzero low fraction bits."""
    band = grids.band_values(fmt, -math.inf, math.inf)
    assert len(band) == 2 * 15 * grids.BAND_POINTS_PER_BINADE  # 15 binades from 1/32 to 1024, either sign
    mantissas, _ = np.frexp(np.abs(band))
    fractions = np.ldexp(2 * mantissas - 1, fmt.precision - 1).astype(np.int64)  # the fraction bits as an integer
    assert np.all(fractions % 2**8 != 0)
    assert np.all(dtypes.is_representable(band, fmt))


def test_full_16_bit_case_grid_is_exhaustive_in_main_input_times_targets() -> None:
    case = cases.get("bce_with_logits")
    grid = grids.case_grid(case, dtypes.FLOAT16)
    every = grids.all_values(dtypes.FLOAT16)
    n_numbers = len(np.unique(every[~np.isnan(every)].view(np.int64)))
    assert grid["input"].shape == grid["target"].shape == (len(grids.TARGETS), n_numbers)
    assert set(np.unique(grid["target"]).tolist()) == {0.0, float(dtypes.round_array(0.9, dtypes.FLOAT16)), 1.0}
    assert _same(grids.main_values(case, grid), grid["input"])


def test_case_grids_are_deterministic_and_in_domain() -> None:
    for case in cases.all_cases():
        for fmt in FORMATS:
            a = grids.case_grid(case, fmt, quick=True)
            b = grids.case_grid(case, fmt, quick=True)
            assert set(a) == {s.name for s in case.inputs}
            shape = np.broadcast_shapes(*(v.shape for v in a.values()))
            assert 200 <= math.prod(shape) <= 5000, (case.name, fmt.name, shape)
            for name, values in a.items():
                assert _same(values, b[name])
                assert dtypes.is_representable(values, fmt).all()
                spec = case.spec(name)
                assert ((values >= spec.low) & (values <= spec.high)).all(), (case.name, name)


def test_rows_grid_rows_sum_to_one_and_are_never_all_minus_inf() -> None:
    case = cases.get("log_softmax_kl_div")
    grid = grids.case_grid(case, dtypes.BFLOAT16, quick=True)
    x, t = grid["input"], grid["target"]
    assert x.shape == t.shape and x.shape[-1] == 4
    assert (t.sum(axis=-1) == 1).all() and (t == 0).any()
    assert not np.all(x == -math.inf, axis=-1).any()
    assert (x == -math.inf).any()
    main = grids.main_values(case, grid)
    assert main.shape == x.shape and _same(main, np.broadcast_to(x[..., :1], x.shape))


# --------------------------------------------------------------------------------------------------
# thresholds, checked by evaluating torch (or exact arithmetic) at both sides


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_thresholds_are_adjacent_values_of_the_format(fmt: dtypes.FloatFormat) -> None:
    found = thresholds.thresholds(fmt)
    assert len({t.name for t in found}) == len(found)
    for t in found:
        below, above = dtypes.to_ordinal([t.below, t.above], fmt)
        assert above - below == 1, t.name
        assert t.reason and set(t.kinds) <= set(cases.INPUT_KINDS)


def test_float32_exp_overflow_is_the_known_expf_limit() -> None:
    t = thresholds.get(dtypes.FLOAT32, "exp_overflow[float32]")
    assert np.float32(t.below).view(np.uint32) == 0x42B17217  # largest float32 x with expf(x) finite


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_exp_thresholds_agree_with_torch_exp(fmt: dtypes.FloatFormat) -> None:
    for c in thresholds.computing_formats(fmt):
        over = thresholds.get(fmt, f"exp_overflow[{c.name}]")
        got = torch.exp(_torch([over.below, over.above], c)).double().tolist()
        assert math.isfinite(got[0]) and got[1] == math.inf, c
        under = thresholds.get(fmt, f"exp_underflow[{c.name}]")
        got = torch.exp(_torch([under.below, under.above], c)).double().tolist()
        assert got[0] == 0 and got[1] > 0, c


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_sigmoid_one_agrees_with_torch_sigmoid(fmt: dtypes.FloatFormat) -> None:
    """torch computes 32/64-bit sigmoid as 1 / (1 + exp(-x)) (1 from `sigmoid_one_naive` on, before the
    exact sigmoid rounds to 1), and 16-bit sigmoid in float32 then rounds once (1 from `sigmoid_one` on)."""
    for c in thresholds.computing_formats(fmt):
        name = "sigmoid_one" if c.bits == 16 else "sigmoid_one_naive"
        t = thresholds.get(fmt, f"{name}[{c.name}]")
        got = torch.sigmoid(_torch([t.below, t.above], c)).double().tolist()
        assert got[0] < 1 and got[1] == 1, c
        if c.bits > 16:  # the naive formula reaches 1 strictly earlier than the correctly rounded sigmoid
            assert t.above < thresholds.get(fmt, f"sigmoid_one[{c.name}]").below


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_one_minus_p_threshold_agrees_with_torch_arithmetic(fmt: dtypes.FloatFormat) -> None:
    for c in thresholds.computing_formats(fmt):
        t = thresholds.get(fmt, f"one_minus_rounds_to_one[{c.name}]")
        got = (1 - _torch([t.below, t.above], c)).double().tolist()
        assert got[0] == 1 and got[1] < 1, c


@pytest.mark.parametrize("fmt", [dtypes.FLOAT32, dtypes.BFLOAT16], ids=str)
def test_naive_softplus_cancellation_agrees_with_torch(fmt: dtypes.FloatFormat) -> None:
    t = thresholds.get(fmt, "softplus_cancellation[float32]")
    got = torch.log(1 + torch.exp(_torch([t.below, t.above], dtypes.FLOAT32))).double().tolist()
    assert got[0] == 0 and got[1] > 0


def test_log_clamp_point_brackets_e_to_the_minus_100_in_float32() -> None:
    t = thresholds.get(dtypes.FLOAT32, "log_clamp[float32]")
    logs = torch.log(_torch([t.below, t.above], dtypes.FLOAT64)).tolist()
    assert logs[0] < -100 <= logs[1]
    assert t.below > 0 and t.below < math.exp(-100) < t.above  # float64 e^-100 is not a float32 value


def test_softplus_threshold_is_where_torch_softplus_returns_x() -> None:
    t = thresholds.get(dtypes.FLOAT64, "softplus_threshold[float64]")
    got = F.softplus(_torch([t.below, t.above], dtypes.FLOAT64)).tolist()
    assert got[0] != t.below and got[1] == t.above
    assert t.below == 20


@pytest.mark.parametrize("fmt", [dtypes.FLOAT32, dtypes.BFLOAT16], ids=str)
def test_grad_epsilon_threshold_brackets_1e_minus_12(fmt: dtypes.FloatFormat) -> None:
    t = thresholds.get(fmt, f"bce_grad_epsilon_low[{fmt.name}]")
    p = np.array([t.below, t.above])
    products = p * (1 - p)  # exact in float64 for 8- and 24-bit significands
    assert products[0] < 1e-12 <= products[1]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_threshold_values_are_neighbourhoods(fmt: dtypes.FloatFormat) -> None:
    values = thresholds.threshold_values(fmt, "logit", k=2, mirrored=True)
    assert dtypes.is_representable(values, fmt).all()
    t = thresholds.get(fmt, f"sigmoid_one[{fmt.name}]")
    ordinal = int(dtypes.to_ordinal(t.above, fmt))
    expected = dtypes.from_ordinal(np.arange(ordinal - 3, ordinal + 3), fmt)  # below-2 .. above+2
    assert set(expected.tolist()) <= set(values.tolist())
    assert set((-expected).tolist()) <= set(values.tolist())
