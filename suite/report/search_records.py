"""The report's targeted search: for one case, dtype and device, :func:`suite.search.worst_inputs` (eager, a
fixed seed) climbs toward the worst input of each quantity of each of the case's reductions: the reduced loss
of a drawn batch is finite where the grid's, over infinite and clamped elements, never is.  Each worst input becomes a
``search`` record of ``accuracy.json`` (the search's own summary, :func:`suite.search.as_record`, plus the
worst element re-measured, its verdict and a torch-only reproducer); an unexplained failing one is also a
finding attributed ``"new (search)"`` (:func:`suite.report.findings.search_finding`), listed with the grid's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from suite import judge, run, search
from suite.cases.base import Case
from suite.dtypes import FloatArray, FloatFormat
from suite.report import findings
from suite.report.schema import SEARCH_ATTRIBUTION, encode_float

MODE = "eager"


def _batch_key(inputs: Mapping[str, FloatArray]) -> tuple[Any, ...]:
    return tuple((k, v.shape, np.asarray(v, np.float64).tobytes()) for k, v in sorted(inputs.items()))


def _attribution(verdict: judge.Verdict, index: tuple[int, ...]) -> str | None:
    """``None`` when the element passes, the known deviation explaining it, or :data:`SEARCH_ATTRIBUTION`."""
    if not verdict.failing[index]:
        return None
    for deviation, mask in verdict.known.items():
        if mask[index]:
            return f"known: {deviation}"
    return SEARCH_ATTRIBUTION


def search_case(case: Case, fmt: FloatFormat, device: str, examples: int, seed: int, torch_version: str,
                plugin: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Search records of every quantity and reduction of ``case`` in ``fmt`` on ``device``, and the findings
    among them.

    The worst batch of each quantity is evaluated again (same inputs, so the same values) to measure the
    worst element in full, judge it (the record's ``unexplained`` and ``attribution``) and write its
    reproducer with the grid findings' helpers.
    """
    how = f"{examples} examples, seed {seed}"
    records: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    for reduction in case.reductions:
        worst = search.worst_inputs(case, fmt.name, device, reduction=reduction, max_examples=examples, seed=seed,
                                    mode=MODE)
        evaluated: dict[tuple[Any, ...], run.CaseResult] = {}
        for quantity, w in worst.items():
            key = _batch_key(w.inputs)
            if key not in evaluated:
                evaluated[key] = run.evaluate(case, w.inputs, fmt, device, reductions=(reduction,), mode=MODE)
            result = evaluated[key]
            q = result.get(reduction, quantity)
            attribution = _attribution(judge.judge(result, q, torch_version), w.index)
            record = dict(search.as_record(w))
            record.update({
                "key": findings.result_key(result, q), "case": case.name, "dtype": fmt.name, "device": device,
                "mode": MODE, "examples": examples, "seed": seed, "score": record["algorithmic_ulp"],
                "algorithmic_ulp": encode_float(float(q.metrics.algorithmic_ulp[w.index])),
                "attribution": attribution, "unexplained": attribution == SEARCH_ATTRIBUTION,
                "worst": findings.point(result, q, w.index),
                "reproducer": findings.reproducer_for(result, q, w.index, torch_version, plugin),
            })
            records.append(record)
            if attribution == SEARCH_ATTRIBUTION:
                found.append(findings.search_finding(result, q, w.index, torch_version, plugin, how))
    return records, found
