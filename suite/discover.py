"""``python -m suite discover``: run the grids, find the failures that no registered deviation explains, and
propose registry entries (TOML) for them, with their regions.  This is how entries of
``suite/data/deviations.toml`` are made: discovered by running the suite, then reviewed and recorded.

A proposed region is, per label: intervals of the main input (runs of grid values where the label occurs,
widened to the neighbouring grid values so that points between grid values are covered) and, for every
other input, the interval spanned by the values where it occurs.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from suite import dtypes, judge, modes, run, selection, truth_cache
from suite.cases.base import Case
from suite.errors import UsageError
from suite.inputs import grids
from suite.metrics import Label
from suite.report.findings import group_regions

MAX_RUNS = 2  # main-input intervals per region: few and wide, so draws between grid values are covered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", action="append", metavar="NAME[,NAME]",
                        help="cases to run, comma-separated or repeated (default: all)")
    parser.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]",
                        help=f"dtypes to run (default: {', '.join(dtypes.NAMES)})")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--mode", default="eager", help=f"one of {', '.join(modes.MODES)} (default eager)")
    parser.add_argument("--quick", action="store_true", help="small grids")
    parser.add_argument("--workers", type=int, default=2, help="truth worker processes")


def _widen(low: float, high: float, grid: np.ndarray) -> tuple[float, float]:
    """Extend ``[low, high]`` to the neighbouring grid values outside it (to +-inf at the ends), so that
    points between grid values are covered."""
    finite = grid[~np.isnan(grid)]
    below = finite[finite < low]
    above = finite[finite > high]
    return (float(below.max()) if below.size else -math.inf, float(above.min()) if above.size else math.inf)


def regions(case: Case, q: run.QuantityResult, inputs: dict[str, np.ndarray], mask: np.ndarray,
            ) -> list[dict[str, list[list[float]]]]:
    """Regions covering the elements of ``mask``: for each group of other-input values sharing the same
    main-input intervals, those intervals and the widened span of each other input's values."""
    shape = q.got.shape
    main = np.broadcast_to(grids.main_values(case, inputs), shape).reshape(-1)
    others = [s.name for s in case.inputs[1:]]
    full = {name: np.broadcast_to(inputs[name], shape).reshape(-1) for name in others}
    flat = mask.reshape(-1)
    keys = np.stack([full[n] for n in others], axis=1) if others else np.zeros((flat.size, 0))
    combos: dict[tuple[tuple[float, float], ...], list[tuple[float, ...]]] = {}
    for combo in sorted({tuple(row) for row in keys[flat].tolist()}):
        selected = np.all(keys == np.array(combo), axis=1)
        grid = np.unique(main[selected])
        runs = group_regions(main[selected], flat[selected], max_regions=MAX_RUNS)
        combos.setdefault(tuple(_widen(lo, hi, grid) for lo, hi in runs), []).append(combo)
    out = []
    for intervals, members in combos.items():
        region: dict[str, list[list[float]]] = {case.main_input.name: [list(iv) for iv in intervals]}
        for i, name in enumerate(others):
            values = [m[i] for m in members]
            low, high = _widen(min(values), max(values), np.unique(full[name]))
            region[name] = [[max(low, case.spec(name).low), min(high, case.spec(name).high)]]
        out.append(region)
    return out


def propose(result: run.CaseResult) -> Iterable[dict[str, Any]]:
    """Proposed entries for the unexplained failures of one case result (elementwise quantities): one per
    quantity and region, listing every label seen there."""
    version = torch.__version__.split("+")[0]
    for (reduction, quantity), q in sorted(result.quantities.items()):
        if reduction != "none":
            continue
        mask = judge.judge(result, q).unexplained
        if not mask.any():
            continue
        for region in regions(result.case, q, result.inputs, mask):
            inside = mask & _in_region(region, result.inputs, mask.shape)
            labels = sorted(Label(v).text for v in set(q.metrics.labels[inside].tolist()))
            seen = np.nan_to_num(q.metrics.algorithmic_ulp[inside], nan=0.0)
            yield {"cases": [result.case.name], "dtypes": [result.fmt.name], "devices": [result.device],
                   "quantity": quantity, "label": labels, "torch": f">={version}", "region": region,
                   "seen": {"count": int(inside.sum()), "max_ulps": float(seen.max()) if seen.size else 0.0,
                            "torch": torch.__version__}}


