"""Each execution mode on CPU (and CUDA where present): compile really compiles (it accepts what eager
rejects), autocast runs BCE in float32 on CPU and refuses it on CUDA, and compile never silently falls back."""

from __future__ import annotations

import math

import pytest
import torch._dynamo.config

from suite import cases, compare, modes, run
from tests.conftest import DEVICES


def test_strict_compile_raises_the_limit_and_forbids_fallback() -> None:
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=False):
        with modes.strict_compile():
            assert torch._dynamo.config.recompile_limit == modes.RECOMPILE_LIMIT
            assert torch._dynamo.config.fail_on_recompile_limit_hit is True
        assert torch._dynamo.config.recompile_limit == 1


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


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bce(device: str) -> None:
    """BCE under autocast: CPU computes it in float32; CUDA refuses it as unsafe to autocast."""
    result = run.evaluate(cases.get("bce"), {"input": [0.25, 0.5], "target": [1.0, 0.0]}, "float16", device,
                          reductions=("none",), gradients=False, mode="autocast")
    loss = result.get()
    if device == "cpu":
        assert loss.error is None and loss.fmt.name == "float32"
        assert loss.got[0] == pytest.approx(math.log(4.0), rel=2**-22)
    else:
        assert loss.error is not None and "unsafe to autocast" in loss.error


@pytest.mark.parametrize(("mode", "recompiles"), [("compile", True), ("compile_dynamic", False)])
def test_compile_dynamic_serves_every_shape_with_one_graph(mode: str, recompiles: bool) -> None:
    """``compile`` compiles for the first shape and must recompile for a second; ``compile_dynamic``
    (``dynamic=True``) compiles symbolic shapes at once, so a second shape runs the same graph.  With one
    cached graph allowed, only the first fails on the second shape."""
    modes.fresh_compiles()
    forward = modes.forward_for(cases.get("bce_with_logits"), "mean", mode, "cpu")
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        for n in (5, 9):
            tensors = {"input": torch.linspace(-3.0, 3.0, n), "target": torch.full((n,), 0.25)}
            if n == 9 and recompiles:
                with pytest.raises(Exception, match=r"recompile_limit|cache_size_limit"):
                    forward(tensors)
            else:
                assert forward(tensors).item() == pytest.approx(
                    torch.nn.functional.binary_cross_entropy_with_logits(tensors["input"], tensors["target"]).item())
    modes.fresh_compiles()


def test_fresh_compiles_forgets_every_compiled_shape() -> None:
    """After :func:`modes.fresh_compiles`, ``compile`` compiles for the next shape as if it were the first
    (static shapes again): with one cached graph allowed, a second shape runs instead of raising."""
    case = cases.get("bce_with_logits")
    modes.fresh_compiles()
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        for n in (5, 9):
            modes.fresh_compiles()
            forward = modes.forward_for(case, "mean", "compile", "cpu")
            tensors = {"input": torch.linspace(-3.0, 3.0, n), "target": torch.full((n,), 0.25)}
            assert torch.isfinite(forward(tensors))
    modes.fresh_compiles()
