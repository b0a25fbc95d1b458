"""Each execution mode on CPU (and CUDA where present): compile really compiles (it accepts what eager
rejects), autocast runs BCE in float32 on CPU and refuses it on CUDA, and compile never silently falls back."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
import torch._dynamo.config

from suite import budgets, cases, compare, modes, run
from tests.conftest import DEVICES, raising_entry


def test_strict_compile_raises_the_limit_and_forbids_fallback() -> None:
    limit, fail = modes.dynamo_settings()
    # torch 2.7 renamed cache_size_limit to recompile_limit, and 2.6 added the setting to raise at it
    assert limit == ("recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit")
    with torch._dynamo.config.patch({limit: 1, **({fail: False} if fail else {})}):
        with modes.strict_compile():
            assert getattr(torch._dynamo.config, limit) == modes.RECOMPILE_LIMIT
            assert fail is None or getattr(torch._dynamo.config, fail) is True
        assert getattr(torch._dynamo.config, limit) == 1


def test_compile_accepts_probabilities_eager_rejects() -> None:
    """CPU only: on CUDA the eager side is a device-side assert (see the probes, which isolate it)."""
    sides = [("cpu", "eager"), ("cpu", "compile")]
    results = compare.evaluate_sides(cases.get("bce"), {"input": [1.5, 0.25], "target": [1.0, 0.0]}, "float32",
                                     sides, reductions=("none",), gradients=False, cache=False)
    eager, compiled = (results[s].get("none", run.LOSS) for s in sides)
    assert eager.error is not None and "between 0 and 1" in eager.error
    assert compiled.error is None
    assert math.isnan(compiled.got[0])  # log(1 - 1.5) is NaN
    assert compiled.got[1] == pytest.approx(-math.log(0.75), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_eager_mode_is_exact_at_a_simple_point(device: str) -> None:
    result = run.evaluate(cases.get("bce_with_logits"), {"input": [0.0], "target": [1.0]}, "float32", device,
                          reductions=("none",), gradients=False)
    assert result.get().got[0] == pytest.approx(math.log(2.0), rel=2**-23)


#: The autocast dtypes this torch's CPU autocast takes: torch 2.1 raises for float16
#: (the registry's cpu-autocast-float16-not-supported).
CPU_AUTOCAST = [d for d in ("float16", "bfloat16") if raising_entry("bce", d, "cpu", "autocast") is None]


@pytest.mark.parametrize("dtype", CPU_AUTOCAST)
@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bce(device: str, dtype: str) -> None:
    """BCE under autocast: CPU computes it in float32; CUDA refuses it as unsafe to autocast."""
    result = run.evaluate(cases.get("bce"), {"input": [0.25, 0.5], "target": [1.0, 0.0]}, dtype, device,
                          reductions=("none",), gradients=False, mode="autocast")
    loss = result.get()
    if device == "cpu":
        assert loss.error is None and loss.fmt.name == "float32"
        assert loss.got[0] == pytest.approx(math.log(4.0), rel=2**-22)
    else:
        assert loss.error is not None and "unsafe to autocast" in loss.error


@pytest.mark.parametrize("dtype", CPU_AUTOCAST)
def test_autocast_judges_each_quantity_in_the_format_it_returns(dtype: str) -> None:
    """A float32 loss from 16-bit inputs is a float32 computation: it gets float32's ULP budget, while the
    gradients, 16-bit like their leaves, keep their format's (on CUDA a float32 loss within 4 ULPs was once
    labelled inaccurate against float16's 1-ULP budget)."""
    result = run.evaluate(cases.get("bce_with_logits"), {"input": [0.5], "target": [0.25]}, dtype, "cpu",
                          reductions=("none",), mode="autocast")
    loss, grad = result.get(), result.get(quantity="grad_input")
    assert (loss.fmt.name, grad.fmt.name) == ("float32", dtype)
    assert loss.metrics.budget == budgets.ulp_budget("bce_with_logits", "float32") == 4.0
    assert grad.metrics.budget == budgets.ulp_budget("bce_with_logits", dtype) == 1.0


