"""``python -m suite diff A B``: what changed between two accuracy reports; exit status 1 when B regressed
(a new finding, more failing elements, a max ULP beyond budget that grew, a narrower safe range, a bad input or
a mixed-dtype call handled worse), else 0."""

from __future__ import annotations

import argparse

from suite import atomic, selection
from suite.errors import UsageError
from suite.report import baselines, diff, schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split(":", 1)[1].strip() if __doc__ else None
    parser.epilog = ("exit status: 0 no regression, 1 B regressed (CI can gate on it), 2 bad input (unreadable "
                     "or malformed file, wrong schema version, unknown case). A finding of B's targeted search "
                     "is a regression when A has no unexplained finding of the same quantity and label.")
    parser.add_argument("a", metavar="A", help="the earlier accuracy.json, its report folder, or a folder of "
                        "baselines (reports/baselines): then the one of B's torch and devices, else of the newest "
                        "older torch on B's devices (the oldest, when all are newer)")
    parser.add_argument("b", metavar="B", help="the later accuracy.json (or its report folder)")
    parser.add_argument("--cases", metavar="NAME[,NAME]",
                        help="compare only these cases (each must be in A or B)")
    parser.add_argument("--out", metavar="FILE", help="also write the diff as Markdown to FILE")


def main(args: argparse.Namespace) -> int:
    b = schema.load(args.b)
    devices = b["options"].get("devices", ["cpu"])
    a_path = baselines.resolve(args.a, b["environment"].get("torch", ""), devices)
    if a_path is None:
        raise UsageError(baselines.no_baseline(args.a, devices))
    a = schema.load(a_path)
    for path, report in ((a_path, a), (args.b, b)):
        if not schema.is_complete(report):
            raise UsageError(f"{path} is an incomplete report (--saved-only): finish it with --resume before "
                             "comparing, or what it lacks would count as gone")
    cases = None
    if args.cases is not None:  # "--cases ''" is refused, not read as every case
        cases = set(selection.names(args.cases, "--cases"))
        known = set(a["cases"]) | set(b["cases"])
        unknown = sorted(cases - known)
        if unknown:
            raise UsageError(f"unknown case {unknown[0]!r}; the reports hold {', '.join(sorted(known))}")
    try:
        result = diff.compare(a, b, cases)
        text = diff.render(result, str(a_path), args.b)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a field the schema check does not reach
        raise UsageError(f"{a_path} or {args.b} is malformed: {type(exc).__name__} {exc}") from None
    if args.out:
        atomic.write_text(args.out, text)
    print(text, end="")
    return 1 if result.regressed else 0
