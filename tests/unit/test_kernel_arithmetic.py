"""Arithmetic of replayed kernels (:mod:`suite.kernel_arithmetic`) against numpy's float16, whose operations
compute in float32 and round to float16 as torch's CPU kernels do, and against torch's bfloat16 tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import torch

from suite import deviations, dtypes, fp_environment
from suite.kernel_arithmetic import Kernel, Span, fast_math_half, stored_as_fast_math_half

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


def test_a_flushing_kernel_writes_a_subnormal_result_as_zero_of_its_sign() -> None:
    product = np.float64(1e-300) * np.float64(1e-10)  # numpy's IEEE product: subnormal
    assert 0 < product < np.finfo(np.float64).tiny
    a, b = Span.of(np.array([1e-300, -1e-300])), Span.of(np.array([1e-10, 1e-10]))
    assert Kernel(dtypes.FLOAT64).mul(a, b).low.tolist() == [product, -product]
    flushed = Kernel(dtypes.FLOAT64, flush=True).mul(a, b).low
    assert flushed.tolist() == [0.0, 0.0] and np.signbit(flushed).tolist() == [False, True]


def test_a_flushing_kernel_reads_a_subnormal_operand_as_zero() -> None:
    smallest, scale = Span.of(np.array([5e-324])), Span.of(np.array([2.0**1000]))
    assert Kernel(dtypes.FLOAT64).mul(smallest, scale).low[0] == np.ldexp(5e-324, 1000)  # a normal number
    assert Kernel(dtypes.FLOAT64, flush=True).mul(smallest, scale).low[0] == 0.0
    # float32: 2^-149 is subnormal there, 2^-126 the smallest normal number is kept
    tiny32 = float(np.finfo(np.float32).tiny)
    got = Kernel(F32, flush=True).add(Span.of(np.array([2.0**-149, tiny32])), Span.of(np.zeros(2))).low
    assert got.tolist() == [0.0, tiny32]


def test_a_flushing_float16_kernel_keeps_float16_subnormals() -> None:
    # float16's subnormal numbers are normal float32 numbers, in which its kernels compute
    subnormal = float(np.float16(2.0**-24))
    got = Kernel(F16, flush=True).mul(Span.of(np.array([subnormal])), Span.of(np.array([1.0]))).low[0]
    assert got == subnormal


def test_a_flushing_kernels_function_may_flush_a_result_below_twice_the_smallest_normal() -> None:
    tiny = float(np.finfo(np.float64).tiny)
    values = np.array([1.5 * tiny, 3 * tiny, 0.5 * tiny])
    span = Kernel(dtypes.FLOAT64, flush=True).function(np.log1p, Span.of(values))
    ieee = Kernel(dtypes.FLOAT64).function(np.log1p, Span.of(values))
    # log1p(a) = a: 1.5 tiny may be flushed (an intermediate a / 2 is subnormal), 3 tiny may not; the log1p of a
    # subnormal argument is subnormal, written as 0
    assert span.low.tolist() == [0.0, ieee.low[1], 0.0]
    assert span.high.tolist() == [ieee.high[0], ieee.high[1], 0.0]
    assert ieee.low[0] > 0 and ieee.low[2] > 0


def test_a_functions_exact_zero_is_not_widened() -> None:
    # exp(-inf) is 0 exactly in every C library: widened, 0 * -inf would be any number instead of torch's NaN
    for k in (Kernel(F32), Kernel(dtypes.FLOAT64)):
        zero = k.function(np.exp, Span.of(np.array([-np.inf])))
        assert (zero.low[0], zero.high[0]) == (0.0, 0.0)
        product = k.mul(zero, Span.of(np.array([-np.inf])))
        assert product.nan[0]


def _random_float32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random finite float32 values from their bit patterns: every binade, subnormals and zeros included."""
    values = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return values[np.isfinite(values)]


def test_fast_math_half_is_numpys_float16_rounding_within_float16s_range() -> None:
    values = _random_float32(np.random.default_rng(11), 200000)
    with np.errstate(over="ignore"):
        ieee = values.astype(np.float16)
    kept = np.isfinite(ieee)  # 65520 and beyond round to inf
    assert kept.sum() > 20000 and (~kept).sum() > 20000
    assert np.array_equal(fast_math_half(values[kept]), ieee[kept].astype(np.float64))
    assert np.array_equal(np.signbit(fast_math_half(values[kept])), np.signbit(ieee[kept]))


def test_fast_math_half_keeps_the_float32_exponent_modulo_32_beyond_float16s_range() -> None:
    # Without the overflow, |f| * 4 added to 2^(e + 15 - 127) leaves the float32 exponent e + 15 in the result's
    # exponent bits, which keep its low 5 bits, and f's mantissa rounded to 10 bits: a float16 of exponent field
    # ((e + 15) mod 32) + 1 (from the mantissa's leading one), NaN or inf at 31; at 32 the carry sets the sign bit,
    # so a positive value gives -0 or a negative number
    values = _random_float32(np.random.default_rng(12), 200000)
    values = values[(np.abs(values) >= 65536.0) & (np.abs(values) < 2.0**113)]  # beyond, 2^(e + 15) wraps too
    mantissa, exponent = np.frexp(np.abs(values).astype(np.float64))  # |f| = mantissa 2^exponent, 1/2 <= m < 1
    fraction = np.round(mantissa * 2048.0) - 1024.0  # 10 bits (ties to even, as the float32 sum rounds)
    field = (exponent - 1 + 127 + 15) % 32 + 1 + fraction // 1024  # a fraction rounded up to 1024 carries
    fraction = fraction % 1024
    ordinary = field <= 30
    expected = np.copysign(np.ldexp(1.0 + fraction / 1024.0, (field - 15).astype(int)), values)
    got = fast_math_half(values)
    assert ordinary.sum() > 1000
    assert np.array_equal(got[ordinary], expected[ordinary])
    assert np.isnan(got[(field == 31) & (fraction > 0)]).all()
    assert (field == 32).any() and np.signbit(got[field == 32]).all() and (values[field == 32] > 0).any()


