"""Bad-input probes: outcomes in this process, and isolation in child processes (a child that dies or hangs
is a recorded outcome, never fatal)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from suite import cases, probes
from suite.cases.base import Case
from tests.conftest import DEVICES

HERE = "tests.unit.test_probes"


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
    """Isolated probes run one child per case; how many children run at once changes nothing, and the
    outcomes are those of the probes run in this process (eager mode, no compile state to differ)."""
    tasks = probes.tasks_for([cases.get(n) for n in ("bce", "bce_with_logits", "kl_div")], ["float32"], ["cpu"],
                             ["eager"], ["input_above", "target_above", "input_nan", "empty"])
    assert {t.case for t in tasks} == {"bce", "bce_with_logits", "kl_div"}
    one, three = (probes.run_probes(tasks, isolate=True, jobs=jobs) for jobs in (1, 3))
    here = probes.run_probes(tasks, isolate=False)
    assert [o.to_dict() for o in one] == [o.to_dict() for o in three] == [o.to_dict() for o in here]
