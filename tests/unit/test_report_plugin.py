"""``python -m suite report --plugin``: a user's deliberately broken loss (tests/unit/plugin_broken_loss.py)
gets its findings and reproducers next to torch's, in accuracy.json and accuracy.md; a plugin that fails to
import in the report's child processes is one clear error."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from suite import cases, cli, plugins, probes
from suite.report import pool, schema

PLUGIN = "tests.unit.plugin_broken_loss"
BROKEN = "broken_bce_with_logits"
#: A plugin that fails to import (RuntimeError) where REFUSE is set, and its case.
REFUSED, REFUSED_CASE = "tests.unit.plugin_refused_in_children", "bce_with_logits_refused_in_children"
REFUSE = "SUITE_TEST_REFUSE_PLUGIN"
#: exp(x) overflows float32 above log(FLT_MAX)
EXP_OVERFLOW = math.log(float(np.finfo(np.float32).max))


def _forget_plugin() -> None:
    cases.unregister(BROKEN)
    sys.modules.pop(PLUGIN, None)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The quick float32 report of the broken loss and torch's BCE-with-logits, run in-process."""
    _forget_plugin()
    folder = tmp_path_factory.mktemp("plugin")
    out = folder / "out"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["report", "--plugin", PLUGIN, "--cases", f"{BROKEN},bce_with_logits", "--dtypes",
                             "float32", "--quick", "--search", "0", "--out", str(out), "--cache-dir",
                             str(folder / "cache")])
        assert code == 0
        yield out
    finally:
        _forget_plugin()


def _findings(out: Path, case: str) -> list[dict]:
    return [f for f in schema.load(out)["findings"] if f["case"] == case]


def test_plugin_case_is_recorded_with_its_module(report: Path) -> None:
    payload = schema.load(report)
    assert payload["options"]["plugins"] == [PLUGIN]
    assert payload["cases"][BROKEN]["plugin"] == PLUGIN
    assert payload["cases"]["bce_with_logits"]["plugin"] is None
    assert payload["search"] == [] and payload["options"]["search"]["examples"] == 0


def test_report_records_that_torch_kept_subnormals(report: Path) -> None:
    subnormals = schema.load(report)["environment"]["subnormals"]
    assert subnormals["cpu"] == dict.fromkeys(("float64", "float32", "float16", "bfloat16"), "kept")
    assert "flush subnormals" not in (report / "accuracy.md").read_text()


def test_overflow_of_exp_is_a_new_spurious_inf_above_log_max(report: Path) -> None:
    infs = [f for f in _findings(report, BROKEN) if f["quantity"] == "loss" and f["reduction"] == "none"
            and f["label"] == "spurious_inf"]
    assert infs and all(f["attribution"] == "new" for f in infs)
    lows = [schema.decode_float(f["region"]["low"]) for f in infs]
    assert min(lows) > EXP_OVERFLOW
    assert all(schema.decode_float(f["worst"]["inputs"]["input"]) > EXP_OVERFLOW for f in infs)


def test_gradient_is_nan_where_exp_overflows(report: Path) -> None:
    nans = [f for f in _findings(report, BROKEN) if f["quantity"] == "grad_input" and f["reduction"] == "none"
            and f["label"] == "nan"]
    assert nans
    assert min(schema.decode_float(f["region"]["low"]) for f in nans) > EXP_OVERFLOW


def test_torch_findings_are_next_to_the_plugins(report: Path) -> None:
    torch_findings = _findings(report, "bce_with_logits")
    assert torch_findings, "torch's BCEWithLogits has findings on the quick float32 grid (NaN at +-inf logits)"
    assert not any(f["attribution"] == "new" and f["label"] == "spurious_inf" for f in torch_findings)
    text = (report / "accuracy.md").read_text()
    assert f"### {BROKEN}" in text and "### bce_with_logits" in text
    assert f"| {BROKEN} | float32 | cpu |" in text and "| bce_with_logits | float32 | cpu |" in text
    assert f"import {PLUGIN}  # registers the case" in text


def test_plugin_reproducer_prints_the_measured_inf(report: Path) -> None:
    finding = next(f for f in _findings(report, BROKEN) if f["quantity"] == "loss" and f["reduction"] == "none"
                   and f["label"] == "spurious_inf")
    assert f"import {PLUGIN}" in finding["reproducer"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(finding["reproducer"], "<reproducer>", "exec"), {})
    assert float(printed.getvalue().split()[-1]) == math.inf


@pytest.fixture
def refused_in_children(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A plugin case loaded here, as --plugin loads it, whose module fails to import in every child process
    started after: the case's name."""
    sys.modules.pop(REFUSED, None)
    try:
        assert plugins.load_all([REFUSED]) == {REFUSED_CASE: REFUSED}
        monkeypatch.setenv(REFUSE, "1")
        yield REFUSED_CASE
    finally:
        cases.unregister(REFUSED_CASE)
        sys.modules.pop(REFUSED, None)


REFUSED_ERROR = f"plugin {REFUSED!r} failed to import in a child process: RuntimeError: {REFUSE} is set"


def test_a_plugin_that_fails_to_import_in_a_probe_child_is_one_clear_error(refused_in_children: str) -> None:
    """Not an 'unknown case' outcome per probe: the probes stop with the plugin's name and its error."""
    tasks = [probes.Task(refused_in_children, p, "float32", "cpu", "eager") for p in ("input_nan", "empty")]
    with pytest.raises(plugins.PluginError, match=REFUSED_ERROR):
        probes.run_probes(tasks, isolate=True)


def test_a_plugin_that_fails_to_import_in_a_job_worker_is_one_clear_error(refused_in_children: str) -> None:
    """A --jobs worker that failed to import the plugin gives each job the plugin's error (a failed initializer
    would only break the pool, unexplained); the report prints it as one line."""
    with pool.executor(2) as workers, pytest.raises(plugins.PluginError, match=REFUSED_ERROR):
        workers.submit(cases.names).result()
