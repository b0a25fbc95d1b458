"""Torch's kernels replayed operation by operation, to know the value a 16-bit kernel gives, not only its error.

torch's CPU kernels for float16 and bfloat16 compute each operation in float32 and store its result in the
tensor's format: ``a * b`` of two halves is ``half(float(a) * float(b))``, and a composite loss (BCE-with-logits,
kl_div) stores every intermediate tensor.  Every one of those roundings is part of torch's formula, so the
exact value of the loss says little about what a correct 16-bit kernel returns, while a replay of its
operations says exactly: a kernel that keeps fewer bits (an intermediate in bfloat16 for a float16 loss) or
reorders its formula is then told apart from torch's, although both are within a few ULPs of the exact loss.

A value is a :class:`Span`: the least and the greatest value torch may hold at that point, and whether it may
be NaN.  The four operations and ``max`` are correctly rounded, so their spans stay points; a function of the
C library (``log``, ``exp``...) is taken within :data:`LIBM_ULPS` ULPs of float32 of the exact function before
it is stored, which widens a span by at most one value of the 16-bit format.  Arithmetic on spans is interval
arithmetic on the spans' ends, each end rounded like torch's value (rounding is monotone).

Values are float64 arrays.  A float32 operation on float32 operands computed in float64 and rounded to float32
is the float32 operation's result (53 >= 2 * 24 + 2 bits), so the replay's only approximation is the libm one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from suite import dtypes
from suite.dtypes import FLOAT16, FLOAT32, FLOAT64, FloatFormat

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: ULPs of float32 by which a C library function (``logf``, ``expf``, ``log1pf``, vectorised or not) may miss
#: the exact function's value: the libraries torch uses promise 1 (SLEEF's u10 functions, glibc's).
LIBM_ULPS = 1.0
#: Relative error allowed for a function evaluated in float64 (numpy's and :mod:`suite.array_math`'s functions
#: are within a few ULPs of float64, 2^-50; this is 2^-40): far below an ULP of float32 (2^-23).
FLOAT64_EVALUATION_ERROR = 2.0**-40

#: Smallest normal numbers below which a C library function's result may be flushed to zero in a kernel that
#: flushes: torch 2.5's compiled float32 and float64 ``log1p`` gives 0 from 1 to just under 2 smallest normal
#: numbers, where its intermediate ``a / (2 + a)`` is subnormal.
FLUSHED_FUNCTION_RESULTS = 2.0


@dataclass(frozen=True)
class Span:
    """The values torch may hold at one point of a kernel, element by element: any from ``low`` to ``high``
    (NaN ends where it can only be NaN), and ``nan`` where it may be NaN."""

    low: FloatArray
    high: FloatArray
    nan: BoolArray

    @staticmethod
    def of(values: npt.ArrayLike) -> Span:
        """The span of values known exactly (a kernel's inputs)."""
        v = np.asarray(values, dtype=np.float64)
        return Span(v, v, np.isnan(v))


class Kernel:
    """Arithmetic of a kernel that computes each operation in ``compute`` (float32, or float64 for float64)
    and stores each result in ``store``: ``Kernel(FLOAT16)`` is torch's float16 CPU kernel;
    ``Kernel(FLOAT32)`` a fused kernel that keeps a 16-bit loss in float32 until its last store.

    ``flush``: the kernel runs with the processor's flush-to-zero and denormals-are-zero modes (FTZ/DAZ, which
    code built with ``-ffast-math`` turns on): an operand subnormal in ``compute`` is read as zero, and a result
    subnormal in ``compute`` is written as zero, both keeping their sign.  A C library function may check its
    argument's bits before any arithmetic, so it is taken of the operand and of the flushed operand, either;
    and it may flush an intermediate smaller than its result (SLEEF's ``log1p(a)`` forms ``a / (2 + a)``), so
    a result below :data:`FLUSHED_FUNCTION_RESULTS` smallest normal numbers may be zero too.

    ``fast_math``: the kernel is code built with ``-ffast-math``, which may reassociate its operations (a replay
    then allows the orders such code is measured to take, :mod:`suite.kernel_replays`).  A kernel that flushes is
    such code too.

    ``tensor``: the dtype of the tensors torch writes between kernels (default ``store``): a fused float32
    kernel of float16 inputs still reads log_softmax's output as the float16 tensor autograd saved
    (:meth:`materialised`).  ``half_wraps``: such code converts float32 to float16 by c10's conversion built
    with ``-ffast-math`` (:func:`fast_math_half`, torch 2.1's compiled scalar loops).

    ``literals``: the format the code writes its constants in (default ``compute``, as inductor's generated
    code does): torch's eager C++ kernels write BCE's 1e-12 as a float, 9.99999996e-13, which a float64 kernel
    then holds (:meth:`constant`)."""

    def __init__(self, store: FloatFormat, flush: bool = False, fast_math: bool = False,
                 tensor: FloatFormat | None = None, half_wraps: bool = False,
                 literals: FloatFormat | None = None) -> None:
        self.store = store
        self.compute = FLOAT64 if store.precision > FLOAT32.precision else FLOAT32
        self.flush = flush
        self.fast_math = fast_math or flush
        self.tensor = tensor or store
        self.half_wraps = half_wraps
        self.literals = literals or self.compute

    def computing(self) -> Kernel:
        """A kernel of the same arithmetic that stores in ``compute`` too (an operation kept in float32)."""
        kernel = copy.copy(self)  # every other setting kept, whatever settings the class grows
        kernel.store = self.compute
        return kernel

    def materialised(self, s: Span) -> Span:
        """``s`` written to a tensor of ``tensor``'s dtype (a loss, or an intermediate a later kernel reads):
        rounded to it, or converted by :func:`stored_as_fast_math_half` where the kernel's half conversion
        wraps."""
        if self.half_wraps and self.tensor is FLOAT16:
            return stored_as_fast_math_half(self.stored(s))
        with np.errstate(all="ignore"):
            return Span(dtypes.round_array(s.low, self.tensor), dtypes.round_array(s.high, self.tensor), s.nan)

    def _flushed(self, values: FloatArray) -> FloatArray:
        """``values`` with those subnormal in ``compute`` made zero of their sign, where the kernel flushes."""
        if not self.flush:
            return values
        return np.where(np.abs(values) < self.compute.smallest_normal, np.copysign(0.0, values), values)

    def _operand(self, s: Span) -> Span:
        """``s`` as an arithmetic instruction reads it (zero for a subnormal number, where the kernel flushes)."""
        return Span(self._flushed(s.low), self._flushed(s.high), s.nan) if self.flush else s

    def _rounded(self, values: npt.ArrayLike) -> FloatArray:
        """A value of ``compute`` stored in ``store``: both roundings, as torch makes them (the first flushed
        where the kernel flushes)."""
        with np.errstate(all="ignore"):
            computed = self._flushed(dtypes.round_array(np.asarray(values, dtype=np.float64), self.compute))
            return dtypes.round_array(computed, self.store)

    def stored(self, s: Span) -> Span:
        """``s`` stored in this kernel's format (the last store of a fused kernel)."""
        return Span(self._rounded(s.low), self._rounded(s.high), s.nan)

    def constant(self, value: float) -> Span:
        """``scalar_t(value)``: a constant of torch's code, written in ``literals``, in the stored format (1e-12
        is 0 in float16)."""
        return Span.of(self._rounded(dtypes.round_array(np.float64(value), self.literals)))

    def _combine(self, op: Callable[[FloatArray, FloatArray], FloatArray], a: Span, b: Span) -> Span:
        """``op`` on every pair of ends, rounded: the span of a correctly rounded operation that is monotone in
        each operand on the spans (``+``, ``-``, ``*``, and ``/`` by a span of one sign)."""
        a, b = self._operand(a), self._operand(b)
        with np.errstate(all="ignore"):
            ends = np.stack(np.broadcast_arrays(op(a.low, b.low), op(a.low, b.high), op(a.high, b.low),
                                                op(a.high, b.high)))
        nan = a.nan | b.nan | np.isnan(ends).any(axis=0)
        with np.errstate(all="ignore"):
            return Span(self._rounded(np.fmin.reduce(ends, axis=0)), self._rounded(np.fmax.reduce(ends, axis=0)),
                        np.asarray(nan))

    def add(self, a: Span, b: Span) -> Span:
        return self._combine(np.add, a, b)

    def sub(self, a: Span, b: Span) -> Span:
        return self._combine(np.subtract, a, b)

    def mul(self, a: Span, b: Span) -> Span:
        return self._combine(np.multiply, a, b)

    def div(self, a: Span, b: Span) -> Span:
        return self._combine(np.divide, a, b)

    def neg(self, a: Span) -> Span:
        return Span(-a.high, -a.low, a.nan)

    def maximum(self, a: Span, b: Span) -> Span:
        """``std::max(a, b)`` of C++: ``a`` where ``a`` is NaN (``a < b`` is false), as torch's kernels write
        it with the variable first."""
        a, b = self._operand(a), self._operand(b)
        return Span(np.where(np.isnan(a.low), a.low, np.fmax(a.low, b.low)),
                    np.where(np.isnan(a.high), a.high, np.fmax(a.high, b.high)), a.nan)

    def where(self, condition: BoolArray, a: Span, b: Span) -> Span:
        """``a`` where ``condition`` holds, else ``b`` (a kernel's branch on its exact inputs)."""
        return Span(np.where(condition, a.low, b.low), np.where(condition, a.high, b.high),
                    np.where(condition, a.nan, b.nan))

    def approximately(self, exact: npt.ArrayLike, error: npt.ArrayLike) -> Span:
        """A value that a kernel computes within ``error`` of ``exact`` (both in float64), then stores: a
        reduction over a row, whose order of operations the replay does not follow."""
        with np.errstate(all="ignore"):
            v, e = np.asarray(exact, dtype=np.float64), np.asarray(error, dtype=np.float64)
            return Span(self._rounded(v - e), self._rounded(v + e), np.isnan(v) | np.isnan(e))

    def either(self, *spans: Span) -> Span:
        """Any value of any of ``spans``: a kernel that torch's versions and dtypes implement in more than one
        way (float16's sigmoid backward stores each operation, bfloat16's computes in float32)."""
        return Span(np.fmin.reduce([s.low for s in spans]), np.fmax.reduce([s.high for s in spans]),
                    np.logical_or.reduce([s.nan for s in spans]))

    def function(self, f: Callable[[Any], Any], a: Span, ulps: float = LIBM_ULPS) -> Span:
        """A non-decreasing function of the C library on ``a`` (:meth:`_function`); where the kernel flushes,
        of ``a`` or of ``a`` flushed."""
        value = self._function(f, a, ulps)
        if not self.flush:
            return value
        value = self.either(value, self._function(f, self._operand(a), ulps))
        small = FLUSHED_FUNCTION_RESULTS * self.compute.smallest_normal
        return Span(np.where(np.abs(value.low) < small, np.fmin(value.low, 0.0), value.low),
                    np.where(np.abs(value.high) < small, np.fmax(value.high, 0.0), value.high), value.nan)

    def _function(self, f: Callable[[Any], Any], a: Span, ulps: float) -> Span:
        """A non-decreasing function of the C library on ``a``: its exact value at the ends, within ``ulps`` ULPs
        of ``compute``, then stored.  The exact value is taken in ``numpy.longdouble`` for a float64 kernel; for
        a float32 one, float64's value (a few ULPs of float64 from the exact one, two to five times faster) widened by
        :data:`FLOAT64_EVALUATION_ERROR` of itself, which keeps the exact value inside at a cost of 2^-16 of an
        ULP of float32.  An exact zero stays zero (``exp(-inf)``, ``log(1)``: the libraries return it, and a
        widened one would have ``0 * inf`` be anything but the NaN torch gives)."""
        wide = self.compute.precision > FLOAT32.precision
        carrier = np.longdouble if wide else np.float64
        margin = 0.0 if wide else FLOAT64_EVALUATION_ERROR
        with np.errstate(all="ignore"):
            low = np.asarray(f(np.asarray(a.low, dtype=carrier)), dtype=np.float64)
            high = np.asarray(f(np.asarray(a.high, dtype=carrier)), dtype=np.float64)
            low = np.where(np.isfinite(low) & (low != 0), low - ulps * dtypes.ulp(low, self.compute)
                           - margin * np.abs(low), low)
            high = np.where(np.isfinite(high) & (high != 0), high + ulps * dtypes.ulp(high, self.compute)
                            + margin * np.abs(high), high)
        nan = a.nan | np.isnan(low) | np.isnan(high)
        return Span(self._rounded(low), self._rounded(high), np.asarray(nan))

    def fused(self, body: Callable[[Kernel], Span]) -> Span:
        """``body`` computed in ``compute`` throughout and stored once: one kernel's own formula (torch's float16
        xlogy, its bfloat16 sigmoid backward, any fused kernel)."""
        return self.stored(body(self.computing()))


def fast_math_half(values: npt.ArrayLike) -> FloatArray:
    """float32 ``values`` converted to float16 by c10's ``fp16_ieee_from_fp32_value`` as code built with
    ``-ffast-math`` computes it (torch 2.1's compiled CPU kernels, in their scalar loops).

    The conversion rounds through ``(|f| * 2^112) * 2^-110``, whose overflow to inf is what makes a value beyond
    float16's range inf.  ``-fassociative-math`` folds the two products into ``|f| * 4``, which does not
    overflow, so such a value keeps its float32 exponent modulo 32 in the result's exponent bits: a finite number
    (8.93e9 gives 2.08), NaN, or a number of the other sign.  Values within float16's range convert as IEEE
    rounding does.  The steps below are the function's, bit for bit, with the products folded."""
    with np.errstate(over="ignore"):
        f = np.asarray(values, dtype=np.float32)  # beyond float32: inf, as a float32 kernel holds it
    w = f.view(np.uint32)
    shl1_w = w + w  # uint32 arithmetic wraps, as C's does
    sign = w & np.uint32(0x80000000)
    bias = np.maximum(shl1_w & np.uint32(0xFF000000), np.uint32(0x71000000))
    with np.errstate(all="ignore"):
        base = np.abs(f) * np.float32(4.0)
        magic = ((bias >> np.uint32(1)) + np.uint32(0x07800000)).view(np.float32)
        bits = (magic + base).astype(np.float32).view(np.uint32)
    nonsign = ((bits >> np.uint32(13)) & np.uint32(0x7C00)) + (bits & np.uint32(0x0FFF))
    half = (sign >> np.uint32(16)) | np.where(shl1_w > np.uint32(0xFF000000), np.uint32(0x7E00), nonsign)
    return (half & np.uint32(0xFFFF)).astype(np.uint16).view(np.float16).astype(np.float64)


def stored_as_fast_math_half(s: Span) -> Span:
    """A float32 span stored in float16 by :func:`fast_math_half`.  The conversion is IEEE rounding, monotone,
    where both ends round to finite float16 values; beyond float16's range it is not monotone, so a span is
    mapped end by end there only where it is one point, or where both ends lie in one float32 binade and keep
    their sign and stay finite (one binade maps to one exponent, its mantissas in order).  Elsewhere any value,
    or NaN, may result."""
    low, high = fast_math_half(s.low), fast_math_half(s.high)
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(dtypes.round_array(s.low, FLOAT16)) & np.isfinite(dtypes.round_array(s.high, FLOAT16))
        one_binade = ((np.frexp(s.low)[1] == np.frexp(s.high)[1]) & np.isfinite(low) & np.isfinite(high)
                      & (np.signbit(low) == np.signbit(s.low)) & (np.signbit(high) == np.signbit(s.high)))
    mapped = in_range | (s.low == s.high) | one_binade | np.isnan(s.low)
    return Span(np.where(mapped, low, -np.inf), np.where(mapped, high, np.inf),
                s.nan | np.isnan(low) | np.isnan(high) | ~mapped)
