"""Where two runs of one case on the same inputs disagree: eager against compile or autocast, CPU against
CUDA.  A point differs when its labels differ or its ULP errors differ by more than the budget; the result
counts such points per quantity, gives the largest ULP gap and a few example points.  :func:`evaluate_sides`
runs the sides on one set of inputs with one shared truth; :func:`compare` only compares
:class:`suite.run.CaseResult` objects.

    a = run.evaluate(case, inputs, "float16", mode="eager")
    b = run.evaluate(case, inputs, "float16", mode="compile", truth_set=a.truth)
    compare.compare(a, b).to_dict()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from suite import dtypes, modes, run, truth_cache
from suite.cases.base import Case
from suite.dtypes import FloatArray, FloatFormat
from suite.judge import failing
from suite.metrics import Label, ordinal_gap, ulp_error
from suite.report.schema import encode_float
from suite.run import CaseResult, QuantityResult
from suite.truth import TruthSet

#: Example points kept per quantity (largest ULP gaps first, then label differences).
EXAMPLES = 5

BoolArray = npt.NDArray[np.bool_]


Side = tuple[str, str]  # (device, mode)


def evaluate_sides(case: Case, inputs: Mapping[str, npt.ArrayLike], dtype: str, sides: Sequence[Side], *,
                   reductions: tuple[str, ...] | None = None, gradients: bool = True,
                   truth_set: TruthSet | None = None, cache: bool = True, workers: int | None = None,
                   ) -> dict[Side, CaseResult]:
    """Run ``case`` on the same ``inputs`` (rounded to ``dtype``) for every ``(device, mode)`` side, with
    one truth shared by all (computed once, through the on-disk cache with ``cache``).  Compilation happens
    inside :func:`strict_compile`; its time is never measured here."""
    used = run.prepare_inputs(case, inputs, dtypes.get(dtype))
    if truth_set is None:
        truth_set = truth_cache.cached_truth(case, used, workers=workers, cache=cache)
    results = {}
    with modes.strict_compile():
        for device, mode in sides:
            results[(device, mode)] = run.evaluate(case, used, dtype, device, mode=mode, reductions=reductions,
                                                   gradients=gradients, truth_set=truth_set)
    return results


@dataclass
class QuantityDiff:
    """Disagreement of one quantity (loss or a gradient) under one reduction.

    ``points``: elements compared; ``label_differs``: elements whose labels differ (``failing_differs`` of
    them with a never-acceptable label on one side at least: not an exact/ok flip, which the budget allows);
    ``ulp_differs``: elements with the same label whose ULP errors differ by more than ``budget``;
    ``differing``: label or ULP differences;
    ``bitwise_differs``: elements whose values are not the same bits (NaN equals NaN).  ULP errors are in
    ``unit``, the coarser of the two output formats, so results of different formats (autocast) compare.
    """

    reduction: str
    quantity: str
    points: int
    label_differs: int
    ulp_differs: int
    differing: int
    failing_differs: int
    bitwise_differs: int
    largest_gap: float | None
    unit: str
    formats: tuple[str, str]
    errors: tuple[str | None, str | None]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "quantity": self.quantity, "points": self.points,
                "label_differs": self.label_differs, "failing_differs": self.failing_differs,
                "ulp_differs": self.ulp_differs, "differing": self.differing,
                "bitwise_differs": self.bitwise_differs, "largest_ulp_gap": encode_float(self.largest_gap),
                "unit": self.unit, "formats": list(self.formats), "errors": list(self.errors),
                "examples": self.examples}


@dataclass
class Comparison:
    """All quantities of two runs ``a`` and ``b`` (described as ``device/mode``) of one case and dtype."""

    case: str
    dtype: str
    a: str
    b: str
    budget: float
    quantities: list[QuantityDiff]

    @property
    def differing(self) -> int:
        return sum(q.differing for q in self.quantities)

    @property
    def largest_gap(self) -> float | None:
        gaps = [q.largest_gap for q in self.quantities if q.largest_gap is not None]
        return max(gaps) if gaps else None

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "dtype": self.dtype, "a": self.a, "b": self.b, "budget": self.budget,
                "differing": self.differing, "largest_ulp_gap": encode_float(self.largest_gap),
                "quantities": [q.to_dict() for q in self.quantities]}


def describe(result: CaseResult) -> str:
    """``device/mode`` of a result, the name of one side of a comparison."""
    return f"{result.device}/{result.mode}"


def same_inputs(a: CaseResult, b: CaseResult) -> bool:
    """True when both results were measured on the same case and bit-identical inputs (NaN equals NaN, +0 is
    not -0)."""
    if a.case.name != b.case.name or set(a.inputs) != set(b.inputs):
        return False
    return all(a.inputs[k].shape == b.inputs[k].shape and not _bitwise_differs(a.inputs[k], b.inputs[k]).any()
               for k in a.inputs)


def coarser(f: FloatFormat, g: FloatFormat) -> FloatFormat:
    """The format with fewer significand bits (the larger ULP), ``f`` on a tie."""
    return g if g.precision < f.precision else f


def compare(a: CaseResult, b: CaseResult, *, budget: float | None = None, examples: int = EXAMPLES) -> Comparison:
    """Compare every quantity the two results share.  ``budget`` defaults to the larger of the two results'
    ULP budgets.  ValueError when the inputs differ (the comparison would mean nothing)."""
    if not same_inputs(a, b):
        raise ValueError(f"cannot compare {describe(a)} with {describe(b)}: different case or inputs")
    shared = [key for key in a.quantities if key in b.quantities]
    if budget is None:
        budgets = [q.metrics.budget for r in (a, b) for q in r.quantities.values()]
        budget = max(budgets) if budgets else 0.0
    diffs = [compare_quantity(a, a.quantities[k], b.quantities[k], budget, examples) for k in shared]
    return Comparison(a.case.name, a.fmt.name, describe(a), describe(b), budget, diffs)


def _ulps(q: QuantityResult, unit: FloatFormat) -> FloatArray:
    if q.fmt.name == unit.name:
        return q.metrics.ulp_error
    return ulp_error(q.got, q.truth, unit)


def _bitwise_differs(x: FloatArray, y: FloatArray) -> BoolArray:
    """Where two arrays of values differ as floats do in bits: +0 against -0 differs, NaN against NaN does not."""
    same = (x == y) & (np.signbit(x) == np.signbit(y)) | (np.isnan(x) & np.isnan(y))
    result: BoolArray = ~same
    return result


def _unbounded_gap(x: FloatArray, y: FloatArray, unit: FloatFormat) -> FloatArray:
    """The gap where both sides' ULP errors are unbounded (a clamp or a spurious inf on each side): the number of
    values of ``unit`` between the two results, 0 where they are the same value (BCE's 100 and 11 are far
    apart although both are infinitely wrong)."""
    out = np.zeros(np.shape(x))
    pick = ~np.isnan(x) & ~np.isnan(y)
    if pick.any():
        out[pick] = ordinal_gap(dtypes.round_array(x[pick], unit), dtypes.round_array(y[pick], unit), unit)
    return out


def compare_quantity(result: CaseResult, qa: QuantityResult, qb: QuantityResult, budget: float,
                     examples: int = EXAMPLES) -> QuantityDiff:
    """Disagreement of two measurements of one quantity on the inputs of ``result``."""
    unit = coarser(qa.fmt, qb.fmt)
    ua, ub = _ulps(qa, unit), _ulps(qb, unit)
    la, lb = qa.metrics.labels, qb.metrics.labels
    with np.errstate(invalid="ignore"):
        gap = np.abs(ua - ub)
    gap = np.where(np.isinf(ua) & np.isinf(ub), _unbounded_gap(qa.got, qb.got, unit), gap)
    label_differs = la != lb
    ulp_differs = ~label_differs & (np.nan_to_num(gap, nan=0.0) > budget)
    differing = label_differs | ulp_differs
    finite_gap = gap[~np.isnan(gap)]
    largest = float(finite_gap.max()) if finite_gap.size else None
    failing_differs = label_differs & (failing(qa) | failing(qb))
    return QuantityDiff(
        qa.reduction, qa.quantity, int(la.size), int(label_differs.sum()), int(ulp_differs.sum()),
        int(differing.sum()), int(failing_differs.sum()), int(_bitwise_differs(qa.got, qb.got).sum()), largest,
        unit.name, (qa.fmt.name, qb.fmt.name), (qa.error, qb.error),
        _examples(result, qa, qb, ua, ub, gap, differing, examples))


def _examples(result: CaseResult, qa: QuantityResult, qb: QuantityResult, ua: FloatArray, ub: FloatArray,
              gap: FloatArray, differing: BoolArray, count: int) -> list[dict[str, Any]]:
    """The ``count`` differing points with the largest gaps (a label difference without a measurable gap,
    such as NaN against a number, ranks as an infinite gap)."""
    flat = np.flatnonzero(differing)
    if flat.size == 0 or count <= 0:
        return []
    rank = np.nan_to_num(gap.reshape(-1)[flat], nan=math.inf)
    chosen = flat[np.argsort(-rank, kind="stable")[:count]]
    out = []
    for i in chosen:
        index = np.unravel_index(i, differing.shape) if differing.ndim else ()
        out.append({"index": [int(j) for j in index], "inputs": point_inputs(result, qa.got.shape, index),
                    "truth": encode_float(float(qa.truth.hi[index])),
                    "got": [encode_float(float(qa.got[index])), encode_float(float(qb.got[index]))],
                    "labels": [Label(int(qa.metrics.labels[index])).text, Label(int(qb.metrics.labels[index])).text],
                    "ulp_error": [encode_float(float(ua[index])), encode_float(float(ub[index]))],
                    "gap": encode_float(float(gap[index]))})
    return out


def point_inputs(result: CaseResult, shape: tuple[int, ...], index: tuple[Any, ...]) -> dict[str, Any]:
    """The input values at an element of a quantity of ``shape`` (none for a reduced scalar)."""
    if not shape:
        return {}
    return {name: encode_float(float(np.broadcast_to(values, shape)[index]))
            for name, values in result.inputs.items()}


@dataclass
class SideComparisons:
    """What one case and dtype run on several sides gives the report: each mode against eager on the same
    device, each device against CPU in the same mode, and the autocast dtype (or error) of the loss."""

    by_mode: list[Comparison] = field(default_factory=list)
    by_device: list[Comparison] = field(default_factory=list)
    autocast: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: SideComparisons) -> None:
        self.by_mode += other.by_mode
        self.by_device += other.by_device
        self.autocast += other.autocast


def compare_sides(results: Mapping[Side, CaseResult]) -> SideComparisons:
    """Compare the results of one case and dtype on every ``(device, mode)`` side (same inputs, one truth)."""
    out = SideComparisons()
    for (device, mode), result in results.items():
        if mode != "eager" and (device, "eager") in results:
            out.by_mode.append(compare(results[(device, "eager")], result))
        if device != "cpu" and ("cpu", mode) in results:
            out.by_device.append(compare(results[("cpu", mode)], result))
        if mode == "autocast":
            out.autocast.append(autocast_record(result))
    return out


def autocast_record(result: CaseResult) -> dict[str, Any]:
    """The dtype autocast gave the loss under the first reduction run (``none`` when it ran), or its error."""
    reductions = list(dict.fromkeys(r for r, _ in result.quantities))
    reduction = "none" if "none" in reductions else reductions[0]
    loss = result.get(reduction, run.LOSS)
    return {"case": result.case.name, "dtype": result.fmt.name, "device": result.device, "reduction": reduction,
            "result_dtype": None if loss.error else loss.fmt.name, "error": loss.error}
