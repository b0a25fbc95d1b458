"""Throughput of the mpmath truth (issue 2): points per second per core of ``suite.truth.evaluate`` for
``bce_with_logits`` with one worker, next to the bare mpmath evaluation of the same loss formula at the
same starting precision (no gradients, no second precision, no double-double rounding), so the overhead of
the truth machinery is visible."""

from __future__ import annotations

import math
import time

import mpmath
import numpy as np
import numpy.typing as npt
from pytest_benchmark.fixture import BenchmarkFixture

from suite import cases, exact_math, truth

POINTS = 256
CASE = "bce_with_logits"


def _inputs() -> dict[str, npt.NDArray[np.float64]]:
    """float32 logits ~ N(0, 3^2) and soft targets in [0, 1), carried as float64."""
    rng = np.random.default_rng(0)
    return {"input": rng.normal(0, 3, POINTS).astype(np.float32).astype(np.float64),
            "target": rng.uniform(0, 1, POINTS).astype(np.float32).astype(np.float64)}


def _clear_memo() -> None:
    """Forget exact_math's memoised results, so every round evaluates every point afresh."""
    for fn in vars(exact_math).values():
        clear = getattr(fn, "cache_clear", None)
        if callable(clear):
            clear()


def _bare_loss(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], precision: int) -> list[float]:
    """``y softplus(-x) + (1 - y) softplus(x)`` with plain mpmath calls at ``precision`` bits."""
    out = []
    with mpmath.workprec(precision):
        for xf, yf in zip(xs.tolist(), ys.tolist(), strict=True):
            x, y = mpmath.mpf(xf), mpmath.mpf(yf)
            tail = mpmath.log1p(mpmath.exp(-abs(x)))
            sp_pos, sp_neg = tail + max(x, 0), tail + max(-x, 0)  # softplus(x), softplus(-x)
            out.append(float(y * sp_neg + (1 - y) * sp_pos))
    return out


def test_truth_throughput(benchmark: BenchmarkFixture) -> None:
    case = cases.get(CASE)
    inputs = _inputs()

    def evaluate() -> truth.TruthSet:
        return truth.evaluate(case.reference, inputs, in_domain=case.in_domain, workers=1)

    result = benchmark.pedantic(evaluate, setup=_clear_memo, rounds=3, warmup_rounds=0)
    bare_best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        bare = _bare_loss(inputs["input"], inputs["target"], truth.DEFAULT_PRECISION)
        bare_best = min(bare_best, time.perf_counter() - start)
    truth_rate = POINTS / benchmark.stats.stats.median
    benchmark.extra_info.update(case=CASE, points=POINTS, workers=1, precision=truth.DEFAULT_PRECISION,
                                truth_points_per_s_per_core=truth_rate,
                                bare_mpmath_points_per_s_per_core=POINTS / bare_best,
                                truth_overhead=(POINTS / bare_best) / truth_rate)

    assert result.values.determined.all()
    # the bare formula is the same loss: it agrees with the truth to within one float64 ulp everywhere
    for got, want in zip(bare, result.values.hi.tolist(), strict=True):
        assert abs(got - want) <= math.ulp(want)
