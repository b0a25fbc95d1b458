"""``python -m suite COMMAND``: every command a person runs.  Each command lives in its own module that
provides ``add_arguments(parser)`` and ``main(args) -> int``; this module only dispatches, and turns bad
input (:class:`suite.errors.UsageError`, unknown options) into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from suite import fp_environment, interop
from suite.errors import OneLineParser, UsageError

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("suite.report.command", "run every case on full-range grids and write accuracy reports"),
    "diff": ("suite.report.diff_command", "compare two accuracy.json files; exit 1 when accuracy regressed"),
    "bench-report": ("suite.bench.summary", "turn a saved benchmark run into a table and a plot"),
    "modes": ("suite.modes_report", "compare eager/compile/autocast and CPU/CUDA, probe bad inputs, dtype promotion"),
    "discover": ("suite.discover", "propose known-deviation entries for failures the registry does not explain"),
    "audit": ("suite.audit", "measure how much of each known-deviation entry torch uses on the grids"),
    "bias": ("suite.bias", "measure whether each loss and gradient rounds toward or away from zero on average"),
    "witness": ("suite.witness", "search a known deviation's region and print a batch that shows it (its witness)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m suite",
                           description="Accuracy reports, diffs and benchmark summaries for PyTorch losses.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name, (module, text) in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text)
        try:
            importlib.import_module(module).add_arguments(command)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            command.set_defaults(_missing=module)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "_missing", None):
            raise UsageError(f"command {args.command!r} is not available in this installation")
        fp_environment.require_ieee()
        interop.require_numpy_interop()
        status: int = importlib.import_module(args._module).main(args)
        return status
    except UsageError as exc:
        print(f"python -m suite {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"python -m suite {args.command}: interrupted; earlier outputs are intact", file=sys.stderr)
        return 130
