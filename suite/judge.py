"""The verdict on a measured quantity: which elements fail the budgets, and which of those a registered
known deviation explains.  Tests and reports both ask here, so they never disagree."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from suite import budgets, deviations
from suite.metrics import Label
from suite.run import LOSS, CaseResult, QuantityResult

BoolArray = npt.NDArray[np.bool_]


@dataclass
class Verdict:
    """``failing``: elements with a never-acceptable label (see :func:`failing`).  ``known``: for each deviation
    id, the failing elements it explains.  ``unexplained``: failing and explained by none."""

    failing: BoolArray
    known: dict[str, BoolArray] = field(default_factory=dict)

    @property
    def unexplained(self) -> BoolArray:
        explained = np.zeros_like(self.failing)
        for mask in self.known.values():
            explained |= mask
        result: BoolArray = self.failing & ~explained
        return result


def failing(q: QuantityResult) -> BoolArray:
    """Elements of a quantity with a never-acceptable label.  (Conditioning is already in the labels: a 0 at
    an ill-conditioned point whose error the conditioning explains, like ``sigmoid(x) - y`` at ``y = 1``, is
    ``ok``, not ``flushed``.)"""
    result: BoolArray = np.isin(q.metrics.labels, [int(Label[n.upper()]) for n in budgets.never_acceptable()])
    return result


def judge(result: CaseResult, q: QuantityResult, torch_version: str | None = None) -> Verdict:
    """Verdict on ``q`` (one quantity of ``result``).  Elementwise quantities are matched against deviation
    regions element by element; a reduced loss (a scalar) is explained by a deviation that covers, with the
    same label, any element of the batch's unreduced loss (the root cause) or the reduction itself."""
    version = torch_version or torch.__version__
    fails = failing(q)
    verdict = Verdict(fails)
    if not fails.any():
        return verdict
    case, dtype, device, mode = result.case.registry_name, result.fmt.name, result.device, result.mode
    scalar = q.got.ndim == 0
    for d in deviations.applicable(case, dtype, device, version, mode, q.quantity, q.reduction):
        if scalar:
            shape = result.truth.values.shape
            in_batch = d.in_region(result.inputs, shape).any()
            root = (result.quantities.get(("none", LOSS)))
            root_cause = root is not None and bool((d.in_region(result.inputs, shape) & failing(root)).any())
            hit = fails & d.explains(q.metrics.labels, q.metrics.algorithmic_ulp) & bool(in_batch or root_cause)
            if not hit.any() and root_cause:
                hit = fails.copy()
        else:
            hit = (fails & d.in_region(result.inputs, q.got.shape)
                   & d.explains(q.metrics.labels, q.metrics.algorithmic_ulp))
        if hit.any():
            verdict.known[d.id] = np.asarray(hit)
    return verdict
