"""Exact rounding (round_mpf, round_array, round_fraction) against torch's own conversions and Python's
correctly rounded ``float(Fraction)``.

torch converts float64 to float16/bfloat16 possibly through float32 (two roundings), so each check feeds
torch a conversion that rounds once: float32 -> float16/bfloat16, float64 -> float32; float64 itself is
checked against ``float(Fraction)`` on mpf numbers of 120 bits.
"""

from __future__ import annotations

import random
from fractions import Fraction

import mpmath
import numpy as np
import numpy.typing as npt
import pytest
import torch

from suite import dtypes
from suite.dtypes import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, FloatFormat
from tests.unit.helpers_float import oracle_round, random_values, torch_next

COUNT = 10_000


def _exact_float32_near(fmt: FloatFormat, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """float32 numbers spread over ``fmt``'s whole range (below its smallest subnormal, subnormals, normals,
    beyond its largest value), exact midpoints between neighbours of ``fmt``, and the overflow threshold."""
    exponents = rng.integers(fmt.emin - fmt.precision - 3, min(fmt.emax + 3, FLOAT32.emax + 1), COUNT)
    mantissas = rng.integers(0, 1 << 23, COUNT) / float(1 << 23) + 1.0
    signs = rng.choice([-1.0, 1.0], COUNT)
    spread = (signs * np.ldexp(mantissas, exponents)).astype(np.float32).astype(np.float64)
    lower = np.abs(random_values(fmt.name, 2000, rng))
    lower = lower[lower < fmt.max_finite]
    midpoints = (lower + torch_next(lower, np.inf, fmt.name)) / 2
    top = fmt.max_finite + float(torch.finfo(fmt.torch_dtype).max - torch_next([fmt.max_finite], 0, fmt.name)[0]) / 2
    values = np.concatenate([spread, midpoints, -midpoints, [top, -top, 0.0, -0.0]])
    assert (values.astype(np.float32).astype(np.float64) == values).all()  # exactly float32 numbers
    return values


def _exact_float64_near_float32(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    exponents = rng.integers(FLOAT32.emin - FLOAT32.precision - 3, FLOAT32.emax + 3, COUNT)
    mantissas = 1.0 + rng.integers(0, 1 << 52, COUNT, dtype=np.int64) / float(1 << 52)
    spread = rng.choice([-1.0, 1.0], COUNT) * np.ldexp(mantissas, exponents)
    lower = np.abs(random_values("float32", 2000, rng))
    lower = lower[lower < FLOAT32.max_finite]
    midpoints = (lower + torch_next(lower, np.inf, "float32")) / 2
    gap = FLOAT32.max_finite - float(torch_next([FLOAT32.max_finite], 0, "float32")[0])
    return np.concatenate([spread, midpoints, -midpoints, [FLOAT32.max_finite + gap / 2, 0.0, -0.0]])


def _same(got: npt.ArrayLike, expected: npt.ArrayLike) -> None:
    """Equal values and equal signs (so -0 and +0 are told apart)."""
    g, e = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(np.signbit(g), np.signbit(e))


@pytest.mark.parametrize("fmt", [FLOAT16, BFLOAT16], ids=str)
def test_round_16bit_matches_torch_from_float32(fmt: FloatFormat) -> None:
    values = _exact_float32_near(fmt, np.random.default_rng(11))
    expected = torch.tensor(values, dtype=torch.float32).to(fmt.torch_dtype).to(torch.float64).numpy()
    assert np.isinf(expected).any() and (expected[expected != 0] < fmt.smallest_normal).any()
    nonzero = values != 0  # mpf has no -0
    _same([dtypes.round_mpf(mpmath.mpf(v), fmt) for v in values[nonzero].tolist()], expected[nonzero])
    _same(dtypes.round_array(values, fmt), expected)


def test_round_float32_matches_torch_from_float64() -> None:
    values = _exact_float64_near_float32(np.random.default_rng(12))
    expected = torch.tensor(values, dtype=torch.float64).to(torch.float32).to(torch.float64).numpy()
    nonzero = values != 0  # mpf has no -0
    _same([dtypes.round_mpf(mpmath.mpf(v), FLOAT32) for v in values[nonzero].tolist()], expected[nonzero])
    _same(dtypes.round_array(values, FLOAT32), expected)


def test_the_float32_cast_rounds_as_the_exact_scaling_does() -> None:
    """round_array's float32 cast is the machine's conversion; on values over float32's whole range (subnormal
    and overflowing results, exact midpoints, float64 subnormals) it gives what the exact scaling path gives,
    value and sign."""
    rng = np.random.default_rng(13)
    values = np.concatenate([_exact_float64_near_float32(rng), [5e-324, -5e-324, 2.0**-150, 2.0**-149 * 1.5,
                                                                np.inf, -np.inf, FLOAT64.max_finite]])
    exact = dtypes._round_scaled_array(values, FLOAT32, np.zeros_like(values))
    assert (np.abs(exact[np.isfinite(exact) & (exact != 0)]) < FLOAT32.smallest_normal).any() and np.isinf(exact).any()
    _same(dtypes.round_array(values, FLOAT32), exact)


@pytest.mark.parametrize("fmt", [FLOAT16, BFLOAT16], ids=str)
def test_16_bit_rounding_in_float32_bits_is_the_exact_scaling(fmt: FloatFormat) -> None:
    """round_array to 16 bits rounds float32 numbers in their bit patterns and hands the rest to the exact
    scaling path; on float32 numbers over the format's whole range (subnormal results, midpoints, the overflow
    threshold), float64 numbers between them and float64 subnormals, both give the same values and signs."""
    rng = np.random.default_rng(14)
    singles = _exact_float32_near(fmt, rng)
    doubles = singles * (1.0 + rng.uniform(-2.0**-30, 2.0**-30, singles.size))  # not float32 numbers
    values = np.concatenate([singles, doubles, [5e-324, -5e-324, np.inf, -np.inf]])
    exact = dtypes._round_scaled_array(values, fmt, np.zeros_like(values))
    assert (np.abs(exact[np.isfinite(exact) & (exact != 0)]) < fmt.smallest_normal).any() and np.isinf(exact).any()
    _same(dtypes.round_array(values, fmt), exact)


def _python_float(x: Fraction) -> float:
    """Python's correctly rounded conversion, with overflow to inf instead of OverflowError."""
    try:
        return float(x)
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


def _wide_mpfs(rng: random.Random) -> list[tuple[int, int]]:
    """(mantissa, exponent) pairs of 120-bit numbers over float64's range, plus exact float64 midpoints
    and numbers one 120th-bit away from them."""
    pairs = []
    for _ in range(COUNT):
        man = rng.getrandbits(120) | (1 << 119)
        pairs.append((rng.choice([-1, 1]) * man, rng.randint(-1074 - 125, 1024 - 118)))
    for _ in range(2000):
        mid = ((rng.getrandbits(52) | (1 << 52)) << 1 | 1) << 66  # 54 significant bits ending in 1: a tie
        exp = rng.randint(-1074 - 120, 1024 - 120)
        for delta in (0, 1, -1):
            pairs.append((mid + delta, exp))
    pairs.append((((1 << 53) - 1) * 2 + 1, 1023 - 53))  # max_finite + ulp/2: overflows (ties to even)
    return pairs


def test_round_float64_matches_python_fraction() -> None:
    pairs = _wide_mpfs(random.Random(13))
    with mpmath.workprec(200):
        got = [dtypes.round_mpf(mpmath.mpf((m, e)), FLOAT64) for m, e in pairs]
    expected = [_python_float(Fraction(m) * Fraction(2) ** e) for m, e in pairs]
    _same(got, expected)
    assert any(v == 0 for v in expected) and any(np.isinf(v) for v in expected)
    assert any(0 < abs(v) < FLOAT64.smallest_normal for v in expected)


def test_round_fraction_matches_python_float() -> None:
    rng = random.Random(14)
    fractions = [Fraction(rng.getrandbits(rng.randint(1, 300)) * rng.choice([-1, 1]),
                          rng.getrandbits(rng.randint(1, 300)) | 1) * Fraction(2) ** rng.randint(-1100, 1000)
                 for _ in range(3000)]
    _same([dtypes.round_fraction(f.numerator, f.denominator, FLOAT64) for f in fractions],
          [_python_float(f) for f in fractions])
    with pytest.raises(ZeroDivisionError):
        dtypes.round_fraction(1, 0, FLOAT64)


@pytest.mark.parametrize("fmt", [FLOAT32, FLOAT16, BFLOAT16], ids=str)
def test_round_fraction_matches_oracle(fmt: FloatFormat) -> None:
    rng = random.Random(15)
    lo, hi = fmt.emin - fmt.precision - 2, fmt.emax + 2
    fractions = [Fraction(rng.getrandbits(40) * rng.choice([-1, 1]), rng.getrandbits(30) | 1)
                 * Fraction(2) ** rng.randint(lo - 10, hi - 10) for _ in range(1000)]
    _same([dtypes.round_fraction(f.numerator, f.denominator, fmt) for f in fractions],
          [oracle_round(f, fmt.name) for f in fractions])


def _double_doubles(fmt: FloatFormat, rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], ...]:
    """(hi, lo) pairs: hi a random float64 in the format's range or an exact midpoint of the format,
    lo nonzero, zero, or tiny, with |lo| <= ulp64(hi)/2."""
    n = 700
    exponents = rng.integers(fmt.emin - fmt.precision - 2, fmt.emax + 2, n)
    hi = rng.choice([-1.0, 1.0], n) * np.ldexp(1.0 + rng.integers(0, 1 << 52, n) / float(1 << 52), exponents)
    base = np.abs(random_values(fmt.name, n, rng))
    base = base[(base < fmt.max_finite) & (base > 0)]
    mids = (base + torch_next(base, np.inf, fmt.name)) / 2
    his = np.concatenate([hi, mids, -mids, mids])
    ulp64 = np.spacing(np.abs(his))
    lo = rng.uniform(-0.5, 0.5, his.size) * ulp64
    lo[-mids.size:] = 0.0  # pure ties: ties to even
    lo[: hi.size // 4] = 0.0
    lo = np.where(np.abs(lo) < ulp64 / 2, lo, 0.0)
    return his, lo


@pytest.mark.parametrize("fmt", [FLOAT32, FLOAT16, BFLOAT16], ids=str)
def test_round_array_double_double_matches_fraction_oracle(fmt: FloatFormat) -> None:
    hi, lo = _double_doubles(fmt, np.random.default_rng(16))
    pairs = zip(hi.tolist(), lo.tolist(), strict=True)
    expected = [oracle_round(Fraction(h) + Fraction(low), fmt.name) for h, low in pairs]
    _same(dtypes.round_array(hi, fmt, lo), expected)


@pytest.mark.parametrize("fmt", [FLOAT32, FLOAT16, BFLOAT16], ids=str)
def test_round_array_breaks_ties_by_lo(fmt: FloatFormat) -> None:
    """A tie in hi goes to the neighbour on lo's side; without lo it goes to the even neighbour."""
    low = np.array([1.0, 1.5, 2.0, fmt.smallest_subnormal, 3 * fmt.smallest_subnormal])
    up = torch_next(low, np.inf, fmt.name)
    mid = (low + up) / 2
    tiny = np.spacing(mid) / 4
    _same(dtypes.round_array(mid, fmt, tiny), up)
    _same(dtypes.round_array(mid, fmt, -tiny), low)
    _same(dtypes.round_array(-mid, fmt, -tiny), -up)
    even = [oracle_round(Fraction(m), fmt.name) for m in mid.tolist()]
    _same(dtypes.round_array(mid, fmt), even)


@pytest.mark.parametrize("fmt", [FLOAT64, FLOAT32, FLOAT16, BFLOAT16], ids=str)
def test_round_mpf_special_values(fmt: FloatFormat) -> None:
    assert dtypes.round_mpf(mpmath.mpf("inf"), fmt) == np.inf
    assert dtypes.round_mpf(mpmath.mpf("-inf"), fmt) == -np.inf
    assert np.isnan(dtypes.round_mpf(mpmath.mpf("nan"), fmt))
    assert dtypes.round_mpf(mpmath.mpf(0), fmt) == 0.0
    tiny = mpmath.mpf(fmt.smallest_subnormal) / 2  # an exact tie with 0: ties to even gives -0 / +0
    assert dtypes.round_mpf(-tiny, fmt) == 0.0 and np.signbit(dtypes.round_mpf(-tiny, fmt))
    with mpmath.workprec(300):
        just_above = tiny + mpmath.mpf(2) ** (fmt.emin - fmt.precision - 200)
        assert dtypes.round_mpf(just_above, fmt) == fmt.smallest_subnormal


@pytest.mark.parametrize("fmt", [FLOAT64, FLOAT32, FLOAT16, BFLOAT16], ids=str)
def test_round_array_keeps_special_values(fmt: FloatFormat) -> None:
    _same(dtypes.round_array(np.array([np.inf, -np.inf, 0.0, -0.0]), fmt), [np.inf, -np.inf, 0.0, -0.0])
    assert np.isnan(dtypes.round_array(np.array([np.nan]), fmt)).all()
