"""Mutation check: each deliberately broken loss implementation of :mod:`tests.accuracy.mutants`, registered
as a user case with the exact reference of the loss it imitates, must be caught by the same property test
that judges torch (of budgets, or of NaN propagation), in the quantity and reduction where it is wrong (other
quantities it may also break are not looked at), with a shrunk counter-example and a reproducer; a mutant wrong
only in a narrow segment of one binade must be caught by the report's full grid, and one that errs within budget
but always one way by the rounding-bias check (:mod:`suite.bias`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from suite import bias, cases, dtypes, judge, search
from suite.discover import evaluate_grid
from suite.inputs import strategies
from tests.accuracy.harness import check, check_nan, check_upstream, evaluate
from tests.accuracy.mutants import MUTANTS, Mutant


@pytest.fixture
def mutant(request: pytest.FixtureRequest) -> Iterator[tuple[Mutant, cases.Case]]:
    chosen = MUTANTS[request.param]
    case = cases.register(chosen.case())
    try:
        yield chosen, case
    finally:
        cases.unregister(case.name)


#: Mutants the drawn batches must catch, and those only the full grid reaches.
SEARCHED = sorted(name for name, m in MUTANTS.items() if m.judged_by not in ("grid", "bias"))
GRIDDED = sorted(name for name, m in MUTANTS.items() if m.judged_by == "grid")
BIASED = sorted(name for name, m in MUTANTS.items() if m.judged_by == "bias")


@pytest.mark.parametrize("mutant", SEARCHED, indirect=True)
def test_broken_implementation_is_caught(mutant: tuple[Mutant, cases.Case]) -> None:
    chosen, case = mutant

    # generation alone must find the mutant: the hill-climbing phase (``hypothesis.target`` on the error) runs a
    # thousand more examples after an unsuccessful generation, which made this file the longest of the suite
    @settings(max_examples=300, database=None, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def property_holds(data: st.DataObject) -> None:
        inputs = data.draw(strategies.case_inputs(case, chosen.dtype), label="inputs")
        if chosen.judged_by == "nan":
            poisoned = data.draw(strategies.with_nans(inputs), label="with NaN")
            check_nan(case, inputs, poisoned, chosen.dtype, "cpu", chosen.mode, chosen.reductions)
            return
        if chosen.judged_by == "upstream":
            check_upstream(case, inputs, chosen.dtype, "cpu", chosen.mode, chosen.reductions)
            return
        result = evaluate(case, inputs, chosen.dtype, "cpu", chosen.reductions, mode=chosen.mode)
        check(result, chosen.reductions, (chosen.quantity,))

    # the same draws whatever modules earlier tests imported (Hypothesis mixes their constants in otherwise)
    with pytest.raises(AssertionError) as caught, search.without_local_constants():
        property_holds()
    message = str(caught.value)
    assert case.name in message and "Reproducer" in message
    assert any(f"{reduction} {chosen.quantity}:" in message for reduction in chosen.reductions), message
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    # Hypothesis shrinks and reports the minimal example ("Falsifying example" before 6.16x, "Failing test
    # case" after), with the drawn batch
    assert ("Falsifying example" in notes or "Failing test case" in notes) and "Draw 1 (inputs)" in notes, notes


@pytest.mark.parametrize("mutant", GRIDDED, indirect=True)
def test_narrow_bug_is_caught_by_the_full_grid(mutant: tuple[Mutant, cases.Case]) -> None:
    """The report's grid (:func:`suite.inputs.grids.case_grid`, with the band's points in every sixteenth of a
    binade) finds the mutant as failures that no known deviation explains, in the quantity and reductions it
    breaks."""
    chosen, case = mutant
    wanted = tuple(dict.fromkeys(("none", *chosen.reductions)))
    result = evaluate_grid(case, dtypes.get(chosen.dtype), "cpu", chosen.mode, False, wanted, workers=1)
    for reduction in chosen.reductions:
        verdict = judge.judge(result, result.get(reduction, chosen.quantity))
        assert verdict.unexplained.any(), f"{chosen.name}: {reduction} {chosen.quantity} passes on the full grid"


@pytest.mark.parametrize("mutant", BIASED, indirect=True)
def test_biased_rounding_is_caught_by_the_population(mutant: tuple[Mutant, cases.Case]) -> None:
    """The mutant's errors are within budget (the property test of budgets passes it), and its mean signed
    error over the population of ordinary inputs is biased in the quantity it breaks."""
    chosen, case = mutant
    result = evaluate(case, bias.population(case), chosen.dtype, "cpu", ("none",), mode=chosen.mode)
    q = result.get("none", chosen.quantity)
    found = bias.measure(q)
    assert found.biased, found.describe()
    assert not judge.judge(result, q).unexplained.any()
