"""``python -m suite discover``: run the grids, find the failures that no registered deviation explains, and
propose registry entries (TOML) for them, with their regions.  This is how entries of
``suite/data/deviations.toml`` are made: discovered by running the suite, then reviewed and recorded.

A proposed region is, per label: intervals of the main input (runs of grid values where the label occurs,
widened to the neighbouring grid values so that points between grid values are covered) and, for every
other input, the interval spanned by the values where it occurs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from suite import cases, dtypes, judge, run, truth_cache
from suite.cases.base import Case
from suite.errors import UsageError
from suite.inputs import grids
from suite.metrics import Label
from suite.report.findings import group_regions

DTYPES = ("float64", "float32", "float16", "bfloat16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="cases to run (default: all)")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE", default=list(DTYPES), help="dtypes to run")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--mode", default="eager", help="eager, compile or autocast")
    parser.add_argument("--quick", action="store_true", help="small grids")
    parser.add_argument("--workers", type=int, default=2, help="truth worker processes")


def _widen(low: float, high: float, grid: np.ndarray) -> tuple[float, float]:
    """Extend ``[low, high]`` to the neighbouring grid values outside it (to +-inf at the ends)."""
    finite = grid[~np.isnan(grid)]
    below = finite[finite < low]
    above = finite[finite > high]
    return (float(below.max()) if below.size else low, float(above.min()) if above.size else high)


def regions(case: Case, q: run.QuantityResult, inputs: dict[str, np.ndarray], mask: np.ndarray,
            ) -> list[dict[str, list[list[float]]]]:
    """Regions covering the elements of ``mask``: one per group of other-input values that share the same
    main-input intervals."""
    shape = q.got.shape
    main = np.broadcast_to(grids.main_values(case, inputs), shape)
    others = [s.name for s in case.inputs[1:]]
    full = {name: np.broadcast_to(inputs[name], shape) for name in others}
    combos: dict[tuple[tuple[float, float], ...], list[tuple[float, ...]]] = {}
    keys = np.stack([full[n].reshape(-1) for n in others], axis=1) if others else np.zeros((mask.size, 0))
    flat_mask, flat_main = mask.reshape(-1), main.reshape(-1)
    for combo in {tuple(row) for row in keys[flat_mask].tolist()}:
        selected = np.all(keys == np.array(combo), axis=1) if others else np.ones(flat_mask.size, bool)
        grid = np.unique(flat_main[selected])
        intervals = tuple(_widen(lo, hi, grid) for lo, hi in group_regions(flat_main[selected],
                                                                            flat_mask[selected]))
        combos.setdefault(intervals, []).append(combo)
    out = []
    for intervals, members in combos.items():
        region: dict[str, list[list[float]]] = {case.main_input.name: [list(iv) for iv in intervals]}
        for i, name in enumerate(others):
            values = [m[i] for m in members]
            region[name] = [[min(values), max(values)]]
        out.append(region)
    return out


def propose(result: run.CaseResult) -> Iterable[dict[str, Any]]:
    """Proposed entries for the unexplained failures of one case result (elementwise quantities)."""
    version = torch.__version__.split("+")[0]
    for (reduction, quantity), q in sorted(result.quantities.items()):
        if reduction != "none":
            continue
        verdict = judge.judge(result, q)
        for label in sorted(set(q.metrics.labels[verdict.unexplained].tolist())):
            mask = verdict.unexplained & (q.metrics.labels == label)
            seen = np.nan_to_num(q.metrics.ulp_error[mask], nan=0.0)
            for region in regions(result.case, q, result.inputs, mask):
                yield {"cases": [result.case.name], "dtypes": [result.fmt.name], "devices": [result.device],
                       "quantity": quantity, "label": Label(label).text, "torch": f">={version}",
                       "region": region, "seen": {"count": int(mask.sum()), "max_ulps": float(seen.max()),
                                                  "torch": torch.__version__}}


def merge(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge proposals that differ only in case or dtype."""
    merged: dict[str, dict[str, Any]] = {}
    for e in entries:
        key = repr((e["quantity"], e["label"], e["devices"], e["region"]))
        if key in merged:
            m = merged[key]
            m["cases"] = sorted(set(m["cases"]) | set(e["cases"]))
            m["dtypes"] = sorted(set(m["dtypes"]) | set(e["dtypes"]))
            m["seen"]["count"] += e["seen"]["count"]
            m["seen"]["max_ulps"] = max(m["seen"]["max_ulps"], e["seen"]["max_ulps"])
        else:
            merged[key] = {**e, "seen": dict(e["seen"])}
    return list(merged.values())


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f'"{value}"' if not np.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def to_toml(entries: list[dict[str, Any]]) -> str:
    """Entries as ``[[deviation]]`` tables, with id/description/reason left for a person to write."""
    lines = []
    for n, e in enumerate(entries):
        lines += ["[[deviation]]", f'id = "proposed-{n}"', 'description = "TODO: describe"',
                  'reason = "TODO: why torch does this"']
        for key in ("torch", "cases", "dtypes", "devices", "quantity", "label"):
            lines.append(f"{key} = {_toml_value(e[key])}")
        lines.append("region = {" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in e["region"].items()) + "}")
        lines.append("seen = {" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in e["seen"].items()) + "}")
        lines.append("")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        selected = [cases.get(n) for n in args.cases] if args.cases else cases.all_cases()
        formats = [dtypes.get(d) for d in args.dtypes]
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    proposals: list[dict[str, Any]] = []
    for case in selected:
        for fmt in formats:
            inputs = grids.case_grid(case, fmt, quick=args.quick)
            used = run.prepare_inputs(case, inputs, fmt)
            truth_set = truth_cache.cached_truth(case, used, workers=args.workers)
            result = run.evaluate(case, used, fmt, args.device, truth_set=truth_set, reductions=("none",),
                                  mode=args.mode)
            found = list(propose(result))
            print(f"{case.name} {fmt.name}: {len(found)} unexplained failure regions", file=sys.stderr)
            proposals += found
    print(to_toml(merge(proposals)))
    return 0
