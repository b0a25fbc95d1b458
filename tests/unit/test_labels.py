"""Every label of DESIGN.md, each produced by a real input through run.evaluate (or metrics.measure for
device_assert, which needs a CUDA device-side assert)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
import pytest
import torch

from suite import cases, metrics, run
from suite.cases.base import Case, InputSpec
from suite.dtypes import FLOAT32
from suite.metrics import Label
from suite.truth import Reference, Status, Truth
from tests.conftest import DEVICES

INF = np.inf

#: label -> (case, inputs, dtype, index of the element that shows it, why)
EXAMPLES: dict[Label, tuple[str, dict[str, list[float]], torch.dtype, int]] = {
    # BCEWithLogits at log 2 and BCE of the tutorial's probabilities round correctly in float32.
    Label.EXACT: ("bce_with_logits", {"input": [0.0], "target": [0.0]}, torch.float32, 0),
    # sigmoid then BCE at x = 10, y = 0: 1 - sigmoid(10) cancels, hundreds of ULPs off.
    Label.INACCURATE: ("sigmoid_bce", {"input": [10.0], "target": [0.0]}, torch.float32, 0),
    # BCEWithLogits at x = -inf, y = 0: the truth is softplus(-inf) = 0, torch computes -inf * 0.
    Label.NAN: ("bce_with_logits", {"input": [-INF], "target": [0.0]}, torch.float32, 0),
    # kl_div with a log target: e^89 overflows float32 although e^89 * (89 - 88.5) = 2.2e38 does not.
    Label.SPURIOUS_INF: ("kl_div_log_target", {"input": [88.5], "target": [89.0]}, torch.float32, 0),
    # BCE(p=0, y=1) = +inf; torch clamps the log at -100.
    Label.CLAMPED: ("bce", {"input": [0.0], "target": [1.0]}, torch.float32, 0),
    # BCEWithLogits at x = -20, y = 0 returns 0 for a true 2.1e-9 (e^-20 is below half an ULP of 1 and of 20, so
    # both torch's formula and the one before 2.3, bce-with-logits-log-of-exps, lose it; at -16 only the newer does).
    Label.FLUSHED: ("bce_with_logits", {"input": [-20.0], "target": [0.0]}, torch.float32, 0),
    # kl_div 3e38 * (log 3e38 + 10) is far beyond float32: inf is right.
    Label.OVERFLOW: ("kl_div", {"input": [-10.0], "target": [3e38]}, torch.float32, 0),
    # BCE rejects a probability of 1.5 (a RuntimeError; on CUDA a device-side assert, see below); the element
    # next to it is labelled too.
    Label.RAISED: ("bce", {"input": [1.5, 0.5], "target": [1.0, 1.0]}, torch.float32, 1),
    # BCEWithLogits accepts a target of 1.5, where the loss is not defined.
    Label.UNDEFINED: ("bce_with_logits", {"input": [1.0, 1.0], "target": [1.5, 1.0]}, torch.float32, 0),
}


def _labels(case: Case, inputs: Mapping[str, Any], dtype: torch.dtype, device: str) -> list[Label]:
    result = run.evaluate(case, {k: np.asarray(v) for k, v in inputs.items()}, dtype, device,
                          reductions=("none",))
    return [Label(int(v)) for v in result.get("none").metrics.labels.reshape(-1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("label", list(EXAMPLES), ids=lambda label: label.text)
def test_label_is_produced(label: Label, device: str) -> None:
    name, inputs, dtype, index = EXAMPLES[label]
    # ATen's CUDA BCE kernel checks the probability with CUDA_KERNEL_ASSERT(input_val >= zero && input_val <= one)
    expected = Label.DEVICE_ASSERT if (label, device) == (Label.RAISED, "cuda") else label
    assert _labels(cases.get(name), inputs, dtype, device)[index] == expected


@pytest.mark.parametrize("device", DEVICES)
def test_label_ok(device: str) -> None:
    """Within the budget but not correctly rounded: found among benign BCEWithLogits points."""
    x = np.linspace(0.0, 3.0, 41)
    labels = _labels(cases.get("bce_with_logits"), {"input": x, "target": np.full_like(x, 0.7)},
                     torch.float32, device)
    assert Label.OK in labels
    assert set(labels) <= {Label.OK, Label.EXACT}


@pytest.mark.parametrize("device", DEVICES)
def test_label_raised_keeps_the_message(device: str) -> None:
    result = run.evaluate(cases.get("bce"), {"input": np.array([1.5, 0.5]), "target": np.array([1.0, 1.0])},
                          torch.float32, device, reductions=("none",))
    q = result.get("none")
    label = Label.DEVICE_ASSERT if device == "cuda" else Label.RAISED
    assert q.error is not None and ("device-side assert" if device == "cuda" else "between 0 and 1") in q.error
    assert (q.metrics.labels == label).all()
    assert (result.get("none", "grad_input").metrics.labels == label).all()
    if device == "cuda":  # the assert happened in a child process: this one's CUDA context is still healthy
        assert torch.ones(2, device=device).sum().item() == 2.0


def test_screening_runs_the_batch_in_a_child_first() -> None:
    """Screened on CPU, the child sees torch's RuntimeError (not fatal), so the batch runs here too and the
    error is torch's own message."""
    batch = {"input": np.array([1.5, 0.5]), "target": np.array([1.0, 1.0])}
    assert not run.needs_screening(cases.get("bce"), batch, "cpu")
    assert run.needs_screening(cases.get("bce"), batch, "cuda")
    assert not run.needs_screening(cases.get("bce"), {"input": np.array([0.5]), "target": np.array([1.0])}, "cuda")
    assert run.needs_screening(cases.get("bce_with_logits"), {"input": np.array([np.nan]), "target": np.array([1.0])},
                               "cuda")
    result = run.evaluate(cases.get("bce"), batch, torch.float32, "cpu", reductions=("none", "mean"), screen=True)
    for reduction in ("none", "mean"):
        q = result.get(reduction)
        assert q.error is not None and "between 0 and 1" in q.error
        assert (q.metrics.labels == Label.RAISED).all()


