"""The replays of torch's formulas (:mod:`suite.kernel_replays`) hold the installed torch's float16 and bfloat16
values on CPU (and CUDA, where there is one), on every case's quick grid, in every reduction and quantity,
within the ``mechanism_ulps`` of the half-arithmetic entries that use them: the test fails exactly where the
judge would stop excusing torch's 16-bit rounding, and a value outside is a new finding of the report.  And a
kernel that keeps fewer bits than torch's is outside: the replay tells them apart, where the exact loss alone
does not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from suite import cases, deviations, dtypes, mechanisms
from suite.cases.base import REDUCTION_DIVISORS
from suite.inputs import grids
from suite.kernel_replays import REPLAYS
from tests.conftest import DEVICES, replay_formula, skip_where_torch_raises

HALF_ENTRIES = ("half-arithmetic-loss", "half-arithmetic-grad-input", "half-arithmetic-grad-target")


def _bound(quantity: str) -> float:
    """The ``mechanism_ulps`` of the half-arithmetic entry of ``quantity``."""
    bound = deviations.get(f"half-arithmetic-{quantity.replace('_', '-')}").mechanism_ulps
    assert bound is not None
    return bound


def _torch_values(case: cases.Case, inputs: dict[str, np.ndarray], fmt: dtypes.FloatFormat, reduction: str,
                  device: str) -> dict[str, np.ndarray]:
    """torch's elementwise quantities of ``case`` on ``device``, as the suite measures them (backward of ones)."""
    wanted = {spec.name for spec in case.inputs if spec.differentiable}
    t = {k: torch.tensor(v, dtype=fmt.torch_dtype, device=device, requires_grad=k in wanted)
         for k, v in inputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kl_div's 'mean' warns
        out = case.forward(t, reduction)
    out.backward(torch.ones_like(out))
    values = {f"grad_{k}": grad.double().cpu().numpy() for k in wanted if (grad := t[k].grad) is not None}
    if reduction == "none":
        values["loss"] = out.detach().double().cpu().numpy()
    return values


def test_every_case_of_the_half_arithmetic_entries_has_a_replay() -> None:
    for entry_id in HALF_ENTRIES:
        entry = deviations.get(entry_id)
        assert entry.mechanism == "kernel_replay"
        for case in entry.cases:
            assert set(entry.quantities) <= set(REPLAYS[case]), (entry_id, case)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case_name", sorted(REPLAYS))
def test_the_replay_holds_torchs_values(case_name: str, dtype: str, device: str) -> None:
    skip_where_torch_raises(case_name, dtype, device)
    case, fmt = cases.get(case_name), dtypes.get(dtype)
    inputs = grids.case_grid(case, fmt, quick=True)
    # the replay takes -0 as 0 (torch's sign of a zero is bce-grad-half-negative-zero-sign's)
    signed_zero = np.zeros(inputs[case.main_input.name].shape, dtype=bool)
    for v in inputs.values():
        signed_zero |= np.broadcast_to((v == 0) & np.signbit(v), signed_zero.shape)
    for reduction in case.reductions:
        divisor_of = REDUCTION_DIVISORS[reduction]
        divisor = 1 if divisor_of is None else divisor_of(signed_zero.shape)
        for quantity, got in _torch_values(case, inputs, fmt, reduction, device).items():
            name, formula = replay_formula(case_name, dtype, device, quantity)
            distance = mechanisms.distance_ulps(name, inputs, got, divisor, fmt, formula=formula)
            outside = (distance > _bound(quantity)) & ~signed_zero
            assert not outside.any(), (reduction, quantity, {k: v[outside][:3] for k, v in inputs.items()},
                                       got[outside][:3])


def test_a_kernel_that_keeps_fewer_bits_is_outside_the_replay() -> None:
    # float16 BCE computed in float32 but stored through bfloat16 (3 bits fewer): within 4 ULPs of the exact loss
    # everywhere, as torch's own 16-bit rounding is, but not torch's values
    case, fmt = cases.get("bce"), dtypes.FLOAT16
    inputs = grids.case_grid(case, fmt, quick=True)
    p, y = (torch.tensor(inputs[k], dtype=torch.float32) for k in ("input", "target"))
    lossy = torch.nn.functional.binary_cross_entropy(p, y, reduction="none").bfloat16().double().numpy()
    distance = mechanisms.distance_ulps("kernel_replay", inputs, lossy, 1, fmt, formula=("bce", "loss"))
    assert (distance > _bound("loss")).mean() > 0.1


def test_no_replay_no_explanation() -> None:
    distance = mechanisms.distance_ulps("kernel_replay", {"input": np.array([0.5])}, np.array([0.25]), 1,
                                        dtypes.FLOAT16, formula=("no_such_case", "loss"))
    assert distance.tolist() == [float("inf")]
