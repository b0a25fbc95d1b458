"""Bad-input probes: outcomes in this process, and isolation in child processes (a child that dies or hangs
is a recorded outcome, never fatal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np
import pytest
import torch

from suite import cases, modes, plugins, probes
from suite.cases.base import Case
from tests.conftest import DEVICES

HERE = "tests.unit.test_probes"
PLUGIN = "tests.unit.plugin_broken_loss"
BROKEN = "broken_bce_with_logits"


def exit_child(case: Case, dtype: torch.dtype, device: str) -> probes.Tensors:
    os._exit(1)


def segfault_child(case: Case, dtype: torch.dtype, device: str) -> probes.Tensors:
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable")


def hang_child(case: Case, dtype: torch.dtype, device: str) -> probes.Tensors:
    time.sleep(60)
    raise AssertionError("unreachable")


def _task(case: str, probe: str, device: str = "cpu", mode: str = "eager") -> probes.Task:
    return probes.Task(case, probe, "float32", device, mode)


def test_in_process_outcomes() -> None:
    out = probes.run_probes([_task("bce", "input_above"), _task("bce_with_logits", "input_nan"),
                             _task("bce_with_logits", "empty"), _task("kl_div", "integer_target")])
    assert [o.kind for o in out] == [probes.RAISES, probes.NAN, probes.NAN, probes.RAISES]
    assert out[0].message == "RuntimeError: all elements of input should be between 0 and 1"
    assert out[2].shape == []  # the mean of nothing is a NaN scalar
    assert "Integral inputs not supported" in out[3].message


def test_an_autocast_probe_records_torchs_warnings_not_the_suites() -> None:
    """BCE with logits under float16 CPU autocast computes in float32 (torch warns nothing for it); a backward
    run in an autocast to the float32 result's dtype made torch warn "the target dtype is not supported"."""
    (out,) = probes.run_probes([probes.Task("bce_with_logits", "target_above", "float16", "cpu", "autocast")])
    assert out.result_dtype == "float32" and out.backward is not None
    assert not [w for w in out.warnings if "autocast" in w.lower()]


def test_a_compiled_probe_does_not_depend_on_the_probes_before_it() -> None:
    """Each probe compiles for its own inputs, as a user's first call does.  Reusing the function a probe of
    the (2, 4) shape compiled, dynamo would recompile the (2, 3) target with a symbolic size: the message
    would read ``torch.Size([2, s36])``, and a probe's outcome would depend on which probes its child ran
    before (on CUDA, on where the device-side asserts restarted it)."""
    other_shape = _task("bce", "target_other_shape", mode="compile")
    after_others = probes.run_probes([_task("bce", "target_above", mode="compile"), other_shape])[1]
    alone = probes.run_probes([other_shape], isolate=True)[0]  # a fresh process: nothing compiled before it
    assert after_others.to_dict() == alone.to_dict()
    assert after_others.kind == probes.RAISES
    assert "Using a target size (torch.Size([2, 3])) that is different to the input size (torch.Size([2, 4]))" \
        in after_others.message


def test_an_outcome_leaves_out_the_memory_addresses_a_message_quotes() -> None:
    # torch.compile before 2.6 quotes the function it traced, with its address, which differs between processes
    # and, from its second line, the error it wraps
    error = RuntimeError("Failed running call_function <function binary_cross_entropy at 0x7ff9669dd440>(*(x,)):\n"
                         "Using a target size (torch.Size([2, 3])) that is different\n\nfrom user code: ...")
    assert probes.first_line(error) == ("RuntimeError: Failed running call_function "
                                        "<function binary_cross_entropy>(*(x,)): (Using a target size "
                                        "(torch.Size([2, 3])) that is different)")


def test_applicable_probes() -> None:
    names = {t.probe for t in probes.tasks_for([cases.get("kl_div")], ["float32"], ["cpu"], ["eager"])}
    assert "target_below" in names  # a target is a probability: >= 0
    assert "input_above" not in names and "target_above" not in names  # no finite upper bound
    bce = {t.probe for t in probes.tasks_for([cases.get("bce")], ["float32"], ["cpu"], ["eager"])}
    assert {"input_above", "input_below", "target_above", "target_below"} <= bce


def test_dead_and_hung_children_are_recorded_not_fatal() -> None:
    tasks = [_task("bce", "input_above"), _task("bce", f"{HERE}:exit_child"), _task("bce", f"{HERE}:segfault_child"),
             _task("bce", f"{HERE}:hang_child")]
    out = probes.run_isolated(tasks, timeout=3.0)
    assert [o.kind for o in out] == [probes.RAISES, probes.CHILD_DIED, probes.CHILD_DIED, probes.TIMEOUT]
    assert "between 0 and 1" in out[0].message
    assert out[1].message.startswith("exited with status 1")
    assert out[2].message.startswith("killed by SIGSEGV")


