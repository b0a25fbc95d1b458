"""One strict xfail per registered known deviation, case, dtype and device: the region of the entry must
still show the recorded label, on the deterministic grid points inside it or, where the grids do not reach
it, on inputs the strategies draw inside it (no hand-picked input either way).  When a torch release fixes it
the test passes, and strict xfail turns that into a visible XPASS failure; a failure in the region that the
entry does not explain fails the test outright."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from suite import cases, deviations, dtypes, judge, modes, run, search
from suite.cases.base import Case
from suite.deviations import Deviation
from suite.inputs import grids, strategies
from tests.conftest import DEVICES


class DeviationStillPresentError(Exception):
    """Raised when torch still shows a registered deviation (the expected outcome of these xfails)."""


SEARCH_EXAMPLES = 150


def region_inputs(case: Case, fmt: dtypes.FloatFormat, deviation: Deviation) -> dict[str, np.ndarray] | None:
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


def into_region(data: st.DataObject, inputs: dict[str, np.ndarray], fmt: dtypes.FloatFormat,
                deviation: Deviation) -> dict[str, np.ndarray]:
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


def reductions_of(case: Case, deviation: Deviation) -> tuple[str, ...]:
    return tuple(dict.fromkeys(("none", *(r for r in deviation.reductions if r in case.reductions))))


class _ShownError(Exception):
    """Ends a region search as soon as the deviation shows."""


def search_region(case: Case, fmt: dtypes.FloatFormat, device: str, deviation: Deviation) -> int:
    """Draw inputs inside the region until one shows the deviation; how many elements did (0: none found)."""

    @settings(max_examples=SEARCH_EXAMPLES, database=None, deadline=None, derandomize=True,
              phases=[Phase.generate, Phase.target], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        inputs = into_region(data, data.draw(strategies.case_inputs(case, fmt)), fmt, deviation)
        result = run.evaluate(case, inputs, fmt, device, reductions=reductions_of(case, deviation),
                              mode=deviation.home_mode)
        for (reduction, quantity), q in result.quantities.items():
            if quantity in deviation.quantities and reduction in deviation.reductions:
                search.steer(q)  # climb toward larger errors
        shown = observe(result, deviation)[0]
        if shown:
            raise _ShownError(shown)

    try:
        explore()
    except _ShownError as found:
        return int(found.args[0])
    return 0


def _params() -> list:
    out = []
    for d in deviations.load():
        for device in DEVICES:
            if device.values[0] not in d.devices:
                continue
            marks = [*device.marks, pytest.mark.xfail(strict=True, raises=DeviationStillPresentError,
                                                      reason=f"{d.id}: {d.description}")]
            out.append(pytest.param(d.id, device.values[0], marks=marks, id=f"{d.id}-{device.values[0]}"))
    return out


def shows(deviation: Deviation, case_name: str, dtype: str, device: str) -> int:
    """Elements of one case and dtype showing the deviation: on the grid points in its region, else on drawn
    inputs inside it.  A grid failure in the region that the entry does not explain fails the test."""
    case, fmt = cases.get(case_name), dtypes.get(dtype)
    if not deviation.region_inputs(dtype) <= {s.name for s in case.inputs}:
        return 0  # the dtype's region is about an input (a weight) this case does not have
    inputs = region_inputs(case, fmt, deviation)
    if inputs is not None:
        result = run.evaluate(case, inputs, fmt, device, reductions=reductions_of(case, deviation),
                              mode=deviation.home_mode)
        shown, stray = observe(result, deviation)
        if stray:
            pytest.fail(f"{deviation.id}: {stray} failing grid element(s) of {case_name} {dtype} in the region are "
                        f"not explained by it")
        if shown:
            return shown
    return search_region(case, fmt, device, deviation)


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
        result = run.evaluate(case, inputs, fmt, device, reductions=reductions_of(case, deviation),
                              mode=deviation.home_mode)
        shown += observe(result, deviation)[0]
    return shown


@pytest.mark.parametrize(("deviation_id", "device"), _params())
def test_known_deviation_still_present(deviation_id: str, device: str) -> None:
    """Strict per entry: the test xfails while any of the entry's cases and dtypes still shows it, so a torch
    that fixes the deviation everywhere turns it into an XPASS."""
    deviation = deviations.get(deviation_id)
    mode = deviation.home_mode
    combos = [(c, d) for c in deviation.cases for d in deviation.dtypes
              if deviation.applies(c, d, device, torch.__version__, mode) and modes.applies(mode, d)]
    if not combos:
        pytest.skip(f"{deviation_id} is recorded for torch {deviation.torch}, not {torch.__version__}")
    shown = witness_shows(deviation, device)
    if shown:
        raise DeviationStillPresentError(f"{deviation_id}: {shown} element(s) of its witness still show "
                                         f"{'/'.join(deviation.labels)}")
    for case_name, dtype in combos:
        shown = shows(deviation, case_name, dtype, device)
        if shown:
            raise DeviationStillPresentError(f"{deviation_id}: {shown} element(s) of {case_name} {dtype} still "
                                             f"show {'/'.join(deviation.labels)}")
