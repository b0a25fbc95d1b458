"""``python -m suite witness``: find a batch that shows a known deviation, and print it as the entry's
``witness``.

An entry's strict xfail looks for the deviation in three places: its witness, the grid points inside its
region, and a short derandomised Hypothesis search inside the region.  A search's draws change with the
Hypothesis release, and a rare deviation that only the search meets can vanish from one release to the next:
the xfail then turns into an XPASS although torch did not change.  A witness, a recorded batch that showed it,
keeps the check deterministic.  This module holds that search (the test uses the same functions) and shrinks
what it finds to the elements (or rows) that show the deviation, so the witness is a few values, not a batch
of hundreds.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from suite import cases, deviations, dtypes, judge, modes, run, search, selection, truth_cache
from suite.cases.base import Case
from suite.deviations import Deviation
from suite.discover import toml_value
from suite.errors import UsageError
from suite.inputs import grids, strategies

#: Draws of the region search in a strict xfail (a witness command may ask for more).
SEARCH_EXAMPLES = 150
Inputs = dict[str, np.ndarray]


def reductions_of(case: Case, deviation: Deviation) -> tuple[str, ...]:
    """The reductions to run for an entry: ``none`` (whose elements a witness keeps) and the entry's own."""
    return tuple(dict.fromkeys(("none", *(r for r in deviation.reductions if r in case.reductions))))


def _compile_afresh(deviation: Deviation) -> None:
    """Forget what this process compiled (:func:`suite.modes.fresh_compiles`) where the entry's home mode
    compiles."""
    if deviation.home_mode in modes.COMPILE_MODES:
        modes.fresh_compiles()


def evaluate(case: Case, inputs: Mapping[str, np.ndarray], fmt: dtypes.FloatFormat, device: str,
             deviation: Deviation, fresh: bool = True) -> run.CaseResult:
    """The case on ``inputs`` with the entry's reductions, in the entry's home mode: in a compile mode compiled
    afresh for this batch (:func:`suite.modes.fresh_compiles`), as each job of the report is, unless not
    ``fresh`` (a search's draws, a varying batch size, share one compile).  Measured on torch 2.2.2: after a
    compiled witness of 64 elements, dynamo recompiled the next batch of 1230 for symbolic shapes, where a
    weighted BCE raises, so what a batch showed depended on the batches before it."""
    if fresh:
        _compile_afresh(deviation)
    return run.evaluate(case, inputs, fmt, device, reductions=reductions_of(case, deviation),
                        mode=deviation.home_mode)


def region_inputs(case: Case, fmt: dtypes.FloatFormat, deviation: Deviation) -> Inputs | None:
    """Grid points of ``case`` inside the deviation's region: the quick grid, else the default grid; None
    when no grid point lies in it."""
    for quick in (True, False):
        grid = run.prepare_inputs(case, grids.case_grid(case, fmt, quick=quick), fmt)
        shape = np.broadcast_shapes(*(v.shape for v in grid.values()))
        inside = deviation.in_region(grid, shape, fmt.name)
        if case.rows:
            keep = inside.any(axis=-1)
            if keep.any():
                return {k: np.broadcast_to(v, shape)[keep] for k, v in grid.items()}
        elif inside.any():
            return {k: np.broadcast_to(v, shape)[inside] for k, v in grid.items()}
    return None


def into_region(data: st.DataObject, inputs: Inputs, fmt: dtypes.FloatFormat, deviation: Deviation) -> Inputs:
    """Move every drawn value outside the region to a value drawn inside one of its intervals; for a
    ``row:`` key, one drawn slot of every row that has no value inside."""
    out = dict(inputs)
    for key, intervals in deviation.region_for(fmt.name).items():
        if key in deviations.DERIVED_KEYS:
            continue  # the exact value and the batch size follow from the draw: the search (and witness) meet them
        name = key.removeprefix(deviations.ROW_PREFIX)
        values = np.array(out[name], dtype=np.float64)
        rows = values.reshape(-1, values.shape[-1]) if key != name else values.reshape(-1, 1)
        for row in rows:
            if any(low <= v <= high for v in row.tolist() for low, high in intervals):
                continue
            slot = data.draw(st.integers(0, row.size - 1)) if row.size > 1 else 0
            low, high = data.draw(st.sampled_from(intervals))
            row[slot] = data.draw(strategies.floats_of(fmt, min_value=low, max_value=high))
        out[name] = rows.reshape(values.shape)
    return out