@pytest.mark.parametrize("device", [d for d in DEVICES if d.id == "cuda"])  # CPU: covered above
def test_isolated_probe_keeps_this_process_healthy(device: str) -> None:
    """An out-of-range probability is a device-side assert in the child; the next probe (a fresh
    child) and this process's own device work still run."""
    out = probes.run_probes([_task("bce", "input_above", device), _task("bce_with_logits", "input_nan", device)],
                            isolate=True)
    assert out[0].kind == probes.DEVICE_ASSERT
    assert out[1].kind == probes.NAN
    assert torch.ones(2, device=device).sum().item() == 2.0


def test_isolated_probes_give_the_same_outcomes_one_or_several_children_at_a_time() -> None:
    """Isolated probes run one child per case, device, dtype and stage; how many children run at once changes
    nothing, and the outcomes are those of the probes run in this process."""
    tasks = probes.tasks_for([cases.get(n) for n in ("bce", "bce_with_logits", "kl_div")], ["float32"], ["cpu"],
                             ["eager"], ["input_above", "target_above", "input_nan", "empty"])
    assert {t.case for t in tasks} == {"bce", "bce_with_logits", "kl_div"}
    one, three = (probes.run_probes(tasks, isolate=True, jobs=jobs) for jobs in (1, 3))
    here = probes.run_probes(tasks, isolate=False)
    assert [o.to_dict() for o in one] == [o.to_dict() for o in three] == [o.to_dict() for o in here]


@pytest.fixture
def broken_plugin() -> Iterator[Case]:
    """The report's plugin case, loaded as ``--plugin`` loads it, and forgotten after the test."""
    sys.modules.pop(PLUGIN, None)
    cases.unregister(BROKEN)
    try:
        plugins.load_all([PLUGIN])
        yield cases.get(BROKEN)
    finally:
        cases.unregister(BROKEN)
        sys.modules.pop(PLUGIN, None)


def test_a_plugin_cases_probes_in_children_give_torchs_outcomes(broken_plugin: Case) -> None:
    """Children import the plugin modules first: a plugin case's probes, isolated as the report runs them,
    give what torch does (a number, NaN, torch's own error), the outcomes of this process, not 'unknown case'."""
    tasks = probes.tasks_for([broken_plugin], ["float32"], ["cpu"], ["eager"],
                             ["target_above", "input_nan", "target_other_shape", "empty"])
    isolated = probes.run_probes(tasks, isolate=True)
    assert [o.kind for o in isolated] == [probes.NUMBER, probes.NAN, probes.RAISES, probes.NAN], \
        [o.message for o in isolated]
    assert "The size of tensor a (3) must match the size of tensor b (4)" in isolated[2].message
    assert [o.to_dict() for o in isolated] == [probes.execute(t).to_dict() for t in tasks]


def test_a_plugin_cases_batch_is_screened_in_a_child(broken_plugin: Case) -> None:
    """The screening of a CUDA batch (run in a child first) resolves the plugin case there as well: exp(100)
    overflows float32, a number (inf), not an error."""
    batch = {"input": np.array([[100.0, 1.0]]), "target": np.array([[0.0, 1.0]])}
    screened = probes.screen(broken_plugin, batch, "float32", "cpu", "eager", ["none"])
    assert screened["none"].kind == probes.NUMBER and screened["none"].message.startswith("inf"), screened


class DictMemo:
    """A probes.GroupMemo in a dict: what was saved, and what a reused group returns."""

    def __init__(self) -> None:
        self.groups: dict[tuple[probes.Task, ...], list[probes.Outcome]] = {}

    def load(self, tasks: Sequence[probes.Task]) -> list[probes.Outcome] | None:
        return self.groups.get(tuple(tasks))

    def save(self, tasks: Sequence[probes.Task], outcomes: Sequence[probes.Outcome], seconds: float) -> None:
        self.groups[tuple(tasks)] = list(outcomes)
        self.after_save(tasks)

    def after_save(self, tasks: Sequence[probes.Task]) -> None:
        """What a test does once a group is saved."""


