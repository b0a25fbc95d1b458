"""Property test: every case's loss and gradients round without a direction, over the fixed population of
ordinary inputs (:mod:`suite.bias`), in every dtype and device, eagerly and under autocast.  A result within
budget everywhere but always below the truth (a truncating store) passes every budget test; this one sees it."""

from __future__ import annotations

import pytest

from suite import bias, cases, dtypes, modes
from tests.conftest import DEVICES

#: Every dtype eagerly, the 16-bit ones under autocast too.
SETTINGS = [pytest.param(dtype, mode, id=f"{dtype}-{mode}") for mode in ("eager", "autocast")
            for dtype in dtypes.NAMES if modes.applies(mode, dtype)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "mode"), SETTINGS)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
def test_rounding_is_unbiased(case_name: str, dtype: str, mode: str, device: str) -> None:
    found = bias.measure_case(cases.get(case_name), dtype, device, mode)
    biased = {quantity: b.describe() for quantity, b in found.items() if b.biased}
    assert not biased, f"{case_name} {dtype} {device} {mode}: {biased}"
