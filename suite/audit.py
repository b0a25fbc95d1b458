"""``python -m suite audit``: how much of each known-deviation entry torch uses on the grids.

An entry excuses failures; one wider than what torch does hides a regression (or a broken implementation)
inside it.  For every entry, case and dtype this measures, on the deterministic grid, the elements the entry
explains: how many, with which labels, the largest algorithmic ULP error, and the span of each input, next to
the entry's region.  Flags point at what to tighten:

- ``unseen``: the grid shows none (the entry's strict xfail searches further before calling it fixed);
- ``labels unseen``: labels the entry allows that the grid never shows;
- ``unbounded``: it excuses ``inaccurate`` anywhere, with no ``max_ulps`` (``max_ulps_per_element``, error scale,
  mechanism), and not only where the exact value is infinite (there it is the infinity of the wrong sign);
- ``ulps slack``: its ``max_ulps`` is more than 4 times the largest error that it alone explains (not for an entry
  with a mechanism, which holds torch's values to its ``mechanism_ulps``: ``max_ulps`` is then only a cap).

"alone" counts the elements no other entry explains: what the entry is needed for.  For an entry with an error
scale, "alone max bounded" is the largest of those errors in the units its ``max_scaled_error`` bounds (``u``); for
one with a mechanism, the largest distance from the mechanism's values, which its ``mechanism_ulps`` bounds
(``ULPs``).
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from suite import cases, deviations, dtypes, judge, selection, truth_cache
from suite.deviations import Deviation
from suite.discover import evaluate_grid
from suite.errors import UsageError
from suite.metrics import Label
from suite.run import CaseResult

SLACK = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ids", nargs="+", metavar="ID", help="entries to audit (default: all)")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--quick", action="store_true", help="small grids")
    parser.add_argument("--workers", type=int, default=2, help="truth worker processes")


@dataclass
class Usage:
    """What an entry explains on one case and dtype's grid, over its quantities and reductions."""

    count: int = 0
    labels: set[str] = field(default_factory=set)
    max_ulps: float = 0.0
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    sole_count: int = 0  # explained by this entry and no other
    sole_max_ulps: float = 0.0
    # entries with an error scale: the largest error it alone explains, in the units of that scale; with a
    # mechanism: the largest distance from it, in ULPs
    sole_max_scaled: float = 0.0
    sole_max_mechanism: float = 0.0

    def add(self, mask: np.ndarray, sole: np.ndarray, labels: np.ndarray, ulps: np.ndarray,
            inputs: dict[str, np.ndarray]) -> None:
        self.count += int(mask.sum())
        self.sole_count += int(sole.sum())
        self.labels |= {Label(int(v)).text for v in np.unique(labels[mask])}
        self.max_ulps = max(self.max_ulps, _largest(ulps[mask]))
        self.sole_max_ulps = max(self.sole_max_ulps, _largest(ulps[sole]))
        for name, values in inputs.items():
            chosen = np.broadcast_to(values, mask.shape)[mask]
            low, high = float(chosen.min()), float(chosen.max())
            old = self.spans.get(name, (low, high))
            self.spans[name] = (min(old[0], low), max(old[1], high))


def usage(d: Deviation, result: CaseResult) -> Usage:
    """The elements ``d`` explains in one case and dtype's grid result, over its quantities and reductions (a
    reduced value counts as one element)."""
    out = Usage()
    for (reduction, quantity), q in result.quantities.items():
        if quantity not in d.quantities or reduction not in d.reductions:
            continue
        verdict = judge.judge(result, q)
        mask = verdict.known.get(d.id)
        if mask is not None and mask.any():
            others = np.zeros_like(mask)
            for other, explained in verdict.known.items():
                if other != d.id:
                    others |= explained
            # a reduced value has no inputs of its own: it counts, without spans; what the entry explains of it
            # may be the reduction's own error
            labels, ulps = verdict.outcomes[d.id]
            out.add(mask, mask & ~others, labels, ulps, result.inputs if q.got.ndim else {})
            if d.error_scale is not None:
                scaled = np.broadcast_to(judge.scaled_error(d, result, q), mask.shape)
                out.sole_max_scaled = max(out.sole_max_scaled, _largest(scaled[mask & ~others]))
            if d.mechanism is not None and q.got.ndim:
                distance = judge.mechanism_distance(d, result, q)
                out.sole_max_mechanism = max(out.sole_max_mechanism, _largest(distance[mask & ~others]))
    return out