def _in_region(region: dict[str, list[list[float]]], inputs: dict[str, np.ndarray], shape: tuple[int, ...],
               ) -> np.ndarray:
    inside = np.ones(shape, bool)
    for name, intervals in region.items():
        values = np.broadcast_to(inputs[name], shape)
        inside &= np.any([(values >= lo) & (values <= hi) for lo, hi in intervals], axis=0)
    return inside


def merge(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge proposals that differ only in case or dtype."""
    merged: dict[str, dict[str, Any]] = {}
    for e in entries:
        key = repr((e["quantity"], e["devices"], e["region"]))
        if key in merged:
            m = merged[key]
            m["cases"] = sorted(set(m["cases"]) | set(e["cases"]))
            m["dtypes"] = sorted(set(m["dtypes"]) | set(e["dtypes"]))
            m["label"] = sorted(set(m["label"]) | set(e["label"]))
            m["seen"]["count"] += e["seen"]["count"]
            m["seen"]["max_ulps"] = max(m["seen"]["max_ulps"], e["seen"]["max_ulps"])
        else:
            merged[key] = {**e, "seen": dict(e["seen"])}
    return list(merged.values())


def toml_value(value: Any) -> str:
    """A value as TOML: strings quoted, inf and NaN as strings, lists element by element."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f'"{value}"' if not np.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def to_toml(entries: list[dict[str, Any]]) -> str:
    """Entries as ``[[deviation]]`` tables, with id/description/reason left for a person to write."""
    lines = []
    for n, e in enumerate(entries):
        lines += ["[[deviation]]", f'id = "proposed-{n}"', 'description = "TODO: describe"',
                  'reason = "TODO: why torch does this"']
        for key in ("torch", "cases", "dtypes", "devices", "quantity", "label"):
            lines.append(f"{key} = {toml_value(e[key])}")
        lines.append("region = {" + ", ".join(f"{k} = {toml_value(v)}" for k, v in e["region"].items()) + "}")
        lines.append("seen = {" + ", ".join(f"{k} = {toml_value(v)}" for k, v in e["seen"].items()) + "}")
        lines.append("")
    return "\n".join(lines)


def evaluate_grid(case: Case, fmt: dtypes.FloatFormat, device: str, mode: str, quick: bool,
                  reductions: tuple[str, ...], workers: int) -> run.CaseResult:
    """``case`` on its deterministic grid in ``fmt``, with the truths from the cache (or computed with
    ``workers`` processes)."""
    used = run.prepare_inputs(case, grids.case_grid(case, fmt, quick=quick), fmt)
    truth_set = truth_cache.cached_truth(case, used, workers=workers)
    return run.evaluate(case, used, fmt, device, truth_set=truth_set, reductions=reductions, mode=mode)


def main(args: argparse.Namespace) -> int:
    selected = selection.case_list(args.cases)
    formats = [dtypes.get(d) for d in selection.dtype_names(args.dtypes)]
    selection.require_device(args.device)
    selection.require_mode(args.mode)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    truth_cache.check_folder()
    proposals: list[dict[str, Any]] = []
    for case in selected:
        for fmt in formats:
            result = evaluate_grid(case, fmt, args.device, args.mode, args.quick, ("none",), args.workers)
            found = list(propose(result))
            print(f"{case.name} {fmt.name}: {len(found)} unexplained failure regions", file=sys.stderr)
            proposals += found
    print(to_toml(merge(proposals)))
    return 0
