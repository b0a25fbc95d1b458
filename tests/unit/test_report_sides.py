"""The report's side-by-side sections: modes against eager and devices against CPU on the report's own grid
results, the autocast dtypes, and their Markdown and HTML tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from suite import cases, compare, run
from suite.report import collect, html, markdown, modes_tables, schema
from tests.conftest import CUDA, skip_where_torch_raises

LOGITS = np.array([-np.inf, -300.0, -20.0, -9.0, -1.0, -0.0, 0.0, 0.5, 9.0, 20.0, 300.0, np.inf])
INPUTS = {"input": np.tile(LOGITS, (3, 1)), "target": np.repeat([[0.0], [0.5], [1.0]], LOGITS.size, 1)}
CASE = "bce_with_logits"


def _collect(devices: list[str], mode_names: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    options = collect.Options([CASE], ["float16"], devices, mode_names, workers=1,
                              cache_dir=str(tmp_path_factory.mktemp("cache")))
    result = collect.collect(options, [cases.get(CASE)], inputs_for=lambda case, fmt: INPUTS)
    return schema.validate(result.payload)


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> dict:
    skip_where_torch_raises(CASE, "float16", "cpu", "autocast")
    return _collect(["cpu"], ["eager", "autocast"], tmp_path_factory)


def test_mode_comparison_matches_a_direct_comparison(sides: dict) -> None:
    case = cases.get(CASE)
    skip_where_torch_raises(CASE, "float16", "cpu", "autocast")
    eager = run.evaluate(case, INPUTS, "float16", "cpu", mode="eager")
    autocast = run.evaluate(case, INPUTS, "float16", "cpu", mode="autocast", truth_set=eager.truth)
    direct = compare.compare(eager, autocast).to_dict()
    [reported] = sides["comparisons"]["modes"]
    assert (reported["a"], reported["b"]) == ("cpu/eager", "cpu/autocast")
    assert reported == direct
    assert sides["comparisons"]["devices"] == []


def test_cpu_autocast_runs_bce_with_logits_in_float32(sides: dict) -> None:
    # PyTorch's autocast op reference lists binary_cross_entropy_with_logits among the ops autocast to float32
    assert sides["comparisons"]["autocast"] == [
        {"case": CASE, "dtype": "float16", "device": "cpu", "reduction": "none", "result_dtype": "float32",
         "error": None}]


def test_the_loss_computed_in_float32_differs_from_eager_float16(sides: dict) -> None:
    # eager float16 flushes the loss at x = -9, y = 0 (exp(-9) = 1.2e-4 is below half an ULP of 9 in
    # float16); autocast computes in float32 and keeps it, so the labels differ there
    [reported] = sides["comparisons"]["modes"]
    loss = next(q for q in reported["quantities"] if (q["reduction"], q["quantity"]) == ("none", "loss"))
    assert loss["formats"] == ["float16", "float32"]
    assert loss["label_differs"] >= 1
    assert any(e["inputs"] == {"input": -9.0, "target": 0.0} and e["labels"][0] == "flushed"
               for e in loss["examples"])


def test_tables_appear_in_markdown_and_html(sides: dict) -> None:
    md = markdown.render(sides)
    assert "## Modes against eager (same device, same inputs)" in md
    assert "| bce_with_logits | float16 | cpu/eager | cpu/autocast | none | loss | float16/float32 |" in md
    assert "No CUDA device was run" in md or torch.cuda.is_available()
    page = html.render(sides, [])
    assert "<h2>Autocast: dtype of the loss, or the error</h2>" in page


def test_eager_only_report_says_how_to_compare_modes(tmp_path_factory: pytest.TempPathFactory) -> None:
    payload = _collect(["cpu"], ["eager"], tmp_path_factory)
    assert payload["comparisons"]["modes"] == []
    assert any("--modes eager,compile,compile_dynamic,autocast" in n for n in payload["comparisons"]["notes"])


@CUDA
def test_cuda_is_compared_with_cpu(tmp_path_factory: pytest.TempPathFactory) -> None:
    payload = _collect(["cpu", "cuda"], ["eager"], tmp_path_factory)
    [reported] = payload["comparisons"]["devices"]
    assert (reported["a"], reported["b"]) == ("cpu/eager", "cuda/eager")
    assert {q["points"] for q in reported["quantities"] if q["reduction"] == "none"} == {INPUTS["input"].size}


def test_a_comparison_table_says_what_its_rows_add_up_to() -> None:
    """The caption sums the rows' counts and names the largest gap's place; a row of an older report without
    ``failing_differs`` leaves that count out rather than guessing it."""
    def quantity(reduction: str, points: int, label: int, failing: int | None, ulp: int, bits: int,
                 gap: float | None) -> dict[str, Any]:
        q = {"reduction": reduction, "quantity": "loss", "points": points, "label_differs": label,
             "ulp_differs": ulp, "differing": label + ulp, "bitwise_differs": bits, "largest_ulp_gap": gap}
        return q if failing is None else {**q, "failing_differs": failing}

    rows = [{"case": "bce", "dtype": "float32", "a": "cpu/eager", "b": "cuda/eager",
             "quantities": [quantity("none", 1000, 3, 1, 2, 9, 7.5), quantity("mean", 1, 0, 0, 0, 1, 0.25)]},
            {"case": "kl_div", "dtype": "float16", "a": "cpu/eager", "b": "cuda/eager",
             "quantities": [quantity("sum", 1, 1, 1, 0, 1, 1e30)]}]
    assert modes_tables.comparison_caption(rows) == (
        "6 of 1,002 points differ: 4 in label (2 with a failing label on one side at least), 2 by more than the "
        "budget with the same label; 11 differ in bits.  Largest ULP gap: 1.000e+30 (kl_div float16, cpu/eager "
        "against cuda/eager, sum loss).")
    rows[1]["quantities"] = [quantity("sum", 1, 1, None, 0, 1, None)]
    assert modes_tables.comparison_caption(rows).startswith("6 of 1,002 points differ: 4 in label, 2 by more")
    assert modes_tables.comparison_caption([]) == ""
