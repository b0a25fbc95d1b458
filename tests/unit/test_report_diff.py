"""``python -m suite diff``: identical reports, injected regressions, fixes, and bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from suite import cli
from suite.report import diff, schema

KEY = "bce/float32/cpu/eager/none/loss"


def finding(low: float, high: float, label: str = "clamped") -> dict[str, Any]:
    return {"id": f"{label}{low}", "key": KEY, "case": "bce", "dtype": "float32", "device": "cpu", "mode": "eager",
            "reduction": "none", "quantity": "loss", "kind": "label", "label": label, "count": 3, "input": "input",
            "region": {"low": low, "high": high, "values": 3}, "others": {}, "worst": None,
            "description": "d", "reproducer": "print(1)\n", "attribution": "new"}


def report() -> dict[str, Any]:
    result = {"key": KEY, "case": "bce", "dtype": "float32", "device": "cpu", "mode": "eager", "reduction": "none",
              "quantity": "loss", "elements": 100, "budget": 4.0, "labels": {"exact": 97, "clamped": 3},
              "histogram": {}, "max_ulp": 2.0, "algorithmic": {"max_ulp": 2.0, "over_budget": 0}, "failing": 3}
    return {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION, "created": "t",
            "environment": {}, "options": {}, "cases": {"bce": {}}, "results": [result],
            "findings": [finding(0.0, 1e-30)],
            "safe_ranges": [{"case": "bce", "dtype": "float32", "device": "cpu", "mode": "eager", "input": "input",
                             "status": "range", "low": 1e-12, "high": 0.99, "limits": {}}],
            "search": []}


def test_identical_reports_differ_in_nothing() -> None:
    d = diff.compare(report(), report())
    assert d.changes == [] and not d.regressed


def test_new_label_region_is_a_regression_and_named() -> None:
    b = report()
    b["findings"].append(finding(0.5, 0.75, "nan"))
    d = diff.compare(report(), b)
    assert d.regressed
    assert [(c.kind, c.key) for c in d.changes] == [("new_finding", KEY)]
    assert "nan" in d.changes[0].text


def test_a_region_no_longer_explained_is_a_regression_and_the_reverse_is_not() -> None:
    explained = report()
    explained["findings"][0]["attribution"] = "known: bce-log-clamp-100"
    unexplained = report()  # the same region, with no entry explaining it (an entry bounded more tightly)
    d = diff.compare(explained, unexplained)
    assert d.regressed and [(c.kind, c.key) for c in d.changes] == [("attribution", KEY)]
    assert "no longer explained" in d.changes[0].text and "known: bce-log-clamp-100" in d.changes[0].text
    back = diff.compare(unexplained, explained)
    assert not back.regressed and [(c.kind, c.key) for c in back.changes] == [("attribution", KEY)]
    assert "now explained" in back.changes[0].text
    # an unexplained region next to an unexplained one of A is nothing new
    assert diff.compare(report(), report()).changes == []


def test_fixed_finding_and_smaller_error_are_not_regressions() -> None:
    b = report()
    b["findings"] = []
    b["results"][0]["max_ulp"] = 1.0
    d = diff.compare(report(), b)
    assert not d.regressed
    assert {c.kind for c in d.changes} == {"fixed_finding", "max_ulp"}


def test_more_failing_elements_larger_ulp_beyond_budget_and_narrower_range_regress() -> None:
    for mutate, kind in [(lambda r: r["results"][0].update(failing=5), "failing"),
                         (lambda r: r["results"][0].update(max_ulp=9.0, algorithmic={"max_ulp": 9.0,
                                                                                   "over_budget": 1}), "max_ulp"),
                         (lambda r: r["safe_ranges"][0].update(high=0.5), "safe_range")]:
        b = report()
        mutate(b)
        d = diff.compare(report(), b)
        assert d.regressed and [c.kind for c in d.changes if c.regression] == [kind]


def test_on_a_denser_grid_only_unexplained_new_findings_regress() -> None:
    """A grid with points A's lacked (a newer suite) finds regions A never measured: coverage, not torch.  There an
    explained new region, a larger max ULP and a narrower safe range are listed without regressing; an
    unexplained new region still regresses; and on equal grids each of them regresses."""
    def denser(explained: bool) -> dict[str, Any]:
        b = report()
        b["results"][0].update(elements=130, max_ulp=9.0, algorithmic={"max_ulp": 9.0, "over_budget": 1})
        b["safe_ranges"][0].update(high=0.5)
        b["findings"].append(finding(0.5, 0.75, "nan"))
        b["findings"][-1]["attribution"] = "known: some-entry" if explained else "new"
        return b

    d = diff.compare(report(), denser(explained=True))
    assert not d.regressed
    assert sorted(c.kind for c in d.changes) == ["max_ulp", "new_finding", "safe_range"]
    assert all("different grid: 100 elements in A, 130 in B" in c.text for c in d.changes)
    d = diff.compare(report(), denser(explained=False))
    assert [c.kind for c in d.changes if c.regression] == ["new_finding"]
    same = denser(explained=True)
    same["results"][0]["elements"] = 100
    assert sorted(c.kind for c in diff.compare(report(), same).changes if c.regression) == [
        "max_ulp", "new_finding", "safe_range"]


def test_on_a_denser_grid_an_unexplained_region_that_grew_regresses() -> None:
    """An unexplained region that reaches past A's on a changed grid regresses (the failing count, which says so
    on equal grids, is not compared there); the same growth explained in both runs does not."""
    b = report()
    b["results"][0]["elements"] = 130
    b["findings"][0]["region"].update(high=0.9)
    d = diff.compare(report(), b)
    assert [c.kind for c in d.changes if c.regression] == ["new_finding"]
    assert "region grew" in d.changes[0].text and "different grid" in d.changes[0].text
    a = report()
    for r in (a, b):
        r["findings"][0]["attribution"] = "known: bce-log-clamp-100"
    assert not diff.compare(a, b).regressed


def test_a_reduced_result_is_on_the_grid_of_its_unreduced_loss() -> None:
    """A mean holds one element whatever the grid: whether the grid changed is read from the unreduced loss."""
    def with_mean(elements: int, max_ulp: float) -> dict[str, Any]:
        r = report()
        r["results"][0]["elements"] = elements
        mean = dict(r["results"][0], key=KEY.replace("/none/", "/mean/"), reduction="mean", elements=1,
                    max_ulp=max_ulp, algorithmic={"max_ulp": max_ulp, "over_budget": int(max_ulp > 4)}, failing=0)
        r["results"].append(mean)
        return r

    changed = diff.compare(with_mean(100, 2.0), with_mean(130, 9.0))
    assert [(c.kind, c.regression) for c in changed.changes] == [("max_ulp", False)]
    assert "different grid: 100 elements in A, 130 in B" in changed.changes[0].text
    same = diff.compare(with_mean(100, 2.0), with_mean(100, 9.0))
    assert [(c.kind, c.regression) for c in same.changes] == [("max_ulp", True)]


def test_budget_change_is_reported() -> None:
    b = report()
    b["results"][0]["budget"] = 8.0
    assert [c.kind for c in diff.compare(report(), b).changes] == ["budget"]


@pytest.mark.parametrize(("was", "now"), [(2.0, "inf"), ("inf", 2.0), ("inf", "-inf"), (0.0, "inf")])
def test_a_max_ulp_turning_infinite_or_finite_is_a_change(was: Any, now: Any) -> None:
    a, b = report(), report()
    a["results"][0]["max_ulp"], b["results"][0]["max_ulp"] = was, now
    assert [c.kind for c in diff.compare(a, b).changes] == ["max_ulp"]


def _write(path: Path, payload: Any) -> str:
    path.write_text(json.dumps(payload))
    return str(path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.json", report())
    assert cli.main(["diff", a, a]) == 0
    assert "No differences" in capsys.readouterr().out
    regressed = report()
    regressed["findings"].append(finding(0.5, 0.75, "nan"))
    b = _write(tmp_path / "b.json", regressed)
    assert cli.main(["diff", a, b, "--out", str(tmp_path / "d.md")]) == 1
    assert KEY in capsys.readouterr().out and KEY in (tmp_path / "d.md").read_text()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"schema": schema.SCHEMA_NAME, "schema_version": 99}),
                                     json.dumps([1, 2]), None])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          content: str | None) -> None:
    good = _write(tmp_path / "good.json", report())
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert cli.main(["diff", good, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err


def _without(path: tuple[str | int, ...]) -> dict[str, Any]:
    payload = report()
    *parents, last = path
    target: Any = payload
    for step in parents:
        target = target[step]
    del target[last]
    return payload


@pytest.mark.parametrize("path", [("results", 0, "algorithmic"), ("results", 0, "algorithmic", "max_ulp"),
                                  ("findings", 0, "region", "low"), ("findings", 0, "input"),
                                  ("safe_ranges", 0, "low"), ("safe_ranges", 0, "limits")], ids=str)
def test_cli_a_report_lacking_a_field_the_diff_reads_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[str | int, ...]) -> None:
    """Exit status 1 would tell CI the accuracy regressed; a malformed report is bad input."""
    good = _write(tmp_path / "good.json", report())
    bad = _write(tmp_path / "bad.json", _without(path))
    assert cli.main(["diff", good, bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and repr(path[-1]) in err


def test_cli_unknown_case_and_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.json", report())
    assert cli.main(["diff", good, good, "--cases", "nope"]) == 2
    assert "unknown case 'nope'" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli.main(["diff", good, good, "--out", str(tmp_path / "file" / "d.md")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_regression_injected_into_a_copy_of_a_real_shape_report() -> None:
    a = report()
    b = copy.deepcopy(a)
    b["results"][0]["labels"]["nan"] = 1
    b["results"][0]["failing"] = 4
    d = diff.compare(a, b)
    assert d.regressed and d.changes[0].key == KEY


BASELINE = Path(__file__).resolve().parents[2] / "reports" / "baselines" / "2.13.0-cpu" / "accuracy.json"


def _probe(payload: dict[str, Any], case: str, probe: str, dtype: str) -> dict[str, Any]:
    return next(r for r in payload["comparisons"]["probes"]
                if (r["case"], r["probe"], r["dtype"]) == (case, probe, dtype))


def test_a_bad_input_torch_starts_to_accept_is_a_regression_of_the_committed_report() -> None:
    # the committed baseline: eager BCE refuses p = 1.5 ("all elements of input should be between 0 and 1");
    # a torch that returns a number for it (as compiled BCE does) silently accepts a bad input
    a = json.loads(BASELINE.read_text())
    b = copy.deepcopy(a)
    row = _probe(b, "bce", "input_above", "float32")
    assert row["kind"] == "raises" and "between 0 and 1" in row["message"]
    row.update(kind="number", message="0.9", result_dtype="float32", backward="number: 2 elements")
    d = diff.compare(a, b)
    assert d.regressed and [c.kind for c in d.changes] == ["bad_input", "bad_input"]
    assert d.changes[0].text.startswith("forward: raises (RuntimeError: all elements of input should be between")
    assert d.changes[0].text.endswith("-> number") and d.changes[0].regression
    assert d.changes[1].text == "backward: no value -> number" and d.changes[1].regression
    assert "bce/float32/cpu/eager/mean probe input_above" in diff.render(d, "a", "b")


def test_bad_input_outcomes_are_ordered_refusal_nan_number_crash() -> None:
    a = json.loads(BASELINE.read_text())
    nan_row = next(r for r in a["comparisons"]["probes"] if r["kind"] == "nan" and r["backward"])
    moves = {("nan", "raises"): False, ("nan", "number"): True, ("nan", "device_assert"): True,
             ("nan", "child_died"): True, ("nan", "nan"): False}
    for (_, new_kind), regression in moves.items():
        b = copy.deepcopy(a)
        row = next(r for r in b["comparisons"]["probes"] if r == nan_row)
        row["kind"] = new_kind
        d = diff.compare(a, b)
        assert d.regressed is regression and len(d.changes) == (new_kind != "nan")
    b = copy.deepcopy(a)
    refusal = _probe(b, "bce", "input_above", "float32")
    refusal["message"] = "ValueError: input out of range"  # a new message is listed, not judged
    d = diff.compare(a, b)
    assert not d.regressed and [c.kind for c in d.changes] == ["bad_input"]


def test_mixed_dtype_rows_regress_on_more_failing_elements_or_a_new_error() -> None:
    a = json.loads(BASELINE.read_text())
    rows = a["comparisons"]["promotion"]
    valued = next(i for i, r in enumerate(rows) if r["quantities"] and r["error"] is None)
    quantity = next(iter(rows[valued]["quantities"]))
    b = copy.deepcopy(a)
    b["comparisons"]["promotion"][valued]["quantities"][quantity]["labels"]["nan"] = 10**6
    d = diff.compare(a, b)
    assert d.regressed and [c.kind for c in d.changes] == ["promotion"] and quantity in d.changes[0].key
    b = copy.deepcopy(a)
    b["comparisons"]["promotion"][valued].update(error="RuntimeError: no", result_dtype=None, quantities={})
    d = diff.compare(a, b)
    assert d.regressed and d.changes[0].text == "a value -> RuntimeError: no"
    d = diff.compare(b, a)  # an error that became a value is progress
    assert not d.regressed and d.changes[0].text == "RuntimeError: no -> a value"


def test_a_result_only_b_measured_is_one_change_that_regresses_only_when_unexplained() -> None:
    strided_key = KEY.replace("/eager/", "/strided/")
    b = report()
    b["results"].append({**b["results"][0], "key": strided_key, "mode": "strided"})
    b["findings"].append({**finding(0.0, 1e-30), "key": strided_key, "mode": "strided",
                          "attribution": "known: bce-log-clamp-100"})
    d = diff.compare(report(), b)
    assert [(c.kind, c.key) for c in d.changes] == [("added", strided_key)] and not d.regressed
    assert "3 failing elements, each explained" in d.changes[0].text
    b["findings"][-1]["attribution"] = "new"
    d = diff.compare(report(), b)
    assert [(c.kind, c.key) for c in d.changes] == [("added", strided_key)] and d.regressed
    back = diff.compare(b, report())
    assert [(c.kind, c.key) for c in back.changes] == [("missing", strided_key)] and not back.regressed


def test_a_result_torch_raised_for_in_a_and_computes_in_b_is_one_change_like_one_b_alone_measured() -> None:
    # torch 2.1.2 raised for float16 BCE on CPU; 2.13 computes it, with findings its known deviations explain
    refused = report()
    refused["results"][0].update(error="RuntimeError: not implemented for 'Half'", labels={"raised": 100},
                                 failing=100, max_ulp=None)
    refused["findings"] = [{**finding(0.0, 1.0, "raised"), "count": 100}]
    computes = report()
    computes["findings"][0]["attribution"] = "known: bce-log-clamp-100"
    d = diff.compare(refused, computes)
    assert [(c.kind, c.key) for c in d.changes] == [("computes", KEY)] and not d.regressed
    assert "raised in A (RuntimeError: not implemented for 'Half')" in d.changes[0].text
    assert "3 failing elements, each explained" in d.changes[0].text
    d = diff.compare(refused, report())  # a finding there that no known deviation explains
    assert [(c.kind, c.key) for c in d.changes] == [("computes", KEY)] and d.regressed
    back = diff.compare(computes, refused)  # and a torch that starts to raise regresses
    assert back.regressed and ("new_finding", KEY) in [(c.kind, c.key) for c in back.changes]


def test_results_only_one_report_measured_render_as_one_line_per_device_and_mode() -> None:
    b = report()
    for mode in ("strided", "transposed"):
        for quantity in ("grad_input", "grad_target"):
            key = KEY.replace("/eager/", f"/{mode}/").rsplit("/", 1)[0] + f"/{quantity}"
            b["results"].append({**b["results"][0], "key": key, "mode": mode,
                                 "failing": 3 if quantity == "grad_input" else 0})
    text = diff.render(diff.compare(report(), b), "a", "b")
    assert "4 changes; no regression." in text
    assert "- `cpu/strided` (added): 2 results measured in B only (not compared); 1 with failing elements" in text
    assert "- `cpu/transposed` (added): 2 results" in text and text.count("(added)") == 2
    back = diff.render(diff.compare(b, report()), "b", "a")
    assert "- `cpu/strided` (missing): 2 results measured in A only (not compared)\n" in back


def _bias(mean: float, biased: bool) -> dict[str, Any]:
    return {"case": "bce", "dtype": "bfloat16", "device": "cpu", "mode": "eager", "quantity": "loss", "mean": mean,
            "stderr": 0.005, "elements": 4000, "toward_zero": 0.99 if biased else 0.5, "biased": biased}


def test_a_quantity_turning_biased_is_a_regression_and_the_reverse_a_fix() -> None:
    fair, truncating = report(), report()
    fair["rounding_bias"], truncating["rounding_bias"] = [_bias(0.01, False)], [_bias(-0.49, True)]
    worse = diff.compare(fair, truncating)
    assert worse.regressed and [(c.kind, c.key) for c in worse.changes] == [("bias", "bce/bfloat16/cpu/eager/loss")]
    assert "-0.490" in worse.changes[0].text and "biased" in worse.changes[0].text
    better = diff.compare(truncating, fair)
    assert not better.regressed and [c.kind for c in better.changes] == ["bias"]
    assert diff.compare(report(), truncating).changes == []  # a report from before bias was measured


def test_a_bias_record_without_its_fields_is_one_line_and_exit_2(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    broken = report()
    broken["rounding_bias"] = [{k: v for k, v in _bias(0.0, False).items() if k != "biased"}]
    for name, payload in (("a", report()), ("b", broken)):
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
    assert cli.main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "rounding_bias[0]" in err and "biased" in err and "\n" not in err
