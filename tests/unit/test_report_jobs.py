"""Report jobs side by side in worker processes (``--jobs``) and resumed from an interrupted run's saved
jobs (``--resume``): the same accuracy.json either way, nothing finished is recomputed, nothing stale reused."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from suite import cases, cli, compare, fp_environment, modes, plugins, probes
from suite.errors import UsageError
from suite.report import checkpoint, collect, command
from suite.report.progress import Progress

PLUGIN = "tests.unit.plugin_broken_loss"
BROKEN = "broken_bce_with_logits"
CASES = [BROKEN, "bce_with_logits", "kl_div"]
X = np.array([-200.0, -20.0, -1.0, 0.0, 1.0, 20.0, 200.0])
LOGITS = {"input": np.tile(X, (2, 1)), "target": np.repeat([[0.0], [1.0]], X.size, 1)}
LOG_P = np.log(np.array([[1e-30, 0.25, 0.75 - 1e-30], [0.5, 0.5 - 2.0**-40, 2.0**-40]]))
KL = {"input": LOG_P, "target": np.array([[0.0, 0.5, 0.5], [1e-20, 0.25, 0.75 - 1e-20]])}
RUN_JOB = collect.run_job
RESET = modes.fresh_compiles
RUN_ONLY = ("created", "seconds", "environment", "options")


def small_inputs(case: cases.Case, fmt: Any) -> dict[str, np.ndarray]:
    return KL if case.name.startswith("kl_div") else LOGITS


@pytest.fixture(scope="module")
def plugin() -> Iterator[dict[str, str]]:
    sys.modules.pop(PLUGIN, None)
    cases.unregister(BROKEN)
    try:
        yield plugins.load_all([PLUGIN])
    finally:
        cases.unregister(BROKEN)
        sys.modules.pop(PLUGIN, None)


def _options(plugin: dict[str, str], tmp: Path, **kw: Any) -> collect.Options:
    return collect.Options(CASES, ["float32", "float16"], ["cpu"], plugins=plugin, workers=1, search=4,
                           cache_dir=str(tmp / "truth"), **kw)


def _payload(options: collect.Options) -> dict[str, Any]:
    return _payload_of(options, options.cases)


def _payload_of(options: collect.Options, names: list[str]) -> dict[str, Any]:
    result = collect.collect(options, [cases.get(n) for n in names], inputs_for=small_inputs)
    return json.loads(json.dumps(result.payload))


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in RUN_ONLY} == {k: v for k, v in b.items() if k not in RUN_ONLY}


@pytest.fixture(scope="module")
def serial(plugin: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _payload(_options(plugin, tmp_path_factory.mktemp("serial")))


def test_jobs_in_worker_processes_give_the_serial_report(serial: dict[str, Any], plugin: dict[str, str],
                                                         tmp_path: Path) -> None:
    """Workers (spawned, plugin imported there) give every record the serial run gives, search included,
    in the same order, whatever order the jobs finish in."""
    parallel = _payload(_options(plugin, tmp_path, jobs=2))
    assert parallel["options"]["jobs"] == 2 and serial["options"]["jobs"] == 1
    assert [r["key"] for r in parallel["results"]] == [r["key"] for r in serial["results"]]
    assert parallel["search"] and parallel["search"] == serial["search"]
    assert _same_numbers(parallel, serial)


def test_jobs_need_registered_cases(tmp_path: Path) -> None:
    stray = cases.Case(**{**cases.get("bce_with_logits").__dict__, "name": "unregistered"})
    options = collect.Options(["unregistered"], ["float32"], ["cpu"], workers=1, jobs=2)
    with pytest.raises(ValueError, match="not registered"):
        collect.collect(options, [stray], inputs_for=small_inputs)


class StoppedError(Exception):
    """Stands for an interruption (Ctrl-C, a time limit) in the middle of a run."""


class _Recorder:
    """Wraps collect.run_job: records the (case, dtype) jobs run, and raises after ``fail_after`` of them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> None:
        self.ran: list[tuple[str, str]] = []
        self.fail_after = fail_after
        monkeypatch.setattr(collect, "run_job", self)

    def __call__(self, case: Any, dtype: str, *args: Any) -> collect.JobOutput:
        if self.fail_after is not None and len(self.ran) == self.fail_after:
            raise StoppedError
        self.ran.append((getattr(case, "name", case), dtype))
        return RUN_JOB(case, dtype, *args)


def test_resume_reruns_only_the_jobs_an_interrupted_run_did_not_finish(
        serial: dict[str, Any], plugin: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "jobs"
    _Recorder(monkeypatch, fail_after=2)
    with pytest.raises(StoppedError):
        _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved)))
    assert checkpoint.saved_jobs(saved) == 2
    resumed = _Recorder(monkeypatch)
    payload = _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert resumed.ran == [(c, d) for c in CASES for d in ("float32", "float16")][2:]
    assert payload["options"]["resumed_jobs"] == 2
    assert _same_numbers(payload, serial)


