"""Mixed-dtype runs: result dtypes follow torch's promotion (or BCE's refusal), inputs keep their own dtypes,
and the truth is for the inputs as given."""

from __future__ import annotations

import torch

from suite import cases, dtypes, promotion


def test_bce_refuses_mixed_dtypes() -> None:
    r = promotion.evaluate(cases.get("bce"), {"input": "float16", "target": "float32"}, cache=False)
    assert r.result_dtype is None and r.quantities == {}
    assert r.error == "RuntimeError: Found dtype Float but expected Half"


def test_bce_with_logits_promotes() -> None:
    r = promotion.evaluate(cases.get("bce_with_logits"), {"input": "float16", "target": "float64"}, cache=False)
    assert r.error is None
    assert r.result_dtype == str(torch.promote_types(torch.float16, torch.float64)).removeprefix("torch.")
    assert r.quantities["grad_input"].dtype == "float16"  # a gradient has its input's dtype
    assert r.quantities["grad_target"].dtype == "float64"
    assert sum(r.quantities["loss"].labels.values()) == r.points


def test_inputs_keep_their_own_dtypes() -> None:
    case = cases.get("bce_with_logits_weight")
    given = {"input": "bfloat16", "target": "float16", "weight": "float32"}
    used = promotion.inputs_for(case, given, count=16)
    for name, values in used.items():
        assert dtypes.is_representable(values[~(values != values)], dtypes.get(given[name])).all()
    assert 0.9 not in used["target"] and float(dtypes.round_array(0.9, dtypes.FLOAT16)) in used["target"]


def test_combinations() -> None:
    combos = promotion.combinations(cases.get("bce_with_logits_pos_weight"), ("float32", "float16"))
    assert len(combos) == 4  # 2 main dtypes x 2 other inputs x 1 other dtype
    assert {"input": "float16", "target": "float16", "pos_weight": "float32"} in combos
    assert all(len(set(c.values())) == 2 for c in combos)
