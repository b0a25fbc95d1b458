"""Modes, devices, bad inputs and dtype promotion, as report sections: runs :mod:`suite.compare`,
:mod:`suite.probes` and :mod:`suite.promotion` and turns their results into a JSON-ready dict and into
Markdown / HTML table fragments the accuracy report can include.

For the report (the lead integrates it)::

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
from html import escape
from typing import Any

import torch

from suite import atomic, cases, compare, dtypes, modes, probes, promotion, run
from suite.cases.base import Case
from suite.errors import UsageError
from suite.inputs import grids
from suite.report import html as report_html
from suite.report import markdown as report_markdown
from suite.report.summary import Table, number, value

#: Quick runs: the cases and dtypes whose mode differences the acceptance names, unreduced values only.
QUICK_MODE_CASES = ("bce", "bce_with_logits")
QUICK_MODE_DTYPES = ("float16", "bfloat16")
QUICK_REDUCTIONS = ("none",)
#: Quick probe dtypes: float32 in eager and compile, float16 in eager and autocast.
QUICK_PROBE_DTYPES = ("float32", "float16")
ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
SCHEMA = "modes-1"


def default_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _select(names: Sequence[str] | None, default: Sequence[str]) -> list[Case]:
    try:
        return [cases.get(n) for n in (names or default)]
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None


def run_modes(selected: Sequence[Case], dtype_names: Sequence[str], devices: Sequence[str],
              mode_names: Sequence[str], reductions: Sequence[str] | None, quick: bool,
              ) -> tuple[list[compare.Comparison], list[compare.Comparison], list[dict[str, Any]]]:
    """Every case x dtype on its grid in every (device, mode) that applies, one shared truth: comparisons of
    each mode with eager on the same device, of each device with CPU in the same mode, and the autocast
    result dtype (or error) of the unreduced loss."""
    by_mode, by_device, autocast = [], [], []
    for case in selected:
        for dtype in dtype_names:
            sides = [(d, m) for d in devices for m in mode_names if modes.applies(m, dtype)]
            if not sides:
                continue
            inputs = grids.case_grid(case, dtypes.get(dtype), quick=quick)
            wanted = tuple(r for r in (reductions or case.reductions) if r in case.reductions)
            results = compare.evaluate_sides(case, inputs, dtype, sides, reductions=wanted)
            for (device, mode), result in results.items():
                if mode != "eager" and (device, "eager") in results:
                    by_mode.append(compare.compare(results[(device, "eager")], result))
                if device != "cpu" and ("cpu", mode) in results:
                    by_device.append(compare.compare(results[("cpu", mode)], result))
                if mode == "autocast":
                    loss = result.get(wanted[0], run.LOSS)
                    autocast.append({"case": case.name, "dtype": dtype, "device": device, "reduction": wanted[0],
                                     "result_dtype": None if loss.error else loss.fmt.name, "error": loss.error})
    return by_mode, by_device, autocast


def probe_tasks(selected: Sequence[Case], dtype_names: Sequence[str], devices: Sequence[str],
                mode_names: Sequence[str], quick: bool) -> list[probes.Task]:
    """Probe tasks; quick runs compile on the first dtype only (each probe shape and dtype recompiles)."""
    tasks = probes.tasks_for(selected, dtype_names, devices, mode_names)
    if quick:
        tasks = [t for t in tasks if t.mode != "compile" or t.dtype == dtype_names[0]]
    return tasks


def sections(devices: Sequence[str] | None = None, mode_names: Sequence[str] | None = None, quick: bool = True, *,
             case_names: Sequence[str] | None = None, dtype_names: Sequence[str] | None = None,
             isolate: bool | None = None, parts: Sequence[str] = ("modes", "probes", "promotion")) -> dict[str, Any]:
    """Run the selected parts and return the JSON-ready payload (see the module docstring).  Defaults:
    devices CPU and CUDA when present, every mode, quick sets of :data:`QUICK_MODE_CASES` /
    :data:`QUICK_MODE_DTYPES` for mode comparisons, every case for probes and promotion."""
    devices = list(devices or default_devices())
    mode_names = list(mode_names or modes.MODES)
    for m in mode_names:
        if m not in modes.MODES:
            raise UsageError(f"unknown mode {m!r}; choose from {', '.join(modes.MODES)}")
    for name in dtype_names or ():
        if name not in ALL_DTYPES:
            raise UsageError(f"unknown dtype {name!r}; choose from {', '.join(ALL_DTYPES)}")
    for d in devices:
        if torch.device(d).type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {d!r} requested but torch.cuda.is_available() is False")
    notes = []
    if "cuda" not in devices:
        notes.append("No CUDA device was run (none available or not selected): the CPU-vs-CUDA comparison and "
                     "the CUDA autocast and device-side-assert probes are absent.")
    payload: dict[str, Any] = {"schema": SCHEMA, "settings": {
        "torch": torch.__version__, "devices": devices, "modes": mode_names, "quick": quick}, "notes": notes}
    timings = {}
    if "modes" in parts:
        start = time.perf_counter()
        selected = _select(case_names, QUICK_MODE_CASES if quick else cases.names())
        mode_dtypes = list(dtype_names or (QUICK_MODE_DTYPES if quick else ALL_DTYPES))
        by_mode, by_device, autocast = run_modes(selected, mode_dtypes, devices, mode_names,
                                                 QUICK_REDUCTIONS if quick else None, quick)
        payload["modes"] = [c.to_dict() for c in by_mode]
        payload["devices"] = [c.to_dict() for c in by_device]
        payload["autocast"] = autocast
        payload["settings"]["mode_cases"] = [c.name for c in selected]
        payload["settings"]["mode_dtypes"] = mode_dtypes
        timings["modes"] = time.perf_counter() - start
    if "probes" in parts:
        start = time.perf_counter()
        probe_dtypes = list(dtype_names or (QUICK_PROBE_DTYPES if quick else ALL_DTYPES))
        tasks = probe_tasks(_select(case_names, cases.names()), probe_dtypes, devices, mode_names, quick)
        payload["probes"] = [o.to_dict() for o in probes.run_probes(tasks, isolate=isolate)]
        payload["settings"]["probe_dtypes"] = probe_dtypes
        timings["probes"] = time.perf_counter() - start
    if "promotion" in parts:
        start = time.perf_counter()
        promo_dtypes = list(dtype_names or (promotion.QUICK_DTYPES if quick else promotion.DTYPES))
        results = promotion.evaluate_all(_select(case_names, cases.names()), promo_dtypes, devices)
        payload["promotion"] = [r.to_dict() for r in results]
        timings["promotion"] = time.perf_counter() - start
    payload["settings"]["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    return payload


# --------------------------------------------------------------------------------------------------
# Tables.


def comparison_table(title: str, comparisons: list[dict[str, Any]]) -> Table:
    """One row per case, dtype, pair of sides, reduction and quantity."""
    headers = ["case", "dtype", "a", "b", "reduction", "quantity", "formats", "points", "label differs",
               "ULP differs", "bitwise differs", "largest ULP gap", "worst point (a | b)", "errors"]
    rows = []
    for c in comparisons:
        for q in c["quantities"]:
            worst = q["examples"][0] if q["examples"] else None
            point = "-" if worst is None else (
                ", ".join(f"{k}={value(v)}" for k, v in worst["inputs"].items()) +
                f": {worst['labels'][0]} {value(worst['got'][0])} | {worst['labels'][1]} {value(worst['got'][1])} "
                f"(truth {value(worst['truth'])})")
            errors = " | ".join(e or "-" for e in q["errors"]) if any(q["errors"]) else "-"
            rows.append([c["case"], c["dtype"], c["a"], c["b"], q["reduction"], q["quantity"], "/".join(q["formats"]),
                         str(q["points"]), str(q["label_differs"]), str(q["ulp_differs"]), str(q["bitwise_differs"]),
                         number(q["largest_ulp_gap"]), point, errors])
    return Table(title, headers, rows)


def autocast_table(records: list[dict[str, Any]]) -> Table:
    rows = [[r["case"], r["dtype"], r["device"], r["result_dtype"] or "-", r["error"] or "-"] for r in records]
    return Table("Autocast: dtype of the loss, or the error", ["case", "autocast dtype", "device", "result dtype",
                                                                "error"], rows)


def probe_table(outcomes: list[dict[str, Any]]) -> Table:
    headers = ["case", "probe", "dtype", "device", "mode", "outcome", "detail", "result", "backward", "warnings"]
    rows = []
    for o in outcomes:
        result = "-" if o["result_dtype"] is None else f"{o['result_dtype']} {tuple(o['shape'])}"
        rows.append([o["case"], o["probe"], o["dtype"], o["device"], o["mode"], o["kind"], o["message"], result,
                     o["backward"] or "-", "; ".join(o["warnings"]) or "-"])
    return Table(f"Bad inputs (reduction {probes.REDUCTION!r})", headers, rows)


def promotion_table(records: list[dict[str, Any]]) -> Table:
    headers = ["case", "input dtypes", "device", "points", "result", "quantity", "dtype", "max ULP", "labels"]
    rows = []
    for r in records:
        given = ", ".join(f"{k}={v}" for k, v in r["input_dtypes"].items())
        if r["error"]:
            rows.append([r["case"], given, r["device"], str(r["points"]), r["error"], "-", "-", "-", "-"])
        for name, q in r["quantities"].items():
            labels = ", ".join(f"{k} {v}" for k, v in q["labels"].items())
            rows.append([r["case"], given, r["device"], str(r["points"]), r["result_dtype"], name, q["dtype"],
                         number(q["max_ulp"]), labels])
    return Table("Mixed dtypes: result dtype and error against the inputs as given", headers, rows)


def tables(payload: dict[str, Any]) -> list[Table]:
    """The payload's tables, in report order (parts that did not run are left out)."""
    out = []
    if "modes" in payload:
        out.append(comparison_table("Modes against eager (same device, same inputs)", payload["modes"]))
        out.append(autocast_table(payload["autocast"]))
        out.append(comparison_table("Devices against CPU (same mode, same inputs)", payload["devices"]))
    if "probes" in payload:
        out.append(probe_table(payload["probes"]))
    if "promotion" in payload:
        out.append(promotion_table(payload["promotion"]))
    return out


def markdown(payload: dict[str, Any], level: int = 2) -> str:
    notes = "".join(f"> {n}\n\n" for n in payload["notes"])
    return notes + "\n".join(report_markdown.table(t, level) for t in tables(payload))


def html(payload: dict[str, Any]) -> str:
    notes = "".join(f"<p><em>{escape(n)}</em></p>" for n in payload["notes"])
    return notes + "\n".join(report_html.table(t) for t in tables(payload))


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
    parser.add_argument("--json", metavar="PATH", help="also write the payload as JSON")
    parser.add_argument("--html", metavar="PATH", help="also write the HTML fragment")


def _list(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run and print; ``args`` from :mod:`suite.cli` or a list of strings (``python -m suite.modes_report``)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="python -m suite.modes_report")
        add_arguments(parser)
        args = parser.parse_args(args)
    parts = _list(args.parts) or []
    unknown = set(parts) - {"modes", "probes", "promotion"}
    if unknown:
        raise UsageError(f"unknown parts {sorted(unknown)}; choose from modes, probes, promotion")
    payload = sections(_list(args.devices), _list(args.modes), args.quick, case_names=_list(args.cases),
                       dtype_names=_list(args.dtypes), isolate=True if args.isolate_all else None, parts=parts)
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
