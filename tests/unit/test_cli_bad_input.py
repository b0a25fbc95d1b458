"""Bad input to every command is one line on stderr and exit status 2, found before any work starts, and an
earlier output survives: names torch cannot run (devices, modes), malformed numbers inside a report, output paths
that are folders or files where a folder is needed, plugins that fail on import, and the benchmark gate's own
argument errors."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite import cli
from suite.bench import compare as bench_compare
from suite.errors import UsageError
from suite.report import schema
from tests.unit.test_report_diff import report

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; assert exit status 2, one line on stderr and nothing on stdout; return the line."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == "", "a command that refuses its input printed output first"
    return lines[0]


def _write(path: Path, payload: object) -> str:
    path.write_text(json.dumps(payload))
    return str(path)


@pytest.mark.parametrize("argv, says", [
    (["modes", "--quick", "--devices", "gpu"], "unknown device 'gpu'"),
    (["modes", "--quick", "--devices", "mps"], "only cpu and cuda are supported"),
    (["modes", "--quick", "--devices", "meta"], "only cpu and cuda are supported"),
    (["modes", "--quick", "--modes", "fast"], "unknown mode 'fast'"),
    (["modes", "--quick", "--parts", ",,"], "--parts ',,' has an empty name"),
    (["modes", "--quick", "--devices", "cpu,"], "--devices 'cpu,' has an empty name"),
    (["report", "--quick", "--cases", "bce,,kl_div"], "--cases 'bce,,kl_div' has an empty name"),
    (["report", "--quick", "--modes", ""], "--modes '' has an empty name"),
    (["report", "--quick", "--dtypes", " , float32"], "--dtypes ' , float32' has an empty name"),
    (["report", "--quick", "--bad-input-devices", "cpu"], "--bad-input-devices needs --bad-inputs"),
    (["report", "--quick", "--bad-inputs", "--bad-input-devices", "cpu,"],
     "--bad-input-devices 'cpu,' has an empty name"),
    (["modes", "--quick", "--dtypes", "float8"], "float8"),
    (["discover", "--quick", "--cases", "bce", "--dtypes", "float64", "--device", "gpu"], "unknown device"),
    (["discover", "--quick", "--cases", "bce", "--dtypes", "float64", "--mode", "fast"], "unknown mode 'fast'"),
    (["discover", "--quick", "--cases", "bce", "--dtypes", "float64", "--workers", "0"], "--workers"),
    (["discover", "--quick", "--cases", "bce,,kl_div"], "--cases 'bce,,kl_div' has an empty name"),
    (["discover", "--quick", "--cases", "bce,nope"], "nope"),
    (["audit", "--quick", "--ids", "bce-log-clamp-100", "--workers", "0"], "--workers must be at least 1"),
    (["audit", "--quick", "--ids", "bce-log-clamp-100", "--device", "gpu"], "unknown device"),
    (["audit", "--ids", "nope"], "no deviation 'nope'"),
    (["witness", "bce-log-clamp-100", "--device", "mps"], "only cpu and cuda are supported"),
    (["witness", "nope"], "no deviation 'nope'"),
    (["report", "--quick", "--devices", "cuda:99"], "cuda:99"),
])
def test_names_torch_cannot_run_are_refused_before_any_work(argv: list[str], says: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert says in _one_line_exit_2(argv, capsys)


@pytest.mark.parametrize("field, value", [("max_ulp", "zz"), ("budget", "4"), ("max_ulp", True)])
def test_diff_of_a_report_with_a_malformed_number_is_refused(tmp_path: Path, field: str, value: object,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = report()
    bad["results"][0][field] = value
    a, b = _write(tmp_path / "a.json", report()), _write(tmp_path / "b.json", bad)
    assert f"results[0] field '{field}'" in _one_line_exit_2(["diff", a, b], capsys)


def test_diff_refuses_an_empty_case_list_rather_than_comparing_every_case(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _write(tmp_path / "a.json", report()), _write(tmp_path / "b.json", report())
    assert "--cases '' has an empty name" in _one_line_exit_2(["diff", a, b, "--cases", ""], capsys)


def test_diff_of_a_report_with_a_repeated_result_key_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = report()
    bad["results"].append(dict(bad["results"][0]))
    a, b = _write(tmp_path / "a.json", report()), _write(tmp_path / "b.json", bad)
    assert "results[1] repeats the key" in _one_line_exit_2(["diff", a, b], capsys)


@pytest.mark.parametrize("field, value", [("dtype", "float16"), ("mode", "compile"), ("quantity", "grad_input")])
def test_diff_of_a_report_whose_key_disagrees_with_its_fields_is_refused(tmp_path: Path, field: str, value: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = report()
    bad["results"][0][field] = value  # the key still names the old value: a diff would match the wrong result
    a, b = _write(tmp_path / "a.json", report()), _write(tmp_path / "b.json", bad)
    assert "results[0] has key 'bce/float32/cpu/eager/none/loss' but its fields say" in _one_line_exit_2(
        ["diff", a, b], capsys)


@pytest.mark.parametrize("field, value, says", [
    ("dtype", "float8", "has dtype 'float8', which is none of float64, float32, float16, bfloat16"),
    ("mode", "jit", "has mode 'jit', which is none of eager, compile"),
    ("reduction", "median", "has reduction 'median', which is none of none, sum, mean, batchmean"),
    ("device", "mps", "has device 'mps', of none of the types cpu, cuda"),
])
def test_diff_of_a_report_with_an_unknown_dtype_mode_reduction_or_device_is_refused(
        tmp_path: Path, field: str, value: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A result (key and field alike) in a dtype, mode, reduction or device the suite never runs would be
    compared as if it were one."""
    bad = report()
    result = bad["results"][0]
    result[field] = value
    result["key"] = schema.key_of(*(str(result[f]) for f in schema.KEY_FIELDS))
    a, b = _write(tmp_path / "a.json", report()), _write(tmp_path / "b.json", bad)
    assert says in _one_line_exit_2(["diff", a, b], capsys)