def observe(result: run.CaseResult, deviation: Deviation) -> tuple[int, int]:
    """(elements the deviation explains, failing elements in its region it does not explain), over the
    entry's reductions that the result holds."""
    shown = stray = 0
    for (reduction, quantity), q in result.quantities.items():
        if quantity not in deviation.quantities or reduction not in deviation.reductions:
            continue
        verdict = judge.judge(result, q)
        inside = (deviation.in_region(judge.with_exact(result.inputs, q), q.got.shape, result.fmt.name)
                  if q.got.ndim else np.ones((), bool))
        found = verdict.known.get(deviation.id)
        shown += 0 if found is None else int(found.sum())
        stray += int((verdict.unexplained & inside).sum())
    return shown, stray


def shown_elements(result: run.CaseResult, deviation: Deviation) -> np.ndarray | None:
    """Elements of the unreduced batch that show the deviation in any of its quantities; None when it shows
    only in a reduction (the whole batch is then its witness)."""
    mask = None
    for (reduction, quantity), q in result.quantities.items():
        if reduction != "none" or quantity not in deviation.quantities or "none" not in deviation.reductions:
            continue
        found = judge.judge(result, q).known.get(deviation.id)
        if found is not None and found.any():
            mask = found if mask is None else mask | found
    return mask


@dataclass(frozen=True)
class Found:
    """A drawn batch that showed the deviation, and how many of its elements did."""

    inputs: Inputs
    shown: int


class _FoundError(Exception):
    """Ends a region search as soon as the deviation shows."""


def search_region(case: Case, fmt: dtypes.FloatFormat, device: str, deviation: Deviation,
                  examples: int = SEARCH_EXAMPLES) -> Found | None:
    """Draw inputs inside the region (derandomised, steered toward larger errors) until one shows the
    deviation; None when ``examples`` draws show none.  In a compile mode the draws share one compile, begun
    afresh here: dynamo takes their varying sizes as symbolic after the first."""
    _compile_afresh(deviation)

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate, Phase.target], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        inputs = into_region(data, data.draw(strategies.case_inputs(case, fmt)), fmt, deviation)
        result = evaluate(case, inputs, fmt, device, deviation, fresh=False)
        for (reduction, quantity), q in result.quantities.items():
            if quantity in deviation.quantities and reduction in deviation.reductions:
                search.steer(q)  # climb toward larger errors
        shown = observe(result, deviation)[0]
        if shown:
            raise _FoundError(Found(inputs, shown))

    try:
        explore()
    except _FoundError as found:
        result: Found = found.args[0]
        return result
    return None


