"""Property tests: a NaN among a loss's inputs reaches every result that depends on it and no other
(:mod:`suite.nan_propagation`), for every case, dtype and mode, on inputs drawn over the whole range with NaN at
drawn positions of drawn inputs.  A loss that answers a NaN with a number hides the bug that made it; one that
spreads it corrupts results that never saw it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suite import cases, dtypes, modes
from suite.inputs import strategies
from tests.accuracy.harness import EAGER_MODES, check_nan, compiled_settings
from tests.conftest import CUDA

PROFILE = settings()


def _draw_and_check(case_name: str, mode: str, device: str, data: st.DataObject) -> None:
    case = cases.get(case_name)
    dtype = data.draw(st.sampled_from([d for d in dtypes.NAMES if modes.applies(mode, d)]), label="dtype")
    clean = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    poisoned = data.draw(strategies.with_nans(clean), label="with NaN")
    check_nan(case, clean, poisoned, dtype, device, mode)


@pytest.mark.parametrize("mode", EAGER_MODES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_nan_reaches_exactly_what_depends_on_it(case_name: str, mode: str, data: st.DataObject) -> None:
    _draw_and_check(case_name, mode, "cpu", data)


@pytest.mark.parametrize("mode", modes.COMPILE_MODES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@compiled_settings(30)
@given(data=st.data())
def test_nan_reaches_exactly_what_depends_on_it_compiled(case_name: str, mode: str, data: st.DataObject,
                                                         fresh_compiles: None) -> None:
    """The same through ``torch.compile``, static and ``dynamic=True``, whose generated kernels lower clamps,
    maxima and ``where`` in their own way (a ``maximum`` that drops NaN would swallow it).  Each example
    compiles every reduction's forward and backward anew, so each test draws a thirtieth of the profile's
    examples."""
    _draw_and_check(case_name, mode, "cpu", data)


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@settings(max_examples=max(1, PROFILE.max_examples // 20))
@given(data=st.data())
def test_nan_reaches_exactly_what_depends_on_it_on_cuda(case_name: str, data: st.DataObject) -> None:
    """The same on CUDA, the mode drawn among the eager ones.  A batch with NaN runs in a child process first
    (a device-side assert, BCE's answer to a probability outside [0, 1], would end this process's CUDA context),
    a few seconds each, so each test draws a twentieth of the profile's examples.  The compiled CUDA kernels'
    NaN answers are the report's bad-input table's (`--bad-inputs` probes NaN in every mode)."""
    mode = data.draw(st.sampled_from(EAGER_MODES), label="mode")
    _draw_and_check(case_name, mode, "cuda", data)