def _largest(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def flags(d: Deviation, seen: Usage) -> list[str]:
    out = []
    if not seen.count:
        return ["unseen"]
    unseen = sorted(set(d.labels) - seen.labels)
    if unseen:
        out.append(f"labels unseen: {', '.join(unseen)}")
    if ("inaccurate" in d.labels and d.ulp_bound() is None and d.error_scale is None and d.mechanism is None
            and not _infinite_exact_only(d)):
        out.append("unbounded")
    elif (d.max_ulps is not None and d.mechanism is None and seen.sole_max_ulps
          and d.max_ulps > SLACK * seen.sole_max_ulps):
        out.append("ulps slack")
    return out


def _infinite_exact_only(d: Deviation) -> bool:
    """Whether every region of ``d`` holds only infinite exact values: ``inaccurate`` is then the infinity of the
    wrong sign (:mod:`suite.metrics`), one value, which needs no bound."""
    exact = [r.get(deviations.EXACT_KEY) for r in (d.region, *d.dtype_regions.values())]
    return all(intervals is not None and all(math.isinf(low) and low == high for low, high in intervals)
               for intervals in exact)


def _bounded_text(d: Deviation, seen: Usage) -> str:
    """The largest error the entry alone explains, in its error scale's units and in ULPs from its mechanism."""
    if not seen.sole_count:
        return ""
    parts = [f"{seen.sole_max_scaled:.3g} u"] if d.error_scale else []
    return ", ".join(parts + ([f"{seen.sole_max_mechanism:.3g} ULPs"] if d.mechanism else []))


def _bound_text(d: Deviation) -> str:
    """The entry's bounds as written in the registry: ``max_ulps``, ``N x max_ulps_per_element``, the error
    scale, the mechanism."""
    parts = [] if d.max_ulps is None else [f"{d.max_ulps:g}"]
    if d.max_ulps_per_element is not None:
        parts.append(f"N x {d.max_ulps_per_element:g}")
    if d.error_scale is not None:
        parts.append(f"error <= {d.max_scaled_error:g} u {d.error_scale}")
    if d.mechanism is not None:
        parts.append(f"<= {d.mechanism_ulps:g} ULPs from {d.mechanism}")
    return ", ".join(parts)


def _interval(low: float, high: float) -> str:
    return f"[{low:.6g}, {high:.6g}]"


def _region_text(d: Deviation, dtype: str) -> str:
    region = d.region_for(dtype)
    if not region:
        return "everywhere"
    return "; ".join(f"{key}: " + " or ".join(_interval(*iv) for iv in ivs) for key, ivs in region.items())


def rows(entries: Iterable[Deviation], device: str, quick: bool, workers: int) -> list[list[str]]:
    """One row per entry, case and dtype it applies to, in registry order.  Each case, dtype and mode's grid
    is evaluated once, with every reduction, for all the entries about it."""
    version = torch.__version__
    entries = list(entries)
    tasks = []
    for n, d in enumerate(entries):
        for case_name in d.cases:
            for dtype in d.dtypes:
                if (d.applies(case_name, dtype, device, version, d.home_mode)
                        and d.region_inputs(dtype) <= {s.name for s in cases.get(case_name).inputs}):
                    tasks.append((case_name, dtype, d.home_mode, n, d))
    found: dict[tuple[int, str, str], list[str]] = {}
    for (case_name, dtype, mode), group in itertools.groupby(sorted(tasks, key=lambda t: t[:4]),
                                                             key=lambda t: t[:3]):
        case = cases.get(case_name)
        result = evaluate_grid(case, dtypes.get(dtype), device, mode, quick, case.reductions, workers)
        for *_, n, d in group:
            seen = usage(d, result)
            spans = "; ".join(f"{k}: {_interval(*v)}" for k, v in seen.spans.items())
            found[(n, case_name, dtype)] = [
                d.id, case_name, dtype, str(seen.count), str(seen.sole_count), ", ".join(sorted(seen.labels)),
                f"{seen.max_ulps:.4g}" if seen.count else "", f"{seen.sole_max_ulps:.4g}" if seen.sole_count else "",
                _bound_text(d),
                _bounded_text(d, seen),
                _region_text(d, dtype), spans,
                ", ".join(flags(d, seen))]
    order = {(n, c, t): i for i, (c, t, _, n, _) in enumerate(tasks)}
    return [found[key] for key in sorted(found, key=order.__getitem__)]


HEADER = ["entry", "case", "dtype", "explained", "alone", "labels", "max ULPs", "alone max ULPs", "bound",
          "alone max bounded", "region", "seen", "flags"]


def main(args: argparse.Namespace) -> int:
    try:
        entries = [deviations.get(i) for i in args.ids] if args.ids else list(deviations.load())
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    selection.require_device(args.device)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    truth_cache.check_folder()
    print(f"# Known-deviation audit (torch {torch.__version__}, {args.device}, "
          f"{'quick' if args.quick else 'full'} grids)\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows(entries, args.device, args.quick, args.workers):
        print("| " + " | ".join(row) + " |", flush=True)
    return 0
