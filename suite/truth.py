"""Exact ground truth of a case at given inputs, as double-double arrays.

The inputs are exact dtype values (carried as float64); each is converted to an arbitrary-precision number
exactly, the case's reference is evaluated as one expression at precision ``P`` and again at ``2P``, and the
result is rounded once to a double-double ``(hi, lo)``.  A quantity is *determined* when two successive precisions
give the same double-double; otherwise the precision keeps doubling up to a cap, and what still disagrees is
reported as *undetermined*, never guessed.  Where the agreed double-double could still move with a tail
hidden below both precisions (the working-precision value is exactly ``hi + lo``, or ``hi`` or ``lo`` was
rounded from an exact tie), one more evaluation, deep enough to see such a tail, confirms it (see
:func:`_tail_precision`).  Infinite truths
(``BCE(p=0, y=1)``) and undefined ones (an input outside the mathematical domain) are represented explicitly, so
that callers never have to interpret a NaN.

Two backends compute the same truths (see :mod:`suite.exact_math`): MPFR through gmpy2, the default for
references marked backend-agnostic (all built-in ones), and mpmath, the reference implementation, which
``SUITE_TRUTH_BACKEND=mpmath`` or ``backend="mpmath"`` selects and which references calling mpmath directly
always use.  A sample whose MPFR evaluation leaves MPFR's exponent range (``exp`` of a logit beyond about
7.4e8) is evaluated on mpmath.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from multiprocessing import get_context
from typing import Any, cast

import gmpy2
import mpmath
import numpy as np
import numpy.typing as npt
from mpmath.libmp import from_float, mpf_sub

from suite import dtypes, exact_math
from suite.dtypes import FLOAT64, FloatArray

DEFAULT_PRECISION = 128
MAX_PRECISION = 8192
#: Guard bits of the check for hidden tails: how far intermediates may exceed the sample's magnitudes, and
#: the margin below the finest unit a hidden tail could change (see ``_tail_precision``).
_TAIL_GUARD_BITS = 64
#: Environment variable naming the truth backend ("mpfr" or "mpmath") when a call does not.
BACKEND_ENV = "SUITE_TRUTH_BACKEND"

_MPFR = type(gmpy2.mpfr(0))


class Status(IntEnum):
    """Whether a truth is known."""

    DETERMINED = 0
    UNDEFINED = 1  # outside the mathematical domain: only behaviour is recorded
    UNDETERMINED = 2  # precisions up to the cap disagree


_NONE: FloatArray = np.zeros(0)  # marks big parts not given


@dataclass
class Truth:
    """Exact values as double-doubles: ``hi + lo`` with ``hi`` the float64 nearest the truth.

    ``hi`` is ``+-inf`` both for an infinite truth (``infinite`` true) and for a finite truth beyond the
    float64 range (``infinite`` false); it is NaN exactly where ``status`` is not DETERMINED.

    ``big_hi + big_lo`` is such a finite truth beyond float64 times ``2^-BIG_SHIFT`` (0 elsewhere, and inf
    beyond even that): what is needed to divide it back into range exactly, as a ``mean`` of huge elements
    or gradients does.  Everything else reads ``hi``, ``lo`` and ``infinite`` only.
    """

    hi: FloatArray
    lo: FloatArray
    status: npt.NDArray[np.int8]
    infinite: npt.NDArray[np.bool_]
    big_hi: FloatArray = field(default_factory=lambda: _NONE)  # zeros of hi's shape unless given
    big_lo: FloatArray = field(default_factory=lambda: _NONE)

    def __post_init__(self) -> None:
        if self.big_hi is _NONE:
            self.big_hi = np.zeros(np.shape(self.hi))
        if self.big_lo is _NONE:
            self.big_lo = np.zeros(np.shape(self.hi))

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Truth:
        return cls(np.full(shape, np.nan), np.zeros(shape), np.full(shape, Status.UNDEFINED, np.int8),
                   np.zeros(shape, bool))

    @property
    def beyond(self) -> npt.NDArray[np.bool_]:
        """Finite truths beyond float64 whose value ``big_hi + big_lo`` holds (scaled by ``2^-BIG_SHIFT``)."""
        result: npt.NDArray[np.bool_] = np.isinf(self.hi) & ~self.infinite & np.isfinite(self.big_hi) & (
            self.big_hi != 0)
        return result

    def exact_beyond(self) -> dict[int, Fraction]:
        """The exact values of the :attr:`beyond` elements, by flat index."""
        big_hi, big_lo = self.big_hi.reshape(-1), self.big_lo.reshape(-1)
        return {int(i): (Fraction(float(big_hi[i])) + Fraction(float(big_lo[i]))) * 2 ** BIG_SHIFT
                for i in np.flatnonzero(self.beyond.reshape(-1))}

    def scaled_magnitudes(self) -> FloatArray:
        """``|truth| 2^-BIG_SHIFT`` of every element (inf where infinite or beyond even the big parts, NaN where
        not determined): magnitudes that can be summed and compared when some lie beyond float64."""
        result: FloatArray = np.where(self.beyond, np.abs(self.big_hi), np.ldexp(np.abs(self.hi), -BIG_SHIFT))
        return result

    @property
    def shape(self) -> tuple[int, ...]:
        return self.hi.shape

    @property
    def determined(self) -> npt.NDArray[np.bool_]:
        result: npt.NDArray[np.bool_] = self.status == Status.DETERMINED
        return result

    def rounded(self, fmt: dtypes.FloatFormat) -> FloatArray:
        """The truth correctly rounded to ``fmt`` (NaN where not determined)."""
        return np.where(self.determined, dtypes.round_array(self.hi, fmt, self.lo), np.nan)

    def __getitem__(self, index: Any) -> Truth:
        return Truth(self.hi[index], self.lo[index], self.status[index], self.infinite[index], self.big_hi[index],
                     self.big_lo[index])

    def reshape(self, shape: tuple[int, ...]) -> Truth:
        return Truth(self.hi.reshape(shape), self.lo.reshape(shape), self.status.reshape(shape),
                     self.infinite.reshape(shape), self.big_hi.reshape(shape), self.big_lo.reshape(shape))

    def copy(self) -> Truth:
        return Truth(self.hi.copy(), self.lo.copy(), self.status.copy(), self.infinite.copy(), self.big_hi.copy(),
                     self.big_lo.copy())

    def set_exact(self, index: int, value: Fraction) -> None:
        """Store the exact finite ``value`` at flat ``index`` (as ``hi``/``lo``, with ``big`` parts beyond
        float64)."""
        hi, lo, big_hi, big_lo = dd_parts_from_fraction(value)
        for array, part in ((self.hi, hi), (self.lo, lo), (self.big_hi, big_hi), (self.big_lo, big_lo)):
            array.reshape(-1)[index] = part

    def scaled(self, divisor: int) -> Truth:
        """The truth divided by a positive integer (a ``mean`` gradient), as a double-double.

        A power-of-two divisor scales exactly.  Otherwise the quotient is formed with error-free
        transformations in float64 (``q = hi / n``, the exact remainder ``hi - q n`` by Dekker's product), which
        leaves an error below 2^-104 relative in ``lo``; nonzero elements near either end of float64's range
        (where the split would overflow or the quotient be subnormal) are divided exactly with fractions instead.
        An exact zero is +0, as the exact value fractions give (many gradients are exact zeros, and each element
        the fractions divide costs microseconds).
        """
        out = self.copy()
        if divisor == 1:
            return out
        for index, value in self.exact_beyond().items():  # a huge finite value may come back into range
            out.set_exact(index, value / divisor)
        finite = np.isfinite(out.hi) & ~self.beyond
        if divisor & (divisor - 1) == 0:
            shift = divisor.bit_length() - 1
            safe = finite & (np.abs(out.hi) >= np.ldexp(1.0, -1022 + 106 + shift))
            out.hi[safe] = np.ldexp(out.hi[safe], -shift)
            out.lo[safe] = np.ldexp(out.lo[safe], -shift)
        else:
            # Dekker's split multiplies by 2^27 + 1: keep quotients well inside the range
            safe = finite & (np.abs(out.hi) >= np.ldexp(1.0, -900)) & (np.abs(out.hi) <= np.ldexp(1.0, 990))
            out.hi[safe], out.lo[safe] = _divide_dd(out.hi[safe], out.lo[safe], float(divisor))
        flat_hi, flat_lo = out.hi.reshape(-1), out.lo.reshape(-1)
        zero = out.hi == 0
        out.hi[zero], out.lo[zero] = 0.0, 0.0
        for i in np.flatnonzero((finite & ~safe & ~zero).reshape(-1)):
            exact = (Fraction(float(flat_hi[i])) + Fraction(float(flat_lo[i]))) / divisor
            flat_hi[i], flat_lo[i] = dd_from_fraction(exact)
        return out


def _split(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Dekker's split of float64 values into two 26-bit halves (exact: ``a = high + low``)."""
    c = 134217729.0 * a  # 2^27 + 1
    high = c - (c - a)
    return high, a - high


def _divide_dd(hi: FloatArray, lo: FloatArray, n: float) -> tuple[FloatArray, FloatArray]:
    """``(hi + lo) / n`` as a normalised double-double, with error-free transformations."""
    q = hi / n
    # p = q * n exactly as p_hi + p_lo (Dekker's two-product)
    p_hi = q * n
    qh, ql = _split(q)
    nh, nl = _split(np.full_like(q, n))
    p_lo = ((qh * nh - p_hi) + qh * nl + ql * nh) + ql * nl
    remainder = ((hi - p_hi) - p_lo) + lo  # hi - p_hi is exact (Sterbenz)
    q_lo = remainder / n
    s = q + q_lo  # fast two-sum renormalisation (|q| >= |q_lo|)
    return s, q_lo - (s - q)


@dataclass(frozen=True)
class Reference:
    """What a case's reference returns for one sample: exact values (one per element of the sample), the
    gradient of their sum with respect to each differentiable input, optionally the relative condition
    number of each value (computed from ``grads`` for elementwise samples when omitted) and of each gradient
    element (from second derivatives; unknown when omitted).  ``None`` anywhere means "undefined here"."""

    values: Sequence[Any]
    grads: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    condition: Sequence[Any] | None = None
    grad_condition: Mapping[str, Sequence[Any]] = field(default_factory=dict)


ReferenceFn = Callable[[Mapping[str, list[Any]]], Reference | None]


@dataclass
class TruthSet:
    """Truth of every quantity of a case on a batch: the loss values, each gradient, condition numbers,
    and the precision at which each sample was settled."""

    values: Truth
    grads: dict[str, Truth]
    condition: FloatArray
    precision: npt.NDArray[np.int32]
    grad_condition: dict[str, FloatArray] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# mpmath / MPFR -> double-double

_Quantity = tuple[float, float, bool, float, float] | None  # dd, infinite, big dd; None when undefined

#: Finite truths beyond float64 keep their value times 2^-BIG_SHIFT (Truth.big_hi/big_lo): enough for any
#: value a divisor below 2^BIG_SHIFT brings back into range.
BIG_SHIFT = 128


#: The unit of a float64 ``lo`` that is 0: the smallest subnormal.
_SMALLEST = math.ulp(0.0)

_Parts = tuple[float, float, bool, float]  # hi, lo, infinite, hidden unit (see _hidden_unit)


def _hidden_unit(hi: float, lo: float, rest: Any, beyond: Any) -> float:
    """How fine a hidden tail must be to leave the double-double ``(hi, lo)`` of a value unchanged, given the
    value's exact remainders ``rest = x - hi`` and ``beyond = rest - lo`` at the working precision.

    ``inf`` when the rounding of both parts has room: a tail that two agreeing precisions missed cannot move
    it.  Otherwise the ulp of ``lo`` (0 counts as the smallest subnormal) when the working-precision value is
    exactly ``hi + lo`` (a tail as small as that unit would change ``lo``), and the smallest subnormal when
    ``hi`` or ``lo`` was rounded from an exact tie (a tail of any size decides it)."""
    if rest != 0 and 2 * rest == math.nextafter(hi, math.inf if rest > 0 else -math.inf) - hi:
        return _SMALLEST
    if beyond == 0:
        return math.ulp(lo) if lo else _SMALLEST
    if 2 * beyond == math.nextafter(lo, math.inf if beyond > 0 else -math.inf) - lo:
        return _SMALLEST
    return math.inf


def _mpf_parts(x: Any) -> _Parts:
    raw = x._mpf_
    if mpmath.isinf(x):
        return (math.inf if x > 0 else -math.inf), 0.0, True, math.inf
    if mpmath.isnan(x):
        return math.nan, 0.0, False, math.inf
    hi = dtypes.round_mpf(x, FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0, False, math.inf
    rest = mpf_sub(raw, from_float(hi), 0)  # exact
    lo = dtypes.round_mpf(mpmath.mpf(rest), FLOAT64)
    beyond = mpf_sub(rest, from_float(lo), 0)  # exact
    return hi, lo, False, _hidden_unit(hi, lo, mpmath.mpf(rest), mpmath.mpf(beyond))


def _mpfr_parts(x: Any) -> _Parts:
    hi = float(x)
    if math.isfinite(hi):
        if x.precision > gmpy2.get_context().precision:
            with gmpy2.context(gmpy2.get_context(), precision=x.precision):
                return _mpfr_split(x, hi)
        return _mpfr_split(x, hi)
    return hi, 0.0, bool(gmpy2.is_infinite(x)), math.inf  # inf, NaN, or finite beyond float64


def _mpfr_split(x: Any, hi: float) -> _Parts:
    if not x:
        return 0.0, 0.0, False, _SMALLEST  # a zero of either sign is +0, as mpmath's
    rest = x - hi
    lo = float(rest)
    return hi, lo, False, _hidden_unit(hi, lo, rest, rest - lo)


def dd_from_mpf(x: Any) -> tuple[float, float, bool]:
    """``(hi, lo, infinite)`` of an mpf: ``hi`` its nearest float64, ``lo`` the nearest float64 to the exact
    remainder.  Finite values beyond float64 give ``(+-inf, 0, False)``."""
    return _mpf_parts(x)[:3]


def dd_from_mpfr(x: Any) -> tuple[float, float, bool]:
    """:func:`dd_from_mpf` of a gmpy2 ``mpfr``: ``float()`` is MPFR's round-to-nearest-even to float64 (with
    subnormals and overflow to inf, as :func:`suite.dtypes.round_mpf`); ``x - hi`` is exact in ``x``'s
    precision, since both are multiples of ``x``'s last bit and ``|x - hi| <= ulp64(x) / 2`` (and so is
    ``x - hi - lo``).  A zero of either sign is ``+0``, as mpmath's."""
    return _mpfr_parts(x)[:3]


def dd_from_fraction(x: Fraction) -> tuple[float, float]:
    """Double-double nearest a rational, both parts rounded exactly."""
    hi = dtypes.round_fraction(x.numerator, x.denominator, FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0
    rest = x - Fraction(hi)
    return hi, dtypes.round_fraction(rest.numerator, rest.denominator, FLOAT64)


def dd_parts_from_fraction(x: Fraction) -> tuple[float, float, float, float]:
    """``(hi, lo, big_hi, big_lo)`` of a rational as :class:`Truth` stores it: ``big`` is the double-double of
    ``x 2^-BIG_SHIFT`` where ``x`` lies beyond float64, else 0."""
    hi, lo = dd_from_fraction(x)
    if math.isfinite(hi):
        return hi, lo, 0.0, 0.0
    return (hi, lo, *dd_from_fraction(x / 2 ** BIG_SHIFT))


# --------------------------------------------------------------------------------------------------
# Backends.


def resolve_backend(reference: ReferenceFn, backend: str | None = None) -> str:
    """The backend ``reference`` runs on: ``backend`` when given, else ``$SUITE_TRUTH_BACKEND``, else MPFR;
    but a reference not marked :func:`suite.exact_math.backend_agnostic` always runs on mpmath.  Both
    backends give the same truths; mpmath is the slow reference implementation."""
    requested = backend or os.environ.get(BACKEND_ENV) or exact_math.MPFR
    if requested not in exact_math.BACKENDS:
        source = "backend" if backend else BACKEND_ENV
        raise ValueError(f"{source}: unknown truth backend {requested!r}; choose from "
                         f"{', '.join(exact_math.BACKENDS)}")
    return requested if requested in exact_math.backends_of(reference) else exact_math.MPMATH


def _quantity_of(x: Any, parts: Callable[[Any], _Parts], scaled_down: Callable[[Any], Any],
                 ) -> tuple[_Quantity, float]:
    """A defined result of either backend as a quantity and its :func:`_hidden_unit`: ``parts`` splits a number
    of the backend, ``scaled_down`` multiplies one by ``2^-BIG_SHIFT`` exactly (for the big parts of a finite
    value beyond float64, whose hidden unit counts at full scale)."""
    hi, lo, infinite, unit = parts(x)
    if math.isfinite(hi) or infinite:
        return (hi, lo, infinite, 0.0, 0.0), unit
    big_hi, big_lo, _, big_unit = parts(scaled_down(x))
    return (hi, lo, infinite, big_hi, big_lo), big_unit * 2.0 ** BIG_SHIFT


def _mpmath_quantity(x: Any) -> tuple[_Quantity, float]:
    """A result as a quantity (None: undefined) and its :func:`_hidden_unit`."""
    if x is None:
        return None, math.inf
    x = mpmath.mpf(x)
    if mpmath.isnan(x):
        return None, math.inf
    return _quantity_of(x, _mpf_parts, lambda v: mpmath.ldexp(v, -BIG_SHIFT))


def _mpfr_quantity(x: Any) -> tuple[_Quantity, float]:
    """:func:`_mpmath_quantity` on MPFR."""
    if x is None:
        return None, math.inf
    if type(x) is not _MPFR:
        x = gmpy2.mpfr(x)
    if x != x:
        return None, math.inf
    return _quantity_of(x, _mpfr_parts, lambda v: gmpy2.mul_2exp(v, -BIG_SHIFT))


@dataclass(frozen=True)
class _Backend:
    """What the evaluation needs from a backend: its name (for :mod:`suite.exact_math`'s contexts), the exact
    conversion of an input and the conversion of a result to a quantity with its :func:`_hidden_unit`."""

    name: str
    number: Callable[[float], Any]
    quantity: Callable[[Any], tuple[_Quantity, float]]


_BACKENDS = {exact_math.MPMATH: _Backend(exact_math.MPMATH, exact_math.converter(exact_math.MPMATH), _mpmath_quantity),
             exact_math.MPFR: _Backend(exact_math.MPFR, exact_math.converter(exact_math.MPFR), _mpfr_quantity)}


# --------------------------------------------------------------------------------------------------
# Evaluation of one sample.

_Conditions = tuple[list[float], dict[str, list[float]]]
_NO_CONDITIONS: _Conditions = ([], {})
_WITHOUT_CONDITIONS = exact_math.without_conditions()


#: One evaluation: values, gradients, condition numbers, and the finest :func:`_hidden_unit` among them.
_Evaluation = tuple[list[_Quantity], dict[str, list[_Quantity]], _Conditions, float]


def _evaluate_at(reference: ReferenceFn, numbers: Mapping[str, list[Any]], width: int, precision: int,
                 backend: _Backend, conditions: bool) -> _Evaluation:
    """Values and gradients at one precision; condition numbers only with ``conditions`` (they are kept
    from the last precision only)."""
    with exact_math.working_precision(backend.name, precision):
        if conditions:
            ref = reference(numbers)
        else:
            with _WITHOUT_CONDITIONS:
                ref = reference(numbers)
        if ref is None:
            return [None] * width, {}, ([math.nan] * width, {}), math.inf
        quantity = backend.quantity
        converted = [quantity(v) for v in ref.values]
        converted_grads = {name: [quantity(g) for g in gs] for name, gs in ref.grads.items()}
        values = [q for q, _ in converted]
        grads = {name: [q for q, _ in gs] for name, gs in converted_grads.items()}
        finest = min((unit for _, unit in (*converted, *(g for gs in converted_grads.values() for g in gs))),
                     default=math.inf)
        if not conditions:
            return values, grads, _NO_CONDITIONS, finest
        if ref.condition is not None:
            condition = [_to_float(c) for c in ref.condition]
        else:
            condition = [_generic_condition(numbers, ref, i) for i in range(len(values))]
        grad_condition = {name: [_to_float(c) for c in cs] for name, cs in ref.grad_condition.items()}
    return values, grads, (condition, grad_condition), finest


def _to_float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _generic_condition(sample: Mapping[str, list[Any]], ref: Reference, i: int) -> float:
    """Relative condition number of value ``i`` of an elementwise sample from the analytic gradients."""
    terms = [None if g[i] is None else sample[name][i] * g[i] for name, g in ref.grads.items()]
    return _to_float(exact_math.condition_number(terms, ref.values[i]))


_SampleResult = tuple[list[_Quantity | str], dict[str, list[_Quantity | str]], _Conditions, int]


def evaluate_sample(reference: ReferenceFn, sample: Mapping[str, list[float]], *,
                    precision: int = DEFAULT_PRECISION, max_precision: int = MAX_PRECISION,
                    backend: str | None = None) -> _SampleResult:
    """Evaluate one sample at rising precision until every quantity is settled.

    Returns values and gradients (a dd, ``None`` for undefined, or the string ``"undetermined"``), the
    condition numbers of values and gradients, and the last precision used.  ``backend`` is as in
    :func:`resolve_backend`.
    """
    return _evaluate_on(resolve_backend(reference, backend), reference, sample, precision, max_precision)


def _evaluate_on(backend: str, reference: ReferenceFn, sample: Mapping[str, list[float]], precision: int,
                 max_precision: int) -> _SampleResult:
    """:func:`evaluate_sample` on a resolved backend; a sample whose MPFR evaluation leaves MPFR's exponent
    range is evaluated on mpmath."""
    if backend == exact_math.MPFR:
        try:
            return _settled(_BACKENDS[backend], reference, sample, precision, max_precision)
        except exact_math.RANGE_ERRORS:
            pass
    return _settled(_BACKENDS[exact_math.MPMATH], reference, sample, precision, max_precision)


def _settled(backend: _Backend, reference: ReferenceFn, sample: Mapping[str, list[float]], precision: int,
             max_precision: int) -> _SampleResult:
    """Evaluate until two successive precisions agree, then once more where a hidden tail would show
    (:func:`_tail_precision`): a result that agrees there too is settled; one that shows a tail goes on
    doubling from there."""
    number = backend.number
    numbers = {name: [number(v) for v in values] for name, values in sample.items()}  # exact at every precision
    width = len(next(iter(sample.values())))
    settled, finest = _agreement(backend, reference, numbers, width, precision, max_precision)
    values, grads, _, p = settled
    deeper = min(_tail_precision(finest, values, grads, sample, p), max_precision)
    if deeper <= p:
        return settled
    agreed = cast(list[_Quantity], values), cast(dict[str, list[_Quantity]], grads)
    check = _evaluate_at(reference, numbers, width, deeper, backend, deeper >= max_precision)
    if _all_identical(*agreed, check[0], check[1]):
        return settled  # confirmed: the precision reported stays the one the values agreed at
    pending = _Pending(*agreed)
    pending.update(*agreed, check[0], check[1])  # what the check confirms stays settled
    return _agreement(backend, reference, numbers, width, deeper, max_precision, first=check, pending=pending)[0]


def _tail_precision(finest: float, values: list[_Quantity | str], grads: dict[str, list[_Quantity | str]],
                    sample: Mapping[str, list[float]], p: int) -> int:
    """The precision at which a tail hidden at ``p`` as fine as ``finest`` (:func:`_hidden_unit`) would
    show, or 0 when none can matter.

    Two precisions agree on a wrong double-double when what decides it hides below both: softplus(200) =
    200 + 1.4e-87 is exactly 200 at 128 and at 256 bits; a KL row whose terms cancel to 5e-80 is exactly 0 at
    both; 3 (sigmoid(2.2e-308) - 0.9) lies exactly halfway between two float64 numbers at both, and the hidden
    1.7e-308 decides the rounding.  What hides below precision ``p`` is smaller than 2^-p times the largest
    magnitude in play, assuming intermediates stay within :data:`_TAIL_GUARD_BITS` binades of the sample's
    inputs and results (true of the built-in references), so the check goes that many bits below
    ``finest`` (for a tie: below the smallest subnormal, as deep as a float64 part can reach)."""
    if finest == math.inf:
        return 0
    quantities = [q for q in (*values, *(g for gs in grads.values() for g in gs)) if isinstance(q, tuple)]
    magnitudes = [abs(v) for vs in sample.values() for v in vs] + [abs(q[0]) for q in quantities]
    exponent = max([math.frexp(m)[1] for m in magnitudes if 0.0 < m < math.inf]
                   + [math.frexp(q[3])[1] + BIG_SHIFT for q in quantities if 0.0 < abs(q[3]) < math.inf] or [0])
    needed = max(exponent, 0) - math.frexp(finest)[1] + 1 + _TAIL_GUARD_BITS
    return needed if p < needed else 0


def _agreement(backend: _Backend, reference: ReferenceFn, numbers: Mapping[str, list[Any]], width: int,
               precision: int, max_precision: int, first: _Evaluation | None = None,
               pending: _Pending | None = None) -> tuple[_SampleResult, float]:
    """Double the precision from ``precision`` (whose evaluation ``first`` may already hold) until two
    successive precisions agree on every quantity, the last step ending at ``max_precision``; ``pending``
    holds what is settled already (made at the first disagreement otherwise).  Also returns the finest
    hidden unit of the last evaluation."""
    p = precision
    values, grads, condition, finest = first or _evaluate_at(reference, numbers, width, p, backend,
                                                             p >= max_precision)
    while p < max_precision:
        p = min(2 * p, max_precision)
        values2, grads2, condition, finest = _evaluate_at(reference, numbers, width, p, backend, True)
        if pending is None:
            if _all_identical(values, grads, values2, grads2):
                return cast(_SampleResult, (values2, grads2, condition, p)), finest  # the common case
            pending = _Pending(values, grads)
        if not pending.update(values, grads, values2, grads2):
            break
        values, grads = values2, grads2
    if pending is None:
        pending = _Pending(values, grads)
    final_values, final_grads = pending.final()
    return (final_values, final_grads, condition, p), finest


def _all_identical(values: list[_Quantity], grads: dict[str, list[_Quantity]], values2: list[_Quantity],
                   grads2: dict[str, list[_Quantity]]) -> bool:
    """Whether two evaluations agree on every value and gradient (:func:`_identical`)."""
    return _identical(values, values2) and grads.keys() == grads2.keys() and all(
        _identical(grads[name], grads2[name]) for name in grads)


def _identical(before: list[_Quantity], after: list[_Quantity]) -> bool:
    """Whether every quantity agrees, as :func:`_same` (``==`` does not see the sign of a zero ``hi``)."""
    if before != after:
        return False
    for b in after:
        if b is not None and not b[0]:
            return all(_same(x, y) for x, y in zip(before, after, strict=True))
    return True


class _Pending:
    """Quantities of a sample settled so far (False: not yet) while the precision rises."""

    def __init__(self, values: list[_Quantity], grads: dict[str, list[_Quantity]]) -> None:
        self.values: list[_Quantity | str | bool] = [False] * len(values)
        self.grads: dict[str, list[_Quantity | str | bool]] = {k: [False] * len(v) for k, v in grads.items()}

    def update(self, values: list[_Quantity], grads: dict[str, list[_Quantity]], values2: list[_Quantity],
               grads2: dict[str, list[_Quantity]]) -> bool:
        """Settle what agrees between two successive precisions; True if anything is still pending."""
        pending = _settle(self.values, values, values2)
        for name in grads2:
            pending |= _settle(self.grads.setdefault(name, [False] * len(grads2[name])),
                               grads.get(name, [None] * len(grads2[name])), grads2[name])
        return pending

    def final(self) -> tuple[list[_Quantity | str], dict[str, list[_Quantity | str]]]:
        return [_final(s) for s in self.values], {k: [_final(s) for s in v] for k, v in self.grads.items()}


def _settle(settled: list[Any], before: Sequence[_Quantity], after: Sequence[_Quantity]) -> bool:
    """Mark quantities whose dd agrees between two precisions; True if any is still pending."""
    pending = False
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        if settled[i] is not False:
            continue
        if _same(a, b):
            settled[i] = b
        else:
            pending = True
    return pending


def _same(a: _Quantity, b: _Quantity) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a[:5] == b[:5] and math.copysign(1, a[0]) == math.copysign(1, b[0])


def _final(settled: Any) -> _Quantity | str:
    return "undetermined" if settled is False else settled


# --------------------------------------------------------------------------------------------------
# Batches.


def _flat_samples(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], rows: bool,
                  ) -> Iterator[dict[str, list[float]]]:
    """The samples of a batch in C order: each element (``rows`` false) or each row along the last axis."""
    names = list(inputs)
    if rows:
        count = math.prod(shape[:-1])
        row_columns = [np.broadcast_to(inputs[k], shape).reshape(count, shape[-1]).tolist() for k in names]
        for row in zip(*row_columns, strict=True):
            yield dict(zip(names, row, strict=True))
    else:
        columns = [np.broadcast_to(inputs[k], shape).ravel().tolist() for k in names]
        for element in zip(*columns, strict=True):
            yield {k: [v] for k, v in zip(names, element, strict=True)}


def _evaluate_chunk(args: tuple[str, ReferenceFn, list[dict[str, list[float]]], int, int]) -> list[_SampleResult]:
    backend, reference, samples, precision, max_precision = args
    return [_evaluate_on(backend, reference, s, precision, max_precision) for s in samples]


def evaluate(reference: ReferenceFn, inputs: Mapping[str, npt.ArrayLike], *, rows: bool = False,
             in_domain: Callable[[Mapping[str, list[float]]], bool] | None = None,
             differentiable: Sequence[str] | None = None,
             precision: int = DEFAULT_PRECISION, max_precision: int = MAX_PRECISION,
             workers: int | None = None, backend: str | None = None) -> TruthSet:
    """Truth of ``reference`` on a batch.  Inputs broadcast together to the batch shape; with ``rows`` a
    sample is a row along the last axis, else one element.  Samples outside ``in_domain`` are UNDEFINED.
    ``differentiable`` names the inputs whose gradients are kept (default: all the reference returns, which
    are known only once a sample is defined, so pass it to get gradient truths even for an undefined batch).
    ``workers`` > 1 evaluates chunks in forked processes (default: ``SUITE_TRUTH_WORKERS`` or 1).
    ``backend`` ("mpfr" or "mpmath") is as in :func:`resolve_backend`; the truths do not depend on it.
    """
    resolved = resolve_backend(reference, backend)
    with _gc_paused():
        return _evaluate_batch(resolved, reference, inputs, rows, in_domain, differentiable, precision,
                               max_precision, workers)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a batch allocates millions of small acyclic objects (tuples,
    lists, numbers), and collections that re-scan the growing results slowed evaluation by up to 40%."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evaluate_batch(resolved: str, reference: ReferenceFn, inputs: Mapping[str, npt.ArrayLike], rows: bool,
                    in_domain: Callable[[Mapping[str, list[float]]], bool] | None,
                    differentiable: Sequence[str] | None, precision: int, max_precision: int,
                    workers: int | None) -> TruthSet:
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    positions: list[int] = []
    samples: list[dict[str, list[float]]] = []
    for position, sample in enumerate(_flat_samples(arrays, shape, rows)):
        if any(v != v for vs in sample.values() for v in vs) or (in_domain and not in_domain(sample)):
            continue  # NaN or outside the domain: UNDEFINED
        positions.append(position)
        samples.append(sample)
    if not rows and len(samples) > 1:
        # Sorted by the first input (the main one of a case), the samples sharing a value follow each other,
        # so exact_math's bounded memo serves them all; a grid crosses each main value with several others.
        keys = [np.broadcast_to(arrays[k], shape).reshape(-1)[positions] for k in reversed(list(arrays))]
        order = np.lexsort(keys).tolist()
        positions, samples = [positions[i] for i in order], [samples[i] for i in order]
    results = _run_chunks(resolved, reference, samples, precision, max_precision, _worker_count(workers))
    if differentiable is None:
        differentiable = sorted({name for r in results for name in r[1]})
    return _assemble(shape, rows, positions, results, differentiable)


def _worker_count(workers: int | None) -> int:
    if workers is None:
        workers = int(os.environ.get("SUITE_TRUTH_WORKERS", "1"))
    return max(1, workers)


def _run_chunks(backend: str, reference: ReferenceFn, samples: list[dict[str, list[float]]], precision: int,
                max_precision: int, workers: int) -> list[_SampleResult]:
    if workers == 1 or len(samples) < 256:
        return _evaluate_chunk((backend, reference, samples, precision, max_precision))
    size = max(64, len(samples) // (workers * 8) + 1)
    chunks = [(backend, reference, samples[i:i + size], precision, max_precision)
              for i in range(0, len(samples), size)]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        return [r for part in pool.map(_evaluate_chunk, chunks) for r in part]


class _Collector:
    """Quantities of one Truth gathered as flat positions and values, written to arrays at once."""

    def __init__(self) -> None:
        self.at: list[int] = []
        self.parts: list[tuple[float, float, bool, float, float]] = []
        self.undetermined: list[int] = []

    def add(self, start: int, quantities: Sequence[_Quantity | str]) -> None:
        for j, q in enumerate(quantities):
            if q is None:
                continue  # UNDEFINED, as in Truth.empty
            if isinstance(q, str):
                self.undetermined.append(start + j)
            else:
                self.at.append(start + j)
                self.parts.append(q)

    def truth(self, shape: tuple[int, ...]) -> Truth:
        out = Truth.empty((math.prod(shape),))
        if self.parts:
            hi, lo, infinite, big_hi, big_lo = zip(*self.parts, strict=True)
            out.hi[self.at], out.lo[self.at], out.infinite[self.at] = hi, lo, infinite
            out.big_hi[self.at], out.big_lo[self.at] = big_hi, big_lo
            out.status[self.at] = Status.DETERMINED
        out.status[self.undetermined] = Status.UNDETERMINED
        return out.reshape(shape)


def _assemble(shape: tuple[int, ...], rows: bool, positions: list[int], results: list[_SampleResult],
              differentiable: Sequence[str]) -> TruthSet:
    """The TruthSet of a batch from the results of the samples at flat ``positions`` (C order)."""
    width = shape[-1] if rows else 1
    values = _Collector()
    grads = {name: _Collector() for name in differentiable}
    condition = np.full(math.prod(shape), np.nan)
    grad_condition = {name: np.full(math.prod(shape), np.nan) for name in differentiable}
    precision = np.zeros(shape[:-1] if rows else shape, np.int32)
    flat_precision = precision.reshape(-1)
    for position, (vals, grad_map, (cond, grad_cond), p) in zip(positions, results, strict=True):
        start = position * width
        flat_precision[position] = p
        values.add(start, vals)
        for name, qs in grad_map.items():
            if name in grads:
                grads[name].add(start, qs)
        condition[start:start + len(cond)] = cond
        for name, cs in grad_cond.items():
            if name in grad_condition:
                grad_condition[name][start:start + len(cs)] = cs
    return TruthSet(values.truth(shape), {name: g.truth(shape) for name, g in grads.items()},
                    condition.reshape(shape), precision,
                    {name: c.reshape(shape) for name, c in grad_condition.items()})


# --------------------------------------------------------------------------------------------------
# Exact reductions.


def exact_sum(truth: Truth, divisor: int = 1) -> Truth:
    """Exact ``sum(truth) / divisor`` of the double-doubles, as a 0-d Truth.  Any undefined element makes the
    sum undefined, any undetermined one undetermined; ``+inf + -inf`` is undefined."""
    out = Truth.empty(())
    if (truth.status == Status.UNDEFINED).any():
        return out
    if (truth.status == Status.UNDETERMINED).any():
        out.status[()] = Status.UNDETERMINED
        return out
    hi, lo = truth.hi.reshape(-1), truth.lo.reshape(-1)
    beyond = truth.beyond.reshape(-1)  # huge but finite: summed exactly
    unbounded = ~np.isfinite(hi) & ~beyond  # infinite, or beyond even the big parts
    infinite = hi[unbounded]
    out.status[()] = Status.DETERMINED
    if infinite.size:
        if (infinite > 0).any() and (infinite < 0).any():
            out.status[()] = Status.UNDEFINED
            return out
        out.hi[()] = infinite[0]
        out.infinite[()] = bool(truth.infinite.reshape(-1)[unbounded].any())
        return out
    within = ~beyond
    total = _exact_float_sum(np.concatenate([hi[within], lo[within]]))
    total += sum(truth.exact_beyond().values(), Fraction(0))
    out.set_exact(0, total / divisor)
    return out


def sum_condition(weights: npt.ArrayLike, parts: Truth, total: Truth, divisor: int = 1) -> float:
    """Condition number ``sum(w_i |x_i|) / |sum x_i|`` of the exact sum ``total`` of ``parts`` (already divided
    by ``divisor``): ``w_i`` are the parts' own condition numbers (1 for given numbers).  Where a magnitude or
    their sum lies beyond float64, the magnitudes are compared scaled by ``2^-BIG_SHIFT``; inf at a zero sum."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        weights = np.asarray(weights, dtype=np.float64)
        mags, at = np.abs(parts.hi), abs(float(total.hi))
        if parts.beyond.any() or total.beyond.any() or not math.isfinite(float(np.nansum(weights * mags))):
            mags, at = parts.scaled_magnitudes(), abs(float(total.scaled_magnitudes()))
        return float(np.nansum(weights * mags) / divisor / at) if at != 0 else math.inf


def _exact_float_sum(values: FloatArray) -> Fraction:
    """Exact sum of float64 values, in integer arithmetic on a common power-of-two scale."""
    mantissas, exponents = np.frexp(values)
    ints = np.ldexp(mantissas, 53).astype(np.int64)  # exact: 53-bit integers
    shifts = (exponents.astype(np.int64) - 53)
    base = int(shifts.min()) if shifts.size else 0
    total = 0
    for m, s in zip(ints.tolist(), (shifts - base).tolist(), strict=True):
        total += m << s
    return Fraction(total) * Fraction(2) ** base
