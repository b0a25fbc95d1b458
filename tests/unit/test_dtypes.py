"""suite.dtypes against numpy (spacing, nextafter, finfo) and torch (bfloat16 nextafter, bit views, finfo)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from suite import dtypes
from suite.dtypes import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, FloatFormat
from tests.unit.helpers_float import TORCH_TYPES, all_16bit_values, random_values, torch_next

FORMATS = [FLOAT64, FLOAT32, FLOAT16, BFLOAT16]
NUMPY: dict[str, type[Any]] = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def _specials(fmt: FloatFormat) -> npt.NDArray[np.float64]:
    """+-0, the subnormal edges, the smallest normal, 1 and its neighbours, the largest finite value."""
    finfo = torch.finfo(fmt.torch_dtype)
    sub = float(torch_next([0.0], 1.0, fmt.name)[0])
    tiny = float(finfo.tiny)
    base = [0.0, sub, 2 * sub, 3 * sub, tiny - sub, tiny, tiny + sub, 0.5, 1.0, 1.5, 2.0, float(finfo.max)]
    return np.array(base + [-v for v in base])


def _sample(fmt: FloatFormat, count: int = 3000) -> npt.NDArray[np.float64]:
    return np.concatenate([_specials(fmt), random_values(fmt.name, count, np.random.default_rng(7))])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_constants_match_torch_finfo(fmt: FloatFormat) -> None:
    finfo = torch.finfo(fmt.torch_dtype)
    assert fmt.max_finite == finfo.max
    assert fmt.smallest_normal == finfo.tiny == finfo.smallest_normal
    assert fmt.eps == finfo.eps
    assert fmt.bits == finfo.bits
    assert fmt.smallest_subnormal == float(torch_next([0.0], 1.0, fmt.name)[0])
    assert fmt.emin == math.frexp(finfo.tiny)[1] - 1
    assert fmt.emax == math.frexp(finfo.max)[1] - 1
    assert fmt.unit_roundoff == finfo.eps / 2
    assert dtypes.get(fmt.torch_dtype) is fmt


@pytest.mark.parametrize("name", ["float64", "float32", "float16"])
def test_constants_match_numpy_finfo(name: str) -> None:
    fmt, finfo = dtypes.get(name), np.finfo(NUMPY[name])
    assert fmt.precision == finfo.nmant + 1
    assert fmt.emin == finfo.minexp
    assert fmt.emax == finfo.maxexp - 1
    assert fmt.smallest_subnormal == float(finfo.smallest_subnormal)


@pytest.mark.parametrize(("alias", "name"), [("double", "float64"), ("float", "float32"), ("half", "float16"),
                                             ("bf16", "bfloat16"), ("fp16", "float16"), ("torch.float32", "float32"),
                                             (torch.bfloat16, "bfloat16"), (torch.float64, "float64")])
def test_get_names_and_aliases(alias: object, name: str) -> None:
    assert dtypes.get(alias).name == name


def test_get_unknown_dtype_raises() -> None:
    with pytest.raises(ValueError, match="unknown floating-point dtype"):
        dtypes.get("float8")


@pytest.mark.parametrize("name", ["float64", "float32", "float16"])
def test_ulp_matches_numpy_spacing(name: str) -> None:
    fmt, native = dtypes.get(name), NUMPY[name]
    v = _sample(fmt)
    below_max = np.abs(v) < fmt.max_finite
    # spacing of |v| (numpy's float16 spacing of negative powers of two is the gap toward zero)
    expected = np.spacing(np.abs(v[below_max]).astype(native)).astype(np.float64)
    np.testing.assert_array_equal(dtypes.ulp(v[below_max], fmt), expected)
    np.testing.assert_array_equal(dtypes.ulp(-v[below_max], fmt), expected)
    # At the largest finite value numpy's spacing is inf (the next value is inf): use the gap below it.
    largest = native(fmt.max_finite)
    gap = float(largest) - float(np.nextafter(largest, native(0)))
    assert dtypes.ulp(np.array([fmt.max_finite, -fmt.max_finite]), fmt).tolist() == [gap, gap]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_ulp_at_zero_inf_and_nan(fmt: FloatFormat) -> None:
    result = dtypes.ulp(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]), fmt)
    assert result[0] == result[1] == float(torch_next([0.0], 1.0, fmt.name)[0])
    assert np.isnan(result[2:]).all()


def test_ulp_bfloat16_matches_torch_nextafter() -> None:
    v = np.abs(_sample(BFLOAT16))
    v = v[v < BFLOAT16.max_finite]
    expected = torch_next(v, np.inf, "bfloat16") - v
    np.testing.assert_array_equal(dtypes.ulp(v, BFLOAT16), expected)
    np.testing.assert_array_equal(dtypes.ulp(-v, BFLOAT16), expected)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_ordinal_steps_follow_nextafter(fmt: FloatFormat) -> None:
    v = _sample(fmt)
    v = v[v < fmt.max_finite]
    up = torch_next(v, np.inf, fmt.name)
    np.testing.assert_array_equal(dtypes.to_ordinal(up, fmt), dtypes.to_ordinal(v, fmt) + 1)
    if fmt.name != "bfloat16":
        native = NUMPY[fmt.name]
        np_up = np.nextafter(v.astype(native), native(np.inf)).astype(np.float64)
        np.testing.assert_array_equal(np_up, up)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_ordinal_fixed_points(fmt: FloatFormat) -> None:
    finfo = torch.finfo(fmt.torch_dtype)
    half = 1 << (fmt.precision - 1)  # values per binade
    sub = float(torch_next([0.0], 1.0, fmt.name)[0])
    values = np.array([0.0, -0.0, sub, -sub, finfo.tiny, 1.0, -1.0, finfo.max, np.inf, -np.inf])
    ordinals = dtypes.to_ordinal(values, fmt).tolist()
    assert ordinals[:4] == [0, 0, 1, -1]
    assert ordinals[4] == half  # after the half - 1 subnormals
    assert ordinals[5] == (1 - fmt.emin) * half == -ordinals[6]
    assert ordinals[8] == ordinals[7] + 1 == fmt.max_ordinal == -ordinals[9]


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_from_ordinal_inverts_to_ordinal(fmt: FloatFormat) -> None:
    v = np.concatenate([_sample(fmt), [np.inf, -np.inf]])
    back = dtypes.from_ordinal(dtypes.to_ordinal(v, fmt), fmt)
    np.testing.assert_array_equal(back, v)  # -0 comes back as +0, which compares equal
    assert not np.signbit(dtypes.from_ordinal(np.array([0]), fmt)).any()
    k = np.random.default_rng(3).integers(-fmt.max_ordinal, fmt.max_ordinal + 1, 2000)
    np.testing.assert_array_equal(dtypes.to_ordinal(dtypes.from_ordinal(k, fmt), fmt), k)
    with pytest.raises(ValueError):
        dtypes.from_ordinal(np.array([fmt.max_ordinal + 1]), fmt)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_ordinals_exhaustive_16bit(name: str) -> None:
    """Every 16-bit value: the ordinal is the rank in the sorted set of distinct values, zero at 0."""
    fmt = dtypes.get(name)
    values = all_16bit_values(name)
    distinct = np.unique(values)  # +0 and -0 collapse
    rank = np.searchsorted(distinct, values) - np.searchsorted(distinct, 0.0)
    np.testing.assert_array_equal(dtypes.to_ordinal(values, fmt), rank)
    assert distinct.size == 2 * fmt.max_ordinal + 1


def test_bit_patterns_bfloat16_match_torch_view() -> None:
    """Positive bfloat16 ordinals are the bit patterns torch stores (tensor.view(torch.int16))."""
    values = np.abs(random_values("bfloat16", 2000, np.random.default_rng(5)))
    dtype, int_type = TORCH_TYPES["bfloat16"]
    patterns = torch.tensor(values).to(dtype).view(int_type).to(torch.int64).numpy()
    np.testing.assert_array_equal(dtypes.to_ordinal(values, BFLOAT16), patterns)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_next_toward_matches_torch(fmt: FloatFormat) -> None:
    v = _sample(fmt, 500)
    v = v[np.abs(v) < fmt.max_finite]
    np.testing.assert_array_equal(dtypes.next_toward(v, np.inf, fmt), torch_next(v, np.inf, fmt.name))
    np.testing.assert_array_equal(dtypes.next_toward(v, -np.inf, fmt), torch_next(v, -np.inf, fmt.name))
    assert dtypes.next_toward(np.array([fmt.max_finite]), np.inf, fmt)[0] == np.inf


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_to_ordinal_rejects_nan_and_unrepresentable(fmt: FloatFormat) -> None:
    with pytest.raises(ValueError, match="NaN"):
        dtypes.to_ordinal(np.array([np.nan]), fmt)
    if fmt is not FLOAT64:
        with pytest.raises(ValueError, match="representable"):
            dtypes.to_ordinal(np.array([1.0 + 2.0 ** -60 * 2 ** 20]), fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_is_representable(fmt: FloatFormat) -> None:
    v = _sample(fmt, 500)
    assert dtypes.is_representable(v, fmt).all()
    assert dtypes.is_representable(np.array([np.nan, np.inf]), fmt).all()
    between = (v[(v > 0) & (v < fmt.max_finite)] + torch_next(v[(v > 0) & (v < fmt.max_finite)], np.inf, fmt.name))
    if fmt is not FLOAT64:  # the midpoint of two neighbours is a float64 but no value of the format
        assert not dtypes.is_representable(between / 2, fmt).any()
