"""Property tests: every case x dtype x device, each drawn batch checked under every reduction, forward and
gradients, on inputs drawn by the strategies over the whole floating-point range, against the ULP budgets and
never-acceptable labels.  Elements a registered known deviation explains are excused; anything else fails with
a shrunk, copy-paste reproducer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suite import cases
from suite.inputs import strategies
from tests.accuracy.harness import check, evaluate
from tests.conftest import DEVICES

DTYPES = ("float64", "float32", "float16", "bfloat16")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_within_budget(case_name: str, dtype: str, device: str, data: st.DataObject) -> None:
    case = cases.get(case_name)
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check(evaluate(case, inputs, dtype, device), case.reductions)
