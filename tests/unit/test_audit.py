"""``python -m suite audit``: what a registry entry explains, measured on a batch whose answer is known by hand,
and bad input as one line with exit status 2."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import mpmath
import numpy as np

from suite import audit, cases, cli, deviations, judge, run


def test_usage_counts_spans_and_errors_of_what_an_entry_explains() -> None:
    # float32 BCE-with-logits input gradient sigmoid(x) - 0: torch returns 0 where sigmoid(x) is subnormal
    # (x = -100, -95), which bce-with-logits-grad-sigmoid-underflow explains; -30 and 5 are right.
    result = run.evaluate(cases.get("bce_with_logits"), {"input": np.array([-100.0, -95.0, -30.0, 5.0]),
                                                         "target": np.zeros(4)}, "float32", reductions=("none",))
    entry = deviations.get("bce-with-logits-grad-sigmoid-underflow")
    seen = audit.usage(entry, result)
    assert (seen.count, seen.sole_count, seen.labels) == (2, 2, {"inaccurate"})
    assert seen.spans == {"input": (-100.0, -95.0), "target": (0.0, 0.0)}
    # torch's 0 against sigmoid(-95) = 5.5e-42, in units of the smallest float32 subnormal 2^-149 (condition 1)
    with mpmath.workprec(200):
        expected = float(mpmath.sigmoid(-95) / mpmath.mpf(2) ** -149)
    assert abs(seen.max_ulps - expected) < 1e-9 * expected
    # torch's 0 is the low end of the entry's mechanism (the sigmoid lost whole): 0 ULPs from it
    assert seen.sole_max_mechanism == 0.0
    assert audit.flags(entry, seen) == ["labels unseen: flushed"]
    # without its mechanism nothing would bound the error the entry excuses
    loose = dataclasses.replace(entry, mechanism=None, mechanism_ulps=None)
    assert audit.flags(loose, seen) == ["labels unseen: flushed", "unbounded"]
    assert audit.flags(entry, audit.Usage()) == ["unseen"]


def test_an_unknown_entry_is_one_line_and_exit_status_2() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["audit", "--ids", "no-such-entry"]) == 2
    assert err.getvalue().count("\n") == 1 and "no-such-entry" in err.getvalue()


def test_scaled_error_is_the_error_in_units_of_the_formulas_roundings() -> None:
    # float32 BCE-with-logits pos_weight input gradient at x = 14.652..., y = 0.9, pw = 3: torch's
    # (pw y + 1 - y) sigmoid(x) - pw y cancels two terms near 2.7; the error is measured in units of
    # u S + eta, S = (|pw y| + 1 + |y|) sigmoid(x) + |pw y|, against the exact (1 - y) sigmoid(x) - pw y sigmoid(-x)
    x, y, pw = np.float32(14.652013778686523), np.float32(0.8999999761581421), np.float32(3.0)
    inputs = {"input": np.array([float(x)]), "target": np.array([float(y)]), "pos_weight": np.array([float(pw)])}
    result = run.evaluate(cases.get("bce_with_logits_pos_weight"), inputs, "float32", reductions=("none",))
    q = result.get("none", "grad_input")
    entry = deviations.get("bce-with-logits-pos-weight-grad-cancellation")
    with mpmath.workprec(200):
        xm, ym, pwm = mpmath.mpf(float(x)), mpmath.mpf(float(y)), mpmath.mpf(float(pw))
        exact = (1 - ym) * mpmath.sigmoid(xm) - pwm * ym * mpmath.sigmoid(-xm)
        size = (pwm * ym + 1 + ym) * mpmath.sigmoid(xm) + pwm * ym
        unit = mpmath.mpf(2) ** -24 * size + mpmath.mpf(2) ** -150
        expected = float(abs(mpmath.mpf(float(q.got[0])) - exact) / unit)
    assert expected > 0.1  # a real cancellation error, not a rounding of the result
    assert abs(float(judge.scaled_error(entry, result, q)[0]) - expected) < 1e-6 * expected
    seen = audit.usage(entry, result)
    assert seen.sole_count == 1 and abs(seen.sole_max_scaled - expected) < 1e-6 * expected
    assert entry.max_scaled_error is not None and expected <= entry.max_scaled_error  # torch's rounding: explained



def test_an_entry_whose_exact_value_is_infinite_needs_no_bound() -> None:
    # at p = -0 the exact float16 BCE gradient is -inf: "inaccurate" there is +inf, one value
    entry = deviations.get("bce-grad-half-negative-zero-sign")
    seen = audit.Usage(count=1, labels={"inaccurate"})
    assert audit.flags(entry, seen) == []
    finite = dataclasses.replace(entry, region={k: v for k, v in entry.region.items() if k != deviations.EXACT_KEY})
    assert audit.flags(finite, seen) == ["unbounded"]


def test_max_ulps_is_only_a_cap_beside_a_mechanism() -> None:
    # half-arithmetic-loss caps the error at 8 ULPs, but its kernel replay holds torch's values to 1 ULP: an
    # entry that alone explains 1.4 ULPs has no slack to report; the same cap without the replay has
    entry = deviations.get("half-arithmetic-loss")
    seen = audit.Usage(count=10, sole_count=10, labels={"inaccurate", "flushed"}, sole_max_ulps=1.4)
    assert audit.flags(entry, seen) == []
    capped = dataclasses.replace(entry, mechanism=None, mechanism_ulps=None)
    assert audit.flags(capped, seen) == ["ulps slack"]
