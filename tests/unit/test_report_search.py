"""The report's targeted search: records and findings in accuracy.json, their rendering, their diff, the
options and the progress output."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from suite import budgets, cases, cli, plugins, run, search
from suite.errors import UsageError
from suite.report import collect, diff, html, markdown, schema
from suite.report.progress import BAR_WIDTH, Progress

PLUGIN = "tests.unit.plugin_broken_loss"
BROKEN = "broken_bce_with_logits"
CASES = [BROKEN, "bce_with_logits"]
EXAMPLES, SEED = 12, 3
X = np.array([-200.0, -20.0, -1.0, 0.0, 1.0, 20.0, 200.0])
SMALL = {"input": np.tile(X, (2, 1)), "target": np.repeat([[0.0], [1.0]], X.size, 1)}


@pytest.fixture(scope="module")
def payload() -> Iterator[dict[str, Any]]:
    """A report of the broken plugin loss and torch's BCE-with-logits (float32) on a small grid, with the
    targeted search, collected with a non-terminal progress stream."""
    sys.modules.pop(PLUGIN, None)
    cases.unregister(BROKEN)
    try:
        owners = plugins.load_all([PLUGIN])
        options = collect.Options(CASES, ["float32"], ["cpu"], plugins=owners, workers=1, search=EXAMPLES,
                                  search_seed=SEED)
        stream = io.StringIO()
        result = collect.collect(options, [cases.get(n) for n in CASES], Progress(stream=stream, tty=False),
                                 inputs_for=lambda case, fmt: SMALL)
        out = copy.deepcopy(result.payload)
        out["_progress"] = stream.getvalue()
        yield out
    finally:
        cases.unregister(BROKEN)
        sys.modules.pop(PLUGIN, None)


def _records(payload: dict[str, Any], case: str, quantity: str, reduction: str = "none") -> dict[str, Any]:
    (record,) = [r for r in payload["search"] if r["case"] == case and r["quantity"] == quantity
                 and r["reduction"] == reduction]
    return record


def test_one_record_per_case_reduction_and_quantity(payload: dict[str, Any]) -> None:
    keys = sorted(r["key"] for r in payload["search"])
    assert keys == sorted(f"{c}/float32/cpu/eager/{r}/{q}" for c in CASES for r in cases.get(c).reductions
                          for q in ("loss", "grad_input", "grad_target"))
    assert {r["reduction"] for r in payload["search"]} == {"none", "mean", "sum"}
    assert all(r["examples"] == EXAMPLES and r["seed"] == SEED for r in payload["search"])
    assert payload["options"]["search"] == {"examples": EXAMPLES, "seed": SEED}


def test_records_repeat_the_search_itself(payload: dict[str, Any]) -> None:
    """The same seed gives the same worst inputs when :func:`suite.search.worst_inputs` is called directly,
    and the report's re-measured verdict agrees with the search's own."""
    worst = search.worst_inputs(cases.get(BROKEN), "float32", "cpu", max_examples=EXAMPLES, seed=SEED)
    for quantity, w in worst.items():
        record = _records(payload, BROKEN, quantity)
        assert record["index"] == list(w.index) and record["label"] == w.label
        assert record["unexplained"] == w.unexplained
        assert record["worst"]["label"] == w.label
        np.testing.assert_array_equal(np.array(record["inputs"]["input"], dtype=float), w.inputs["input"])


def test_broken_loss_worst_input_is_a_new_search_finding(payload: dict[str, Any]) -> None:
    record = _records(payload, BROKEN, "loss")
    assert record["label"] in budgets.never_acceptable()
    assert record["unexplained"] and record["attribution"] == schema.SEARCH_ATTRIBUTION
    (finding,) = [f for f in payload["findings"] if f["attribution"] == schema.SEARCH_ATTRIBUTION
                  and f["key"] == record["key"]]
    x = record["worst"]["inputs"]["input"]
    assert finding["count"] == 1 and finding["region"]["low"] == finding["region"]["high"] == x
    assert finding["label"] == record["label"] and finding["reproducer"] == record["reproducer"]
    assert f"import {PLUGIN}" in record["reproducer"]


def test_search_records_of_passing_inputs_have_no_attribution(payload: dict[str, Any]) -> None:
    for record in payload["search"]:
        failing = record["worst"]["label"] in budgets.never_acceptable()
        assert (record["attribution"] is not None) == failing, record["key"]
    searched = {(f["key"], f["label"]) for f in payload["findings"] if f["attribution"] == schema.SEARCH_ATTRIBUTION}
    assert searched == {(r["key"], r["label"]) for r in payload["search"] if r["unexplained"]}


def test_reproducers_print_the_measured_worst_value(payload: dict[str, Any]) -> None:
    for record in payload["search"]:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(record["reproducer"], "<reproducer>", "exec"), {})
        got, expected = float(printed.getvalue().split()[-1]), schema.decode_float(record["worst"]["got"])
        assert got == expected or (math.isnan(got) and math.isnan(expected)), record["reproducer"]


def test_torch_reproducer_uses_torch_alone(payload: dict[str, Any]) -> None:
    source = _records(payload, "bce_with_logits", "loss")["reproducer"]
    assert "F.binary_cross_entropy_with_logits(x, y, reduction='none')" in source
    assert "suite" not in source


def test_markdown_and_html_show_the_search_table_and_new_reproducers(payload: dict[str, Any]) -> None:
    record = _records(payload, BROKEN, "loss")
    text = markdown.render(payload)
    assert "## Targeted search (eager)" in text
    assert f"| {BROKEN} | float32 | cpu | none | loss | " in text
    assert f"| {record['label']} | {schema.SEARCH_ATTRIBUTION} |" in text
    assert record["reproducer"] in text
    page = html.render(payload, [])
    assert "<h2>Targeted search (eager)</h2>" in page
    assert '<tr class="bad"><td>broken_bce_with_logits</td>' in page


def test_schema_checks_search_records(payload: dict[str, Any]) -> None:
    clean = {k: v for k, v in payload.items() if not k.startswith("_")}
    schema.validate(clean)
    mutations = [
        (lambda p: p["search"][0].pop("reproducer"), r"search\[0\] lacks field 'reproducer'"),
        (lambda p: p["search"][0].update(algorithmic_ulp="big"), "algorithmic_ulp"),
        (lambda p: p["search"][0].update(attribution="maybe"), "attribution"),
        (lambda p: p["search"][0].update(unexplained=not p["search"][0]["unexplained"]), "unexplained"),
        (lambda p: p["search"][0].update(examples=True), "examples"),
    ]
    for mutate, message in mutations:
        broken = copy.deepcopy(clean)
        mutate(broken)
        with pytest.raises(UsageError, match=message):
            schema.validate(broken, "x.json")


def _without_search_findings(payload: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in payload.items() if not k.startswith("_")}
    out["findings"] = [f for f in out["findings"] if f["attribution"] != schema.SEARCH_ATTRIBUTION]
    return out


def test_diff_new_search_finding_regresses_unless_already_unexplained(payload: dict[str, Any]) -> None:
    before, after = _without_search_findings(payload), {k: v for k, v in payload.items() if not k.startswith("_")}
    fresh = [f for f in after["findings"] if f["attribution"] == schema.SEARCH_ATTRIBUTION]
    grid_new = {(f["key"], f["label"]) for f in before["findings"] if f["attribution"] == "new"}
    expected = {f["key"] for f in fresh if (f["key"], f["label"]) not in grid_new}
    d = diff.compare(before, after)
    flagged = {c.key for c in d.changes if c.kind == "new_finding"}
    assert flagged == expected
    assert d.regressed == bool(expected)
    # a search finding of a problem the earlier report already had unexplained (in its grid) is no regression
    shifted = copy.deepcopy(before)
    shifted["findings"] += [dict(f, attribution="new") for f in fresh]
    assert not any(c.kind == "new_finding" for c in diff.compare(shifted, after).changes)
    # and the search no longer finding it is a fix, not a regression
    back = diff.compare(after, before)
    assert {c.key for c in back.changes if c.kind == "fixed_finding"} >= expected and not back.regressed


def test_diff_command_exits_1_naming_an_injected_search_finding(payload: dict[str, Any], tmp_path: Any,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    base = _without_search_findings(payload)
    base["findings"] = [f for f in base["findings"] if f["key"] != f"{BROKEN}/float32/cpu/eager/none/loss"]
    injected = copy.deepcopy(base)
    record = _records(payload, BROKEN, "loss")
    injected["findings"].append(dict(base["findings"][0], key=record["key"], label=record["label"],
                                     attribution=schema.SEARCH_ATTRIBUTION, case=BROKEN))
    (tmp_path / "a.json").write_text(json.dumps(base))
    (tmp_path / "b.json").write_text(json.dumps(injected))
    assert cli.main(["diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert cli.main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and record["key"] in out and "targeted search" in out


def test_search_draws_do_not_depend_on_the_modules_imported_before(tmp_path: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis mixes literal constants of imported local modules into its draws; a module full of numeric
    literals imported between two searches with the same seed must not change what they draw."""
    def drawn() -> list[Any]:
        worst = search.worst_inputs(cases.get("bce_with_logits"), "float32", max_examples=EXAMPLES, seed=SEED)
        return [(q, {k: v.tolist() for k, v in w.inputs.items()}) for q, w in sorted(worst.items())]

    before = drawn()
    floats = ", ".join(repr(2.0**e * m) for e in range(-140, 120, 7) for m in (1.0, -1.5, 1.75))
    integers = ", ".join(str(3**k + j) for k in range(40) for j in (0, 1))
    (tmp_path / "many_numeric_literals.py").write_text(f"VALUES = [{floats}, {integers}, 17.25, -88.5, 1e-30]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("many_numeric_literals")
    try:
        assert drawn() == before
    finally:
        sys.modules.pop("many_numeric_literals", None)


def test_progress_is_one_line_per_job_off_a_terminal(payload: dict[str, Any]) -> None:
    lines = payload["_progress"].splitlines()
    assert [line.split(":")[0] for line in lines] == [f"[1/2] {BROKEN} float32", "[2/2] bce_with_logits float32"]
    assert all("search" in line and "\r" not in line for line in lines)


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    ticks = iter([0.0, 65.0, 125.0, 130.0])
    bar = Progress(4, stream, tty=True, clock=lambda: next(ticks))
    bar.step(1, "bce float16", "exact truth")
    bar.done(1, "bce float16", "ignored on a terminal")
    bar.close()
    frames = stream.getvalue().split("\r\x1b[2K")[1:]
    assert frames[0].startswith(f"[{'-' * BAR_WIDTH}] 0/4   0% 1:05 bce float16: exact truth")
    quarter = BAR_WIDTH // 4
    assert frames[1].startswith(f"[{'#' * quarter}{'-' * (BAR_WIDTH - quarter)}] 1/4  25% 2:05 bce float16: done")
    assert stream.getvalue().endswith("\n") and "ignored" not in stream.getvalue()


def test_quiet_progress_writes_nothing() -> None:
    stream = io.StringIO()
    bar = Progress(2, stream, tty=False, quiet=True)
    bar.done(1, "x", "y")
    bar.line("z")
    assert stream.getvalue() == ""


def test_report_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["report", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices["report"]
    for action in sub._actions:
        assert action.help, action.option_strings
        assert action.option_strings[-1] in text
    assert "--search N" in text and "0 skips the search" in text


def test_negative_search_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    assert cli.main(["report", "--search", "-1", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1



def test_a_batch_with_a_new_failure_outranks_a_worse_known_one() -> None:
    """The grid's sum runs over infinite elements, so it is never finite; the search keeps a drawn batch whose
    sum fails where no known deviation explains it (a sum that drops its vector loop's tail) over one with a
    larger score that a known deviation explains (NaN at a zero target and an infinite input)."""
    from tests.accuracy.mutants import MUTANTS
    case = cases.register(MUTANTS["kl_div_sum_drops_vector_tail"].case())
    try:
        batches = [{"input": np.array([-np.inf]), "target": np.array([0.0])},
                   {"input": -np.arange(1.0, 40.0), "target": np.full(39, 0.5)}]
        best = search.Worst("loss", "sum")
        scores = []
        for inputs in batches:
            result = run.evaluate(case, inputs, "float32", reductions=("none", "sum"))
            q = result.get("sum", "loss")
            scores.append(search.score(q))
            search.consider(best, result, q, *scores[-1])
    finally:
        cases.unregister(case.name)
    assert scores[0] > scores[1]  # the known NaN scores higher
    assert best.unexplained and best.inputs["input"].size == 39 and best.label in budgets.never_acceptable()
