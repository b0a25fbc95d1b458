"""bench-report: rows, Markdown and PNG from a saved run; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from suite import cli
from suite.bench import runs, summary


def bench(case: str, mode: str, log2: int, median: float, fraction: float) -> dict[str, Any]:
    """A loss benchmark as pytest-benchmark saves it."""
    name = f"test_loss_throughput[{case}-mean-float32-cpu-{mode}-fwd-2p{log2}]"
    return {"name": name, "fullname": f"tests/bench/test_losses.py::{name}", "stats": {"median": median},
            "extra_info": {"case": case, "reduction": "mean", "dtype": "float32", "device": "cpu", "mode": mode,
                           "direction": "fwd", "numel": 1 << log2, "log2_numel": log2, "gbps": 8 * fraction,
                           "elements_per_s": (1 << log2) / median, "copy_gbps": 8.0,
                           "copy_fraction": fraction, "copy_fraction_best": 1.25 * fraction}}


def make_run(fractions: dict[tuple[str, str, int], float]) -> dict[str, Any]:
    benches = [bench(c, m, k, 1e-3 * (1 << (k - 16)), f) for (c, m, k), f in fractions.items()]
    benches.append({"name": "test_truth_throughput", "fullname": "tests/bench/test_truth_speed.py::"
                    "test_truth_throughput", "stats": {"median": 0.08},
                    "extra_info": {"case": "bce_with_logits", "truth_points_per_s_per_core": 3200.0,
                                   "bare_mpmath_points_per_s_per_core": 64000.0}})
    return {"machine_info": {"torch_version": "2.13.0", "cpu": {"brand_raw": "Test CPU"}},
            "datetime": "2026-01-01T00:00:00", "benchmarks": benches}


RUN = make_run({("bce", "eager", 16): 0.25, ("bce", "eager", 24): 0.5, ("kl_div", "compile", 24): 0.75})


def write_run(folder: Path, name: str, run: dict[str, Any]) -> Path:
    path = folder / "Linux-CPython-3.11-64bit" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


def test_rows_are_the_loss_benchmarks_in_order() -> None:
    rows = summary.rows(RUN)
    assert [(r.case, r.mode, r.log2_numel) for r in rows] == [("bce", "eager", 16), ("bce", "eager", 24),
                                                              ("kl_div", "compile", 24)]
    assert rows[1].copy_fraction == 0.5 and rows[1].gbps == 4.0 and rows[1].median_s == 0.256


def test_markdown_table() -> None:
    text = summary.markdown(summary.rows(RUN), RUN, "0001_bench.json")
    assert "| bce | mean | float32 | cpu | eager | fwd | 2^24 | 256 ms | 4.00 | 6.55e+07 | 0.500 | 0.625 |" in text
    assert "copy bandwidth (cpu, same run): 8.00 GB/s" in text
    assert "3200 points/s per core" in text and "64000 points/s per core" in text


def test_summarize_writes_table_and_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = write_run(tmp_path / "store", "0001_bench.json", RUN)
    result = summary.summarize(path, tmp_path / "out")
    assert len(result.rows) == 3
    assert result.table == tmp_path / "out" / "0001_bench-summary.md"
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_latest_run_is_found_across_machine_folders(tmp_path: Path) -> None:
    old = write_run(tmp_path, "0007_bench.json", RUN)
    new = tmp_path / "Linux-CPython-3.12-64bit" / "0001_bench.json"
    new.parent.mkdir()
    new.write_text(json.dumps(RUN))
    os.utime(old, (1, 1))
    assert runs.latest(tmp_path) == new


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    ('{"benchmarks": 3}', "not a pytest-benchmark run"),
    ('{"benchmarks": [{"fullname": "x", "stats": {"median": -1}}]}', "no positive median"),
    ('{"benchmarks": [{"fullname": "x", "stats": {"median": 1}}]}', "no loss benchmark"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          content: str | None, message: str) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["bench-report", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_no_saved_run_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench-report"]) == 2
    assert "no saved benchmark run under reports/benchmarks" in capsys.readouterr().err
