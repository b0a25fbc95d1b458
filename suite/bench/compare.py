"""The drift-proof half of the regression gate: compare each benchmark's fraction of the copy bandwidth
(normalised by the copy measured in the same run) between a baseline run and a current one.

    python -m suite.bench.compare BASELINE.json CURRENT.json [--threshold 15]   # exit 1 names slowed ones
    python -m suite.bench.compare --latest reports/benchmarks                     # print the latest saved run

pytest-benchmark's ``--benchmark-compare-fail=median:15%`` is the other half (absolute medians); both run in
``nox -s bench_compare``.  Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from suite.bench import runs
from suite.errors import UsageError

DEFAULT_THRESHOLD = 15.0
#: The fraction compared: best call against best copy (least disturbed by other load), or the median's.
FIELDS = ("copy_fraction_best", "copy_fraction")


@dataclass(frozen=True)
class Change:
    """A benchmark's fraction of copy bandwidth in the baseline and the current run."""

    name: str
    baseline: float
    current: float

    @property
    def percent(self) -> float:
        """Relative change in percent (negative: slower)."""
        return 100.0 * (self.current / self.baseline - 1.0)


def fraction_changes(baseline: runs.Run, current: runs.Run, field: str = FIELDS[0]) -> list[Change]:
    """Changes of every benchmark that records the fraction ``field`` in both runs, in the current run's
    order."""
    before = runs.by_name(baseline)
    out = []
    for name, bench in runs.by_name(current).items():
        old = before.get(name)
        now, then = runs.fraction(bench, field), runs.fraction(old, field) if old else None
        if now is not None and then is not None:
            out.append(Change(str(bench.get("name", name)), then, now))
    return out


def regressions(changes: Sequence[Change], threshold: float = DEFAULT_THRESHOLD) -> list[Change]:
    """Changes whose fraction fell by more than ``threshold`` percent."""
    return [c for c in changes if c.percent < -threshold]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m suite.bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", metavar="RUN.json", help="baseline and current run")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="allowed fall of the fraction, in percent (default %(default)s)")
    parser.add_argument("--field", choices=FIELDS, default=FIELDS[0],
                        help="which fraction of copy bandwidth to compare (default %(default)s)")
    parser.add_argument("--latest", metavar="STORAGE",
                        help="print the latest saved run under STORAGE and exit")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """The command; raises UsageError for bad input."""
    args = _parser().parse_args(argv)
    if args.latest:
        print(runs.latest(args.latest))
        return 0
    if len(args.runs) != 2:
        raise UsageError("give a baseline and a current run (or --latest STORAGE)")
    if not 0 <= args.threshold < 100:
        raise UsageError(f"--threshold must be a percentage in [0, 100), not {args.threshold}")
    changes = fraction_changes(runs.load(args.runs[0]), runs.load(args.runs[1]), args.field)
    if not changes:
        raise UsageError(f"{args.runs[0]} and {args.runs[1]} share no benchmark with a bandwidth fraction")
    slowed = regressions(changes, args.threshold)
    print(f"bandwidth-fraction check ({args.field}) against {args.runs[0]}: {len(changes)} compared, "
          f"{len(slowed)} fell by more than {args.threshold:g}%")
    for c in slowed:
        print(f"  SLOWER {c.name}: {args.field} {c.baseline:.4f} -> {c.current:.4f} ({c.percent:+.1f}%)")
    return 1 if slowed else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except UsageError as exc:
        print(f"python -m suite.bench.compare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
