"""Targeted search for the worst input of a case: Hypothesis draws batches from the strategies and
``hypothesis.target`` steers it toward larger algorithmic ULP error (and bits of error), so the search climbs
toward the worst inputs instead of sampling blindly.  Used by the report; the property tests steer the same
way through :func:`steer`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

from suite import judge, run
from suite.cases.base import Case
from suite.inputs import strategies
from suite.metrics import Label

#: ULP errors are clipped to this before being given to hypothesis.target (it needs finite numbers).
TARGET_CAP = 1e30


def score(q: run.QuantityResult, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Worst algorithmic ULP error (inf/NaN clipped) and bits of error of a quantity's considered elements
    (those with a defined, determined truth), within ``mask`` when given."""
    considered = ~np.isin(q.metrics.labels, [Label.UNDEFINED, Label.UNDETERMINED])
    if mask is not None:
        considered &= mask
    if not considered.any():
        return 0.0, 0.0
    ulps = np.nan_to_num(q.metrics.algorithmic_ulp[considered], nan=0.0, posinf=TARGET_CAP)
    bits = np.nan_to_num(q.metrics.bits_error[considered], nan=0.0)
    return float(min(ulps.max(), TARGET_CAP)), float(bits.max())


def steer(q: run.QuantityResult, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Report a quantity's score to Hypothesis (inside a ``@given`` test) and return it."""
    ulps, bits = score(q, mask)
    key = f"{q.reduction}/{q.quantity}"
    target(ulps, label=f"algorithmic ULP error {key}")
    target(bits, label=f"bits of error {key}")
    return ulps, bits


@dataclass
class Worst:
    """The worst input found for one quantity: its score, the batch, and the element."""

    quantity: str
    reduction: str
    algorithmic_ulp: float = -1.0
    bits: float = 0.0
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    index: tuple[int, ...] = ()
    label: str = ""
    unexplained: bool = False


@functools.cache
def load_every_suite_module() -> None:
    """Import every module of the suite package.  Hypothesis mixes the literal constants of the local
    modules imported at the time into what it draws, so without this the same seed would give other inputs
    in a process that happens to have imported other suite modules (a report worker, a test session)."""
    import suite

    for info in pkgutil.walk_packages(suite.__path__, "suite."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def worst_inputs(case: Case, dtype: str, device: str = "cpu", *, reduction: str = "none", max_examples: int = 200,
                 seed: int = 0, mode: str = "eager") -> dict[str, Worst]:
    """Search for the inputs with the largest algorithmic ULP error of each quantity of ``case`` under
    ``reduction``; deterministic for a given ``seed`` (and plugin modules)."""
    load_every_suite_module()
    found: dict[str, Worst] = {}

    @fixed_seed(seed)
    @settings(max_examples=max_examples, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate, Phase.target], suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        inputs = data.draw(strategies.case_inputs(case, dtype))
        result = run.evaluate(case, inputs, dtype, device, reductions=tuple(dict.fromkeys(("none", reduction))),
                              mode=mode)
        for (red, quantity), q in result.quantities.items():
            if red != reduction:
                continue
            ulps, bits = steer(q)
            best = found.setdefault(quantity, Worst(quantity, reduction))
            if (ulps, bits) > (best.algorithmic_ulp, best.bits):
                _record(best, result, q, ulps, bits)

    explore()
    return found


def _record(best: Worst, result: run.CaseResult, q: run.QuantityResult, ulps: float, bits: float) -> None:
    scores = np.nan_to_num(q.metrics.algorithmic_ulp, nan=-1.0, posinf=TARGET_CAP)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(scores)), scores.shape)) if q.got.ndim else ()
    verdict = judge.judge(result, q)
    best.algorithmic_ulp, best.bits = ulps, bits
    best.inputs = {k: np.array(v) for k, v in result.inputs.items()}
    best.index = index
    best.label = Label(int(q.metrics.labels[index])).text
    best.unexplained = bool(verdict.unexplained[index])


def as_record(worst: Worst) -> Mapping[str, Any]:
    """JSON-ready summary (inputs as nested lists; non-finite numbers as strings)."""
    def encode(v: float) -> Any:
        return v if np.isfinite(v) else str(v)

    return {"quantity": worst.quantity, "reduction": worst.reduction, "algorithmic_ulp": encode(worst.algorithmic_ulp),
            "bits": worst.bits, "label": worst.label, "unexplained": worst.unexplained, "index": list(worst.index),
            "inputs": {k: np.vectorize(encode, otypes=[object])(v).tolist() for k, v in worst.inputs.items()}}