def test_label_raised_when_every_element_is_undefined() -> None:
    """No sample has a truth (so no gradient truth either), yet the failure is still recorded."""
    result = run.evaluate(cases.get("bce"), {"input": np.array([1.5]), "target": np.array([1.0])}, torch.float32,
                          reductions=("none",))
    assert result.get("none").metrics.labels.tolist() == [Label.RAISED]
    assert result.get("none", "grad_input").metrics.labels.tolist() == [Label.RAISED]


def test_label_device_assert() -> None:
    truth = Truth(np.array([1.0, 2.0]), np.zeros(2), np.zeros(2, np.int8), np.zeros(2, bool))
    m = metrics.measure(np.full(2, np.nan), truth, FLOAT32, 4.0, failure=Label.DEVICE_ASSERT)
    assert [Label(int(v)) for v in m.labels] == [Label.DEVICE_ASSERT] * 2


def _unsettled(sample: Mapping[str, list[Any]]) -> Reference:
    """Depends on the working precision, so no two precisions agree."""
    return Reference([sample["input"][0] + mpmath.mp.prec], {"input": [mpmath.mpf(1)]})


def _identity(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    x = t["input"] * 1
    return x if reduction == "none" else x.sum() if reduction == "sum" else x.mean()


UNSETTLED = Case("test_unsettled", "test", "identity with a reference that never settles",
                 (InputSpec("input", "logit"),), _identity, _unsettled, module_forward=_identity)


@pytest.mark.parametrize("device", DEVICES)
def test_label_undetermined(device: str) -> None:
    result = run.evaluate(UNSETTLED, {"input": np.array([1.0, 2.0])}, torch.float32, device, reductions=("none",))
    q = result.get("none")
    assert (q.truth.status == Status.UNDETERMINED).all()
    assert [Label(int(v)) for v in q.metrics.labels] == [Label.UNDETERMINED] * 2
    assert (result.get("none", "grad_input").metrics.labels == Label.EXACT).all()


def test_every_label_has_a_test() -> None:
    shown = set(EXAMPLES) | {Label.OK, Label.DEVICE_ASSERT, Label.UNDETERMINED}
    assert shown == set(Label)
