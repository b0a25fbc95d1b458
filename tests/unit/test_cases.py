"""The case registry: functional and nn.Module forms agree bit for bit, the parameters it does not differentiate
are those torch refuses to, and users can register cases."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from suite import cases, run
from suite.cases import Case, InputSpec
from suite.truth import Reference
from tests.conftest import skip_where_torch_raises

#: A few values per input kind, inside each kind's domain.
VALUES = {
    "logit": [[-3.0, 0.5, 2.0], [17.0, -0.25, 0.0]],
    "probability": [[0.1, 0.5, 0.9], [1e-3, 0.75, 0.3]],
    "target": [[0.0, 0.3, 1.0], [1.0, 0.6, 0.0]],
    "log_probability": [[-2.0, -0.5, -1.0], [-0.1, -7.0, -1.5]],
    "log_target": [[-1.0, -0.2, -3.0], [-0.5, -2.5, -0.05]],
    "weight": [[0.5, 2.0, 1.0], [1.5, 0.25, 3.0]],
    "pos_weight": [[1.5, 0.5, 4.0]],
}


def _tensors(case: Case, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for spec in case.inputs:
        t = torch.tensor(VALUES[spec.kind], dtype=dtype)
        out[spec.name] = t.requires_grad_(spec.differentiable)
    return out


def _run(fn: object, case: Case, reduction: str, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
    tensors = _tensors(case, dtype)
    out = fn(tensors, reduction)  # type: ignore[operator]
    out.backward(torch.ones_like(out))
    return out.detach(), [tensors[n].grad for n in case.differentiable]  # type: ignore[misc]


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("name", cases.BUILTIN)
def test_functional_and_module_forms_agree(name: str, dtype: torch.dtype) -> None:
    skip_where_torch_raises(name, str(dtype).removeprefix("torch."))
    case = cases.get(name)
    assert case.module_forward is not None
    for reduction in case.reductions:
        out_f, grads_f = _run(case.forward, case, reduction, dtype)
        out_m, grads_m = _run(case.module_forward, case, reduction, dtype)
        _same_bits(out_f, out_m)
        for gf, gm in zip(grads_f, grads_m, strict=True):
            _same_bits(gf, gm)


_PARAMETERS = [(name, spec.name) for name in cases.BUILTIN for spec in cases.get(name).inputs
               if not spec.differentiable]


@pytest.mark.parametrize(("name", "parameter"), _PARAMETERS, ids=[f"{n}-{p}" for n, p in _PARAMETERS])
def test_parameters_the_suite_does_not_differentiate_are_refused_by_torch(name: str, parameter: str) -> None:
    """The suite checks no gradient of ``weight`` or ``pos_weight`` because torch has none: asking for one raises.
    A torch that starts to differentiate them fails this test, so that the new gradient gets checked too."""
    case = cases.get(name)
    tensors = _tensors(case, torch.float64)
    tensors[parameter].requires_grad_(True)
    with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{parameter}'"):
        case.forward(tensors, "mean").backward()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit, NaN where NaN (a zero target's log gives NaN gradients in both forms)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    numbers = ~torch.isnan(a)
    assert torch.equal(torch.signbit(a[numbers]), torch.signbit(b[numbers]))


def test_every_form_of_design_is_registered() -> None:
    assert {"bce", "bce_weight", "bce_with_logits", "bce_with_logits_weight", "bce_with_logits_pos_weight",
            "kl_div", "kl_div_log_target", "sigmoid_bce", "log_softmax_kl_div"} <= set(cases.names())
    assert "batchmean" in cases.get("kl_div").reductions
    assert cases.get("log_softmax_kl_div").rows


def test_unknown_case_and_bad_specs() -> None:
    with pytest.raises(KeyError, match="unknown case"):
        cases.get("no_such_case")
    with pytest.raises(ValueError, match="unknown kind"):
        InputSpec("x", "angle")
    with pytest.raises(ValueError, match="unknown reductions"):
        Case("bad", "test", "", (InputSpec("input", "logit"),), _double, _double_reference, reductions=("median",))


def _double(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    x = 2 * t["input"]
    return x if reduction == "none" else x.sum() if reduction == "sum" else x.mean()


def _double_reference(sample: Mapping[str, list[Any]]) -> Reference:
    return Reference([2 * sample["input"][0]], {"input": [2]})


def test_register_user_case_and_evaluate() -> None:
    case = Case("test_user_double", "user", "2 x", (InputSpec("input", "logit"),), _double, _double_reference)
    cases.register(case)
    try:
        assert cases.get("test_user_double") is case
        with pytest.raises(ValueError, match="already registered"):
            cases.register(case)
        cases.register(case, replace=True)
        result = run.evaluate(case, {"input": np.array([1.5, -3.0, 1e30])}, torch.float32, reductions=("none",))
        assert result.get("none").got.tolist() == [3.0, -6.0, 2 * float(np.float32(1e30))]
        assert (result.get("none").metrics.labels == 0).all()  # exact
    finally:
        cases.unregister("test_user_double")
    assert "test_user_double" not in cases.names()


PLUGIN = '''
import torch
from suite import cases
from suite.cases import Case, InputSpec
from suite.truth import Reference


def forward(t, reduction):
    x = t["input"] * t["input"]
    return x if reduction == "none" else x.sum() if reduction == "sum" else x.mean()


def reference(sample):
    x = sample["input"][0]
    return Reference([x * x], {{"input": [2 * x]}})


cases.register(Case("{name}", "user", "x squared", (InputSpec("input", "logit"),), forward, reference))
'''


def test_load_plugin_from_users_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"user_plugin_{uuid.uuid4().hex}"
    name = f"square_{module}"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(name=name), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        added = cases.load_plugin(module)
        assert [c.name for c in added] == [name]
        result = run.evaluate(cases.get(name), {"input": np.array([3.0, 0.5])}, torch.float32, reductions=("sum",))
        assert float(result.get("sum").got) == 9.25 == float(result.get("sum").truth.hi)
        assert result.get("sum", "grad_input").got.tolist() == [6.0, 1.0]
    finally:
        cases.unregister(name)
        sys.modules.pop(module, None)
    with pytest.raises(ModuleNotFoundError):
        cases.load_plugin(f"missing_{module}")
