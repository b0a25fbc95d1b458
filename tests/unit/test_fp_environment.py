"""The floating-point environment checks (:mod:`suite.fp_environment`): the suite refuses to compute errors
with flush-to-zero on, and records what torch's kernels do with subnormals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from suite import deviations, fp_environment
from suite.report import summary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def flushing() -> Iterator[None]:
    """This thread with flush-to-zero and denormals-are-zero on, IEEE again afterwards."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode (torch.set_flush_denormal returned False)")
    with fp_environment.flushing_subnormals():
        yield


def test_this_process_is_ieee_as_numpy_sees_it() -> None:
    assert fp_environment.ieee_problems() == []
    # numpy's own view of the same facts: the smallest subnormals, and the spacing of 0 being that subnormal
    assert np.nextafter(0.0, 1.0) == np.spacing(0.0) == 2.0 ** -1074
    assert np.nextafter(np.float32(0), np.float32(1)) == np.spacing(np.float32(0)) == np.float32(2.0 ** -149)


def test_flush_to_zero_is_named_for_both_float_types(flushing: None) -> None:
    assert fp_environment.ieee_problems() == [
        "float64 subnormal operands read as zero (denormals-are-zero)",
        "float64 subnormal results flushed to zero (flush-to-zero)",
        "float32 subnormal operands read as zero (denormals-are-zero)",
        "float32 subnormal results flushed to zero (flush-to-zero)",
    ]
    assert np.spacing(0.0) == 0.0  # what the suite's ULP of zero would become


def test_require_ieee_is_one_usage_error_naming_the_cause(flushing: None) -> None:
    from suite.errors import UsageError

    with pytest.raises(UsageError) as caught:
        fp_environment.require_ieee("after importing plugin 'fast_math'")
    text = str(caught.value)
    assert "\n" not in text and "after importing plugin 'fast_math'" in text and "flush-to-zero" in text


def test_a_block_that_sets_flush_to_zero_is_followed_by_ieee_arithmetic_again() -> None:
    """What loading a -ffast-math kernel does (torch.compile on CPU in torch 2.4 and 2.5), imitated with
    torch.set_flush_denormal: inside the block torch flushes, after it the thread is IEEE again."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    tiny = torch.tensor([2.0 ** -1074], dtype=torch.float64)
    with fp_environment.keeping_ieee():
        torch.set_flush_denormal(True)
        inside = (tiny * 1).item()
    assert inside == 0.0 and fp_environment.ieee_problems() == []
    assert (tiny * 1).item() == 2.0 ** -1074


#: Torch releases whose inductor CPU kernels, built with -ffast-math, set flush-to-zero in the calling thread: with
#: a pool of compile workers (measured on 2.4.1 and 2.5.1; 2.1.2, 2.6.0 and 2.7.1 keep IEEE arithmetic), and where
#: inductor compiles in the calling process (the registry's entry, from 2.1).
FAST_MATH_INDUCTOR = {2: SpecifierSet(">=2.4,<2.6"),
                      1: SpecifierSet(deviations.get("compile-cpu-fast-math-flushes-subnormals").torch)}


@pytest.mark.parametrize("compile_threads", [
    pytest.param(threads, id=f"{threads}-compile-threads", marks=pytest.mark.xfail(
        Version(torch.__version__.split("+")[0]) in releases, strict=True,
        reason="inductor's CPU kernels set flush-to-zero when loaded in this torch"))
    for threads, releases in FAST_MATH_INDUCTOR.items()])
def test_compiling_here_keeps_ieee_arithmetic(compile_threads: int) -> None:
    assert fp_environment.compile_problems("cpu", compile_threads) == []
    assert fp_environment.ieee_problems() == []


def test_compile_problems_compiles_with_the_given_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def run(*args: object, env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(env.get("TORCHINDUCTOR_COMPILE_THREADS"))
        return subprocess.CompletedProcess([], 0, stdout="[]\n", stderr="")

    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    monkeypatch.setattr(subprocess, "run", run)
    assert fp_environment.compile_problems("cpu", 1) == [] and fp_environment.compile_problems("cpu") == []
    assert seen == ["1", None]


def test_summary_names_a_device_whose_compile_took_ieee_arithmetic() -> None:
    lines = summary._compile_lines({"cpu": ["float32 subnormal results flushed to zero (flush-to-zero)"],
                                    "cuda": []})
    assert lines == ["cpu: torch.compile left the calling thread's arithmetic non-IEEE (float32 subnormal results "
                     "flushed to zero (flush-to-zero)); the suite gave it back after each compiled call"]
    assert summary._compile_lines(None) == []


def test_torch_keeps_subnormals_by_default() -> None:
    assert fp_environment.torch_subnormals() == dict.fromkeys(("float64", "float32", "float16", "bfloat16"), "kept")


def test_torch_flushes_on_the_calling_thread(flushing: None) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = fp_environment.torch_subnormals()
    finally:
        torch.set_num_threads(threads)
    # 2^-1074, 2^-149 and bfloat16's 2^-133 are float64/float32 subnormals where torch computes them; float16's
    # 2^-24 is a float32 normal, and FTZ/DAZ do not touch float16 (pytorch/pytorch#150007, maintainers' answer)
    assert found == {"float64": "flushed", "float32": "flushed", "float16": "kept", "bfloat16": "flushed"}


def test_worker_threads_keep_their_own_mode(flushing: None) -> None:
    """set_flush_denormal sets the calling thread's mode only: a tensor split between two threads is
    flushed in the calling thread's share and kept in the worker's."""
    threads = torch.get_num_threads()
    torch.set_flush_denormal(False)
    torch.set_num_threads(2)
    try:
        torch.ones(1 << 20).mul_(2)  # the worker thread exists, created with IEEE arithmetic
        torch.set_flush_denormal(True)
        found = fp_environment.torch_subnormals()
    finally:
        torch.set_num_threads(threads)
    assert found["float32"].startswith("flushed in part ("), found


def test_summary_names_only_the_flushing_dtypes() -> None:
    lines = summary._subnormal_lines({"cpu": {"float64": "kept", "float32": "flushed in part (3 of 8)"},
                                      "cuda": dict.fromkeys(("float64", "float32"), "kept")})
    assert lines == ["cpu: torch's kernels flush subnormals to zero (FTZ/DAZ) in this run: "
                     "float32 flushed in part (3 of 8)"]
    assert summary._subnormal_lines(None) == []


def _suite(args: list[str], prelude: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"import sys, torch\n{prelude}\nfrom suite import cli\nsys.exit(cli.main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)])}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_command_refuses_a_flushing_process(tmp_path: Path) -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    done = _suite(["audit"], "torch.set_flush_denormal(True)", tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m suite audit: error: ") and "flush-to-zero" in lines[0]


def test_report_refuses_a_plugin_that_sets_flush_to_zero_and_keeps_the_old_report(tmp_path: Path) -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    (tmp_path / "fast_math_plugin.py").write_text("import torch\ntorch.set_flush_denormal(True)\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "accuracy.json").write_text("earlier report\n")
    done = _suite(["report", "--plugin", "fast_math_plugin", "--quick", "--out", str(out)], "", tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "after importing plugin 'fast_math_plugin'" in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.json"]
    assert (out / "accuracy.json").read_text() == "earlier report\n"