def shrink(case: Case, fmt: dtypes.FloatFormat, device: str, deviation: Deviation, inputs: Inputs) -> Inputs:
    """The elements (rows, for a rows case) of ``inputs`` that show the deviation, as a smaller batch, where
    that batch still shows it on its own; else ``inputs`` unchanged (a deviation of a reduction needs its
    whole batch)."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in inputs.values()))
    full = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for k, v in inputs.items()}
    mask = shown_elements(evaluate(case, full, fmt, device, deviation), deviation)
    if mask is None:
        return inputs
    keep = mask.reshape(-1, shape[-1]).any(axis=-1) if case.rows else mask.reshape(-1)
    flat = {k: v.reshape(-1, shape[-1]) if case.rows else v.reshape(-1) for k, v in full.items()}
    small = {k: v[keep] for k, v in flat.items()}
    return small if observe(evaluate(case, small, fmt, device, deviation), deviation)[0] else inputs


def witness_toml(case: Case, fmt: dtypes.FloatFormat, inputs: Mapping[str, np.ndarray]) -> str:
    """The registry line ``witness = {case, dtype, <input> = values...}`` (inf and NaN as strings)."""
    values = [f"{name} = {toml_value(np.asarray(v, dtype=np.float64).tolist())}" for name, v in inputs.items()]
    return "witness = {" + ", ".join([f'case = "{case.name}"', f'dtype = "{fmt.name}"', *values]) + "}"


def combos(deviation: Deviation, device: str) -> list[tuple[str, str]]:
    """(case, dtype) pairs the entry applies to with this torch on ``device``, in its home mode."""
    mode = deviation.home_mode
    return [(c, d) for c in deviation.cases for d in deviation.dtypes
            if deviation.applies(c, d, device, torch.__version__, mode) and modes.applies(mode, d)
            and deviation.region_inputs(d) <= {s.name for s in cases.get(c).inputs}]


def witness_shows(deviation: Deviation, device: str) -> int:
    """Elements of the entry's recorded witness batch that still show the deviation (0 without a witness).
    A witness with ``shapes`` runs its values broadcast to each shape in turn (a large batch, or a compiled
    function that has seen another shape before and so compiles for dynamic shapes)."""
    w = dict(deviation.witness)
    if not w:
        return 0
    case, fmt = cases.get(w.pop("case")), dtypes.get(w.pop("dtype"))
    shapes = w.pop("shapes", [None])
    values = {name: np.array(v, dtype=np.float64) for name, v in w.items()}
    shown = 0
    for shape in shapes:
        inputs = values if shape is None else {k: np.broadcast_to(v, shape).copy() for k, v in values.items()}
        shown += observe(evaluate(case, inputs, fmt, device, deviation), deviation)[0]
    return shown


def grid_shows(deviation: Deviation, case: Case, fmt: dtypes.FloatFormat, device: str) -> tuple[int, int]:
    """(elements, stray failures) of the grid points inside the region: :func:`observe` on them."""
    inputs = region_inputs(case, fmt, deviation)
    if inputs is None:
        return 0, 0
    return observe(evaluate(case, inputs, fmt, device, deviation), deviation)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID",
                        help="entries to search (default: those that neither their witness nor the grid shows)")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--examples", type=int, default=SEARCH_EXAMPLES * 4,
                        help=f"draws per case and dtype (default {SEARCH_EXAMPLES * 4})")


def needs_witness(deviation: Deviation, device: str) -> bool:
    """Whether only the search shows the entry: neither its witness nor a grid point in its region does."""
    if witness_shows(deviation, device):
        return False
    return not any(grid_shows(deviation, cases.get(c), dtypes.get(d), device)[0] for c, d in combos(deviation, device))


def main(args: argparse.Namespace) -> int:
    try:
        entries = [deviations.get(i) for i in args.ids] if args.ids else list(deviations.load())
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    selection.require_device(args.device)
    if args.examples < 1:
        raise UsageError("--examples must be at least 1")
    truth_cache.check_folder()
    status = 0
    for d in entries:
        if args.device.split(":")[0] not in d.devices or not combos(d, args.device):
            print(f"# {d.id}: not about torch {torch.__version__} on {args.device}")
            continue
        if not args.ids and not needs_witness(d, args.device):
            continue
        for case_name, dtype in combos(d, args.device):
            case, fmt = cases.get(case_name), dtypes.get(dtype)
            found = search_region(case, fmt, args.device, d, args.examples)
            if found is not None:
                small = shrink(case, fmt, args.device, d, found.inputs)
                print(f"# {d.id} ({case_name} {dtype}: {found.shown} element(s) shown)\n"
                      f"{witness_toml(case, fmt, small)}", flush=True)
                break
        else:
            print(f"# {d.id}: {args.examples} draws per case and dtype showed none", flush=True)
            status = 1
    return status