@pytest.mark.parametrize(("mode", "recompiles"), [("compile", True), ("compile_dynamic", False)])
def test_compile_dynamic_serves_every_shape_with_one_graph(mode: str, recompiles: bool) -> None:
    """``compile`` compiles for the first shape and must recompile for a second; ``compile_dynamic``
    (``dynamic=True``) compiles symbolic shapes at once, so a second shape runs the same graph.  With one
    cached graph allowed, only the first fails on the second shape."""
    modes.fresh_compiles()
    forward = modes.forward_for(cases.get("bce_with_logits"), "mean", mode, "cpu")
    with modes.compile_limit(1):
        for n in (5, 9):
            tensors = {"input": torch.linspace(-3.0, 3.0, n), "target": torch.full((n,), 0.25)}
            if n == 9 and recompiles:
                with pytest.raises(Exception, match=r"recompile_limit|cache_size_limit"):
                    forward(tensors)
            else:
                assert forward(tensors).item() == pytest.approx(
                    torch.nn.functional.binary_cross_entropy_with_logits(tensors["input"], tensors["target"]).item())
    modes.fresh_compiles()


def test_a_torch_that_cannot_raise_at_the_limit_has_the_fallback_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before 2.6 dynamo has no setting to raise at its recompile limit: it runs the frame eagerly and counts it.
    Here the setting is hidden from the suite as such a torch would, so the compiled function must check."""
    limit, _ = modes.dynamo_settings()
    monkeypatch.setattr(modes, "dynamo_settings", lambda: (limit, None))
    modes.fresh_compiles()
    forward = modes.forward_for(cases.get("bce_with_logits"), "mean", "compile", "cpu")
    with modes.compile_limit(1):  # the limit alone: dynamo would fall back silently
        for n in (5, 9):
            tensors = {"input": torch.linspace(-3.0, 3.0, n), "target": torch.full((n,), 0.25)}
            if n == 9:
                with pytest.raises(RuntimeError, match=r"torch\.compile ran eagerly"):
                    forward(tensors)
            else:
                assert torch.isfinite(forward(tensors))
    modes.fresh_compiles()


def test_each_compile_mode_compiles_its_own_graph() -> None:
    """``compile_dynamic`` run after ``compile`` in one process, on the same inputs, captures a graph of its own
    (torch 2.4 reused ``compile``'s static one for it, and 2.1 the loss's frames behind its graph break)."""
    from torch._dynamo.utils import counters

    modes.fresh_compiles()
    tensors = {"input": torch.linspace(-3.0, 3.0, 5), "target": torch.full((5,), 0.25)}
    captured = []
    for mode in modes.COMPILE_MODES:
        forward = modes.forward_for(cases.get("bce_with_logits"), "mean", mode, "cpu")
        with modes.context(mode, "cpu", torch.float32):
            forward(tensors)
        captured.append(counters["stats"]["unique_graphs"])
    modes.fresh_compiles()
    assert captured[1] > captured[0]


def test_switching_compile_modes_forgets_the_compiled_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    modes.fresh_compiles()
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    case = cases.get("bce_with_logits")
    for mode, reduction in [("compile", "mean"), ("compile", "sum"), ("eager", "sum"), ("compile_dynamic", "mean"),
                            ("compile_dynamic", "sum"), ("compile", "mean")]:
        modes.forward_for(case, reduction, mode, "cpu")
    assert len(resets) == 2  # to compile_dynamic, and back to compile
    monkeypatch.undo()
    modes.fresh_compiles()


def test_fresh_compiles_forgets_every_compiled_shape() -> None:
    """After :func:`modes.fresh_compiles`, ``compile`` compiles for the next shape as if it were the first
    (static shapes again): with one cached graph allowed, a second shape runs instead of raising."""
    case = cases.get("bce_with_logits")
    modes.fresh_compiles()
    with modes.compile_limit(1):
        for n in (5, 9):
            modes.fresh_compiles()
            forward = modes.forward_for(case, "mean", "compile", "cpu")
            tensors = {"input": torch.linspace(-3.0, 3.0, n), "target": torch.full((n,), 0.25)}
            assert torch.isfinite(forward(tensors))
    modes.fresh_compiles()


def test_lay_out_keeps_values_and_gradients_in_another_layout() -> None:
    x = torch.arange(12.0).reshape(3, 4).requires_grad_()
    given = {"input": x, "scalar": torch.tensor(2.0), "row": torch.arange(3.0)}
    assert modes.lay_out(given, "eager") == given
    strided = modes.lay_out(given, "strided")
    transposed = modes.lay_out(given, "transposed")
    assert strided["input"].stride() == (8, 2) and strided["row"].stride() == (2,)
    assert transposed["input"].stride() == (1, 3) and transposed["row"].stride() == (1,)
    for laid in (strided, transposed):
        assert all(torch.equal(laid[k].detach(), given[k].detach()) for k in given)
        assert laid["input"].is_leaf and laid["input"].requires_grad and not laid["row"].requires_grad
        (laid["input"] * 3).sum().backward()
        grad = laid["input"].grad
        assert grad is not None and torch.equal(grad, torch.full((3, 4), 3.0))


@pytest.mark.parametrize("mode", ["eager", *modes.LAYOUT_MODES])
def test_a_layout_mode_gives_the_loss_its_inputs_in_that_layout(mode: str) -> None:
    """A case that records the strides its forward sees: the report's layout modes reach torch's kernels."""
    from dataclasses import replace

    seen: list[tuple[int, ...]] = []
    base = cases.get("bce_with_logits")

    def spy(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
        seen.append(t["input"].stride())
        return base.forward(t, reduction)

    case = cases.register(replace(base, name="layout_spy", forward=spy, module_forward=None, known_as=base.name))
    try:
        result = run.evaluate(case, {"input": [[0.5, -1.0, 2.0]] * 2, "target": [[1.0, 0.0, 0.5]] * 2}, "float32",
                              reductions=("none",), mode=mode)
    finally:
        cases.unregister(case.name)
    assert seen == [{"eager": (3, 1), "strided": (6, 2), "transposed": (1, 2)}[mode]]
    # exact logistic loss at 0.5 with y = 1, log(1 + e^-0.5), and its gradient sigmoid(0.5) - 1
    assert result.get().got[0, 0] == pytest.approx(math.log1p(math.exp(-0.5)), rel=2**-22)
    assert result.get("none", "grad_input").got[0, 0] == pytest.approx(-1 / (1 + math.exp(0.5)), rel=2**-22)


@pytest.mark.parametrize("mode", modes.LAYOUT_MODES)
def test_a_layout_reproducer_stores_its_inputs_in_that_layout(mode: str) -> None:
    """The snippet of a point measured in a layout mode runs torch on tensors in that layout (two elements at
    least: torch treats a one-element view as contiguous) and prints what the run measured."""
    import contextlib
    import io

    from suite.report.reproducer import Point, snippet

    p, y = 5.25895088e-18, 0.0
    result = run.evaluate(cases.get("bce"), {"input": [[p, p]] * 2, "target": [[y, y]] * 2}, "float32",
                          reductions=("sum",), mode=mode)
    got = float(result.get("sum", "grad_target").got[0, 0])
    point = Point({"input": [p, p], "target": [y, y]}, "float32", "cpu", mode, "sum", "grad_target", 0, 0.0, got,
                  torch.__version__, shape=(2, 2))
    namespace: dict[str, object] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet(cases.get("bce"), point), "<reproducer>", "exec"), namespace)
    assert float(printed.getvalue().split()[-1]) == got
    laid = namespace["y"]
    assert isinstance(laid, torch.Tensor) and not laid.is_contiguous()
