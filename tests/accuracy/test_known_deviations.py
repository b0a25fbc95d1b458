"""One strict xfail per registered known deviation, case, dtype and device: the region of the entry, taken
from the deterministic grids (no hand-picked input), must still show the recorded label.  When a torch
release fixes it the test passes, and strict xfail turns that into a visible XPASS failure; a failure in the
region that the entry does not explain fails the test outright."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suite import cases, deviations, dtypes, judge, run
from suite.cases.base import Case
from suite.deviations import Deviation
from suite.inputs import grids
from tests.conftest import DEVICES


class DeviationStillPresentError(Exception):
    """Raised when torch still shows a registered deviation (the expected outcome of these xfails)."""


def region_inputs(case: Case, fmt: dtypes.FloatFormat, deviation: Deviation) -> dict[str, np.ndarray]:
    """Grid points of ``case`` inside the deviation's region: the quick grid, else the default grid."""
    for quick in (True, False):
        grid = run.prepare_inputs(case, grids.case_grid(case, fmt, quick=quick), fmt)
        shape = np.broadcast_shapes(*(v.shape for v in grid.values()))
        inside = deviation.in_region(grid, shape)
        if case.rows:
            keep = inside.any(axis=-1)
            if keep.any():
                return {k: np.broadcast_to(v, shape)[keep] for k, v in grid.items()}
        elif inside.any():
            return {k: np.broadcast_to(v, shape)[inside] for k, v in grid.items()}
    raise AssertionError(f"deviation {deviation.id!r}: no grid point of {case.name} {fmt.name} lies in its region")


def _params() -> list:
    out = []
    for d in deviations.load():
        for case_name in d.cases:
            for dtype in d.dtypes:
                for device in DEVICES:
                    if device.values[0] not in d.devices:
                        continue
                    marks = [*device.marks, pytest.mark.xfail(strict=True, raises=DeviationStillPresentError,
                                                              reason=f"{d.id}: {d.description}")]
                    out.append(pytest.param(d.id, case_name, dtype, device.values[0], marks=marks,
                                            id=f"{d.id}-{case_name}-{dtype}-{device.values[0]}"))
    return out


@pytest.mark.parametrize(("deviation_id", "case_name", "dtype", "device"), _params())
def test_known_deviation_still_present(deviation_id: str, case_name: str, dtype: str, device: str) -> None:
    deviation = deviations.get(deviation_id)
    if not deviation.applies(case_name, dtype, device, torch.__version__):
        pytest.skip(f"{deviation_id} is recorded for torch {deviation.torch}, not {torch.__version__}")
    case, fmt = cases.get(case_name), dtypes.get(dtype)
    inputs = region_inputs(case, fmt, deviation)
    reduction = next(r for r in deviation.reductions if r in case.reductions)
    result = run.evaluate(case, inputs, fmt, device, reductions=tuple(dict.fromkeys(("none", reduction))))
    q = result.get(reduction, deviation.quantity)
    verdict = judge.judge(result, q)
    inside = deviation.in_region(result.inputs, q.got.shape) if q.got.ndim else np.ones((), bool)
    stray = verdict.unexplained & inside
    if stray.any():
        pytest.fail(f"{deviation_id}: {int(stray.sum())} failing element(s) in the region are not explained by it")
    shown = verdict.known.get(deviation_id)
    if shown is not None and shown.any():
        raise DeviationStillPresentError(f"{deviation_id}: {int(shown.sum())} element(s) still show "
                                     f"{'/'.join(deviation.labels)}")
