"""Facts about the four floating-point formats the suite tests, and exact rounding into them.

Every value the suite handles travels as a NumPy ``float64`` array (the *carrier*): float32, float16 and
bfloat16 values embed exactly in float64, so one array type serves all four formats and the format
(:class:`FloatFormat`) says which values are legal.  Rounding is exact round-to-nearest-even with
subnormals and overflow to infinity, done in integer arithmetic, never by chained casts (which round twice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from mpmath.libmp import finf, fnan, fninf, fzero

if TYPE_CHECKING:
    import torch

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754 style binary format: ``precision`` significand bits (with the implicit one), exponents
    ``emin..emax`` for normal numbers, ``bits`` bits of storage."""

    name: str
    bits: int
    precision: int
    emin: int
    emax: int

    @property
    def max_finite(self) -> float:
        """Largest finite value, ``(2 - 2^(1-p)) * 2^emax``."""
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.precision), self.emax)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value."""
        return math.ldexp(1.0, 1 - self.precision)

    @property
    def unit_roundoff(self) -> float:
        return math.ldexp(1.0, -self.precision)

    @property
    def max_ordinal(self) -> int:
        """Ordinal of ``+inf`` (the largest finite value has ``max_ordinal - 1``)."""
        return (self.emax - self.emin + 2) << (self.precision - 1)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        dtype: torch.dtype = getattr(torch, self.name)
        return dtype

    def __str__(self) -> str:
        return self.name


FLOAT64 = FloatFormat("float64", 64, 53, -1022, 1023)
FLOAT32 = FloatFormat("float32", 32, 24, -126, 127)
FLOAT16 = FloatFormat("float16", 16, 11, -14, 15)
BFLOAT16 = FloatFormat("bfloat16", 16, 8, -126, 127)

FORMATS: dict[str, FloatFormat] = {f.name: f for f in (FLOAT64, FLOAT32, FLOAT16, BFLOAT16)}
#: every dtype the suite measures, widest first: the default of each command and test that runs "all dtypes"
NAMES: tuple[str, ...] = tuple(FORMATS)
ALIASES = {"double": "float64", "float": "float32", "half": "float16", "fp64": "float64", "fp32": "float32",
           "fp16": "float16", "bf16": "bfloat16"}


def get(dtype: Any) -> FloatFormat:
    """The format of a name (``"float32"``, ``"bf16"``...), a ``torch.dtype`` or a :class:`FloatFormat`."""
    if isinstance(dtype, FloatFormat):
        return dtype
    name = str(dtype).removeprefix("torch.")
    name = ALIASES.get(name, name)
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown floating-point dtype {dtype!r}; choose from {', '.join(FORMATS)}") from None


# --------------------------------------------------------------------------------------------------
# Exact rounding.


def _pack(negative: bool, man: int, q: int, fmt: FloatFormat) -> float:
    """``(-1)^negative * man * 2^q`` where ``man`` is already rounded to the format; inf on overflow."""
    if man == 0:
        return -0.0 if negative else 0.0
    if man.bit_length() - 1 + q > fmt.emax:
        return -math.inf if negative else math.inf
    value = math.ldexp(float(man), q)
    return -value if negative else value


def round_scaled(negative: bool, man: int, exp: int, fmt: FloatFormat) -> float:
    """Round ``(-1)^negative * man * 2^exp`` (``man >= 0``) to ``fmt``, nearest with ties to even."""
    if man == 0:
        return -0.0 if negative else 0.0
    e = exp + man.bit_length() - 1  # floor(log2 |x|)
    if e > fmt.emax:
        return -math.inf if negative else math.inf
    if e < fmt.emin - fmt.precision:  # below half the smallest subnormal
        return -0.0 if negative else 0.0
    q = max(e, fmt.emin) - fmt.precision + 1
    shift = q - exp
    if shift <= 0:
        return _pack(negative, man << -shift, q, fmt)
    kept = man >> shift
    rest = man - (kept << shift)
    half = 1 << (shift - 1)
    if rest > half or (rest == half and kept & 1):
        kept += 1
    return _pack(negative, kept, q, fmt)


def round_fraction(numerator: int, denominator: int, fmt: FloatFormat) -> float:
    """Round the rational ``numerator / denominator`` to ``fmt`` exactly (nearest, ties to even)."""
    if denominator == 0:
        raise ZeroDivisionError("denominator is zero")
    negative = (numerator < 0) != (denominator < 0)
    n, d = abs(numerator), abs(denominator)
    if n == 0:
        return -0.0 if negative else 0.0
    e = n.bit_length() - d.bit_length()
    if (n << max(0, -e)) < (d << max(0, e)):
        e -= 1  # now 2^e <= n/d < 2^(e+1)
    if e > fmt.emax:
        return -math.inf if negative else math.inf
    if e < fmt.emin - fmt.precision:
        return -0.0 if negative else 0.0
    q = max(e, fmt.emin) - fmt.precision + 1
    num, den = (n, d << q) if q >= 0 else (n << -q, d)
    kept, rest = divmod(num, den)
    if 2 * rest > den or (2 * rest == den and kept & 1):
        kept += 1
    return _pack(negative, kept, q, fmt)


def round_mpf(x: Any, fmt: FloatFormat) -> float:
    """Round an mpmath number (``mpf``) to ``fmt`` exactly; ``nan``/``inf`` pass through."""
    raw = x._mpf_
    if raw == fzero:
        return 0.0
    if raw == finf:
        return math.inf
    if raw == fninf:
        return -math.inf
    if raw == fnan:
        return math.nan
    sign, man, exp, _ = raw
    return round_scaled(bool(sign), int(man), int(exp), fmt)


def round_array(hi: npt.ArrayLike, fmt: FloatFormat, lo: npt.ArrayLike | None = None) -> FloatArray:
    """Round ``hi + lo`` (float64 arrays, ``|lo| <= ulp64(hi)/2`` as in a normalised double-double) to
    ``fmt`` exactly, vectorised.  With ``lo`` omitted this is the correctly rounded cast of float64 values.

    ``hi`` is scaled so that the format's quantum is 1, rounded with ``rint`` (ties to even), and an exact
    tie in ``hi`` is broken by the sign of ``lo``: only then can ``lo`` change the result.  Kernel replays round
    every step of a kernel, so the plain casts take faster exact ways: to float32 the machine's conversion
    (:func:`_cast_to_float32`), to 16 bits the float32 bit patterns (:func:`_round_float32_bits`).
    """
    h = np.array(hi, dtype=np.float64, copy=True)
    if lo is not None:
        return _round_scaled_array(h, fmt, lo)
    if fmt.name == "float32":
        return _cast_to_float32(h)
    if fmt.precision < FLOAT32.precision and fmt.emin >= FLOAT32.emin:
        return _round_float32_bits(h, fmt)
    return _round_scaled_array(h, fmt, np.zeros_like(h))


def _cast_to_float32(h: FloatArray) -> FloatArray:
    """float64 values rounded to float32 by the machine's conversion: IEEE 754's nearest with ties to even,
    subnormal results kept, inf beyond the range as rounding decides, in the IEEE environment the suite
    requires of its process (:func:`suite.fp_environment.require_ieee`)."""
    with np.errstate(over="ignore"):
        out: FloatArray = h.astype(np.float32).astype(np.float64)
    return out


def _round_float32_bits(h: FloatArray, fmt: FloatFormat) -> FloatArray:
    """float64 values rounded to a 16-bit ``fmt``.  Those that are float32 numbers (a float32 kernel's results,
    most of what replays round) are rounded in their float32 bit patterns: add half the dropped bits' weight
    less one plus the last kept bit (ties to even), clear the dropped bits; a carry runs into the exponent,
    and past the largest value into inf, as it should.  That is exact where the format's quantum is a fixed
    bit of float32's pattern: its normal range, and for bfloat16 (float32's exponents) its subnormal numbers
    too.  The rest (other values, float16's subnormal range, NaN) takes :func:`_round_scaled_array`."""
    with np.errstate(over="ignore", invalid="ignore"):
        single = h.astype(np.float32)
    drop = np.uint32(FLOAT32.precision - fmt.precision)
    one = np.uint32(1)
    bits = single.view(np.uint32)
    kept = (bits + ((one << (drop - one)) - one) + ((bits >> drop) & one)) & ~((one << drop) - one)
    out: FloatArray = kept.view(np.float32).astype(np.float64)
    out = np.where(np.abs(out) > fmt.max_finite, np.copysign(np.inf, h), out)
    fast = single == h
    if fmt.emin > FLOAT32.emin:
        fast &= np.abs(h) >= fmt.smallest_normal
    slow = ~fast
    if slow.any():
        out[slow] = _round_scaled_array(h[slow], fmt, np.zeros(int(slow.sum())))
    return out


def _round_scaled_array(h: FloatArray, fmt: FloatFormat, lo: npt.ArrayLike) -> FloatArray:
    """:func:`round_array` by scaling to the format's quantum (see there); ``h`` is a float64 array."""
    low = np.broadcast_to(np.asarray(lo, dtype=np.float64), h.shape)
    out = h.copy()
    mask = np.isfinite(h) & (h != 0)
    if not mask.any():
        return out
    hv, lv = h[mask], low[mask]
    _, e2 = np.frexp(hv)
    q = np.maximum(e2 - 1, fmt.emin) - fmt.precision + 1
    scaled = np.ldexp(hv, -q)
    rounded = np.rint(scaled)
    tie = (np.abs(scaled - rounded) == 0.5) & (lv != 0)
    rounded = np.where(tie & (lv > 0), np.floor(scaled) + 1, rounded)
    rounded = np.where(tie & (lv < 0), np.ceil(scaled) - 1, rounded)
    with np.errstate(over="ignore"):  # beyond the format's range: overflow to inf is the right answer
        result = np.ldexp(rounded, q)
    result = np.where(np.abs(result) > fmt.max_finite, np.copysign(np.inf, hv), result)
    result = np.where(result == 0, np.copysign(0.0, hv), result)
    out[mask] = result
    return out


def is_representable(values: npt.ArrayLike, fmt: FloatFormat) -> npt.NDArray[np.bool_]:
    """True where a float64 value is exactly a value of ``fmt`` (NaN counts as representable)."""
    v = np.asarray(values, dtype=np.float64)
    result: npt.NDArray[np.bool_] = np.isnan(v) | (round_array(v, fmt) == v)
    return result


# --------------------------------------------------------------------------------------------------
# Bit patterns, ordinals and ULPs.

_UNSIGNED = {64: np.uint64, 32: np.uint32, 16: np.uint16}
_FLOATS = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def _bit_patterns(values: FloatArray, fmt: FloatFormat) -> npt.NDArray[np.uint64]:
    """Unsigned bit patterns of representable ``values`` in ``fmt``."""
    if fmt.name == "bfloat16":
        return (values.astype(np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint64)
    native = _FLOATS[fmt.name]
    return values.astype(native).view(_UNSIGNED[fmt.bits]).astype(np.uint64)


def _from_bit_patterns(patterns: npt.NDArray[np.uint64], fmt: FloatFormat) -> FloatArray:
    if fmt.name == "bfloat16":
        return (patterns.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    native = _FLOATS[fmt.name]
    return patterns.astype(_UNSIGNED[fmt.bits]).view(native).astype(np.float64)


def to_ordinal(values: npt.ArrayLike, fmt: FloatFormat) -> IntArray:
    """Position of each value in the ordered set of ``fmt``'s values: ``+0`` and ``-0`` are 0, the smallest
    positive subnormal 1, ``+inf`` is :attr:`FloatFormat.max_ordinal`, negatives mirror.  Values must be
    representable and not NaN."""
    v = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if np.isnan(v).any():
        raise ValueError("NaN has no ordinal")
    if not is_representable(v, fmt).all():
        raise ValueError(f"values not representable in {fmt.name}")
    patterns = _bit_patterns(v, fmt)
    sign_bit = np.uint64(1) << np.uint64(fmt.bits - 1)
    magnitude = (patterns & (sign_bit - np.uint64(1))).astype(np.int64)
    ordinal = np.where(patterns & sign_bit, -magnitude, magnitude)
    return ordinal.reshape(np.shape(values))


def from_ordinal(ordinals: npt.ArrayLike, fmt: FloatFormat) -> FloatArray:
    """Inverse of :func:`to_ordinal` (ordinal 0 gives ``+0``)."""
    o = np.atleast_1d(np.asarray(ordinals, dtype=np.int64))
    if (np.abs(o) > fmt.max_ordinal).any():
        raise ValueError(f"ordinal beyond +-inf of {fmt.name}")
    sign_bit = np.uint64(1) << np.uint64(fmt.bits - 1)
    patterns = np.abs(o).astype(np.uint64) | np.where(o < 0, sign_bit, np.uint64(0))
    return _from_bit_patterns(patterns, fmt).reshape(np.shape(ordinals))


def exponent(values: npt.ArrayLike, fmt: FloatFormat) -> IntArray:
    """``max(floor(log2|x|), emin)`` for finite nonzero x, ``emin`` for zero."""
    v = np.asarray(values, dtype=np.float64)
    _, e2 = np.frexp(np.where(np.isfinite(v), v, 1.0))
    return np.maximum(np.where(v == 0, fmt.emin, e2 - 1), fmt.emin).astype(np.int64)


def ulp(values: npt.ArrayLike, fmt: FloatFormat) -> FloatArray:
    """ULP of ``fmt`` at each value: ``2^(max(floor(log2|x|), emin) - p + 1)``; the smallest subnormal at 0;
    the ULP of the largest finite value for finite values beyond it; NaN for inf and NaN (no finite ULP)."""
    v = np.asarray(values, dtype=np.float64)
    e = np.minimum(exponent(v, fmt), fmt.emax)
    result = np.ldexp(1.0, (e - fmt.precision + 1).astype(np.int32))
    return np.where(np.isfinite(v), result, np.nan)


def next_toward(values: npt.ArrayLike, toward: npt.ArrayLike, fmt: FloatFormat) -> FloatArray:
    """``nextafter`` in ``fmt`` (the next representable value toward ``toward``)."""
    v = np.asarray(values, dtype=np.float64)
    t = np.broadcast_to(np.asarray(toward, dtype=np.float64), v.shape)
    ordinal = to_ordinal(v, fmt)
    step = np.sign(t - v).astype(np.int64)
    moved = from_ordinal(ordinal + step, fmt)
    # stepping up from -0 (ordinal 0) must give +subnormal; from +0 downward -subnormal: handled by ordinals.
    return np.where(step == 0, t, moved)