def test_isolated_probes_run_one_child_group_per_case_device_and_dtype_and_reuse_saved_groups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(The split by stage is checked by the run-order test below, without compiling.)"""
    tasks = probes.tasks_for([cases.get(n) for n in ("bce", "kl_div")], ["float32", "float16"], ["cpu"], ["eager"],
                             ["input_nan", "empty"])
    memo = DictMemo()
    first = probes.run_probes(tasks, isolate=True, jobs=2, memo=memo)
    assert set(memo.groups) == {tuple(t for t in tasks if probes.group_of(t) == g)
                                for g in {probes.group_of(t) for t in tasks}}
    assert len(memo.groups) == 4 and all(len(g) == 2 for g in memo.groups)
    bce_half = next(g for g in memo.groups if g[0].case == "bce" and g[0].dtype == "float16")
    memo.groups[bce_half] = [probes.Outcome(t, probes.NUMBER, "saved earlier") for t in bce_half]

    def no_children(*args: object, **kwargs: object) -> list[probes.Outcome]:
        raise AssertionError("a saved group was run again")

    monkeypatch.setattr(probes, "run_isolated", no_children)
    again = probes.run_probes(tasks, isolate=True, jobs=2, memo=memo)
    assert [o.message for o in again if o.task in bce_half] == ["saved earlier"] * 2
    assert [o.to_dict() for o in again if o.task not in bce_half] == \
        [o.to_dict() for o in first if o.task not in bce_half]


def test_probe_groups_on_an_accelerator_run_before_those_on_the_cpu() -> None:
    """On a machine lent for a limited time, a run cut off late lacks CPU groups, not GPU ones.  Tasks come
    case by case with the devices interleaved; the run order keeps each group's task order."""
    tasks = probes.tasks_for([cases.get(n) for n in ("bce", "kl_div")], ["float32", "float16"], ["cpu", "cuda:0"],
                             ["eager", "compile"], ["input_nan", "empty"])
    groups = probes.groups_in_run_order(tasks)
    devices = [device for _, device, _, _ in groups]
    assert devices == ["cuda:0"] * 8 + ["cpu"] * 8
    assert list(groups)[:3] == [("bce", "cuda:0", "float32", probes.UNCOMPILED),
                                ("bce", "cuda:0", "float32", probes.COMPILED),
                                ("bce", "cuda:0", "float16", probes.UNCOMPILED)]
    for key, group in groups.items():
        assert group == [t for t in tasks if probes.group_of(t) == key] and len(group) == 2
        assert {t.mode for t in group} == ({"compile"} if key[3] == probes.COMPILED else {"eager"})


def test_only_saved_groups_are_answered_when_unsaved_ones_may_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_unsaved=False`` (the report's --saved-only): saved groups give their outcomes, no child starts,
    and the tasks of unsaved groups are left out."""
    tasks = probes.tasks_for([cases.get("bce")], ["float32", "float16"], ["cpu"], ["eager"], ["input_nan", "empty"])
    saved = [t for t in tasks if t.dtype == "float16"]
    memo = DictMemo()
    memo.groups[tuple(saved)] = [probes.Outcome(t, probes.NUMBER, "saved earlier") for t in saved]

    def no_children(*args: object, **kwargs: object) -> list[probes.Outcome]:
        raise AssertionError("a child was started")

    monkeypatch.setattr(probes, "run_isolated", no_children)
    outcomes = probes.run_probes(tasks, isolate=True, jobs=2, memo=memo, run_unsaved=False)
    assert [o.task for o in outcomes] == saved and len(saved) == 2
    assert {o.message for o in outcomes} == {"saved earlier"}


def test_children_side_by_side_compile_with_a_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [modes.compile_threads_per_job(j) for j in (1, 4, 12, 32, 0)] == [16, 4, 1, 1, 16]
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    assert probes._child_env(3)["TORCHINDUCTOR_COMPILE_THREADS"] == "3"
    assert "TORCHINDUCTOR_COMPILE_THREADS" not in probes._child_env(None)
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "7")  # the user's own setting wins
    assert probes._child_env(3)["TORCHINDUCTOR_COMPILE_THREADS"] == "7"


def test_an_interrupted_run_kills_its_children_at_once_and_keeps_the_finished_groups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM made SystemExit) while one group hangs in a child for a minute: the run stops at
    once instead of waiting for it, every child is gone, and only the finished group was saved."""
    fast = [_task("bce", "input_above")]
    hung = [probes.Task("bce_with_logits", f"{HERE}:hang_child", "float16", "cpu", "eager")]
    started: list[subprocess.Popen[str]] = []

    class Recorded(probes.Children):
        def start(self, stderr: IO[str]) -> subprocess.Popen[str]:
            started.append(super().start(stderr))
            return started[-1]

    class InterruptOnSave(DictMemo):
        def after_save(self, tasks: Sequence[probes.Task]) -> None:
            main = threading.main_thread().ident
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, once the fast group is saved

    monkeypatch.setattr(probes, "Children", Recorded)
    memo = InterruptOnSave()
    begin = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        probes.run_probes([*hung, *fast], isolate=True, jobs=2, memo=memo)
    assert time.monotonic() - begin < 30  # the hung child sleeps 60 s
    assert list(memo.groups) == [tuple(fast)]
    assert len(started) == 2 and all(proc.poll() is not None for proc in started)
