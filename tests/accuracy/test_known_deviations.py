"""One strict xfail per registered known deviation and device: the entry must still show its recorded label
on its recorded witness batch, else on the deterministic grid points inside its region of one of its cases and
dtypes or, where none does, on inputs the strategies draw inside it (no hand-picked input: a witness is a batch
the search found, :mod:`suite.witness`).  When a torch release fixes it everywhere the test passes, and strict
xfail turns that into a visible XPASS failure; a grid failure in the region that the entry does not explain
fails the test outright (checked where no witness shows the entry).  A fix in only some of an entry's cases or
dtypes keeps the xfail: ``python -m suite audit`` measures, per case and dtype, how much of each entry torch
still uses."""

from __future__ import annotations

import pytest
import torch

from suite import cases, deviations, dtypes, witness
from suite.deviations import Deviation
from tests.conftest import DEVICES


class DeviationStillPresentError(Exception):
    """Raised when torch still shows a registered deviation (the expected outcome of these xfails)."""


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
    shown, stray = witness.grid_shows(deviation, case, fmt, device)
    if stray:
        pytest.fail(f"{deviation.id}: {stray} failing grid element(s) of {case_name} {dtype} in the region are "
                    f"not explained by it")
    if shown:
        return shown
    found = witness.search_region(case, fmt, device, deviation)
    return 0 if found is None else found.shown


@pytest.mark.parametrize(("deviation_id", "device"), _params())
def test_known_deviation_still_present(deviation_id: str, device: str) -> None:
    """Strict per entry: the test xfails while any of the entry's cases and dtypes still shows it, so a torch
    that fixes the deviation everywhere turns it into an XPASS."""
    deviation = deviations.get(deviation_id)
    combos = witness.combos(deviation, device)
    if not combos:
        pytest.skip(f"{deviation_id} is not about torch {torch.__version__} on {device} (recorded for torch "
                    f"{deviation.torch_on(device)})")
    shown = witness.witness_shows(deviation, device)
    if shown:
        raise DeviationStillPresentError(f"{deviation_id}: {shown} element(s) of its witness still show "
                                         f"{'/'.join(deviation.labels)}")
    for case_name, dtype in combos:
        shown = shows(deviation, case_name, dtype, device)
        if shown:
            raise DeviationStillPresentError(f"{deviation_id}: {shown} element(s) of {case_name} {dtype} still "
                                             f"show {'/'.join(deviation.labels)}")
