"""Findings: each distinct problem of one quantity as one record.

Failing elements (as :func:`suite.judge.failing` decides: a never-acceptable label; ``inaccurate`` is an ULP
excess) are grouped per label into regions along the case's main input: maximal runs of grid values of the
main input where the label occurs, at most :data:`MAX_REGIONS` per label (the largest gaps split them).
Each finding has its region, the values of the other inputs there, its worst point, a copy-paste
reproducer and an attribution to a
registered known torch deviation (``"known: <id>"``, as :func:`suite.judge.judge` matches them) or ``"new"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from suite import judge
from suite.dtypes import FloatArray
from suite.inputs import grids
from suite.metrics import Label
from suite.report import reproducer
from suite.report.safe_range import TYPICAL
from suite.report.schema import SEARCH_ATTRIBUTION, encode_float, key_of
from suite.run import CaseResult, QuantityResult

MAX_REGIONS = 4
MAX_LISTED = 6  # other-input values listed one by one up to this many, else as a range

BoolArray = npt.NDArray[np.bool_]


def group_regions(x: npt.ArrayLike, mask: npt.ArrayLike, max_regions: int = MAX_REGIONS) -> list[tuple[float, float]]:
    """Intervals ``[low, high]`` of grid values of ``x`` covering the elements in ``mask``.

    Grid values of ``x`` (distinct values of all elements) where some masked element lies form runs; a run
    ends at a grid value without one.  With more than ``max_regions`` runs, only the largest gaps (in grid
    values) split them.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    m = np.asarray(mask, dtype=bool).reshape(-1) & ~np.isnan(xs)
    if not m.any():
        return []
    values, inverse = np.unique(xs[~np.isnan(xs)], return_inverse=True)
    hit = np.zeros(values.size, bool)
    hit[inverse[m[~np.isnan(xs)]]] = True
    index = np.flatnonzero(hit)
    gaps = np.diff(index) - 1
    splits = np.flatnonzero(gaps > 0)
    if splits.size > max_regions - 1:
        largest = np.argsort(gaps[splits], kind="stable")[::-1][: max_regions - 1]
        splits = np.sort(splits[largest])
    starts = np.r_[0, splits + 1]
    ends = np.r_[splits, index.size - 1]
    return [(float(values[index[s]]), float(values[index[e]])) for s, e in zip(starts, ends, strict=True)]


def broadcast_inputs(result: CaseResult, shape: tuple[int, ...]) -> dict[str, FloatArray]:
    """Every input of the case at every element of a quantity of ``shape``."""
    return {k: np.broadcast_to(v, shape) for k, v in result.inputs.items()}


def main_values(result: CaseResult, shape: tuple[int, ...]) -> FloatArray:
    """The main-input value each element of a quantity of ``shape`` belongs to (a row's swept slot-0 logit
    for row cases, :func:`suite.inputs.grids.main_values`)."""
    return np.broadcast_to(grids.main_values(result.case, result.inputs), shape)


def _sample(result: CaseResult, index: tuple[int, ...]) -> tuple[dict[str, list[float]], int]:
    """The sample (an element, or its row) holding element ``index``, and the element's place in it."""
    case = result.case
    shape = result.truth.values.shape
    full = broadcast_inputs(result, shape)
    if case.rows:
        return {k: [float(v) for v in full[k][index[:-1]]] for k in full}, int(index[-1])
    return {k: [float(full[k][index])] for k in full}, 0


def point(result: CaseResult, q: QuantityResult, index: tuple[int, ...]) -> dict[str, Any]:
    """The JSON record of one element of a quantity."""
    sample, element = _sample(result, index) if q.got.ndim else ({}, 0)
    inputs: dict[str, Any] = {}
    for name, values in sample.items():
        encoded = [encode_float(v) for v in values]
        inputs[name] = encoded if result.case.rows else encoded[0]
    return {"inputs": inputs or None, "index": [int(i) for i in index], "element": element,
            "got": encode_float(float(q.got[index])), "exact": encode_float(float(q.truth.hi[index])),
            "ulp_error": encode_float(float(q.metrics.ulp_error[index])),
            "bits_error": encode_float(float(q.metrics.bits_error[index])),
            "label": Label(int(q.metrics.labels[index])).text}


