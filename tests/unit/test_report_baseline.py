"""Which committed baseline a report is compared with (``suite.report.baselines``), and ``report --baseline``:
the diff written beside the report, or one clear line and exit 2 before the run for a bad baseline."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from suite import cli
from suite.report import baselines, schema

QUICK = ["--cases", "bce_with_logits", "--dtypes", "float32", "--quick", "--search", "0"]


def _folder(root: Path, name: str, report: bool = True) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if report:
        (folder / baselines.REPORT_FILE).write_text("{}")
    return folder


def test_the_own_torch_else_the_newest_older_torch_on_the_same_devices(tmp_path: Path) -> None:
    for name in ("2.9.0-cpu", "2.11.0-cpu", "2.13.0-cpu", "2.13.0-cpu+cuda0", "2.15.0-cpu+cuda0"):
        _folder(tmp_path, name)
    _folder(tmp_path, "2.14.0-cpu", report=False)  # no accuracy.json: not a baseline
    _folder(tmp_path, "nightly-cpu")  # not a version: ignored
    assert baselines.pick(tmp_path, "2.11.0+cpu", ["cpu"]) == tmp_path / "2.11.0-cpu"
    # 2.13.0 is newer than 2.9.0 (versions, not strings), and 2.14.0 has no report
    assert baselines.pick(tmp_path, "2.14.1+cu130", ["cpu"]) == tmp_path / "2.13.0-cpu"
    assert baselines.pick(tmp_path, "2.14.1", ["cpu", "cuda:0"]) == tmp_path / "2.13.0-cpu+cuda0"  # not 2.15.0
    assert baselines.pick(tmp_path, "2.16.0", ["cpu", "cuda:0"]) == tmp_path / "2.15.0-cpu+cuda0"
    assert baselines.pick(tmp_path, "2.8.0", ["cpu"]) == tmp_path / "2.9.0-cpu"  # older than all: the oldest
    assert baselines.pick(tmp_path, "2.13.0+cu130", ["cpu"]) == tmp_path / "2.13.0-cpu"  # the local tag aside
    assert baselines.pick(tmp_path, "my-build", ["cpu"]) == tmp_path / "2.13.0-cpu"  # no age: the newest
    assert baselines.pick(tmp_path, "2.14.1", ["cuda:0"]) is None
    assert baselines.resolve(tmp_path / "2.9.0-cpu", "2.14.1", ["cpu"]) == tmp_path / "2.9.0-cpu"
    assert baselines.folder_name("2.13.0+cpu", ["cpu", "cuda:1"]) == "2.13.0-cpu+cuda1"


def _probe_key(row: dict) -> str:
    return f"{row['case']}/{row['dtype']}/{row['device']}/{row['mode']}/{row['reduction']} probe {row['probe']}"


def _report(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["report", *QUICK, *args])
    return code, out.getvalue(), err.getvalue()


def test_report_writes_its_diff_against_the_baseline(tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache"), "--bad-inputs"]
    other_devices = tmp_path / "cuda-baselines"
    _folder(other_devices, "2.13.0-cpu+cuda0")
    code, _, err = _report(["--out", str(tmp_path / "first"), "--baseline", str(other_devices), *cache])
    assert code == 0 and "no baseline for devices cpu" in err and "no diff.md" in err
    assert not (tmp_path / "first" / "diff.md").exists()
    # a baseline whose one bad-input row refused what this torch accepts: this torch regressed there (the
    # report still succeeds: it is the diff's exit status that gates)
    earlier = schema.load(tmp_path / "first")
    row = next(r for r in earlier["comparisons"]["probes"] if r["kind"] in ("number", "nan"))
    row.update(kind="raises", message="RuntimeError: refused", result_dtype=None, backward=None)
    root = tmp_path / "baselines"
    version = earlier["environment"]["torch"]
    (_folder(root, baselines.folder_name(version, ["cpu"]), report=False) / "accuracy.json").write_text(
        json.dumps(earlier))
    code, out, _ = _report(["--out", str(tmp_path / "second"), "--baseline", str(root), *cache])
    assert code == 0
    text = (tmp_path / "second" / "diff.md").read_text()
    assert "REGRESSED" in text
    assert f"{_probe_key(row)}` (bad_input): forward: raises (RuntimeError: refused) -> " in text
    assert "diff.md: " in out and "REGRESSED" in out
    # the report folder itself as the baseline: compared as it was before this run replaced it
    (tmp_path / "first" / "accuracy.json").write_text(json.dumps(earlier))
    code, out, _ = _report(["--out", str(tmp_path / "first"), "--baseline", str(tmp_path / "first"), *cache])
    assert code == 0 and "(RuntimeError: refused) -> " in (tmp_path / "first" / "diff.md").read_text()


def test_a_bad_baseline_stops_the_report_before_it_runs(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = _report(["--out", str(tmp_path / "r"), "--baseline", str(tmp_path / "bad.json")])
    assert code == 2 and err.count("\n") == 1 and "bad.json" in err
    assert not (tmp_path / "r").exists()


def test_diff_with_a_folder_of_baselines_without_these_devices_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "baselines"
    _folder(root, "2.13.0-cpu+cuda0")
    a = schema.load(Path(__file__).resolve().parents[2] / "reports" / "baselines" / "2.13.0-cpu")
    (tmp_path / "b.json").write_text(json.dumps(a))
    assert cli.main(["diff", str(root), str(tmp_path / "b.json")]) == 2
    assert "no baseline for devices cpu" in capsys.readouterr().err
