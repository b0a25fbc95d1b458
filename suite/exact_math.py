"""Exact (arbitrary-precision) building blocks for case references, evaluated with mpmath at the current
working precision.

They implement the mathematics with no clamps and with the limits that hold for exact inputs:
``coefficient * f`` is 0 when the coefficient is exactly 0 even if ``f`` is infinite (``0 * log 0 = 0``),
``softplus(-inf) = 0``, ``log(0) = -inf``.  They are written without catastrophic cancellation so that the
two-precision check in :mod:`suite.truth` converges at the first step for nearly all inputs.  Results of the
one-argument functions are memoised on ``(argument, precision)``: grids cross each value of the main input
with several targets, so the transcendental work is done once per value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache, wraps
from typing import Any

import mpmath
from mpmath import mpf

INF = mpf("inf")
ZERO = mpf(0)
ONE = mpf(1)


def _memoised(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Cache a one-argument mpmath function on the argument and the working precision."""
    cached = lru_cache(maxsize=1 << 16)(lambda x, prec: fn(x))

    @wraps(fn)
    def wrapper(x: Any) -> Any:
        return cached(x, mpmath.mp.prec)

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper


def times(coefficient: Any, value: Any) -> Any:
    """``coefficient * value`` with the exact-zero rule: an exactly zero coefficient gives 0 even when
    ``value`` is infinite (the term is absent from the sum, e.g. ``y * log p`` at ``y = 0, p = 0``)."""
    if coefficient == 0:
        return ZERO
    return coefficient * value


def reciprocal(x: Any) -> Any:
    """``1/x`` with ``1/(+0) = +inf`` (a limit from the right, used where the domain is ``x >= 0``)."""
    return INF if x == 0 else ONE / x


@_memoised
def log(x: Any) -> Any:
    """Natural log; ``log(0) = -inf``."""
    return -INF if x == 0 else mpmath.log(x)


@_memoised
def log1m(x: Any) -> Any:
    """``log(1 - x)`` accurate for tiny ``x``; ``log1m(1) = -inf``."""
    return -INF if x == 1 else mpmath.log1p(-x)


@_memoised
def exp(x: Any) -> Any:
    return mpmath.exp(x)


@_memoised
def softplus(x: Any) -> Any:
    """``log(1 + e^x) = -log(sigmoid(-x))``, without cancellation: ``max(x, 0) + log1p(e^-|x|)``."""
    if mpmath.isinf(x):
        return INF if x > 0 else ZERO
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


@_memoised
def sigmoid(x: Any) -> Any:
    """``1 / (1 + e^-x)``, with ``sigmoid(+-inf) = 1, 0``."""
    if mpmath.isinf(x):
        return ONE if x > 0 else ZERO
    if x >= 0:
        return ONE / (ONE + mpmath.exp(-x))
    e = mpmath.exp(x)
    return e / (ONE + e)


def logsumexp(xs: Sequence[Any]) -> Any:
    """``log(sum(exp(x)))`` of a row, shifted by its maximum; ``-inf`` for an all ``-inf`` row."""
    top = max(xs)
    if top == -INF:
        return -INF
    return top + mpmath.log(mpmath.fsum(mpmath.exp(x - top) for x in xs))


def condition_number(terms: Sequence[Any], value: Any) -> Any:
    """Relative condition number ``sum |x_k * df/dx_k| / |f|`` from the products ``x_k * df/dx_k``;
    ``None`` (not computable) where a term or the value is infinite, ``inf`` where ``f = 0`` and a term
    is not, 0 where both are."""
    if value is None or not mpmath.isfinite(value) or any(t is None or not mpmath.isfinite(t) for t in terms):
        return None
    total = mpmath.fsum(abs(t) for t in terms)
    if value == 0:
        return ZERO if total == 0 else INF
    return total / abs(value)
