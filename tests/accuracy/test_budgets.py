"""Property tests: every case x dtype x device (eagerly, under autocast, and compiled), each drawn batch checked
under every reduction, forward and gradients, on inputs drawn by the strategies over the whole floating-point
range, against the ULP budgets and never-acceptable labels.  Elements a registered known deviation explains are
excused; anything else fails with a shrunk, copy-paste reproducer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suite import cases, dtypes, modes
from suite.inputs import strategies
from tests.accuracy.harness import check, compiled_settings, evaluate
from tests.conftest import DEVICES

#: The loaded profile's settings (tests/conftest.py loads the profile before this module is imported).
PROFILE = settings()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", dtypes.NAMES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_within_budget(case_name: str, dtype: str, device: str, data: st.DataObject) -> None:
    case = cases.get(case_name)
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check(evaluate(case, inputs, dtype, device), case.reductions)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", modes.AUTOCAST_DTYPES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_within_budget_under_autocast(case_name: str, dtype: str, device: str, data: st.DataObject) -> None:
    """The same property under ``torch.autocast`` to ``dtype``: the report's grids meet only their own points,
    and autocast's float32 results (with 16-bit intermediates) fail in ways eager does not."""
    case = cases.get(case_name)
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check(evaluate(case, inputs, dtype, device, mode="autocast"), case.reductions)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", dtypes.NAMES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@compiled_settings(3)
@given(data=st.data())
def test_within_budget_compiled(case_name: str, dtype: str, device: str, data: st.DataObject,
                                fresh_compiles: None) -> None:
    """The same property through ``torch.compile(dynamic=True)``, whose fused kernels round and reduce
    differently from eager's (compiled once per case, reduction and dtype, then reused for every shape).  A
    compiled example costs several eager ones, so each test draws a third of the profile's examples."""
    case = cases.get(case_name)
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check(evaluate(case, inputs, dtype, device, mode="compile_dynamic"), case.reductions)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", modes.LAYOUT_MODES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_within_budget_in_another_layout(case_name: str, layout: str, device: str, data: st.DataObject) -> None:
    """The same property on inputs stored strided or transposed (:func:`suite.modes.lay_out`): torch runs
    another loop of its kernel on them (element by element instead of vectorised, which rounds some logs
    differently) and reduces in another order.  The dtype is drawn, so that the layouts add a test per case
    rather than one per dtype."""
    case = cases.get(case_name)
    dtype = data.draw(st.sampled_from(dtypes.NAMES), label="dtype")
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check(evaluate(case, inputs, dtype, device, mode=layout), case.reductions)
