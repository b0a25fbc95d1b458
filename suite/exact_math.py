"""Exact (arbitrary-precision) building blocks for case references, on two interchangeable backends.

Every helper dispatches on the type of its number arguments: mpmath ``mpf`` (the reference backend, pure
Python, unbounded exponents) or gmpy2 ``mpfr`` (MPFR in C: every operation correctly rounded, several times
faster, exponents within +-2^30).  A reference written only with these helpers and Python operators
(``1 - y``, ``x * g``, ``-x``) computes the same mathematics on both; :func:`backend_agnostic` marks it so,
and :mod:`suite.truth` may then run it on MPFR.  A reference without the mark (a user's plugin calling
mpmath directly) always runs on mpmath.  :func:`working_precision` opens the precision context of a backend
and :func:`converter` turns floats into its numbers exactly.

They implement the mathematics with no clamps and with the limits that hold for exact inputs:
``coefficient * f`` is 0 when the coefficient is exactly 0 even if ``f`` is infinite (``0 * log 0 = 0``),
``softplus(-inf) = 0``, ``log(0) = -inf``.  They are written without catastrophic cancellation so that the
two-precision check in :mod:`suite.truth` converges at the first step for nearly all inputs.  Results of the
one-argument functions are memoised on ``(argument, precision)`` (one cache per backend): grids cross each
value of the main input with several targets, so the transcendental work is done once per value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache, wraps
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import gmpy2
import mpmath
from mpmath import mpf

MPFR = "mpfr"
MPMATH = "mpmath"
#: Backend names, fastest first.
BACKENDS = (MPFR, MPMATH)

#: mpmath constants, kept for references written directly with mpmath.
INF = mpf("inf")
ZERO = mpf(0)
ONE = mpf(1)

_MPFR = type(gmpy2.mpfr(0))
#: Raised by the MPFR backend where a result leaves MPFR's exponent range, which mpmath's unbounded exponents
#: never do (``exp(-1e9)``, ``exp(3e38)``): :mod:`suite.truth` evaluates such a sample on mpmath instead.
RANGE_ERRORS: tuple[type[Exception], ...] = (gmpy2.OverflowResultError, gmpy2.UnderflowResultError)

F = TypeVar("F", bound=Callable[..., Any])


class _Ops(NamedTuple):
    """The primitives of one backend that the helpers below are written with."""

    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    log1p: Callable[[Any], Any]
    isinf: Callable[[Any], bool]
    isfinite: Callable[[Any], bool]
    isnan: Callable[[Any], bool]
    fsum: Callable[[Iterable[Any]], Any]
    inf: Any
    zero: Any
    one: Any


_MPMATH_OPS = _Ops(mpmath.exp, mpmath.log, mpmath.log1p, mpmath.isinf, mpmath.isfinite, mpmath.isnan, mpmath.fsum,
                   INF, ZERO, ONE)
_MPFR_OPS = _Ops(gmpy2.exp, gmpy2.log, gmpy2.log1p, gmpy2.is_infinite, gmpy2.is_finite, gmpy2.is_nan, gmpy2.fsum,
                 gmpy2.inf(), gmpy2.mpfr(0), gmpy2.mpfr(1))


def _ops(*xs: Any) -> _Ops:
    """The backend of the arguments: MPFR if any is an ``mpfr``, else mpmath (which also takes ints)."""
    for x in xs:
        if type(x) is _MPFR:
            return _MPFR_OPS
    return _MPMATH_OPS


# --------------------------------------------------------------------------------------------------
# Backends: marking references, precision contexts, conversion of inputs.


def backend_agnostic(reference: F) -> F:
    """Mark a reference written only with this module's helpers and Python operators as runnable on every
    backend (sets ``reference.backends``)."""
    setattr(reference, "backends", BACKENDS)  # noqa: B010 - a function attribute mypy cannot see
    return reference


def backends_of(reference: Any) -> tuple[str, ...]:
    """Backends a reference can run on: its ``backends`` attribute (looking through ``functools.partial``),
    else mpmath only."""
    while not hasattr(reference, "backends") and hasattr(reference, "func"):
        reference = reference.func
    backends: tuple[str, ...] = tuple(getattr(reference, "backends", (MPMATH,)))
    return backends


def _mpfr_context(bits: int) -> Any:
    """An MPFR context of ``bits`` bits: round to nearest, the widest exponent range gmpy2 accepts, and traps
    where mpmath would differ: leaving that range (mpmath has none) and division by zero (mpmath raises
    ZeroDivisionError).  gmpy2 2.3 still computes within MPFR's default range, 2^+-(2^30 - 1) (``exp(-7.4e8)``
    works, ``exp(-7.5e8)`` underflows): the traps, not the range, keep the results exact."""
    return gmpy2.context(precision=bits, round=gmpy2.RoundToNearest, emin=gmpy2.get_emin_min(),
                         emax=gmpy2.get_emax_max(), subnormalize=False, trap_overflow=True, trap_underflow=True,
                         trap_divzero=True)


_mpfr_contexts = lru_cache(maxsize=64)(_mpfr_context)


def working_precision(backend: str, bits: int) -> AbstractContextManager[Any]:
    """Context in which ``backend``'s operations round to ``bits`` bits."""
    if backend == MPFR:
        context: AbstractContextManager[Any] = _mpfr_contexts(bits)
        return context
    if backend == MPMATH:
        return mpmath.workprec(bits)
    raise ValueError(f"unknown truth backend {backend!r}; choose from {', '.join(BACKENDS)}")


