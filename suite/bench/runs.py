"""Saved pytest-benchmark runs: finding the latest one under the storage folder and reading one safely.

``nox -s bench`` saves ``reports/benchmarks/<machine-id>/NNNN_bench.json``; the machine id contains the
Python version, so the latest run is looked up across every machine folder (a Python upgrade keeps the
baseline).  Anything that is not a readable run is a :class:`suite.errors.UsageError` (one line, exit 2).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from suite import atomic
from suite.errors import UsageError

STORAGE = Path("reports/benchmarks")
RUN_GLOB = "*/[0-9][0-9][0-9][0-9]_*.json"

Run = dict[str, Any]
Bench = dict[str, Any]


#: Fractions of the copy bandwidth a loss benchmark records: best call against best copy, and the median's.
FRACTION_FIELDS = ("copy_fraction_best", "copy_fraction")
#: Time statistics per call a benchmark records (pytest-benchmark's ``stats``).
STATS = ("median", "min", "mean")


def latest(storage: str | Path = STORAGE) -> Path:
    """The most recently written saved run under ``storage``."""
    return recent(storage, 1)[0]


def _setup(run: Run) -> tuple[Any, Any]:
    info = run.get("machine_info")
    return (info.get("torch_version"), info.get("torch_threads")) if isinstance(info, dict) else (None, None)


def recent(storage: str | Path = STORAGE, count: int = 1) -> list[Path]:
    """Up to ``count`` most recent saved runs under ``storage`` made with the latest one's torch version and
    thread count (runs of another setup measure something else), latest last."""
    found = sorted(Path(storage).glob(RUN_GLOB), key=lambda p: (p.stat().st_mtime, p.name))
    if not found:
        raise UsageError(f"no saved benchmark run under {storage}; run `nox -s bench` first")
    setup = _setup(load(found[-1]))
    same = [p for p in found if _setup(load(p)) == setup]
    return same[-count:]


def pool(pooled: Sequence[Run]) -> Run:
    """One baseline from several runs of one setup: per benchmark, the median over the runs of each time
    statistic and each fraction, so that one run's lucky or unlucky measurement does not set the bar."""
    if len(pooled) == 1:
        return pooled[0]
    out: Run = copy.deepcopy(pooled[-1])
    indexed = [by_name(r) for r in pooled]
    for bench in out["benchmarks"]:
        same = [runs[bench["fullname"]] for runs in indexed if bench["fullname"] in runs]
        for name in STATS:
            values = [v for b in same if (v := stat(b, name)) is not None]
            if values:
                bench["stats"][name] = statistics.median(values)
        for field in FRACTION_FIELDS:
            values = [v for b in same if (v := fraction(b, field)) is not None]
            if values:
                bench["extra_info"][field] = statistics.median(values)
    return out


def load(path: str | Path) -> Run:
    """A run's JSON, checked to hold benchmarks with a name and a positive finite median."""
    data = atomic.read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise UsageError(f"{path} is not a pytest-benchmark run (no 'benchmarks' list)")
    for i, bench in enumerate(data["benchmarks"]):
        ok = isinstance(bench, dict) and isinstance(bench.get("fullname"), str)
        if not ok or stat(bench) is None:
            raise UsageError(f"{path}: benchmark {i} has no name or no positive median time")
    return data


def stat(bench: Bench, name: str = "median") -> float | None:
    """A time statistic per call (``stats[name]``: median, min, mean) in seconds, or ``None``."""
    stats = bench.get("stats")
    value = stats.get(name) if isinstance(stats, dict) else None
    return float(value) if _positive(value) else None


def fraction(bench: Bench, field: str = "copy_fraction") -> float | None:
    """Fraction of the copy bandwidth (``field`` of ``extra_info``) of a loss benchmark (``None`` for others)."""
    extra = bench.get("extra_info")
    value = extra.get(field) if isinstance(extra, dict) else None
    return float(value) if _positive(value) else None


def by_name(run: Run) -> dict[str, Bench]:
    """Benchmarks keyed by their full pytest name (stable parameter ids make these comparable)."""
    return {b["fullname"]: b for b in run["benchmarks"]}


def _positive(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
