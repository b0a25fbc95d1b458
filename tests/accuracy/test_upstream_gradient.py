"""Property tests: every gradient scales with the upstream gradient (:mod:`suite.upstream`), for every case,
dtype and mode, on inputs drawn over the whole range.  The other tests take gradients for an upstream gradient
of ones, where a backward that ignores it, or gives one element's to all, is right by accident."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from suite import cases, dtypes, modes, upstream
from suite.inputs import strategies
from tests.accuracy.harness import EAGER_MODES, check_upstream, compiled_settings
from tests.conftest import CUDA

PROFILE = settings()


def _draw_and_check(case_name: str, mode: str, device: str, data: st.DataObject) -> None:
    case = cases.get(case_name)
    dtype = data.draw(st.sampled_from([d for d in dtypes.NAMES if modes.applies(mode, d)]), label="dtype")
    inputs = data.draw(strategies.case_inputs(case, dtype), label="inputs")
    check_upstream(case, inputs, dtype, device, mode)


@pytest.mark.parametrize("mode", EAGER_MODES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@given(data=st.data())
def test_gradients_scale_with_the_upstream_gradient(case_name: str, mode: str, data: st.DataObject) -> None:
    _draw_and_check(case_name, mode, "cpu", data)


@pytest.mark.parametrize("mode", modes.COMPILE_MODES)
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@compiled_settings(30)
@given(data=st.data())
def test_gradients_scale_with_the_upstream_gradient_compiled(case_name: str, mode: str, data: st.DataObject,
                                                             fresh_compiles: None) -> None:
    """The same through ``torch.compile``, static and ``dynamic=True``, whose fused backward kernels multiply
    by the upstream gradient in their own place; each example compiles anew, so a thirtieth of the examples."""
    _draw_and_check(case_name, mode, "cpu", data)


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("case_name", cases.BUILTIN)
@settings(max_examples=max(1, PROFILE.max_examples // 20))
@given(data=st.data())
def test_gradients_scale_with_the_upstream_gradient_on_cuda(case_name: str, data: st.DataObject) -> None:
    """The same on CUDA, the mode drawn among the eager ones.  BCE's device-side assert for a probability
    outside [0, 1] cannot happen: the drawn inputs are in every domain."""
    mode = data.draw(st.sampled_from(EAGER_MODES), label="mode")
    _draw_and_check(case_name, mode, "cuda", data)


class OverflowStillPresentError(AssertionError):
    """A registered overflow that torch still shows: the expected failure of its strict xfail."""


def _known_params() -> list[object]:
    return [pytest.param(k, id=k.id, marks=pytest.mark.xfail(strict=True, raises=OverflowStillPresentError,
                                                             reason=f"{k.id}: {k.description}"))
            for k in upstream.KNOWN_OVERFLOWS]


@pytest.mark.parametrize("known", _known_params())
def test_known_upstream_overflow_still_present(known: upstream.KnownOverflow) -> None:
    """Each registered overflow at its witness, strictly: it xfails while torch shows it, and a torch that fixes
    it turns it into an XPASS."""
    if not known.applies(known.case, known.dtypes[0], known.device, known.modes[0], torch.__version__):
        pytest.skip(f"{known.id} is not about torch {torch.__version__} (recorded for torch {known.torch})")
    inputs = {k: np.array(v) for k, v in known.witness.items()}
    found = upstream.problems(cases.get(known.case), inputs, known.dtypes[0], known.device, known.modes[0])
    overflows = [p.text for p in found if p.kind == upstream.OVERFLOW]
    if overflows:
        raise OverflowStillPresentError(f"{known.id}: {overflows[0]}")
    assert found == [], found
