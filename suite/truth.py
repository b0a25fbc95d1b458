"""Exact ground truth of a case at given inputs, as double-double arrays.

The inputs are exact dtype values (carried as float64); each is converted to an mpmath number exactly, the
case's reference is evaluated as one expression at precision ``P`` and again at ``2P``, and the result is
rounded once to a double-double ``(hi, lo)``.  A quantity is *determined* when two successive precisions
give the same double-double; otherwise the precision keeps doubling up to a cap, and what still disagrees is
reported as *undetermined*, never guessed.  Infinite truths (``BCE(p=0, y=1)``) and undefined ones (an input
outside the mathematical domain) are represented explicitly, so that callers never have to interpret a NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from multiprocessing import get_context
from typing import Any

import mpmath
import numpy as np
import numpy.typing as npt
from mpmath.libmp import from_float, mpf_sub

from suite import dtypes, exact_math
from suite.dtypes import FLOAT64, FloatArray

DEFAULT_PRECISION = 128
MAX_PRECISION = 8192


class Status(IntEnum):
    """Whether a truth is known."""

    DETERMINED = 0
    UNDEFINED = 1  # outside the mathematical domain: only behaviour is recorded
    UNDETERMINED = 2  # precisions up to the cap disagree


@dataclass
class Truth:
    """Exact values as double-doubles: ``hi + lo`` with ``hi`` the float64 nearest the truth.

    ``hi`` is ``+-inf`` both for an infinite truth (``infinite`` true) and for a finite truth beyond the
    float64 range (``infinite`` false); it is NaN exactly where ``status`` is not DETERMINED.
    """

    hi: FloatArray
    lo: FloatArray
    status: npt.NDArray[np.int8]
    infinite: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Truth:
        return cls(np.full(shape, np.nan), np.zeros(shape), np.full(shape, Status.UNDEFINED, np.int8),
                   np.zeros(shape, bool))

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
        return Truth(self.hi[index], self.lo[index], self.status[index], self.infinite[index])

    def scaled(self, divisor: int) -> Truth:
        """The exact truth divided by a positive integer (a ``mean`` gradient), re-rounded to double-double."""
        out = Truth(self.hi.copy(), self.lo.copy(), self.status.copy(), self.infinite.copy())
        if divisor == 1:
            return out
        flat_hi, flat_lo = out.hi.reshape(-1), out.lo.reshape(-1)
        for i in np.flatnonzero(np.isfinite(flat_hi)):
            exact = (Fraction(float(flat_hi[i])) + Fraction(float(flat_lo[i]))) / divisor
            flat_hi[i], flat_lo[i] = dd_from_fraction(exact)
        return out


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
# mpmath -> double-double


def dd_from_mpf(x: Any) -> tuple[float, float, bool]:
    """``(hi, lo, infinite)`` of an mpf: ``hi`` its nearest float64, ``lo`` the nearest float64 to the exact
    remainder.  Finite values beyond float64 give ``(+-inf, 0, False)``."""
    raw = x._mpf_
    if mpmath.isinf(x):
        return (math.inf if x > 0 else -math.inf), 0.0, True
    if mpmath.isnan(x):
        return math.nan, 0.0, False
    hi = dtypes.round_mpf(x, FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0, False
    rest = mpf_sub(raw, from_float(hi), 0)  # exact
    lo = dtypes.round_mpf(mpmath.mpf(rest), FLOAT64)
    return hi, lo, False


def dd_from_fraction(x: Fraction) -> tuple[float, float]:
    """Double-double nearest a rational, both parts rounded exactly."""
    hi = dtypes.round_fraction(x.numerator, x.denominator, FLOAT64)
    if not math.isfinite(hi):
        return hi, 0.0
    rest = x - Fraction(hi)
    return hi, dtypes.round_fraction(rest.numerator, rest.denominator, FLOAT64)


# --------------------------------------------------------------------------------------------------
# Evaluation of one sample.

_Quantity = tuple[float, float, bool] | None  # dd, or None when undefined


_Conditions = tuple[list[float], dict[str, list[float]]]


def _evaluate_at(reference: ReferenceFn, sample: Mapping[str, list[float]], precision: int,
                 ) -> tuple[list[_Quantity], dict[str, list[_Quantity]], _Conditions]:
    with mpmath.workprec(precision):
        mp_sample = {name: [mpmath.mpf(v) for v in values] for name, values in sample.items()}
        ref = reference(mp_sample)
        width = len(next(iter(sample.values())))
        if ref is None:
            return [None] * width, {}, ([math.nan] * width, {})
        values = [_dd_or_none(v) for v in ref.values]
        grads = {name: [_dd_or_none(g) for g in gs] for name, gs in ref.grads.items()}
        if ref.condition is not None:
            condition = [_to_float(c) for c in ref.condition]
        else:
            condition = [_generic_condition(mp_sample, ref, i) for i in range(len(values))]
        grad_condition = {name: [_to_float(c) for c in cs] for name, cs in ref.grad_condition.items()}
    return values, grads, (condition, grad_condition)


def _dd_or_none(x: Any) -> _Quantity:
    if x is None:
        return None
    x = mpmath.mpf(x)
    return None if mpmath.isnan(x) else dd_from_mpf(x)


def _to_float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _generic_condition(sample: Mapping[str, list[Any]], ref: Reference, i: int) -> float:
    """Relative condition number of value ``i`` of an elementwise sample from the analytic gradients."""
    terms = [None if g[i] is None else sample[name][i] * g[i] for name, g in ref.grads.items()]
    return _to_float(exact_math.condition_number(terms, ref.values[i]))


def evaluate_sample(reference: ReferenceFn, sample: Mapping[str, list[float]], *,
                    precision: int = DEFAULT_PRECISION, max_precision: int = MAX_PRECISION,
                    ) -> tuple[list[_Quantity | str], dict[str, list[_Quantity | str]], _Conditions, int]:
    """Evaluate one sample at rising precision until every quantity is settled.

    Returns values and gradients (a dd, ``None`` for undefined, or the string ``"undetermined"``), the
    condition numbers of values and gradients, and the last precision used.
    """
    values, grads, condition = _evaluate_at(reference, sample, precision)
    settled_values: list[_Quantity | str | bool] = [False] * len(values)
    settled_grads: dict[str, list[_Quantity | str | bool]] = {k: [False] * len(v) for k, v in grads.items()}
    p = precision
    while True:
        p_next = 2 * p
        if p_next > max_precision:
            break
        values2, grads2, condition = _evaluate_at(reference, sample, p_next)
        pending = _settle(settled_values, values, values2)
        for name in grads2:
            pending |= _settle(settled_grads.setdefault(name, [False] * len(grads2[name])),
                               grads.get(name, [None] * len(grads2[name])), grads2[name])
        values, grads, p = values2, grads2, p_next
        if not pending:
            break
    final_values = [_final(s) for s in settled_values]
    final_grads = {k: [_final(s) for s in v] for k, v in settled_grads.items()}
    return final_values, final_grads, condition, p


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
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and math.copysign(1, a[0]) == math.copysign(1, b[0])


def _final(settled: Any) -> _Quantity | str:
    return "undetermined" if settled is False else settled


# --------------------------------------------------------------------------------------------------
# Batches.


def iter_samples(inputs: Mapping[str, FloatArray], shape: tuple[int, ...], rows: bool,
                 ) -> Iterator[tuple[tuple[int, ...], dict[str, list[float]]]]:
    """Yield ``(index, sample)``: each element (``rows`` false) or each row along the last axis."""
    full = {k: np.broadcast_to(v, shape) for k, v in inputs.items()}
    outer = shape[:-1] if rows else shape
    for index in np.ndindex(*outer):
        yield index, {k: (v[index].tolist() if rows else [float(v[index])]) for k, v in full.items()}


def _evaluate_chunk(args: tuple[ReferenceFn, list[dict[str, list[float]]], int, int]) -> list[Any]:
    reference, samples, precision, max_precision = args
    return [evaluate_sample(reference, s, precision=precision, max_precision=max_precision) for s in samples]


def evaluate(reference: ReferenceFn, inputs: Mapping[str, npt.ArrayLike], *, rows: bool = False,
             in_domain: Callable[[Mapping[str, list[float]]], bool] | None = None,
             differentiable: Sequence[str] | None = None,
             precision: int = DEFAULT_PRECISION, max_precision: int = MAX_PRECISION,
             workers: int | None = None) -> TruthSet:
    """Truth of ``reference`` on a batch.  Inputs broadcast together to the batch shape; with ``rows`` a
    sample is a row along the last axis, else one element.  Samples outside ``in_domain`` are UNDEFINED.
    ``differentiable`` names the inputs whose gradients are kept (default: all the reference returns, which
    are known only once a sample is defined, so pass it to get gradient truths even for an undefined batch).
    ``workers`` > 1 evaluates chunks in forked processes (default: ``SUITE_TRUTH_WORKERS`` or 1).
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    indices: list[tuple[int, ...]] = []
    samples: list[dict[str, list[float]]] = []
    undefined: list[tuple[int, ...]] = []
    for index, sample in iter_samples(arrays, shape, rows):
        if any(math.isnan(v) for vs in sample.values() for v in vs) or (in_domain and not in_domain(sample)):
            undefined.append(index)
        else:
            indices.append(index)
            samples.append(sample)
    results = _run_chunks(reference, samples, precision, max_precision, _worker_count(workers))
    if differentiable is None:
        differentiable = sorted({name for r in results for name in r[1]})
    return _assemble(shape, rows, indices, results, differentiable)


