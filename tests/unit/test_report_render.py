"""A small real report (two cases, two dtypes, hand-made inputs): its JSON, Markdown, HTML, plots and
reproducers; the report command's bad-input exits and interrupted runs; and a headless-browser check."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from suite import cases, cli, run
from suite.report import collect, command, reproducer, schema, summary

CASES = ["bce_with_logits", "kl_div"]
LOGITS = np.array([-np.inf, -200.0, -90.0, -30.0, -17.0, -3.0, -0.5, 0.0, 0.5, 3.0, 17.0, 30.0, 200.0, np.inf])
HAND = {"bce_with_logits": {"input": np.tile(LOGITS, (2, 1)), "target": np.repeat([[0.0], [1.0]], LOGITS.size, 1)},
        "kl_div": {"input": np.tile(-np.abs(LOGITS), (2, 1)), "target": np.repeat([[0.0], [0.25]], LOGITS.size, 1)}}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    options = collect.Options(CASES, ["float32", "float16"], ["cpu"], workers=1,
                              cache_dir=str(folder / "cache"))
    result = collect.collect(options, [cases.get(n) for n in CASES], inputs_for=lambda case, fmt: HAND[case.name])
    out = folder / "out"
    out.mkdir()
    command.write_report(result, out)
    return out


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_valid_and_complete(report: Path) -> None:
    payload = schema.validate(_strict((report / "accuracy.json").read_text()))
    keys = {r["key"] for r in payload["results"]}
    for dtype in ("float32", "float16"):
        assert f"bce_with_logits/{dtype}/cpu/eager/none/loss" in keys
        assert f"kl_div/{dtype}/cpu/eager/batchmean/grad_input" in keys
    for r in payload["results"]:
        assert sum(r["labels"].values()) == r["elements"]
        assert list(r["histogram"]) == ["0", "<=0.5", "<=1", "<=2", "<=4", "<=16", ">16"]
    assert payload["cases"]["kl_div"]["grid"]["float16"]["elements"] == 2 * LOGITS.size
    ids = [f["id"] for f in payload["findings"]]  # elements several known deviations explain: one id each
    assert len(set(ids)) == len(ids)


def test_bce_with_logits_nan_at_infinite_logits_is_a_finding(report: Path) -> None:
    # torch's BCEWithLogits returns NaN at x = +-inf (issue 3's known behaviour of torch 2.13)
    payload = _strict((report / "accuracy.json").read_text())
    nan = [f for f in payload["findings"] if f["key"] == "bce_with_logits/float32/cpu/eager/none/loss"
           and f["label"] == "nan"]
    assert nan, "no NaN finding for BCEWithLogits at infinite logits"
    lows = {schema.decode_float(f["region"]["low"]) for f in nan}
    assert lows & {math.inf, -math.inf}


def test_reproducers_print_the_measured_value(report: Path) -> None:
    payload = _strict((report / "accuracy.json").read_text())
    checked = 0
    for f in payload["findings"]:
        if f["reduction"] != "none" or checked >= 6:
            continue
        out, namespace = io.StringIO(), dict[str, Any]()
        with contextlib.redirect_stdout(out):
            exec(compile(f["reproducer"], "<reproducer>", "exec"), namespace)
        printed = float(out.getvalue().split()[-1])
        expected = schema.decode_float(f["worst"]["got"])
        assert printed == expected or (math.isnan(printed) and math.isnan(expected)), f["reproducer"]
        # a batch of copies, so that a CPU kernel takes the vectorised loop the measured batch took
        assert namespace["loss"].shape[0] == reproducer.UNREDUCED_COPIES, f["reproducer"]
        checked += 1
    assert checked > 0


def test_an_eager_run_compiles_nothing_to_probe_the_arithmetic(report: Path) -> None:
    payload = _strict((report / "accuracy.json").read_text())
    assert payload["options"]["modes"] == ["eager"] and "compile_arithmetic" not in payload["environment"]


def test_markdown_has_every_section(report: Path) -> None:
    text = (report / "accuracy.md").read_text()
    for heading in ("# Accuracy of torch", "## Summary", "## Safe ranges", "## Worst cases", "## Rounding bias",
                    "## Findings", "## Reproducers", "```python"):
        assert heading in text
    assert "| bce_with_logits | float16 | cpu |" in text
    assert "never-acceptable label (nan, spurious_inf, clamped, flushed, raised, device_assert)" in text.replace(
        "inaccurate beyond the ULP budget, ", "")  # budgets.toml's labels, device_assert included


def test_rows_of_a_mode_other_than_eager_name_it(report: Path) -> None:
    """With several modes, the summary, findings and safe-range rows of one case, dtype and device differ by
    the mode they name (without it, two safe ranges of bce float16 read as one device's contradiction)."""
    payload = _strict((report / "accuracy.json").read_text())
    for section in ("findings", "safe_ranges"):
        payload[section] += [{**record, "mode": "compile"} for record in payload[section]]
    for table in (summary.summary(payload), summary.findings(payload), summary.safe_ranges(payload)):
        column = table.headers.index("device")
        shown = {row[column] for row in table.rows}
        assert shown == {"cpu", "cpu compile"}, (table.title, shown)
        assert sum(row[column] == "cpu compile" for row in table.rows) * 2 == len(table.rows), table.title


def test_html_links_existing_nonempty_images(report: Path) -> None:
    import matplotlib.pyplot as plt

    text = (report / "index.html").read_text()
    for heading in ("Summary", "Safe ranges", "Plots", "Worst cases", "Findings with reproducers"):
        assert f"<h2>{heading}</h2>" in text
    sources = [part.split('"', 1)[0] for part in text.split('<img src="')[1:]]
    assert len(sources) == 2 * len(CASES)
    for src in sources:
        image = plt.imread(report / src)
        assert image.shape[0] > 50 and image.shape[1] > 50


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium")
def test_html_opens_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    page = tmp_path / "page"
    shutil.copytree(report, page)
    probe = """<script>window.__errors = []; window.onerror = (m) => window.__errors.push(String(m));
addEventListener('load', () => { const bad = [...document.images].filter(i => !i.complete || !i.naturalWidth)
.map(i => i.getAttribute('src')); document.body.setAttribute('data-check', JSON.stringify(
{images: document.images.length, bad: bad, errors: window.__errors})); });</script></body>"""
    html = (page / "index.html").read_text().replace("</body>", probe)
    (page / "check.html").write_text(html)
    run = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=10000", "--dump-dom", (page / "check.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    marker = 'data-check="'
    assert marker in run.stdout, run.stderr[-2000:]
    check = json.loads(run.stdout.split(marker, 1)[1].split('"', 1)[0].replace("&quot;", '"'))
    assert check == {"images": 2 * len(CASES), "bad": [], "errors": []}
    assert "Uncaught" not in run.stderr and "Failed to load resource" not in run.stderr


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_unknown_case_dtype_device_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for extra in (["--cases", "no_such_case"], ["--dtypes", "float8"], ["--devices", "tpu"],
                  ["--modes", "fast"], ["--plugin", "no_such_plugin_module"]):
        code, err = _cli(["report", "--out", str(tmp_path / "r"), *extra], capsys)
        assert code == 2 and err.count("\n") == 1, (extra, err)


def test_unwritable_output_folder_exits_2_before_running(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _cli(["report", "--cases", "bce", "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_interrupted_run_keeps_previous_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "accuracy.json").write_text("previous")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(collect, "collect", interrupted)
    code, _ = _cli(["report", "--cases", "bce", "--dtypes", "float32", "--out", str(out)], capsys)
    assert code == 130
    assert (out / "accuracy.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_profile_keeps_an_infinite_error_infinite() -> None:
    """BCE at p = 0, y = 1 is +inf and torch clamps it to 100: an unbounded error, not float64's largest value
    (which a log axis would draw as a real number)."""
    result = run.evaluate(cases.get("bce"), {"input": [0.0, 0.5], "target": [1.0, 0.0]}, "float32",
                          reductions=("none",), gradients=False)
    p = collect.profile(result, result.get())
    assert p.x.tolist() == [0.0, 0.5] and p.max_ulp[0] == math.inf and p.max_ulp[1] <= 0.5
    assert p.labels["clamped"].tolist() == [True, False]



def test_every_quantity_has_its_rounding_bias_and_torch_has_none(report: Path) -> None:
    """One record per case, dtype, device, mode and quantity, measured on the population (not the hand grid)."""
    payload = schema.validate(_strict((report / "accuracy.json").read_text()))
    keys = {(r["case"], r["dtype"], r["quantity"]) for r in payload["rounding_bias"]}
    assert keys == {(c, d, q) for c in CASES for d in ("float32", "float16")
                    for q in ("loss", "grad_input", "grad_target")}
    assert not any(r["biased"] for r in payload["rounding_bias"])
    assert all(r["elements"] > 1000 for r in payload["rounding_bias"] if r["quantity"] == "loss")


def test_the_bias_table_lists_biased_quantities_first() -> None:
    records = [{"case": "bce", "dtype": "float32", "device": "cpu", "mode": "eager", "quantity": q, "mean": m,
                "stderr": 0.01, "elements": 4000, "toward_zero": 0.5, "biased": b}
               for q, m, b in (("loss", 0.05, False), ("grad_input", -0.45, True), ("grad_target", -0.1, False))]
    table = summary.rounding_bias({"rounding_bias": records})
    assert [row[3] for row in table.rows] == ["grad_input", "grad_target", "loss"]
    assert table.rows[0][-1] == "biased" and table.caption.startswith("1 of 3 quantities biased")
