"""The regression gate: which benchmarks count as slowed (time and bandwidth fraction), best-of attempts
with re-measurements, the suspects file, and the command's exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from suite.bench import compare, runs
from tests.unit.test_bench_summary import make_run

BASE = make_run({("bce", "eager", 24): 0.5, ("kl_div", "compile", 24): 0.4, ("sigmoid_bce", "eager", 16): 0.2})


def test_changes_and_regressions() -> None:
    current = make_run({("bce", "eager", 24): 0.25, ("kl_div", "compile", 24): 0.36,
                        ("log_softmax_kl_div", "eager", 16): 0.1})
    changes = compare.fraction_changes(BASE, current)
    # only benchmarks with a fraction in both runs; the truth benchmark has none
    assert [c.name for c in changes] == ["test_loss_throughput[bce-mean-float32-cpu-eager-fwd-2p24]",
                                         "test_loss_throughput[kl_div-mean-float32-cpu-compile-fwd-2p24]"]
    assert changes[0].percent == pytest.approx(-50.0) and changes[1].percent == pytest.approx(-10.0)
    assert compare.regressions(changes) == [changes[0]]           # -10% is within the default 15%
    assert compare.regressions(changes, threshold=5.0) == changes


def _scaled(run: dict, factor: float, case: str) -> dict:
    """A copy of ``run`` in which ``case`` takes ``factor`` times as long (its fractions fall as much)."""
    out = json.loads(json.dumps(run))
    for b in out["benchmarks"]:
        if b.get("extra_info", {}).get("case") == case and "copy_fraction" in b["extra_info"]:
            b["stats"] = {k: v * factor for k, v in b["stats"].items()}
            for field in compare.FIELDS:
                b["extra_info"][field] /= factor
    return out


def test_time_changes_take_the_best_attempt() -> None:
    noisy = _scaled(BASE, 1.4, "bce")                   # one attempt 40% slower ...
    retry = _scaled(BASE, 1.05, "bce")                  # ... the re-measurement 5%: noise, not a regression
    assert compare.regressions(compare.time_changes(BASE, noisy))[0].percent == pytest.approx(40.0)
    assert compare.regressions(compare.time_changes(BASE, [noisy, retry])) == []
    assert compare.regressions(compare.fraction_changes(BASE, [noisy, retry])) == []
    twice = _scaled(BASE, 2.0, "bce")                   # the work done twice: slower in every attempt
    slowed = compare.regressions(compare.time_changes(BASE, [twice, _scaled(BASE, 1.9, "bce")]))
    assert [c.name for c in slowed] == ["test_loss_throughput[bce-mean-float32-cpu-eager-fwd-2p24]"]
    assert slowed[0].percent == pytest.approx(90.0)


def _files(tmp_path: Path, current: dict[str, object]) -> list[str]:
    (tmp_path / "base.json").write_text(json.dumps(BASE))
    (tmp_path / "now.json").write_text(json.dumps(current))
    return [str(tmp_path / "base.json"), str(tmp_path / "now.json")]


def test_command_fails_naming_the_slowed_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slowed = _scaled(BASE, 2.0, "kl_div")
    suspects = tmp_path / "suspects.txt"
    assert compare.main([*_files(tmp_path, slowed), "--suspects", str(suspects)]) == 1
    out = capsys.readouterr().out
    assert "time check (median) against" in out and "4 compared, 1 worse by more than 15%" in out
    assert "bandwidth-fraction check (copy_fraction_best): 3 compared, 1 worse by more than 15%" in out
    assert "SLOWER test_loss_throughput[kl_div-mean-float32-cpu-compile-fwd-2p24]: copy_fraction_best 0.5 -> " \
        "0.25 (-50.0%)" in out
    assert suspects.read_text() == "tests/bench/test_losses.py::test_loss_throughput[kl_div-mean-float32-cpu-" \
        "compile-fwd-2p24]\n"
    assert compare.main([*_files(tmp_path, slowed), "--field", "copy_fraction"]) == 1
    assert "kl_div-mean-float32-cpu-compile-fwd-2p24]: copy_fraction 0.4 -> 0.2" in capsys.readouterr().out


def test_command_passes_when_the_re_measurement_is_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _files(tmp_path, _scaled(BASE, 1.5, "kl_div"))
    (tmp_path / "retry.json").write_text(json.dumps(_scaled(BASE, 1.02, "kl_div")))
    suspects = tmp_path / "suspects.txt"
    assert compare.main([*files, str(tmp_path / "retry.json"), "--suspects", str(suspects)]) == 0
    assert "best of 2 attempts" in capsys.readouterr().out
    assert suspects.read_text() == ""


def test_command_passes_an_unchanged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(_files(tmp_path, BASE)) == 0
    out = capsys.readouterr().out
    assert "4 compared, 0 worse" in out and "3 compared, 0 worse" in out


def test_latest_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "Linux-CPython-3.11-64bit" / "0003_bench.json"
    run.parent.mkdir()
    run.write_text(json.dumps(BASE))
    assert compare.main(["--latest", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(run)
    assert compare.main(["--latest", str(tmp_path / "empty")]) == 2
    assert compare.main([str(run)]) == 2
    assert compare.main([str(run), str(tmp_path / "missing.json")]) == 2
    assert compare.main([str(run), str(run), "--threshold", "120"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("python -m suite.bench.compare: error:") for line in err)


def test_machine_drift_is_divided_out_per_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every 2^24 benchmark 30% slower (the machine), kl_div twice as slow again (a regression): only kl_div
    fails the time check, by +100%; the 2^16 group is too small for a drift estimate and stays as it is."""
    keys = {(case, mode, 24): 0.5 for case in ("bce", "bce_with_logits", "kl_div", "sigmoid_bce")
            for mode in ("eager", "compile")}
    base = make_run({**keys, ("log_softmax_kl_div", "eager", 16): 0.3})
    slower = _scaled(_scaled(base, 1.3, "bce"), 1.3, "bce_with_logits")
    slower = _scaled(_scaled(slower, 1.3, "sigmoid_bce"), 2.6, "kl_div")
    drift = compare.machine_drift(base, slower)
    assert drift == {"cpu/float32/24": pytest.approx(1.3)}
    slowed = compare.regressions(compare.time_changes(base, slower, drift=drift))
    assert {c.name for c in slowed} == {"test_loss_throughput[kl_div-mean-float32-cpu-eager-fwd-2p24]",
                                        "test_loss_throughput[kl_div-mean-float32-cpu-compile-fwd-2p24]"}
    assert all(c.percent == pytest.approx(100.0) for c in slowed)
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "now.json").write_text(json.dumps(slower))
    assert compare.main([str(tmp_path / "base.json"), str(tmp_path / "now.json"), "--no-drift"]) == 1
    assert "time check (median) against" in capsys.readouterr().out  # uncorrected: every 2^24 one is slower
    assert compare.main([str(tmp_path / "base.json"), str(tmp_path / "now.json")]) == 1
    assert "divided by the machine drift (cpu/float32/24 x1.300)" in capsys.readouterr().out


