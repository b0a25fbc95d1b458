"""Dtype promotion: what torch does when the inputs of a loss come in different dtypes (logits in float16 and
targets in float32, weights in float64...): the dtype of the result (or the error it raises), and the ULP
error of the loss and each gradient against the exact value for the inputs *as given*, each in its own dtype
(the truth never sees a common dtype; a promotion that rounds an input first shows up as error).

    r = promotion.evaluate(cases.get("bce_with_logits"), {"input": "float16", "target": "float64"})
    r.result_dtype, r.quantities["loss"].max_ulp
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from suite import budgets, dtypes, modes, run, truth_cache
from suite.cases.base import Case
from suite.dtypes import FloatArray
from suite.inputs import grids
from suite.metrics import ElementMetrics, label_counts, measure
from suite.probes import first_line
from suite.report.schema import encode_float

#: Main-input values per promotion grid (crossed with the other inputs' small sets).
COUNT = 48
#: Dtypes crossed by :func:`combinations`.
QUICK_DTYPES = ("float32", "float16")


@dataclass
class Measured:
    """One quantity (the unreduced loss or a gradient) under mixed dtypes: its dtype, the largest ULP error
    (in that dtype, NaN errors aside), and the label counts that are not zero."""

    dtype: str
    max_ulp: float | None
    labels: dict[str, int]

    @classmethod
    def of(cls, fmt_name: str, m: ElementMetrics) -> Measured:
        finite = m.ulp_error[~np.isnan(m.ulp_error)]
        return cls(fmt_name, float(finite.max()) if finite.size else None,
                   {k: v for k, v in label_counts(m.labels).items() if v})

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "max_ulp": encode_float(self.max_ulp), "labels": self.labels}


@dataclass
class Promotion:
    """A case run with a dtype per input: the result dtype, or torch's error, and each quantity measured."""

    case: str
    input_dtypes: dict[str, str]
    device: str
    mode: str
    points: int
    result_dtype: str | None = None
    error: str | None = None
    quantities: dict[str, Measured] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "input_dtypes": self.input_dtypes, "device": self.device, "mode": self.mode,
                "points": self.points, "result_dtype": self.result_dtype, "error": self.error,
                "quantities": {k: v.to_dict() for k, v in self.quantities.items()}}


def inputs_for(case: Case, input_dtypes: Mapping[str, str], count: int = COUNT) -> dict[str, FloatArray]:
    """Quick-grid inputs of ``case``, each in its own dtype: the main input's grid in its dtype crossed with the
    other inputs' small sets rounded once to theirs (a rows case: its grid in the main dtype, rounded)."""
    main = dtypes.get(input_dtypes[case.main_input.name])
    if case.rows:
        grid = grids.case_grid(case, main, quick=True, count=count)
        return {k: dtypes.round_array(v, dtypes.get(input_dtypes[k])) for k, v in grid.items()}
    others = case.inputs[1:]
    axes = [dtypes.round_array(grids.other_values(s, dtypes.FLOAT64, quick=True), dtypes.get(input_dtypes[s.name]))
            for s in others]
    mesh = np.meshgrid(*axes, grids.main_grid(case, main, quick=True, count=count), indexing="ij")
    named = {case.main_input.name: mesh[-1], **{s.name: m for s, m in zip(others, mesh[:-1], strict=True)}}
    return {s.name: np.ascontiguousarray(named[s.name]) for s in case.inputs}


def evaluate(case: Case, input_dtypes: Mapping[str, str], device: str = "cpu", mode: str = "eager", *,
             count: int = COUNT, cache: bool = True) -> Promotion:
    """Run ``case`` with each input in its dtype (``input_dtypes`` names every input) with reduction
    ``none`` and measure the loss and gradients against the exact values for the inputs as given."""
    if set(input_dtypes) != {s.name for s in case.inputs}:
        raise ValueError(f"case {case.name!r} takes inputs {sorted(s.name for s in case.inputs)}")
    used = inputs_for(case, input_dtypes, count)
    truth_set = truth_cache.cached_truth(case, used, cache=cache)
    result = Promotion(case.name, dict(input_dtypes), device, mode, int(truth_set.values.hi.size))
    differentiable = set(case.differentiable)
    tensors = {k: run.to_tensor(v, dtypes.get(input_dtypes[k]), device, k in differentiable) for k, v in used.items()}
    forward = modes.first_call_forward(case, "none", mode, device)
    autocast_dtype = dtypes.get(input_dtypes[case.main_input.name]).torch_dtype
    try:
        with warnings.catch_warnings(), modes.context(mode, device, autocast_dtype):
            warnings.simplefilter("ignore")
            out = forward(tensors)
            out.backward(torch.ones_like(out))
    except Exception as exc:  # torch's error is the observation
        result.error = first_line(exc)
        return result
    out_fmt = dtypes.get(out.dtype)
    result.result_dtype = out_fmt.name
    budget = budgets.ulp_budget(case.name, out_fmt.name, device)
    got = run.to_carrier(out).reshape(truth_set.values.shape)
    result.quantities[run.LOSS] = Measured.of(out_fmt.name, measure(got, truth_set.values, out_fmt, budget,
                                                                    truth_set.condition))
    for name in case.differentiable:
        grad = tensors[name].grad
        if grad is None:
            continue
        g_fmt = dtypes.get(grad.dtype)
        g_budget = budgets.ulp_budget(case.name, g_fmt.name, device)
        m = measure(run.to_carrier(grad), truth_set.grads[name], g_fmt, g_budget, truth_set.grad_condition.get(name))
        result.quantities[run.grad_name(name)] = Measured.of(g_fmt.name, m)
    return result


def combinations(case: Case, dtype_names: Sequence[str] = QUICK_DTYPES) -> list[dict[str, str]]:
    """Mixed-dtype assignments of ``case``: the main input in each dtype, one other input at a time in each
    other dtype (the rest in the main input's dtype)."""
    out = []
    for a in dtype_names:
        for spec in case.inputs[1:]:
            for b in dtype_names:
                if b != a:
                    out.append({s.name: (b if s.name == spec.name else a) for s in case.inputs})
    return out


def evaluate_all(selected: Iterable[Case], dtype_names: Sequence[str] = QUICK_DTYPES, devices: Sequence[str] = ("cpu",),
                 mode: str = "eager", *, count: int = COUNT, cache: bool = True) -> list[Promotion]:
    """:func:`evaluate` for every case, device and assignment of :func:`combinations`."""
    return [evaluate(case, combo, device, mode, count=count, cache=cache)
            for case in selected for combo in combinations(case, dtype_names) for device in devices]
