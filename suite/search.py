"""Targeted search for the worst input of a case: Hypothesis draws batches from the strategies and
``hypothesis.target`` steers it toward larger algorithmic ULP error (and bits of error), so the search climbs
toward the worst inputs instead of sampling blindly.  Used by the report; the property tests steer the same
way through :func:`steer`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
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


def element_scores(q: run.QuantityResult) -> np.ndarray:
    """Per element, what the search climbs: the algorithmic ULP error (inf clipped to :data:`TARGET_CAP`), the
    cap for a NaN where the truth is defined (the worst failure, whose ULP error is NaN), and -1 where nothing
    can be judged (an undefined or undetermined truth, another NaN error)."""
    labels = q.metrics.labels
    ulps = np.minimum(np.nan_to_num(q.metrics.algorithmic_ulp, nan=-1.0, posinf=TARGET_CAP), TARGET_CAP)
    ulps = np.where(labels == Label.NAN, TARGET_CAP, ulps)
    return np.where(np.isin(labels, [Label.UNDEFINED, Label.UNDETERMINED]), -1.0, ulps)


def score(q: run.QuantityResult, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Worst :func:`element_scores` and bits of error of a quantity's considered elements (those with a
    defined, determined truth), within ``mask`` when given; (0, 0) when none is considered."""
    considered = ~np.isin(q.metrics.labels, [Label.UNDEFINED, Label.UNDETERMINED])
    if mask is not None:
        considered &= mask
    if not considered.any():
        return 0.0, 0.0
    ulps = np.maximum(element_scores(q)[considered], 0.0)
    bits = np.nan_to_num(q.metrics.bits_error[considered], nan=0.0)
    return float(ulps.max()), float(bits.max())


def steer(q: run.QuantityResult, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Report a quantity's score to Hypothesis (inside a ``@given`` test) and return it."""
    ulps, bits = score(q, mask)
    key = f"{q.reduction}/{q.quantity}"
    target(ulps, label=f"algorithmic ULP error {key}")
    target(bits, label=f"bits of error {key}")
    return ulps, bits


def _steer_residual(result: run.CaseResult, q: run.QuantityResult) -> None:
    """For a reduced loss, also climb toward a larger error of the reduction itself (against the exact reduction
    of torch's own elements, :func:`suite.judge.reduction_residual`): a wrong divisor or a 16-bit accumulator
    shows only on batches whose elements are finite, which the score's climb toward NaN and inf leaves behind."""
    residual = judge.reduction_residual(result, q)
    if residual is not None:
        value = float(np.nan_to_num(residual.algorithmic_ulp, nan=0.0, posinf=TARGET_CAP))
        target(min(value, TARGET_CAP), label=f"reduction's own ULP error {q.reduction}/{q.quantity}")


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

    @property
    def rank(self) -> tuple[bool, float, float]:
        """A batch with a failure no known deviation explains outranks any other, then the larger score."""
        return self.unexplained, self.algorithmic_ulp, self.bits


@contextlib.contextmanager
def without_local_constants() -> Iterator[None]:
    """Draw from Hypothesis's global constants only.  Hypothesis (6.131 on) also mixes in the literal constants
    of every "local" module imported at the time (the suite's, a plugin's, the kernels torch.compile writes
    to /tmp), with a time limit on collecting them, so the same seed would draw other inputs in another
    process or after other work.  This uses Hypothesis internals (``_get_local_constants`` and its cache);
    where they are absent there is nothing to switch off."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
        cache = providers.CONSTANTS_CACHE.cache
        original = providers._get_local_constants
    except (ImportError, AttributeError):
        yield
        return
    cache.clear()  # drawn-from tuples cached with the local constants of earlier draws
    providers._get_local_constants = lambda: Constants()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


def worst_inputs(case: Case, dtype: str, device: str = "cpu", *, reduction: str = "none", max_examples: int = 200,
                 seed: int = 0, mode: str = "eager") -> dict[str, Worst]:
    """Search for the inputs with the largest algorithmic ULP error of each quantity of ``case`` under
    ``reduction``, preferring a batch where some failure is explained by no known deviation (:attr:`Worst.rank`);
    deterministic for a given ``seed``, whatever the process imported before (:func:`without_local_constants`)."""
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
            _steer_residual(result, q)
            consider(found.setdefault(quantity, Worst(quantity, reduction)), result, q, ulps, bits)

    with without_local_constants():
        explore()
    return found


def consider(best: Worst, result: run.CaseResult, q: run.QuantityResult, ulps: float, bits: float) -> None:
    """Keep ``result``'s batch as ``best`` when it outranks it (:attr:`Worst.rank`; ``ulps`` and ``bits`` are
    its :func:`score`)."""
    if ulps < best.algorithmic_ulp and best.unexplained:
        return  # cannot outrank it: spare the judging
    verdict = judge.judge(result, q)
    if (bool(verdict.unexplained.any()), ulps, bits) > best.rank:
        _record(best, result, q, verdict, ulps, bits)


def _record(best: Worst, result: run.CaseResult, q: run.QuantityResult, verdict: judge.Verdict, ulps: float,
            bits: float) -> None:
    """Keep this batch as ``best``, pointing at its worst unexplained failing element where it has one, else at
    its worst element: a known deviation's larger error elsewhere in the batch must not hide a new failure."""
    scores = element_scores(q)
    if verdict.unexplained.any():
        scores = np.where(verdict.unexplained, scores, -2.0)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(scores)), scores.shape)) if q.got.ndim else ()
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