#: ``plus`` of a 53-bit context converts a float exactly (keeping ``-0.0``), ten times faster than ``mpfr()``.
_exact_mpfr = gmpy2.context(precision=53, emin=gmpy2.get_emin_min(), emax=gmpy2.get_emax_max()).plus


def converter(backend: str) -> Callable[[float], Any]:
    """Exact conversion of a float to a number of ``backend`` (valid at every working precision)."""
    if backend == MPFR:
        return _exact_mpfr
    if backend == MPMATH:
        return mpf
    raise ValueError(f"unknown truth backend {backend!r}; choose from {', '.join(BACKENDS)}")


class without_conditions(AbstractContextManager[None]):  # noqa: N801 - used like a function
    """Within it :func:`conditions_wanted` is false and :func:`condition_number` returns None at once:
    :mod:`suite.truth` discards the condition numbers of every precision but the last, so it does not pay
    for them."""

    active = False

    def __enter__(self) -> None:
        self._before = without_conditions.active
        without_conditions.active = True

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        without_conditions.active = self._before


def conditions_wanted() -> bool:
    """False while :mod:`suite.truth` evaluates at a precision whose condition numbers it discards: a
    reference may then leave ``condition`` and ``grad_condition`` out and save their cost."""
    return not without_conditions.active


# --------------------------------------------------------------------------------------------------
# Predicates and sums.


def isinf(x: Any) -> bool:
    return bool(_ops(x).isinf(x))


def isfinite(x: Any) -> bool:
    return bool(_ops(x).isfinite(x))


def isnan(x: Any) -> bool:
    return bool(_ops(x).isnan(x))


def fsum(xs: Iterable[Any]) -> Any:
    """Sum rounded once to the working precision."""
    terms = list(xs)
    return _ops(*terms).fsum(terms)


# --------------------------------------------------------------------------------------------------
# Arithmetic with the exact limits.


def _memoised(fn: Callable[[Any, _Ops], Any]) -> Callable[[Any], Any]:
    """Cache a one-argument function, written with a backend's primitives, on the argument and the working
    precision, with one cache per backend (an ``mpf`` and an ``mpfr`` of equal value are equal keys)."""
    on_mpmath = lru_cache(maxsize=1 << 16)(lambda x, prec: fn(x, _MPMATH_OPS))
    on_mpfr = lru_cache(maxsize=1 << 16)(lambda x, prec: fn(x, _MPFR_OPS))
    get_context, mp = gmpy2.get_context, mpmath.mp

    @wraps(fn)
    def wrapper(x: Any) -> Any:
        if type(x) is _MPFR:
            return on_mpfr(x, get_context().precision)
        return on_mpmath(x, mp.prec)

    def cache_clear() -> None:
        on_mpmath.cache_clear()
        on_mpfr.cache_clear()

    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    return wrapper


def times(coefficient: Any, value: Any) -> Any:
    """``coefficient * value`` with the exact-zero rule: an exactly zero coefficient gives 0 even when
    ``value`` is infinite (the term is absent from the sum, e.g. ``y * log p`` at ``y = 0, p = 0``)."""
    if coefficient:  # `not c` is `c == 0`, faster
        return coefficient * value
    return _MPFR_OPS.zero if type(coefficient) is _MPFR or type(value) is _MPFR else ZERO