def test_saved_jobs_are_reused_only_for_the_same_inputs_and_settings(
        plugin: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "jobs"
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved)))
    everything = [(c, d) for c in CASES for d in ("float32", "float16")]
    other_seed = _Recorder(monkeypatch)
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True, search_seed=1))
    assert other_seed.ran == everything
    monkeypatch.setitem(globals(), "LOGITS", {**LOGITS, "target": 1.0 - LOGITS["target"]})
    other_inputs = _Recorder(monkeypatch)
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert other_inputs.ran == [job for job in everything if job[0] != "kl_div"]


def test_an_unreadable_saved_job_is_run_again(plugin: dict[str, str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "jobs"
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved)))
    first = sorted(saved.iterdir())[0]
    first.write_bytes(b"not a pickle")
    again = _Recorder(monkeypatch)
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert len(again.ran) == 1 and first.name.startswith("-".join(again.ran[0]))


def test_the_command_says_how_to_resume_and_clears_saved_jobs_once_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    argv = ["report", "--quick", "--cases", "bce_with_logits", "--dtypes", "float32,bfloat16", "--search", "0",
            "--workers", "1", "--cache-dir", str(tmp_path / "truth"), "--out", str(out)]
    interrupted = _Recorder(monkeypatch, fail_after=1)
    with pytest.raises(StoppedError):
        cli.main(argv)
    saved = checkpoint.folder_for(out)
    assert checkpoint.saved_jobs(saved) == 1 and not out.exists()
    assert "holds 1 saved jobs; the same command with --resume" in capsys.readouterr().err
    resumed = _Recorder(monkeypatch)
    assert cli.main([*argv, "--resume"]) == 0
    assert sorted(interrupted.ran + resumed.ran) == [("bce_with_logits", "bfloat16"), ("bce_with_logits", "float32")]
    assert len(resumed.ran) == 1
    payload = json.loads((out / "accuracy.json").read_text())
    assert payload["options"]["resumed_jobs"] == 1 and not saved.exists()
    assert "1 case/dtype jobs reused from an interrupted run" in (out / "accuracy.md").read_text()


def test_saved_only_writes_what_an_interrupted_run_finished_marked_incomplete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """After a run cut off by its time limit, --saved-only publishes its finished jobs without running the
    rest, says what is missing, keeps the saved jobs, and refuses a diff; --resume then finishes the run."""
    out = tmp_path / "report"
    argv = ["report", "--quick", "--cases", "bce_with_logits", "--dtypes", "float32,bfloat16", "--search", "0",
            "--workers", "1", "--cache-dir", str(tmp_path / "truth"), "--out", str(out)]
    assert cli.main([*argv, "--saved-only"]) == 2  # nothing saved yet
    assert "holds no saved jobs" in capsys.readouterr().err and not out.exists()
    baseline = tmp_path / "baseline"
    assert cli.main([*argv, "--out", str(baseline)]) == 0
    interrupted = _Recorder(monkeypatch, fail_after=1)
    with pytest.raises(StoppedError):
        cli.main(argv)
    saved = checkpoint.folder_for(out)
    assert "with --saved-only, writes what they hold" in capsys.readouterr().err
    nothing_runs = _Recorder(monkeypatch, fail_after=0)
    assert cli.main([*argv, "--saved-only", "--baseline", str(baseline)]) == 0
    assert nothing_runs.ran == [] and checkpoint.saved_jobs(saved) == 1
    err = capsys.readouterr().err
    assert "incomplete: 1 case/dtype jobs and 0 probe groups missing" in err and "no diff.md" in err
    payload = json.loads((out / "accuracy.json").read_text())
    (finished,) = interrupted.ran  # the largest grid runs first (collect.largest_first)
    (lacking,) = {("bce_with_logits", "float32"), ("bce_with_logits", "bfloat16")} - {finished}
    assert payload["options"]["missing"] == {"jobs": [" ".join(lacking)], "probe_groups": []}
    assert {r["dtype"] for r in payload["results"]} == {finished[1]}
    assert list(payload["cases"]["bce_with_logits"]["grid"]) == [finished[1]]
    banner = "Incomplete report: written with --saved-only from an unfinished run, it lacks 1 case/dtype jobs: " \
             f"{' '.join(lacking)}."
    assert banner in (out / "accuracy.md").read_text() and banner in (out / "index.html").read_text()
    assert cli.main(["diff", str(baseline), str(out)]) == 2
    assert "is an incomplete report (--saved-only)" in capsys.readouterr().err
    resumed = _Recorder(monkeypatch)
    assert cli.main([*argv, "--resume"]) == 0
    assert resumed.ran == [lacking] and not saved.exists()
    payload = json.loads((out / "accuracy.json").read_text())
    assert payload["options"]["missing"] == {"jobs": [], "probe_groups": []}
    assert "Incomplete" not in (out / "accuracy.md").read_text()


