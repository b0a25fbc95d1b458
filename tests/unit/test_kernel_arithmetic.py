"""Arithmetic of replayed kernels (:mod:`suite.kernel_arithmetic`) against numpy's float16, whose operations
compute in float32 and round to float16 as torch's CPU kernels do, and against torch's bfloat16 tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import torch

from suite import dtypes
from suite.kernel_arithmetic import Kernel, Span

F32, F16, BF16 = dtypes.FLOAT32, dtypes.FLOAT16, dtypes.BFLOAT16


def _all_float16(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random finite float16 values from their bit patterns: every binade, subnormals and zeros included."""
    bits = rng.integers(0, 2**16, n, dtype=np.uint16).view(np.float16)
    return bits[np.isfinite(bits)].astype(np.float64)


def test_float16_operations_are_numpys_float16_operations() -> None:
    rng = np.random.default_rng(7)
    a, b = _all_float16(rng, 20000)[:15000], _all_float16(rng, 20000)[:15000]
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    k = Kernel(F16)
    with np.errstate(all="ignore"):
        for op, numpy_op in ((k.add, np.add), (k.sub, np.subtract), (k.mul, np.multiply), (k.div, np.divide)):
            span = op(Span.of(a), Span.of(b))
            expected = numpy_op(a.astype(np.float16), b.astype(np.float16)).astype(np.float64)
            finite = ~np.isnan(expected)
            assert np.array_equal(span.low[finite], expected[finite]), op.__name__
            assert np.array_equal(span.high[finite], expected[finite]), op.__name__
            assert np.array_equal(span.nan, ~finite), op.__name__


def test_bfloat16_operations_are_torchs_bfloat16_operations() -> None:
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.standard_normal(4000) * 2.0 ** rng.integers(-130, 120, 4000)).to(torch.bfloat16)
    y = torch.tensor(rng.standard_normal(4000) * 2.0 ** rng.integers(-130, 120, 4000)).to(torch.bfloat16)
    a, b = x.double().numpy(), y.double().numpy()
    k = Kernel(BF16)
    for op, torch_op in ((k.add, torch.add), (k.mul, torch.mul), (k.div, torch.div)):
        expected = torch_op(x, y).double().numpy()
        assert np.array_equal(op(Span.of(a), Span.of(b)).low, expected, equal_nan=True), op.__name__


def test_a_sum_of_two_roundings_ties_to_even() -> None:
    # 1 + 2^-11 is halfway between 1 and 1 + 2^-10 in float16: ties to even keeps 1; float32 keeps it exactly
    one, half_ulp = Span.of(np.array([1.0])), Span.of(np.array([2.0**-11]))
    assert Kernel(F16).add(one, half_ulp).low[0] == 1.0
    assert Kernel(F32).add(one, half_ulp).low[0] == 1.0 + 2.0**-11


def test_a_library_function_spans_its_float32_error() -> None:
    # log(0.0025424957) lies within one float32 ULP of the float16 midpoint -5.974609375: a logf within one ULP
    # may round either way (torch's rounds up, to -5.97265625); the span holds both neighbours and nothing else
    x = np.array([0.0025424957275390625])
    span = Kernel(F16).function(np.log, Span.of(x))
    assert (span.low[0], span.high[0]) == (-5.9765625, -5.97265625)
    midpoint = (span.low[0] + span.high[0]) / 2
    assert abs(float(np.log(np.longdouble(x[0]))) - midpoint) < abs(float(np.spacing(np.float32(midpoint))))
    assert span.low[0] <= float(torch.log(torch.tensor(x, dtype=torch.float16))[0]) <= span.high[0]
    # far from a midpoint the span is the correctly rounded value alone, torch's
    y = np.array([2.4974346160888672e-05])
    far = Kernel(F16).function(np.log, Span.of(y))
    assert far.low[0] == far.high[0] == float(torch.log(torch.tensor(y, dtype=torch.float16))[0]) == -10.6015625


def test_constants_are_the_stored_formats() -> None:
    # torch's scalar_t(1e-12): 0 in float16, a bfloat16 number in bfloat16
    assert Kernel(F16).constant(1e-12).low == 0.0
    assert Kernel(BF16).constant(1e-12).low == float(torch.tensor(1e-12).to(torch.bfloat16))


def test_a_fused_kernel_stores_once() -> None:
    # (1 + 2^-11) - 2^-11 is 1 either way, but (1 + 2^-11) + 2^-11 is 1 + 2^-10 only without the first store
    one, half_ulp = Span.of(np.array([1.0])), Span.of(np.array([2.0**-11]))
    k = Kernel(F16)
    assert k.add(k.add(one, half_ulp), half_ulp).low[0] == 1.0
    assert k.fused(lambda c: c.add(c.add(one, half_ulp), half_ulp)).low[0] == 1.0 + 2.0**-10


def test_max_keeps_a_nan_first_operand() -> None:
    # std::max(nan, -100) is nan (nan < -100 is false), as torch's BCE clamps a NaN log
    k = Kernel(F16)
    span = k.maximum(Span.of(np.array([np.nan, -200.0])), k.constant(-100.0))
    assert np.isnan(span.low[0]) and span.nan[0] and span.low[1] == -100.0


def test_float64_functions_are_within_the_evaluation_error_the_float32_replays_allow() -> None:
    """A float32 kernel's replay takes libm functions in float64, widened by FLOAT64_EVALUATION_ERROR of the
    value: against mpmath at 100 bits, numpy's log, log1p and exp and the suite's sigmoid and log_sigmoid stay
    within it across their float32 domains (every binade, subnormal results included)."""
    from suite import array_math, kernel_arithmetic

    rng = np.random.default_rng(8)
    anywhere = np.concatenate([np.ldexp(rng.uniform(1, 2, 300), rng.integers(-149, 128, 300)) * s
                               for s in (1.0, -1.0)])
    positive = anywhere[anywhere > 0]
    cases: dict[Callable[..., Any], tuple[np.ndarray, Callable[..., Any]]] = {
        np.log: (positive, mpmath.log),
        np.log1p: (np.concatenate([positive, -positive[positive < 1]]), mpmath.log1p),
        np.exp: (anywhere[np.abs(anywhere) < 745], mpmath.exp),
        array_math.sigmoid: (anywhere, lambda x: 1 / (1 + mpmath.exp(-x))),
        array_math.log_sigmoid: (anywhere[anywhere > -1e300], lambda x: -mpmath.log1p(mpmath.exp(-x))),
    }
    for f, (x, exact_f) in cases.items():
        got = np.asarray(f(x), dtype=np.float64)
        with mpmath.workprec(100):
            exact = np.array([float(exact_f(mpmath.mpf(float(v)))) for v in x])
        finite = np.isfinite(exact) & (exact != 0)
        assert finite.sum() > 100
        error = np.abs(got[finite] - exact[finite]) / np.abs(exact[finite])
        assert error.max() <= kernel_arithmetic.FLOAT64_EVALUATION_ERROR, f.__name__