def _worker_count(workers: int | None) -> int:
    if workers is None:
        workers = int(os.environ.get("SUITE_TRUTH_WORKERS", "1"))
    return max(1, workers)


def _run_chunks(reference: ReferenceFn, samples: list[dict[str, list[float]]], precision: int,
                max_precision: int, workers: int) -> list[Any]:
    if workers == 1 or len(samples) < 256:
        return _evaluate_chunk((reference, samples, precision, max_precision))
    size = max(64, len(samples) // (workers * 8) + 1)
    chunks = [(reference, samples[i:i + size], precision, max_precision) for i in range(0, len(samples), size)]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        return [r for part in pool.map(_evaluate_chunk, chunks) for r in part]


def _assemble(shape: tuple[int, ...], rows: bool, indices: list[tuple[int, ...]], results: list[Any],
              differentiable: Sequence[str]) -> TruthSet:
    values = Truth.empty(shape)
    grads: dict[str, Truth] = {name: Truth.empty(shape) for name in differentiable}
    condition = np.full(shape, np.nan)
    grad_condition = {name: np.full(shape, np.nan) for name in differentiable}
    precision = np.zeros(shape[:-1] if rows else shape, np.int32)
    for index, (vals, grad_map, (cond, grad_cond), p) in zip(indices, results, strict=True):
        precision[index] = p
        for name, qs in grad_map.items():
            if name in grads:
                _store(grads[name], index, rows, qs)
        _store(values, index, rows, vals)
        for j, c in enumerate(cond):
            condition[index + ((j,) if rows else ())] = c
        for name, cs in grad_cond.items():
            for j, c in enumerate(cs if name in grad_condition else ()):
                grad_condition[name][index + ((j,) if rows else ())] = c
    return TruthSet(values, grads, condition, precision, grad_condition)


def _store(truth: Truth, index: tuple[int, ...], rows: bool, quantities: Sequence[_Quantity | str]) -> None:
    for j, q in enumerate(quantities):
        at = index + ((j,) if rows else ())
        if q is None:
            truth.status[at] = Status.UNDEFINED
        elif isinstance(q, str):
            truth.status[at] = Status.UNDETERMINED
        else:
            hi, lo, infinite = q
            truth.hi[at], truth.lo[at], truth.infinite[at] = hi, lo, infinite
            truth.status[at] = Status.DETERMINED


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
    infinite = hi[~np.isfinite(hi)]
    out.status[()] = Status.DETERMINED
    if infinite.size:
        if (infinite > 0).any() and (infinite < 0).any():
            out.status[()] = Status.UNDEFINED
            return out
        out.hi[()] = infinite[0]
        out.infinite[()] = bool(truth.infinite.reshape(-1)[~np.isfinite(hi)].any())
        return out
    total = _exact_float_sum(np.concatenate([hi, lo]))
    out.hi[()], out.lo[()] = dd_from_fraction(total / divisor)
    return out


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
