"""``suite.witness``: the region search finds a deviation whose answer is documented, a found batch shrinks to
the elements that show it, the printed line is the registry's TOML, and bad input is one line with exit 2."""

from __future__ import annotations

import contextlib
import io
import math
import tomllib

import numpy as np
import pytest

from suite import cases, cli, deviations, dtypes, witness
from tests.conftest import skip_where_torch_raises

CLAMP = deviations.get("bce-log-clamp-100")  # documented: BCELoss clamps each log at -100


def test_shrink_keeps_the_elements_that_show_the_deviation() -> None:
    # BCE(p, y) with y = 1 is -log p: 0.693 at p = 0.5 (right), 100 at p = 0 (clamped; exact inf) and
    # 100 at p = 2^-149 (clamped; exact 149 log 2 = 103.3); p = 0.25, y = 0 is -log 0.75 (right)
    batch = {"input": np.array([0.5, 0.0, 0.25, 2.0**-149]), "target": np.array([1.0, 1.0, 0.0, 1.0])}
    small = witness.shrink(cases.get("bce"), dtypes.get("float32"), "cpu", CLAMP, batch)
    assert small["input"].tolist() == [0.0, 2.0**-149]
    assert small["target"].tolist() == [1.0, 1.0]


def test_shrink_keeps_whole_rows_of_a_rows_case() -> None:
    # log_softmax then kl_div: the logit -inf has log-probability -inf, and its target 0 gives
    # 0 (log 0 - (-inf)) = NaN (log-softmax-kl-div-nan-underflowed-log-prob) in the second row only
    entry = deviations.get("log-softmax-kl-div-nan-underflowed-log-prob")
    batch = {"input": np.array([[0.0, -1.0], [-np.inf, 0.0]]), "target": np.array([[0.5, 0.5], [0.0, 1.0]])}
    case = cases.get("log_softmax_kl_div")
    small = witness.shrink(case, dtypes.get("float32"), "cpu", entry, batch)
    assert case.rows and small["input"].tolist() == [[-np.inf, 0.0]] and small["target"].tolist() == [[0.0, 1.0]]


def test_search_region_finds_the_documented_clamp() -> None:
    found = witness.search_region(cases.get("bce"), dtypes.get("float32"), "cpu", CLAMP, examples=20)
    assert found is not None and found.shown >= 1
    # every draw was moved into the region: p <= 3.7e-44 or p = 1
    p = np.asarray(found.inputs["input"], dtype=np.float64)
    assert ((p <= 3.720075976020836e-44) | (p == 1.0)).all()


def test_witness_toml_reads_back_with_signed_zero_and_infinities() -> None:
    inputs = {"input": np.array([-0.0, np.inf, 1.5]), "target": np.array([-np.inf, 2.0**-149, 0.0])}
    line = witness.witness_toml(cases.get("kl_div_log_target"), dtypes.get("float32"), inputs)
    read = tomllib.loads(line)["witness"]
    assert (read["case"], read["dtype"]) == ("kl_div_log_target", "float32")
    values = np.array(read["input"], dtype=np.float64)
    assert math.copysign(1.0, values[0]) == -1.0 and values[1] == np.inf and values[2] == 1.5
    assert np.array(read["target"], dtype=np.float64).tolist() == [-np.inf, 2.0**-149, 0.0]


def test_a_recorded_witness_shows_its_deviation() -> None:
    # the registry's witness of the -0 sign of float16 BCE's gradient: p = -0, y = 2^-24
    entry = deviations.get("bce-grad-half-negative-zero-sign")
    assert entry.witness["input"] == [-0.0]
    skip_where_torch_raises("bce", "float16")
    assert witness.witness_shows(entry, "cpu") >= 1


def _run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(["witness", *argv])
    return status, err.getvalue()


def test_bad_input_is_one_line_and_exit_status_2() -> None:
    status, err = _run("no-such-entry")
    assert status == 2 and err.count("\n") == 1 and "no-such-entry" in err
    status, err = _run("bce-log-clamp-100", "--examples", "0")
    assert status == 2 and err.count("\n") == 1 and "--examples" in err


def test_each_compiled_batch_compiles_afresh_and_a_search_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch checked in a compile mode must not meet a graph dynamo built for an earlier batch's shape (it
    would recompile it for symbolic shapes: torch 2.2.2's weighted BCE then raises); a search's draws share one
    compile.  An eager entry compiles nothing."""
    forgotten: list[int] = []
    monkeypatch.setattr(witness.modes, "fresh_compiles", lambda: forgotten.append(1))
    compiled = deviations.get("compile-half-reduction-of-clamped-elements")
    assert compiled.home_mode == "compile"
    case, fmt = cases.get("bce_weight"), dtypes.get("float16")
    batch = {"input": np.array([0.0, 0.5]), "target": np.array([1.0, 0.5]), "weight": np.array([1000.0, 1.0])}
    for n in (1, 2):
        witness.evaluate(case, batch, fmt, "cpu", compiled)
        assert len(forgotten) == n
    witness.search_region(case, fmt, "cpu", compiled, examples=3)
    assert len(forgotten) == 3
    witness.evaluate(cases.get("bce"), {k: batch[k] for k in ("input", "target")}, fmt, "cpu", CLAMP)
    assert len(forgotten) == 3
