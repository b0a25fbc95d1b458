"""What every accuracy property test does with one drawn batch: evaluate, judge against budgets and known
deviations, steer Hypothesis toward the worst error, and fail with a copy-paste reproducer."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from hypothesis import HealthCheck, note, settings

from suite import judge, modes, nan_propagation, run, search, upstream
from suite.cases.base import Case
from suite.metrics import Label
from suite.report import findings

#: Modes the property tests run eagerly (compiled ones cost more per example: :func:`compiled_settings`).
EAGER_MODES = ("eager", "autocast", *modes.LAYOUT_MODES)


def compiled_settings(fraction: int) -> settings:
    """The active profile's settings for a test that compiles anew each example (through the function-scoped
    ``fresh_compiles`` fixture, meant to run once per test, not per example): ``1/fraction`` of its examples."""
    profile = settings()
    return settings(max_examples=max(1, profile.max_examples // fraction),
                    suppress_health_check=[*profile.suppress_health_check, HealthCheck.function_scoped_fixture])


#: what a reproducer's batch needs: ``repr`` of a list writes infinities and NaNs as bare ``inf`` and ``nan``
BATCH_IMPORTS = "from math import inf, nan\nimport numpy as np\n"


def _batch_source(variable: str, batch: Mapping[str, np.ndarray]) -> str:
    """A line of Python that rebuilds ``batch`` (float64 arrays by input name) as ``variable`` (after
    :data:`BATCH_IMPORTS`), every value exact: ``repr`` of a float round-trips."""
    arrays = {name: np.asarray(values, dtype=np.float64).tolist() for name, values in batch.items()}
    return f"{variable} = {{k: np.array(v) for k, v in {arrays!r}.items()}}\n"


def evaluate(case: Case, inputs: Mapping[str, np.ndarray], dtype: str, device: str,
             reductions: tuple[str, ...] | None = None, mode: str = "eager") -> run.CaseResult:
    """Run the case for ``reductions`` (default all) and for ``none`` (the root cause of a reduced value's
    failure)."""
    wanted = tuple(dict.fromkeys(("none", *(reductions or case.reductions))))
    return run.evaluate(case, inputs, dtype, device, reductions=wanted, mode=mode)


def check(result: run.CaseResult, reductions: tuple[str, ...], quantities: tuple[str, ...] | None = None) -> None:
    """Assert that no quantity of ``reductions`` (of ``quantities``, default all) has a failure that no known
    deviation explains.

    Before asserting, report to Hypothesis the worst algorithmic ULP error and bits of error of the
    unexplained elements, so that the search climbs toward the worst inputs.
    """
    problems: list[str] = []
    for (red, name), q in sorted(result.quantities.items()):
        if red not in reductions or (quantities is not None and name not in quantities):
            continue
        verdict = judge.judge(result, q)
        unexplained = verdict.unexplained
        search.steer(q, ~(verdict.failing & ~unexplained))
        if unexplained.any():
            index = tuple(int(i) for i in np.argwhere(unexplained)[0])
            problems.append(_describe(result, q, index, int(unexplained.sum())))
    if problems:
        raise AssertionError("\n\n".join(problems))


def _describe(result: run.CaseResult, q: run.QuantityResult, index: tuple[int, ...], count: int) -> str:
    label = Label(int(q.metrics.labels[index])).text
    ulp = float(q.metrics.ulp_error[index])
    where = f"{result.case.name} {result.fmt.name} {result.device} {result.mode} {q.reduction} {q.quantity}"
    if q.got.ndim:
        snippet = findings.reproducer_for(result, q, index, torch.__version__)
    else:  # a reduced value depends on the whole batch: reproduce it through the suite
        snippet = (f"{BATCH_IMPORTS}from suite import cases, run\n{_batch_source('inputs', result.inputs)}"
                   f"r = run.evaluate(cases.get({result.case.name!r}), inputs, {result.fmt.name!r}, "
                   f"{result.device!r}, reductions=('none', {q.reduction!r}), mode={result.mode!r})\n"
                   f"print(r.get({q.reduction!r}, {q.quantity!r}).got)\n")
    text = (f"{where}: {count} element(s) fail; first: label {label}, ULP error "
            f"{'nan' if math.isnan(ulp) else f'{ulp:.4g}'} (budget {q.metrics.budget}), torch gave "
            f"{float(q.got[index])!r}, exact {float(q.truth.hi[index])!r}\nReproducer:\n{snippet}")
    note(text)
    return text


def check_nan(case: Case, clean: Mapping[str, np.ndarray], poisoned: Mapping[str, np.ndarray], dtype: str,
              device: str, mode: str = "eager", reductions: tuple[str, ...] | None = None) -> None:
    """Assert that the NaNs of ``poisoned`` (``clean`` with some values NaN) reach exactly the results that
    depend on them (:func:`suite.nan_propagation.problems`), with a reproducer through the suite."""
    found = nan_propagation.problems(case, clean, poisoned, dtype, device, mode, reductions)
    if not found:
        return
    snippet = (f"{BATCH_IMPORTS}from suite import cases, nan_propagation\n"
               f"{_batch_source('clean', clean)}{_batch_source('poisoned', poisoned)}"
               f"print(nan_propagation.problems(cases.get({case.name!r}), clean, poisoned, {dtype!r}, {device!r}, "
               f"{mode!r}))\n")
    text = f"{case.name} {dtype} {device} {mode}: NaN inputs mishandled\n" + "\n".join(found)
    text += f"\nReproducer:\n{snippet}"
    note(text)
    raise AssertionError(text)


def check_upstream(case: Case, inputs: Mapping[str, np.ndarray], dtype: str, device: str, mode: str = "eager",
                   reductions: tuple[str, ...] | None = None) -> None:
    """Assert that every gradient scales with the upstream gradient (:func:`suite.upstream.problems`), but for
    an overflow :data:`suite.upstream.KNOWN_OVERFLOWS` registers, with a reproducer through the suite."""
    known = upstream.known_overflow(case.registry_name, dtype, device, mode, torch.__version__)
    found = [p.text for p in upstream.problems(case, inputs, dtype, device, mode, reductions)
             if p.kind == upstream.FACTOR or known is None]
    if not found:
        return
    snippet = (f"{BATCH_IMPORTS}from suite import cases, upstream\n{_batch_source('inputs', inputs)}"
               f"print(upstream.problems(cases.get({case.name!r}), inputs, {dtype!r}, {device!r}, {mode!r}))\n")
    text = f"{case.name} {dtype} {device} {mode}: gradients do not scale with the upstream gradient\n"
    text += "\n".join(found) + f"\nReproducer:\n{snippet}"
    note(text)
    raise AssertionError(text)