def reciprocal(x: Any) -> Any:
    """``1/x`` with ``1/(+0) = +inf`` (a limit from the right, used where the domain is ``x >= 0``)."""
    return _ops(x).inf if x == 0 else 1 / x


@_memoised
def log(x: Any, ops: _Ops) -> Any:
    """Natural log; ``log(0) = -inf``."""
    return -ops.inf if x == 0 else ops.log(x)


@_memoised
def log1m(x: Any, ops: _Ops) -> Any:
    """``log(1 - x)`` accurate for tiny ``x``; ``log1m(1) = -inf``."""
    return -ops.inf if x == 1 else ops.log1p(-x)


@_memoised
def exp(x: Any, ops: _Ops) -> Any:
    return ops.exp(x)


@_memoised
def _log1p_exp(x: Any, ops: _Ops) -> Any:
    """``log1p(e^x)`` for ``x <= 0``: shared by ``softplus(x)`` and ``softplus(-x)``."""
    return ops.log1p(exp(x))


@_memoised
def softplus(x: Any, ops: _Ops) -> Any:
    """``log(1 + e^x) = -log(sigmoid(-x))``, without cancellation: ``max(x, 0) + log1p(e^-|x|)``."""
    if ops.isinf(x):
        return ops.inf if x > 0 else ops.zero
    if x > 0:
        return x + _log1p_exp(-x)
    return _log1p_exp(x)


@_memoised
def sigmoid(x: Any, ops: _Ops) -> Any:
    """``1 / (1 + e^-x)``, with ``sigmoid(+-inf) = 1, 0``."""
    if ops.isinf(x):
        return ops.one if x > 0 else ops.zero
    if x >= 0:
        return 1 / (1 + exp(-x))
    e = exp(x)
    return e / (1 + e)


@_memoised
def logistic(x: Any, ops: _Ops) -> tuple[Any, Any, Any, Any]:
    """``(sigmoid(x), sigmoid(-x), softplus(x), softplus(-x))`` in one memo lookup (BCE-with-logits and its
    derivatives use all four)."""
    return sigmoid(x), sigmoid(-x), softplus(x), softplus(-x)


def log_softmax(xs: Sequence[Any]) -> list[Any] | None:
    """``x_i - logsumexp(x)`` of a row as ``(x_i - max) - log(sum(exp(x_j - max)))``: the shifted differences
    are formed first, so a large common offset (logits near 1e308) does not cancel the small result away;
    ``None`` for an all ``-inf`` row (softmax undefined)."""
    top = max(xs)
    ops = _ops(top)
    if ops.isinf(top) and top < 0:
        return None
    shifted = [x - top for x in xs]
    log_total = ops.log(ops.fsum([ops.exp(d) for d in shifted]))
    return [d - log_total for d in shifted]


def unit_interval_scale(v: Any) -> Any:
    """What stands for ``v`` in a term ``v * df/dv`` of :func:`condition_number` when ``v`` is in [0, 1] (a
    probability, a target): ``min(v, 1 - v)``.  Above 1/2, ``1 - v`` is exact in floating point (Sterbenz's
    lemma), so an algorithm can use the complement without error, and a perturbation of the rounded ``v`` is
    relative to it: counted relative to ``v``, ``BCEWithLogits(x=17, y=1) = 4e-8`` has the condition number
    ``17 / 4e-8`` and any error there, a flush to 0 included, would pass as inherent."""
    complement = 1 - v
    return v if v <= complement else complement


def condition_number(terms: Sequence[Any], value: Any) -> Any:
    """Relative condition number ``sum |x_k * df/dx_k| / |f|`` from the products ``x_k * df/dx_k``;
    ``None`` (not computable) where a term or the value is infinite, ``inf`` where ``f = 0`` and a term
    is not, 0 where both are."""
    if without_conditions.active or value is None:
        return None
    ops = _MPFR_OPS if type(value) is _MPFR else _ops(value, *terms)
    isfinite = ops.isfinite
    if not isfinite(value):
        return None
    for t in terms:
        if t is None or not isfinite(t):
            return None
    total = ops.fsum([abs(t) for t in terms])
    if value:
        return total / abs(value)
    return ops.inf if total else ops.zero
