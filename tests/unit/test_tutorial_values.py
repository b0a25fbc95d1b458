"""The five values printed in a widely read tutorial on these losses (issue 2), recomputed by the suite:
torch's float32 value through run.evaluate bit for bit, and the suite's exact value next to it."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from suite import cases, run
from suite.dtypes import FLOAT32
from suite.metrics import Label
from tests.conftest import DEVICES

LOGITS = [[0.5, 1.0, 0.8], [0.2, 0.4, 0.6]]
TARGETS = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
WEIGHT = [[0.1, 0.9, 0.1], [0.1, 0.1, 0.9]]
KL_TARGETS = [[0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]

# (case, inputs, printed value); the tutorial feeds the logits to BCELoss directly as probabilities.
PRINTED = [
    ("bce_weight", {"input": LOGITS, "target": TARGETS, "weight": WEIGHT}, 0.12723307311534882),
    ("bce", {"input": LOGITS, "target": TARGETS}, 0.5912299752235413),
    ("sigmoid_bce", {"input": LOGITS, "target": TARGETS}, 0.7678468823432922),
    ("bce_with_logits", {"input": LOGITS, "target": TARGETS}, 0.7678468823432922),
    ("bce_with_logits", {"input": [[5.0, 1.0, 8.0], [2.0, 4.0, 6.0]], "target": TARGETS}, 3.2446444034576416),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "inputs", "printed"), PRINTED, ids=[f"{p[0]}-{p[2]}" for p in PRINTED])
def test_printed_value_reproduced(name: str, inputs: dict[str, list[list[float]]], printed: float,
                                  device: str) -> None:
    result = run.evaluate(cases.get(name), {k: np.array(v) for k, v in inputs.items()}, torch.float32, device,
                          reductions=("mean",), gradients=False)
    q = result.get("mean")
    if device == "cpu":  # the tutorial printed CPU values
        assert float(q.got) == printed
    else:  # CUDA sums the mean in another order (seen on an H100 with torch 2.11: one ULP away for three values)
        assert abs(float(q.got) - printed) <= float(np.spacing(np.float32(printed)))
    assert q.truth.determined.all()
    assert abs(float(q.truth.hi) - printed) <= FLOAT32.eps * printed  # a float32 rounding or two away
    assert Label(int(q.metrics.labels)) in (Label.EXACT, Label.OK)


def _float32_log_softmax_inputs() -> np.ndarray:
    """log(softmax(x)) in float32 as the tutorial writes it: the kl_div case takes these as its input."""
    return torch.log(torch.softmax(torch.tensor(LOGITS, dtype=torch.float32), dim=1)).double().numpy()


def _exact_kl_batchmean(inputs: np.ndarray) -> Fraction:
    """Independent exact value: sum t (log t - x) over the float32 inputs, / batch size, at 400 bits."""
    targets = torch.tensor(KL_TARGETS, dtype=torch.float32).double().numpy()
    with mpmath.workprec(400):
        total = mpmath.fsum(mpmath.mpf(t) * (mpmath.log(mpmath.mpf(t)) - mpmath.mpf(x))
                            for t, x in zip(targets.ravel().tolist(), inputs.ravel().tolist(), strict=True)) / 2
        sign, man, exp, _ = total._mpf_
        return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp)


@pytest.mark.parametrize("device", DEVICES)
def test_kl_div_batchmean_of_float32_log_softmax(device: str) -> None:
    """Printed as 0.057796258479356766 by an older torch; torch 2.13 returns 0.05779624730348587; the exact
    value for those float32 inputs is 0.0577962690421033..., so both are several ULPs off."""
    inputs = _float32_log_softmax_inputs()
    result = run.evaluate(cases.get("kl_div"), {"input": inputs, "target": np.array(KL_TARGETS)}, torch.float32,
                          device, reductions=("batchmean",), gradients=False)
    q = result.get("batchmean")
    exact = Fraction(float(q.truth.hi)) + Fraction(float(q.truth.lo))
    assert f"{float(q.truth.hi):.17g}".startswith("0.0577962690421033")
    assert float(q.truth.hi) == 0.05779626904210333
    assert abs(exact - _exact_kl_batchmean(inputs)) <= exact * Fraction(2) ** -100
    if torch.__version__.startswith("2.13") and device == "cpu":
        assert float(q.got) == 0.05779624730348587
        assert float(q.metrics.ordinal_distance) == 6.0
        assert float(q.metrics.ulp_error) == pytest.approx(5.8354156911354655, rel=1e-12)
    older = Fraction(0.057796258479356766)
    ulp = Fraction(2) ** -28  # float32 ULP in [2^-5, 2^-4)
    assert abs(older - exact) / ulp > 1.5  # the older print is off by several ULPs as well