def test_jobs_below_one_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "--jobs", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs" in err


def test_sigterm_stops_a_run_like_ctrl_c_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info, command.sigterm_as_exit():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_saved_jobs_are_not_reused_by_another_torch_suite_or_kernel_set(
        plugin: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "jobs"
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved)))
    everything = [(c, d) for c in CASES for d in ("float32", "float16")]
    with monkeypatch.context() as patched:
        patched.setattr(torch, "__version__", "99.0.0")
        other_torch = _Recorder(patched)
        _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert other_torch.ran == everything
    with monkeypatch.context() as patched:
        patched.setattr(checkpoint, "suite_digest", lambda: "an edited suite")
        other_suite = _Recorder(patched)
        _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert other_suite.ran == everything
    with monkeypatch.context() as patched:  # ATEN_CPU_CAPABILITY=default: another kernel set on the same CPU
        patched.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "another kernel set")
        other_kernels = _Recorder(patched)
        _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert other_kernels.ran == everything
    same = _Recorder(monkeypatch)
    _payload(_options(plugin, tmp_path, checkpoint_dir=str(saved), resume=True))
    assert same.ran == []


def test_compile_modes_and_bad_inputs_give_the_same_report_with_jobs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile results (and the bad-input probes run after the jobs) do not depend on which jobs the same
    process compiled before: one process for all jobs and two workers give the same accuracy.json."""
    names = ["bce_with_logits"]

    def report(jobs: int) -> dict[str, Any]:
        options = collect.Options(names, ["float32", "float16"], ["cpu"], ["eager", "compile"],
                                  workers=1, cache_dir=str(tmp_path / "truth"), bad_inputs=True, quick=True,
                                  jobs=jobs)
        result = collect.collect(options, [cases.get(n) for n in names], inputs_for=shaped_by_dtype)
        return json.loads(json.dumps(result.payload))

    def shaped_by_dtype(case: cases.Case, fmt: Any) -> dict[str, np.ndarray]:
        """Another shape per dtype, as the grids have: a second shape makes dynamo recompile dynamically."""
        rows = 2 if fmt.name == "float32" else 3
        x = np.linspace(-30.0, 30.0, 40)
        return {"input": np.tile(x, (rows, 1)), "target": np.tile(np.linspace(0.0, 1.0, rows)[:, None], (1, x.size))}

    compiles_afresh: list[bool] = []

    def fresh_compiles() -> None:
        compiles_afresh.append(True)
        RESET()

    monkeypatch.setattr(modes, "fresh_compiles", fresh_compiles)
    one = report(1)
    assert len(compiles_afresh) == 2  # before each of the two jobs (the probes run in child processes)
    two = report(2)
    assert any(r["mode"] == "compile" for r in one["results"]) and one["comparisons"]["probes"]
    assert _same_numbers(one, two)
    # a run with a compile mode records what compiling did to the thread's arithmetic, per device (torch 2.13:
    # nothing; 2.4 and 2.5: flush-to-zero), and the compiled calls left the thread IEEE
    assert set(one["environment"]["compile_arithmetic"]) == {"cpu"} and fp_environment.ieee_problems() == []


def test_a_terminated_run_with_workers_keeps_its_finished_jobs_and_resumes(tmp_path: Path) -> None:
    """SIGTERM (a time limit) while one worker sleeps in the float16 job: the float32 job, finished, is
    saved; the run exits 128 + 15 saying how to go on; --resume then reuses it and runs only the other."""
    out = tmp_path / "report"
    argv = [sys.executable, "-m", "suite", "report", "--plugin", "tests.unit.plugin_slow_loss", "--cases",
            "slow_bce_with_logits", "--dtypes", "float32,float16", "--quick", "--search", "0", "--workers", "1",
            "--jobs", "2", "--cache-dir", str(tmp_path / "truth"), "--out", str(out)]
    env = {**os.environ, "SUITE_TEST_SLOW_DTYPE": "float16", "PYTHONPATH": os.getcwd()}
    run = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    assert run.stderr is not None
    lines = []
    for line in run.stderr:
        lines.append(line)
        if line.startswith("[1/2] slow_bce_with_logits float32"):
            run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 128 + signal.SIGTERM, "".join(lines)
    saved = checkpoint.folder_for(out)
    assert checkpoint.saved_jobs(saved) == 1 and not out.exists()
    assert any("the same command with --resume goes on" in line for line in lines), "".join(lines)
    env.pop("SUITE_TEST_SLOW_DTYPE")
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "accuracy.json").read_text())["options"]["resumed_jobs"] == 1
    assert "float32: " in done.stderr and "saved by an earlier run" in done.stderr and not saved.exists()


def test_an_interrupted_runs_finished_probe_groups_are_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each finished group of bad-input probes is saved with the jobs; --resume reuses every group (no child
    process runs) and the probes section is the one the first run gave; without --resume they run again."""
    names = ["bce_with_logits", "kl_div"]
    saved = tmp_path / "jobs"

    def report(resume: bool) -> dict[str, Any]:
        options = collect.Options(names, ["float32"], ["cpu"], workers=1, cache_dir=str(tmp_path / "truth"),
                                  bad_inputs=True, quick=True, checkpoint_dir=str(saved), resume=resume)
        return _payload_of(options, names)

    first = report(resume=False)
    groups = {(p["case"], p["device"], p["dtype"]) for p in first["comparisons"]["probes"]}
    assert len(groups) == 2 and checkpoint.saved_jobs(saved) == 2 + len(groups)  # two jobs, two probe groups
    ran: list[int] = []
    isolated = probes.run_isolated

    def counted(tasks: Any, **kw: Any) -> list[probes.Outcome]:
        ran.append(len(tasks))
        return isolated(tasks, **kw)

    monkeypatch.setattr(probes, "run_isolated", counted)
    resumed = report(resume=True)
    assert ran == [] and resumed["comparisons"]["probes"] == first["comparisons"]["probes"]
    report(resume=False)
    assert sum(ran) == len(first["comparisons"]["probes"])