def worst_index(q: QuantityResult, mask: BoolArray, x: FloatArray | None, center: float) -> tuple[int, ...]:
    """Element of ``mask`` with the largest ULP error; where none has one (NaN), the one whose main input
    is nearest the typical value ``center``."""
    score = np.where(mask, np.nan_to_num(q.metrics.ulp_error, nan=-np.inf, posinf=np.inf), -np.inf)
    if np.isfinite(score).any() or np.isposinf(score).any():
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), mask.shape))
    assert x is not None
    distance = np.where(mask & ~np.isnan(x), np.abs(np.nan_to_num(x - center, nan=np.inf)), np.inf)
    if not np.isfinite(distance).any():
        distance = np.where(mask, 0.0, np.inf)
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(distance)), mask.shape))


def _others(result: CaseResult, full: Mapping[str, FloatArray], mask: BoolArray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in result.case.inputs[1:]:
        values = np.unique(full[spec.name][mask])
        values = values[~np.isnan(values)]
        if values.size <= MAX_LISTED:
            out[spec.name] = {"values": [encode_float(float(v)) for v in values]}
        else:
            out[spec.name] = {"low": encode_float(float(values[0])), "high": encode_float(float(values[-1])),
                              "distinct": int(values.size)}
    return out


def reproducer_for(result: CaseResult, q: QuantityResult, index: tuple[int, ...], torch_version: str,
                   plugin: str | None = None) -> str:
    """Torch-only Python source that recomputes element ``index`` of quantity ``q`` of ``result`` and prints
    it next to the exact value (:func:`suite.report.reproducer.snippet`); ``plugin`` is the module that
    registered a user's case (imported by the snippet when the case is not a plain torch expression).  A reduced
    loss (a scalar) is recomputed from the whole batch, every input in its measured shape."""
    if q.got.ndim == 0:
        batch = {k: np.asarray(v).tolist() for k, v in result.inputs.items()}
        p = reproducer.Point(batch, result.fmt.name, result.device, result.mode, q.reduction, q.quantity, 0,
                             float(q.truth.hi[()]), float(q.got[()]), torch_version, batch=True)
        return reproducer.snippet(result.case, p, plugin)
    sample, element = _sample(result, index)
    if q.reduction == "none":  # copies of the sample: torch's vectorised loop, as in the measured batch
        shape = (reproducer.UNREDUCED_COPIES, *((len(next(iter(sample.values()))),) if result.case.rows else ()))
    else:
        shape = tuple(int(s) for s in result.truth.values.shape)
    p = reproducer.Point(sample, result.fmt.name, result.device, result.mode, q.reduction, q.quantity, element,
                         float(q.truth.hi[index]), float(q.got[index]), torch_version, shape)
    return reproducer.snippet(result.case, p, plugin)


def _finding_id(record: Mapping[str, Any], low: Any, high: Any) -> str:
    """A finding's id, stable across runs: its result, label, region and attribution (elements that several
    known deviations explain are listed once under each, and each of those findings has an id of its own)."""
    text = f"{record['key']}|{record['label']}|{low}|{high}|{record['attribution']}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def result_key(result: CaseResult, q: QuantityResult) -> str:
    return key_of(result.case.name, result.fmt.name, result.device, result.mode, q.reduction, q.quantity)


def find(result: CaseResult, torch_version: str, plugin: str | None = None) -> list[dict[str, Any]]:
    """Every finding of every quantity of a case result (failing elements as :mod:`suite.judge` rules,
    split into those a known deviation explains, per deviation, and the new ones)."""
    out: list[dict[str, Any]] = []
    for q in result.quantities.values():
        verdict = judge.judge(result, q, torch_version)
        if not verdict.failing.any():
            continue
        parts = [(f"known: {i}", mask) for i, mask in verdict.known.items()] + [("new", verdict.unexplained)]
        for attribution, mask in parts:
            if not mask.any():
                continue
            if q.got.ndim == 0:
                out.append(_scalar_finding(result, q, torch_version, plugin, attribution))
            else:
                out.extend(_element_findings(result, q, mask, torch_version, plugin, attribution))
    return out


def _base(result: CaseResult, q: QuantityResult, label: Label, attribution: str) -> dict[str, Any]:
    return {"key": result_key(result, q), "case": result.case.name, "dtype": result.fmt.name,
            "device": result.device, "mode": result.mode, "reduction": q.reduction, "quantity": q.quantity,
            "kind": "ulp_excess" if label == Label.INACCURATE else "label", "label": label.text,
            "input": result.case.main_input.name, "attribution": attribution}


def _element_findings(result: CaseResult, q: QuantityResult, failing: BoolArray, torch_version: str,
                      plugin: str | None, attribution: str) -> list[dict[str, Any]]:
    case = result.case
    full = broadcast_inputs(result, q.got.shape)
    x = main_values(result, q.got.shape)
    center = TYPICAL.get(case.main_input.kind, 0.0)
    out = []
    for code in np.unique(q.metrics.labels[failing]):
        label = Label(int(code))
        labelled = failing & (q.metrics.labels == label)
        for low, high in group_regions(x, labelled):
            mask = labelled & (x >= low) & (x <= high)
            index = worst_index(q, mask, x, center)
            count = int(mask.sum())
            record = _base(result, q, label, attribution)
            record.update({
                "id": _finding_id(record, low, high), "count": count,
                "region": {"low": encode_float(low), "high": encode_float(high),
                           "values": int(np.unique(x[mask]).size)},
                "others": _others(result, full, mask), "worst": point(result, q, index),
                "description": f"{label.text} for {case.main_input.name} in [{low!r}, {high!r}]: {count} of "
                               f"{q.got.size} elements",
                "reproducer": reproducer_for(result, q, index, torch_version, plugin),
            })
            out.append(record)
    return out


def _scalar_finding(result: CaseResult, q: QuantityResult, torch_version: str, plugin: str | None,
                    attribution: str) -> dict[str, Any]:
    """A reduced loss is one value: its finding points to the element of the unreduced loss that is worst
    on its own (same label where there is one) and reproduces that element."""
    label = Label(int(q.metrics.labels))
    record = _base(result, q, label, attribution)
    case = result.case
    n = int(np.prod(result.truth.values.shape))
    record.update({"id": _finding_id(record, None, None), "count": 1, "region": None,
                   "others": {}, "worst": point(result, q, ()),
                   "description": f"the {q.reduction} over the whole grid ({n} elements) is {label.text}",
                   "reproducer": f"# the {q.reduction} over the grid is {label.text}; no element fails on its own\n"})
    elementwise = result.quantities.get(("none", q.quantity))
    if elementwise is not None:
        fails = judge.failing(elementwise)
        same = fails & (elementwise.metrics.labels == label)
        mask = same if same.any() else fails
        if mask.any():
            x = main_values(result, elementwise.got.shape)
            index = worst_index(elementwise, mask, x, TYPICAL.get(case.main_input.kind, 0.0))
            record["driver"] = point(result, elementwise, index)
            note = (f"# the {q.reduction} over the grid is {label.text}; this element, "
                    f"{record['driver']['label']} on its own, drives it\n")
            record["reproducer"] = note + reproducer_for(result, elementwise, index, torch_version, plugin)
    return record


def search_finding(result: CaseResult, q: QuantityResult, index: tuple[int, ...], torch_version: str,
                   plugin: str | None, how: str) -> dict[str, Any]:
    """The finding of one failing element the targeted search found (``how``: the search's settings, for the
    description): a one-element region at its main-input value, or for a reduced value the drawn batch,
    attributed :data:`SEARCH_ATTRIBUTION`."""
    if q.got.ndim == 0:
        label = Label(int(q.metrics.labels))
        record = _base(result, q, label, SEARCH_ATTRIBUTION)
        n = int(np.prod(result.truth.values.shape))
        record.update({"id": _finding_id({**record, "key": record["key"] + "|search"}, n, n), "count": 1,
                       "region": None, "others": {}, "worst": point(result, q, ()),
                       "description": f"the {q.reduction} of a drawn batch of {n} elements is {label.text}: the "
                                      f"worst input of {q.quantity} the targeted search found ({how})",
                       "reproducer": reproducer_for(result, q, (), torch_version, plugin)})
        return record
    mask = np.zeros(q.got.shape, bool)
    mask[index] = True
    (record,) = _element_findings(result, q, mask, torch_version, plugin, SEARCH_ATTRIBUTION)
    x = float(main_values(result, q.got.shape)[index])
    record["id"] = _finding_id({**record, "key": record["key"] + "|search"}, x, x)
    record["description"] = (f"{record['label']} at {result.case.main_input.name} = {x!r}: the worst input of "
                             f"{q.quantity} the targeted search found ({how})")
    return record
