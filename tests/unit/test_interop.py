"""The check that torch and numpy can exchange arrays (:mod:`suite.interop`): quiet here, one line and exit
status 2 where they cannot (a torch built against numpy 1.x under numpy 2), before anything is measured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from suite import interop
from suite.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
#: What a torch built against numpy 1.x does under numpy 2 (torch 2.2.2 with numpy 2.4, measured).
NOT_AVAILABLE = "def _refuse(*args, **kwargs):\n    raise RuntimeError('Numpy is not available')\n"


def test_this_torch_and_numpy_exchange_arrays() -> None:
    assert interop.numpy_interop_problem() is None
    interop.require_numpy_interop()
    assert torch.from_numpy(np.array([0.5])).item() == 0.5


def test_a_torch_without_numpy_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, object] = {}
    exec(NOT_AVAILABLE, namespace)
    monkeypatch.setattr(torch, "from_numpy", namespace["_refuse"])
    problem = interop.numpy_interop_problem()
    assert problem is not None and "Numpy is not available" in problem and "numpy<2" in problem
    assert torch.__version__ in problem and np.__version__ in problem
    with pytest.raises(UsageError, match="numpy<2"):
        interop.require_numpy_interop()


def test_a_command_refuses_it_in_one_line_with_status_2(tmp_path: Path) -> None:
    code = (f"import sys, torch\n{NOT_AVAILABLE}torch.from_numpy = _refuse\n"
            "from suite import cli\nsys.exit(cli.main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, "audit"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m suite audit: error: torch ") and "numpy<2" in lines[0]