@pytest.mark.parametrize("where, value, says", [
    ("environment", {"torch": 5}, "environment field 'torch'"),
    ("options", {"devices": None}, "options field 'devices'"),
    ("options", {"devices": "cpu"}, "options field 'devices'"),
])
def test_diff_against_a_baseline_folder_checks_what_it_looks_up(tmp_path: Path, where: str, value: dict[str, object],
                                                                says: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = report()
    bad[where].update(value)
    b = _write(tmp_path / "b.json", bad)
    assert says in _one_line_exit_2(["diff", "reports/baselines", b], capsys)


def test_an_output_path_that_is_a_folder_is_refused_and_left_as_it_was(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.json", report())
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "kept.txt").write_text("earlier output")
    assert "it is a folder" in _one_line_exit_2(["diff", a, a, "--out", str(folder)], capsys)
    assert "it is a folder" in _one_line_exit_2(["modes", "--quick", "--parts", "promotion", "--json",
                                                 str(folder)], capsys)
    assert (folder / "kept.txt").read_text() == "earlier output"
    run = tmp_path / "run.json"
    shutil.copy("reports/baselines/benchmarks/cuda-h100-torch2.11.json", run)
    (folder / "run-summary.png").mkdir()
    assert "it is a folder" in _one_line_exit_2(["bench-report", str(run), "--out", str(folder)], capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt", "run-summary.png"], "half a pair was written"


def test_report_refuses_an_out_it_would_replace_with_loss_before_computing(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "report.json"
    a_file.write_text("a file of the user's")
    assert "exists and is not a folder" in _one_line_exit_2(["report", "--quick", "--out", str(a_file)], capsys)
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("not a report")
    assert "holds no report" in _one_line_exit_2(["report", "--quick", "--out", str(folder)], capsys)
    assert (folder / "chapter1.tex").read_text() == "not a report" and a_file.read_text() == "a file of the user's"
    assert "--cache-dir" in _one_line_exit_2(["report", "--quick", "--cache-dir", str(a_file), "--out",
                                              str(tmp_path / "new")], capsys)
    assert not (tmp_path / "new").exists()


@pytest.fixture
def plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway plugin modules, forgotten after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("badplugin_")]:
        del sys.modules[name]


@pytest.mark.parametrize("name, source, says", [
    ("badplugin_raises", "raise RuntimeError('no licence file')", "RuntimeError: no licence file"),
    ("badplugin_syntax", "def broken(:\n", "SyntaxError"),
    ("badplugin_exits", "import sys\nsys.exit(3)", "SystemExit: 3"),
    ("badplugin_duplicate", "from suite import cases\ncases.register(cases.get('bce'))", "already registered"),
])
def test_a_plugin_that_fails_on_import_is_one_line(plugin_folder: Path, name: str, source: str, says: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (plugin_folder / f"{name}.py").write_text(source)
    line = _one_line_exit_2(["report", "--quick", "--plugin", name, "--out", str(plugin_folder / "r")], capsys)
    assert f"plugin {name!r} failed on import" in line and says in line


def test_an_empty_plugin_name_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "plugin ''" in _one_line_exit_2(["report", "--quick", "--plugin", "", "--out", str(tmp_path / "r")],
                                           capsys)


@pytest.mark.parametrize("argv", [["--threshold", "abc", "a.json", "b.json"], ["--stat", "mode"], ["--bogus"]])
def test_the_benchmark_gate_reports_argument_errors_in_one_line(argv: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        bench_compare.run(argv)
    assert stop.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_benchmark_gate_checks_its_suspects_path_before_comparing(tmp_path: Path) -> None:
    saved = Path("reports/baselines/benchmarks/cuda-h100-torch2.11.json")
    run = tmp_path / "run.json"
    shutil.copy(saved, run)
    folder = tmp_path / "suspects"
    folder.mkdir()
    with pytest.raises(UsageError, match="it is a folder"):
        bench_compare.run([str(run), str(run), "--suspects", str(folder)])


@pytest.mark.parametrize("argv", [["report", "--quick"], ["discover", "--quick", "--cases", "bce"],
                                  ["audit", "--quick", "--ids", "bce-log-clamp-100"],
                                  ["witness", "bce-log-clamp-100"], ["modes", "--quick"]])
def test_a_truth_cache_folder_that_is_a_file_is_refused_before_any_work(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("SUITE_CACHE_DIR", str(blocker))
    monkeypatch.chdir(tmp_path)  # a report's default output folder lands here, not in the checkout
    line = _one_line_exit_2(argv, capsys)
    assert f"SUITE_CACHE_DIR {blocker}" in line and "not a folder" in line, line
    assert blocker.read_text() == "a file, not a folder"


def test_a_cache_dir_option_inside_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    line = _one_line_exit_2(["report", "--quick", "--out", str(tmp_path / "out"), "--cache-dir",
                             str(blocker / "truth")], capsys)
    assert f"--cache-dir {blocker / 'truth'}" in line and "is not a folder" in line, line