def test_jobs_start_largest_grid_first_ties_in_job_order() -> None:
    assert collect.largest_first({1: 10, 2: 500, 3: 500, 4: 20}) == [2, 3, 4, 1]
    assert collect.largest_first({}) == []


def test_bad_input_devices_limit_the_probes_to_those_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """--bad-input-devices cuda on a cpu,cuda report probes CUDA alone (a GPU machine leaves the CPU's probes,
    minutes of compiling, to a CPU machine) and says so in the notes; without it every device is probed."""
    from suite import modes_report

    asked: list[list[str]] = []

    def sections(devices: list[str], *args: Any, **kwargs: Any) -> dict[str, Any]:
        asked.append(list(devices))
        return {"probes": [], "promotion": []}

    monkeypatch.setattr(modes_report, "sections", sections)
    both = ["cpu", "cuda"]
    limited = collect.Options(["bce"], ["float32"], both, bad_inputs=True, bad_input_devices=["cuda"])
    notes = collect.comparisons(limited, [cases.get("bce")], compare.SideComparisons(), Progress(quiet=True))["notes"]
    everywhere = collect.Options(["bce"], ["float32"], both, bad_inputs=True)
    collect.comparisons(everywhere, [cases.get("bce")], compare.SideComparisons(), Progress(quiet=True))
    assert asked == [["cuda"], ["cpu", "cuda"]]
    assert any("ran on cuda only (--bad-input-devices)" in n for n in notes)


def test_bad_input_devices_must_be_among_the_devices_and_need_bad_inputs() -> None:
    args = argparse.Namespace(bad_input_devices=["cpu"], bad_inputs=True)
    with pytest.raises(UsageError, match="--bad-input-devices cpu is not among --devices cuda"):
        command.bad_input_devices(args, ["cuda"])
    with pytest.raises(UsageError, match="needs --bad-inputs"):
        command.bad_input_devices(argparse.Namespace(bad_input_devices=["cpu"], bad_inputs=False), ["cpu"])
    assert command.bad_input_devices(args, ["cpu"]) == ["cpu"]
    assert command.bad_input_devices(argparse.Namespace(bad_input_devices=None, bad_inputs=True), ["cpu"]) is None


def test_a_saved_probe_group_is_reused_only_for_the_same_tasks_and_suite(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = probes.tasks_for([cases.get("bce")], ["float32"], ["cpu"], ["eager"], ["input_nan", "empty"])
    outcomes = [probes.Outcome(t, probes.NAN, "nan") for t in tasks]
    store = checkpoint.Store(tmp_path, ["a run"])
    said: list[str] = []
    checkpoint.ProbeMemo(store, resume=False, said=said.append).save(tasks, outcomes, 1.25)
    assert said == ["probes bce float32 on cpu, uncompiled: 2 run in 1.2s"]
    assert checkpoint.ProbeMemo(store, resume=True).load(tasks) == outcomes
    assert checkpoint.ProbeMemo(store, resume=False).load(tasks) is None
    assert checkpoint.ProbeMemo(store, resume=True).load(tasks[:1]) is None
    assert checkpoint.ProbeMemo(checkpoint.Store(tmp_path, ["another run"]), resume=True).load(tasks) is None
    monkeypatch.setattr(checkpoint, "suite_digest", lambda: "an edited suite")
    assert checkpoint.ProbeMemo(checkpoint.Store(tmp_path, ["a run"]), resume=True).load(tasks) is None