def test_fast_math_half_gives_what_torch_2_1_compiled_kernels_gave() -> None:
    # measured on torch 2.1.2: a compiled (t * 1.0).half() on a 7-element CPU tensor (its scalar loop)
    values = [65504.0, 65520.0, 1e5, 131072.0, 8.93e9, 1.5625e10, 1e30, -8.93e9]
    torch_2_1 = [65504.0, np.inf, np.nan, -0.0, 2.080078125, 3.638671875, 12.625, -2.080078125]
    got = fast_math_half(values)
    assert np.array_equal(got, torch_2_1, equal_nan=True)
    assert np.signbit(got[3])


def test_torchs_compiled_scalar_float16_stores_are_ieee_or_the_registered_fast_math_conversion() -> None:
    """torch.compile's float16 store in a scalar loop (a 7-element CPU tensor) is IEEE rounding, or where the
    registry says this torch converts with -ffast-math, :func:`fast_math_half`, bit for bit."""
    entry = deviations.get("compile-cpu-fast-math-half-conversion-wraps")
    wraps = entry.about_torch(torch.__version__)
    values = _random_float32(np.random.default_rng(13), 700)[:630].reshape(-1, 7)
    convert = torch.compile(lambda t: (t * 1.0).half())
    with fp_environment.keeping_ieee():
        got = np.array([convert(torch.from_numpy(row.copy())).tolist() for row in values]).ravel()
    with np.errstate(over="ignore"):
        expected = fast_math_half(values.ravel()) if wraps else values.ravel().astype(np.float16).astype(np.float64)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_a_fast_math_half_span_is_mapped_end_by_end_only_where_the_conversion_is_monotone() -> None:
    low = np.array([1.0, 8.9e9, 70000.0, 8.93e9])
    high = np.array([2.0, 8.93e9, 1e5, 8.93e9])
    span = stored_as_fast_math_half(Span(low, high, np.zeros(4, dtype=bool)))
    # within float16's range: IEEE; one binade beyond it: its ends, in order; a span over two binades: anything;
    # one point: its conversion
    assert span.low.tolist()[:2] == [1.0, float(fast_math_half(8.9e9))]
    assert span.high.tolist()[:2] == [2.0, float(fast_math_half(8.93e9))]
    assert (span.low[2], span.high[2], bool(span.nan[2])) == (-np.inf, np.inf, True)
    assert span.low[3] == span.high[3] == 2.080078125 and not span.nan[3]


def test_a_dynamic_compiled_float16_mean_gradient_divides_by_n_stored_in_float16() -> None:
    """torch.compile(dynamic=True)'s float16 BCEWithLogits mean backward divides the float32 gradient
    sigmoid(x) - y by ``static_cast<half>(N)``: inf beyond float16's range (gradient 0), or, where the registry
    says this torch converts with -ffast-math, :func:`fast_math_half` of N (70,000 is NaN, 190,470 is -2.77e-5)."""
    entry = deviations.get("compile-cpu-half-mean-divisor-wraps")
    wraps = entry.about_torch(torch.__version__)
    loss = torch.compile(lambda x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y), dynamic=True)
    for n in (70000, 190470):
        x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16).repeat(n // 3 + 1)[:n].requires_grad_()
        y = torch.zeros(n, dtype=torch.float16)
        with fp_environment.keeping_ieee():
            loss(x, y).backward()
        assert x.grad is not None
        g = (torch.sigmoid(x.detach().float()) - y.float()).numpy()
        divisor = fast_math_half([float(n)])[0] if wraps else np.inf
        with np.errstate(all="ignore"):
            expected = (g / np.float32(divisor)).astype(np.float16).astype(np.float64)
        got = x.grad.double().numpy()
        assert np.allclose(got, expected, rtol=2.0**-10, atol=0.0, equal_nan=True), (n, got[:3], expected[:3])


def test_a_fused_float32_kernel_writes_its_tensors_in_the_inputs_dtype() -> None:
    """A float32 kernel of float16 tensors keeps its own values in float32 and writes a tensor as numpy's
    float16 rounds it, or by the -ffast-math conversion where its half conversion wraps; ``computing`` keeps
    both."""
    values = np.array([1.0 + 2.0**-12, 3.0e-8, 131072.0, -70000.0])
    plain = Kernel(F32, tensor=F16)
    span = plain.computing().materialised(plain.add(Span.of(values), Span.of(np.zeros(4))))
    assert span.low.tolist() == values.astype(np.float16).astype(np.float64).tolist()
    assert plain.add(Span.of(values), Span.of(np.zeros(4))).low[0] == 1.0 + 2.0**-12  # float32 holds it
    wraps = Kernel(F32, tensor=F16, half_wraps=True).computing().materialised(Span.of(values))
    assert np.array_equal(wraps.low, fast_math_half(values), equal_nan=True)
    assert Kernel(F16).materialised(Span.of(values[:2])).low.tolist() == [1.0, 2.0**-24]  # numpy's rounding
