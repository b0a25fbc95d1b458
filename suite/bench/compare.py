"""The benchmark regression gate: compare a current run (and re-measurements of it) with a saved baseline.

Two checks, each with a threshold in percent (default 15):

* the median time per call (``--stat``; ``min`` is steadier on a shared machine) must not grow by more,
  after dividing out the machine's drift: per device, dtype and size (one level of the memory hierarchy),
  the median over the current run's benchmarks of the ratio current / baseline (a shared VM's memory
  bandwidth moves by a third from one run to the next; one slowed loss is 8 of the 48 benchmarks of a size
  and hardly moves that median; ``--no-drift`` turns the correction off);
* the fraction of the copy bandwidth (normalised by the copy measured in the same run, so it survives
  machine drift, and uncorrected, so a torch that slows every loss alike still fails) must not fall by more.

A shared machine moves single medians by 15-50% from run to run (seen on a 2-core VM), while a real
regression is slower every time.  So the gate is two-stage: benchmarks over a threshold in the first run are
*suspects* (``--suspects FILE`` writes their pytest node ids); ``nox -s bench_compare`` re-measures only those
and passes the re-measurement as further CURRENT runs, of which each benchmark counts its best attempt
(lowest time, highest fraction).  A benchmark fails only when every attempt is slower.  The baseline may pool
several saved runs of the same setup (``--also-baseline``: per benchmark, the median over the runs), so one
run's outlier does not set the bar.

    python -m suite.bench.compare BASELINE.json CURRENT.json [RETRY.json ...] [--threshold 15] [--suspects F]
    python -m suite.bench.compare --latest reports/benchmarks     # print the latest saved run

Exit status 1 names the slowed benchmarks; bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from suite import atomic
from suite.bench import runs
from suite.errors import OneLineParser, UsageError

DEFAULT_THRESHOLD = 15.0
#: The fraction compared: best call against best copy (least disturbed by other load), or the median's.
FIELDS = runs.FRACTION_FIELDS
#: Time statistics of pytest-benchmark's ``stats`` the median gate can use.
STATS = runs.STATS


@dataclass(frozen=True)
class Change:
    """One benchmark's figure in the baseline and (best attempt) in the current runs; ``higher_is_better``
    for fractions, not for times."""

    name: str
    node: str
    metric: str
    baseline: float
    current: float
    higher_is_better: bool

    @property
    def percent(self) -> float:
        """Relative change in percent (positive: the figure grew)."""
        return 100.0 * (self.current / self.baseline - 1.0)

    def worse_by(self) -> float:
        """How much worse in percent (negative: better)."""
        return -self.percent if self.higher_is_better else self.percent


def _best(values: list[float], higher_is_better: bool) -> float:
    return max(values) if higher_is_better else min(values)


def changes(baseline: runs.Run, currents: Sequence[runs.Run], metric: str,
            read: Callable[[runs.Bench], float | None], higher_is_better: bool) -> list[Change]:
    """The change of every benchmark that has ``metric`` in the baseline and in at least one current run,
    taking each benchmark's best attempt across ``currents``; in the first current run's order."""
    before = runs.by_name(baseline)
    attempts: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for current in currents:
        for node, bench in runs.by_name(current).items():
            value = read(bench)
            if value is not None:
                attempts.setdefault(node, []).append(value)
                names.setdefault(node, str(bench.get("name", node)))
    out = []
    for node, values in attempts.items():
        then = read(before[node]) if node in before else None
        if then is not None:
            out.append(Change(names[node], node, metric, then, _best(values, higher_is_better), higher_is_better))
    return out


def _runs(current: runs.Run | Sequence[runs.Run]) -> list[runs.Run]:
    """One current run, or several attempts of it, as a list."""
    return [current] if isinstance(current, dict) else list(current)


def fraction_changes(baseline: runs.Run, current: runs.Run | Sequence[runs.Run],
                     field: str = FIELDS[0]) -> list[Change]:
    """Changes of the fraction of copy bandwidth ``field`` (higher is better)."""
    return changes(baseline, _runs(current), field, lambda b: runs.fraction(b, field), True)


def time_changes(baseline: runs.Run, current: runs.Run | Sequence[runs.Run], stat: str = "median",
                 drift: Mapping[str, float] | None = None) -> list[Change]:
    """Changes of the time statistic ``stat`` per call (lower is better), each current time divided by the
    drift of its group (:func:`drift_group`; 1 where ``drift`` has none)."""
    found = changes(baseline, _runs(current), stat, lambda b: runs.stat(b, stat), False)
    groups = {node: drift_group(bench) for node, bench in runs.by_name(baseline).items()}
    factors = drift or {}
    return [Change(c.name, c.node, c.metric, c.baseline, c.current / factors.get(groups[c.node], 1.0), False)
            for c in found]


#: Fewest benchmarks of a group for a drift estimate; smaller groups are compared as they are.
MIN_FOR_DRIFT = 8


def drift_group(bench: runs.Bench) -> str:
    """The benchmarks that drift together: same device, dtype and size (loss benchmarks), else their own."""
    extra = bench.get("extra_info")
    keys = ("device", "dtype", "log2_numel")
    if isinstance(extra, dict) and all(k in extra for k in keys):
        return "/".join(str(extra[k]) for k in keys)
    return str(bench.get("fullname"))


def machine_drift(baseline: runs.Run, current: runs.Run, stat: str = "median") -> dict[str, float]:
    """How much slower the machine ran ``current`` than ``baseline``, per :func:`drift_group` of at least
    :data:`MIN_FOR_DRIFT` shared benchmarks: the median of their time ratios."""
    by_group: dict[str, list[float]] = {}
    before = runs.by_name(baseline)
    for c in time_changes(baseline, current, stat):
        by_group.setdefault(drift_group(before[c.node]), []).append(c.current / c.baseline)
    return {group: float(statistics.median(ratios)) for group, ratios in by_group.items()
            if len(ratios) >= MIN_FOR_DRIFT}


def regressions(found: Sequence[Change], threshold: float = DEFAULT_THRESHOLD) -> list[Change]:
    """Changes that are worse by more than ``threshold`` percent."""
    return [c for c in found if c.worse_by() > threshold]


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m suite.bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", metavar="RUN.json",
                        help="the baseline, the current run, and any re-measurements of the current run")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="allowed slow-down, in percent (default %(default)s)")
    parser.add_argument("--field", choices=FIELDS, default=FIELDS[0],
                        help="which fraction of copy bandwidth to compare (default %(default)s)")
    parser.add_argument("--stat", choices=STATS, default="median",
                        help="which time per call to compare (default %(default)s)")
    parser.add_argument("--no-drift", action="store_true",
                        help="compare times as they are, without dividing out the machine's drift")
    parser.add_argument("--suspects", metavar="FILE",
                        help="write the pytest node ids of the slowed benchmarks to FILE, one per line")
    parser.add_argument("--also-baseline", action="append", default=[], metavar="RUN.json",
                        help="an earlier run of the same setup pooled into the baseline (per benchmark, the median "
                             "over the pooled runs); repeatable")
    parser.add_argument("--latest", metavar="STORAGE",
                        help="print the latest saved run under STORAGE and exit")
    parser.add_argument("--recent", type=int, default=1, metavar="K",
                        help="with --latest: print up to K recent runs of the latest one's setup, latest last")
    return parser


def _report(title: str, found: Sequence[Change], slowed: Sequence[Change], threshold: float) -> None:
    print(f"{title}: {len(found)} compared, {len(slowed)} worse by more than {threshold:g}%")
    for c in slowed:
        print(f"  SLOWER {c.name}: {c.metric} {c.baseline:.4g} -> {c.current:.4g} ({c.percent:+.1f}%)")


def run(argv: Sequence[str] | None = None) -> int:
    """The command; raises UsageError for bad input."""
    args = _parser().parse_args(argv)
    if args.latest:
        if args.recent < 1:
            raise UsageError("--recent must be at least 1")
        print("\n".join(str(p) for p in runs.recent(args.latest, args.recent)))
        return 0
    if len(args.runs) < 2:
        raise UsageError("give a baseline and a current run (then any re-measurements), or --latest STORAGE")
    if args.suspects:
        atomic.check_writable(args.suspects)
    if not 0 <= args.threshold < 100:
        raise UsageError(f"--threshold must be a percentage in [0, 100), not {args.threshold}")
    baseline, *currents = [runs.load(path) for path in args.runs]
    baseline = runs.pool([*(runs.load(path) for path in args.also_baseline), baseline])
    fractions = fraction_changes(baseline, currents, args.field)
    drift = {} if args.no_drift else machine_drift(baseline, currents[0], args.stat)
    times = time_changes(baseline, currents, args.stat, drift)
    if not times:
        raise UsageError(f"{args.runs[0]} and {args.runs[1]} share no benchmark")
    attempts = f"best of {len(currents)} attempts, " if len(currents) > 1 else ""
    corrected = "" if not drift else ", divided by the machine drift (" + ", ".join(
        f"{group} x{factor:.3f}" for group, factor in sorted(drift.items())) + ")"
    slow_times, slow_fractions = regressions(times, args.threshold), regressions(fractions, args.threshold)
    pooled = f" pooled with {len(args.also_baseline)} earlier run(s)" if args.also_baseline else ""
    _report(f"time check ({attempts}{args.stat}{corrected}) against {args.runs[0]}{pooled}", times, slow_times,
            args.threshold)
    _report(f"bandwidth-fraction check ({attempts}{args.field})", fractions, slow_fractions, args.threshold)
    suspects = list(dict.fromkeys(c.node for c in [*slow_times, *slow_fractions]))
    if args.suspects:
        atomic.write_text(Path(args.suspects), "".join(f"{node}\n" for node in suspects))
    return 1 if suspects else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except UsageError as exc:
        print(f"python -m suite.bench.compare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
