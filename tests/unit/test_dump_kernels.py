"""scripts/dump_kernels.py: what it counts in generated kernels, and its refusal of unknown entries."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dump_kernels.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dump_kernels", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patterns_are_counted_once_per_distinct_kernel(tmp_path: Path) -> None:
    """A Triton kernel's libdevice and sigmoid calls and a PTX file's approximate, flush-to-zero and fused
    instructions are counted; a copy of a kernel, the wrapper that embeds it and Python that is not a kernel
    are not."""
    kernel = ("@triton.jit\ndef k(x):\n    y = libdevice.log1p(-x)\n    z = tl.sigmoid(x)\n"
              "    return libdevice.log1p(z)\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kernel.py").write_text(kernel)
    (tmp_path / "b.py").write_text(kernel)  # the same kernel again
    (tmp_path / "wrapper.py").write_text(f"k = async_compile.triton('k', '''\n{kernel}''')\n")
    (tmp_path / "a" / "other.py").write_text("libdevice.exp(1)\n")  # no kernel in it
    (tmp_path / "k.ptx").write_text("ex2.approx.f32 %f1, %f2;\nfma.rn.ftz.f32 %f3, %f1, %f2, %f4;\n"
                                    "div.full.f32 %f5, %f3, %f1;\nmul.f32 %f6, %f5, %f5;\n"
                                    "mul.rn.ftz.f32 %f7, %f6, %f6;\nex2.approx.f32 %f8, %f7;\n")
    files, occurrences, in_files = _script().count_patterns(tmp_path)
    assert files == ["a/kernel.py", "k.ptx"]
    assert dict(occurrences) == {"libdevice.log1p": 2, "tl.sigmoid": 1, "ex2.approx.f32": 2, "fma.rn.ftz.f32": 1,
                                 "div.full.f32": 1, "mul.rn.ftz.f32": 1}
    assert set(in_files.values()) == {1}


@pytest.mark.parametrize(("arguments", "says"), [
    (["no-such-entry", "--device", "cpu"], "dump_kernels: error: unknown deviation id(s): no-such-entry"),
    (["--device", "tpu"], "dump_kernels: error: unknown device 'tpu'"),
], ids=["entry", "device"])
def test_bad_input_is_refused_with_one_line(tmp_path: Path, arguments: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out"), *arguments],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(says) and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
