"""``python -m suite audit``: what a registry entry explains, measured on a batch whose answer is known by hand,
and bad input as one line with exit status 2."""

from __future__ import annotations

import contextlib
import io

import mpmath
import numpy as np

from suite import audit, cases, cli, deviations, run


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
    assert audit.flags(entry, seen) == ["labels unseen: flushed", "unbounded"]
    assert audit.flags(entry, audit.Usage()) == ["unseen"]


def test_an_unknown_entry_is_one_line_and_exit_status_2() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["audit", "--ids", "no-such-entry"]) == 2
    assert err.getvalue().count("\n") == 1 and "no-such-entry" in err.getvalue()
