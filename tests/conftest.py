"""Shared test configuration: Hypothesis profiles, the device parameter, and the IEEE arithmetic every test
needs (:mod:`suite.fp_environment`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

from suite import deviations, fp_environment, interop

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=100, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# fast first look at many failures: like ci, without shrinking
settings.register_profile("triage", parent=settings.get_profile("ci"), print_blob=False,
                          phases=[Phase.explicit, Phase.generate, Phase.target])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

#: Devices to parametrise over: CPU always, CUDA where present (skipped cleanly otherwise).
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=[CUDA, pytest.mark.cuda])]


def raising_entry(case: str, dtype: str, device: str = "cpu", mode: str = "eager") -> str | None:
    """The registry entry recording that this torch raises for ``case`` in ``dtype`` on ``device`` in ``mode``
    instead of computing (a kernel a later release added: float16 BCE on CPU before torch 2.4), or None."""
    raising = [d.id for d in deviations.applicable(case, dtype, device, torch.__version__, mode)
               if d.labels == ("raised",) and not d.region]
    return raising[0] if raising else None


def skip_where_torch_raises(case: str, dtype: str, device: str = "cpu", mode: str = "eager") -> None:
    """Skip a test that needs torch to compute ``case`` in ``dtype`` where :func:`raising_entry` names an entry.
    That entry's strict xfail checks that torch still raises, so a torch that gains the kernel runs the test again."""
    entry = raising_entry(case, dtype, device, mode)
    if entry:
        pytest.skip(f"torch {torch.__version__} raises for {case} in {dtype} on {device} ({entry})")


#: Entries whose mechanism is the formula an older torch computed a quantity with, instead of today's replay.
OLDER_FORMULAS = ("bce-with-logits-log-of-exps",)


def replay_formula(case: str, dtype: str, device: str, quantity: str) -> tuple[str, tuple[str, str]]:
    """The mechanism that holds this torch's values of a quantity, and its formula argument: today's replay
    (``kernel_replay``), or the older formula a registry entry records for this torch (BCEWithLogits' loss
    before 2.3)."""
    for entry_id in OLDER_FORMULAS:
        entry = deviations.get(entry_id)
        if entry.mechanism and entry.applies(case, dtype, device, torch.__version__, quantity=quantity):
            return entry.mechanism, ("", "")
    return "kernel_replay", (case, quantity)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before the first test when this process does not compute floats the IEEE way (every exact error
    the tests compare would be wrong), or its torch cannot exchange arrays with its numpy (exit status 2, one
    line)."""
    problems = fp_environment.ieee_problems()
    if problems:
        pytest.exit(f"floating-point arithmetic is not IEEE 754's default: {'; '.join(problems)}", returncode=2)
    problem = interop.numpy_interop_problem()
    if problem:
        pytest.exit(problem, returncode=2)


@pytest.fixture(autouse=True)
def _ieee_arithmetic_after_each_test() -> Iterator[None]:
    """Fail the test that leaves flush-to-zero or a rounding mode set (and restore IEEE subnormals), rather
    than let every later test measure errors with wrong arithmetic."""
    yield
    problems = fp_environment.ieee_problems()
    if problems:
        torch.set_flush_denormal(False)
        pytest.fail(f"the test left this thread's arithmetic non-IEEE: {'; '.join(problems)}")
