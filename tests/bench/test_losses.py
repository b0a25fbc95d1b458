"""Throughput of every loss in the benchmark matrix (``suite.bench.matrix``), as a fraction of the copy
bandwidth measured in the same run.  Select with ``nox -s bench``; ``SUITE_BENCH_FULL=1`` for the full matrix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from suite.bench import bandwidth, matrix, workload
from tests.conftest import CUDA

POINTS = [pytest.param(p, id=p.id, marks=[CUDA, pytest.mark.cuda] if p.device == "cuda" else [])
          for p in matrix.points()]


def _check_output(work: workload.Workload) -> None:
    """Realistic inputs give finite losses, and a compiled forward agrees with the eager one."""
    point = work.point
    got = work.forward(work.tensors).detach()  # grad mode as timed: no recompilation
    assert torch.isfinite(got).all(), f"{point.id}: non-finite loss on realistic inputs"
    if point.mode != "eager":
        eager = workload.forward_for(matrix.Point(point.case, point.reduction, point.dtype, point.device,
                                                  "eager", point.direction, point.log2_numel))
        torch.testing.assert_close(got, eager(work.tensors).detach(), rtol=1e-2, atol=1e-3)


def _fastest_call(work: workload.Workload, calls: int = 2) -> float:
    """Fastest of a few untimed-by-the-benchmark calls: the cost estimate that plans rounds and loops."""
    best = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("point", POINTS)
def test_loss_throughput(benchmark: BenchmarkFixture, point: matrix.Point,
                         copy_bandwidth: Callable[[str], bandwidth.CopyBandwidth],
                         injected: frozenset[str]) -> None:
    copy = copy_bandwidth(point.device)
    work = workload.build(point, injected)
    work()  # compilation and first touch of every buffer, outside the timed region
    rounds, iterations = workload.plan(_fastest_call(work))  # two more warm-up calls
    benchmark.group = f"{point.case} {point.device} {point.dtype} 2p{point.log2_numel}"
    benchmark.pedantic(work, rounds=rounds, iterations=iterations)

    stats = benchmark.stats.stats
    figures = bandwidth.throughput(work.traffic(), stats.median, stats.min, point.numel, copy)
    benchmark.extra_info.update(case=point.case, reduction=point.reduction, dtype=point.dtype,
                                device=point.device, mode=point.mode, direction=point.direction,
                                numel=point.numel, log2_numel=point.log2_numel, repeat=work.repeat,
                                threads=torch.get_num_threads(), **figures)
    _check_output(work)
    assert 0 < figures["copy_fraction"] < math.inf
