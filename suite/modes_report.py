"""Modes, devices, bad inputs and dtype promotion, as report sections: runs :mod:`suite.compare`,
:mod:`suite.probes` and :mod:`suite.promotion` and turns their results into a JSON-ready dict and into
Markdown / HTML table fragments the accuracy report can include.

``python -m suite report`` computes the mode and device comparisons from its own full-grid results and
runs the probes and promotion of this module with ``--bad-inputs``; this module runs them standalone::

    from suite import modes_report
    payload = modes_report.sections(devices=["cpu"], mode_names=["eager", "compile", "autocast"], quick=True)
    md = modes_report.markdown(payload)        # "## ..." sections
    html = modes_report.html(payload)          # <h2> + <table> fragments

``payload`` keys: ``settings`` (what ran), ``modes`` (comparisons of each mode with eager on the same
device), ``devices`` (each device with CPU, same mode), ``autocast`` (result dtype or error of the unreduced
loss per case, dtype, device), ``probes`` (bad-input outcomes), ``promotion`` (mixed dtypes), ``notes``.
Standalone: ``python -m suite.modes_report --quick`` prints the Markdown (``--json``/``--html`` write files).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from suite import atomic, compare, dtypes, modes, plugins, probes, promotion, selection, truth_cache
from suite.cases.base import Case
from suite.errors import OneLineParser, UsageError
from suite.inputs import grids
from suite.report import html as report_html
from suite.report import markdown as report_markdown
from suite.report import modes_tables

#: Quick runs: the cases and dtypes whose mode differences the acceptance names, unreduced values only.
QUICK_MODE_CASES = ("bce", "bce_with_logits")
QUICK_MODE_DTYPES = ("float16", "bfloat16")
QUICK_REDUCTIONS = ("none",)
#: Quick probe dtypes: float32 in eager and compile, float16 in eager and autocast.
QUICK_PROBE_DTYPES = ("float32", "float16")
SCHEMA = "modes-1"


def run_modes(selected: Sequence[Case], dtype_names: Sequence[str], devices: Sequence[str],
              mode_names: Sequence[str], reductions: Sequence[str] | None, quick: bool,
              ) -> compare.SideComparisons:
    """Every case x dtype on its grid in every (device, mode) that applies, one shared truth: comparisons of
    each mode with eager on the same device, of each device with CPU in the same mode, and the autocast
    result dtype (or error) of the unreduced loss (:func:`suite.compare.compare_sides`)."""
    out = compare.SideComparisons()
    for case in selected:
        for dtype in dtype_names:
            sides = [(d, m) for d in devices for m in mode_names if modes.applies(m, dtype)]
            if not sides:
                continue
            inputs = grids.case_grid(case, dtypes.get(dtype), quick=quick)
            wanted = tuple(r for r in (reductions or case.reductions) if r in case.reductions)
            out.extend(compare.compare_sides(compare.evaluate_sides(case, inputs, dtype, sides, reductions=wanted)))
    return out


def probe_tasks(selected: Sequence[Case], dtype_names: Sequence[str], devices: Sequence[str],
                mode_names: Sequence[str], quick: bool) -> list[probes.Task]:
    """Probe tasks; quick runs compile on the first dtype only (each probe shape and dtype recompiles)."""
    tasks = probes.tasks_for(selected, dtype_names, devices, mode_names)
    if quick:
        tasks = [t for t in tasks if t.mode not in modes.COMPILE_MODES or t.dtype == dtype_names[0]]
    return tasks


def sections(devices: Sequence[str] | str | None = None, mode_names: Sequence[str] | str | None = None,
             quick: bool = True, *, case_names: Sequence[str] | None = None,
             dtype_names: Sequence[str] | None = None,
             isolate: bool | None = None, parts: Sequence[str] = ("modes", "probes", "promotion"),
             jobs: int = 1, memo: probes.GroupMemo | None = None, run_unsaved: bool = True) -> dict[str, Any]:
    """Run the selected parts and return the JSON-ready payload (see the module docstring).  Devices and modes
    are lists or comma-separated text, checked by :mod:`suite.selection`.  Defaults: devices CPU and CUDA when
    present, every mode, quick sets of :data:`QUICK_MODE_CASES` / :data:`QUICK_MODE_DTYPES` for mode
    comparisons, every case for probes and promotion.  With
    ``run_unsaved`` False, only the probe groups ``memo`` holds are in the payload, and ``probe_groups_missing``
    names the others (``case device dtype stage``)."""
    devices = selection.devices(devices)
    mode_names = selection.mode_names(mode_names, default=modes.MODES)
    dtype_names = selection.dtype_names(dtype_names) if dtype_names else None
    notes = modes_tables.notes(devices, mode_names)
    payload: dict[str, Any] = {"schema": SCHEMA, "settings": {
        "torch": torch.__version__, "devices": devices, "modes": mode_names, "quick": quick}, "notes": notes}
    timings = {}
    if "modes" in parts:
        start = time.perf_counter()
        selected = selection.case_list(case_names, default=QUICK_MODE_CASES if quick else None)
        mode_dtypes = list(dtype_names or (QUICK_MODE_DTYPES if quick else dtypes.NAMES))
        found = run_modes(selected, mode_dtypes, devices, mode_names, QUICK_REDUCTIONS if quick else None, quick)
        payload.update(modes_tables.comparisons_payload(found))
        payload["settings"]["mode_cases"] = [c.name for c in selected]
        payload["settings"]["mode_dtypes"] = mode_dtypes
        timings["modes"] = time.perf_counter() - start
    if "probes" in parts:
        start = time.perf_counter()
        probe_dtypes = list(dtype_names or (QUICK_PROBE_DTYPES if quick else dtypes.NAMES))
        tasks = probe_tasks(selection.case_list(case_names), probe_dtypes, devices, mode_names, quick)
        outcomes = probes.run_probes(tasks, isolate=isolate, jobs=jobs, memo=memo, run_unsaved=run_unsaved)
        payload["probes"] = [o.to_dict() for o in outcomes]
        if not run_unsaved:
            answered = {o.task for o in outcomes}
            payload["probe_groups_missing"] = [" ".join(g) for g, group in probes.groups_in_run_order(tasks).items()
                                               if not answered.issuperset(group)]
        payload["settings"]["probe_dtypes"] = probe_dtypes
        timings["probes"] = time.perf_counter() - start
    if "promotion" in parts:
        start = time.perf_counter()
        promo_dtypes = list(dtype_names or (promotion.QUICK_DTYPES if quick else dtypes.NAMES))
        results = promotion.evaluate_all(selection.case_list(case_names), promo_dtypes, devices)
        payload["promotion"] = [r.to_dict() for r in results]
        timings["promotion"] = time.perf_counter() - start
    payload["settings"]["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    return payload


def markdown(payload: dict[str, Any], level: int = 2) -> str:
    return report_markdown.sections(payload, level)


def html(payload: dict[str, Any]) -> str:
    return report_html.sections(payload)


# --------------------------------------------------------------------------------------------------
# Command line.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Compare eager, torch.compile and autocast (and CUDA with CPU) on the grids, probe "
                          "what torch does with bad inputs, and measure mixed-dtype promotion; prints Markdown.")
    parser.add_argument("--quick", action="store_true", help="small grids and the acceptance subset of cases")
    parser.add_argument("--cases", help="comma-separated case names (default: see --quick)")
    parser.add_argument("--dtypes", help="comma-separated dtypes (default: see --quick)")
    parser.add_argument("--devices", help="comma-separated devices (default: cpu, and cuda when available)")
    parser.add_argument("--modes", help=f"comma-separated modes of {', '.join(modes.MODES)} (default: all)")
    parser.add_argument("--parts", default="modes,probes,promotion", help="which sections to run")
    parser.add_argument("--isolate-all", action="store_true", help="run every probe in a child process")
    parser.add_argument("--plugin", action="append", metavar="MODULE", default=[],
                        help="import MODULE, which registers cases of its own with suite.cases.register; they "
                             "run with the built-in ones, in child processes too (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the payload as JSON")
    parser.add_argument("--html", metavar="PATH", help="also write the HTML fragment")


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run and print; ``args`` from :mod:`suite.cli` or a list of strings (``python -m suite.modes_report``)."""
    if not isinstance(args, argparse.Namespace):
        parser = OneLineParser(prog="python -m suite.modes_report")
        add_arguments(parser)
        args = parser.parse_args(args)
    plugins.load_all(args.plugin)
    parts = selection.names(args.parts, "--parts")
    unknown = set(parts) - {"modes", "probes", "promotion"}
    if unknown:
        raise UsageError(f"unknown parts {sorted(unknown)}; choose from modes, probes, promotion")
    for path in (args.json, args.html):
        if path:
            atomic.check_writable(path)
    truth_cache.check_folder()
    payload = sections(args.devices, args.modes, args.quick, case_names=selection.names(args.cases, "--cases"),
                       dtype_names=selection.names(args.dtypes, "--dtypes"),
                       isolate=True if args.isolate_all else None, parts=parts)
    if args.json:
        atomic.write_json(args.json, payload)
    if args.html:
        atomic.write_text(args.html, html(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as exc:
        print(f"python -m suite.modes_report: error: {exc}", file=sys.stderr)
        sys.exit(2)