def test_pooled_baseline_takes_the_median_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three baselines: one lucky (kl_div 40% faster), two typical.  Against the lucky one alone a typical
    rerun looks 40% slower; against the pool (per benchmark, the median of the three) it passes."""
    lucky = _scaled(BASE, 1 / 1.4, "kl_div")
    pooled = runs.pool([BASE, lucky, BASE])
    node = "tests/bench/test_losses.py::test_loss_throughput[kl_div-mean-float32-cpu-compile-fwd-2p24]"
    assert runs.by_name(pooled)[node]["stats"]["median"] == runs.by_name(BASE)[node]["stats"]["median"]
    for name, run in (("typical.json", BASE), ("lucky.json", lucky)):
        (tmp_path / name).write_text(json.dumps(run))
    paths = [str(tmp_path / "lucky.json"), str(tmp_path / "typical.json")]
    assert compare.main(paths) == 1
    capsys.readouterr()
    assert compare.main([*paths, "--also-baseline", str(tmp_path / "typical.json"), "--also-baseline",
                         str(tmp_path / "typical.json")]) == 0
    assert "pooled with 2 earlier run(s)" in capsys.readouterr().out


def test_recent_runs_share_the_latest_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    other = json.loads(json.dumps(BASE))
    other["machine_info"]["torch_version"] = "2.12.0"
    for i, run in enumerate([BASE, other, BASE, BASE], 1):
        path = folder / f"{i:04d}_bench.json"
        path.write_text(json.dumps(run))
        os.utime(path, (i, i))
    assert [p.name for p in runs.recent(tmp_path, 3)] == ["0001_bench.json", "0003_bench.json",
                                                                  "0004_bench.json"]
    assert compare.main(["--latest", str(tmp_path), "--recent", "2"]) == 0
    assert capsys.readouterr().out.split() == [str(folder / "0003_bench.json"), str(folder / "0004_bench.json")]
