"""The property tests' reproducers run as printed and give torch's value again, for batches with the
infinities and NaNs the strategies draw (``repr`` writes them as bare ``inf`` and ``nan``)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from suite import cases
from tests.accuracy import harness


def _printed_by(snippet: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "<reproducer>", "exec"), {})
    return out.getvalue().strip()


def test_a_reduced_value_reproducer_rebuilds_infinite_and_nan_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "note", lambda text: None)  # Hypothesis' note needs a running test
    case = cases.get("bce_with_logits")
    inputs = {"input": np.array([np.inf, -np.inf, 3.0, 1e-300]), "target": np.array([0.25, 1.0, 0.5, 0.0])}
    result = harness.evaluate(case, inputs, "float32", "cpu", ("sum",))
    q = result.get("sum", "loss")
    assert math.isinf(float(q.truth.hi))  # (1 - 0.25) * inf: the element at +inf makes the exact sum +inf
    text = harness._describe(result, q, (), 1)
    printed = _printed_by(text.split("Reproducer:\n", 1)[1])
    assert printed == str(q.got)


def test_a_nan_reproducer_rebuilds_both_batches() -> None:
    source = harness.BATCH_IMPORTS + harness._batch_source("batch", {"x": np.array([np.nan, -np.inf, -0.0, 5e-324])})
    namespace: dict[str, object] = {}
    exec(compile(source, "<reproducer>", "exec"), namespace)
    rebuilt = namespace["batch"]["x"]  # type: ignore[index]
    assert np.isnan(rebuilt[0]) and rebuilt[1] == -np.inf and np.signbit(rebuilt[2]) and rebuilt[3] == 5e-324
