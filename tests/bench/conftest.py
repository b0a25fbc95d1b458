"""Benchmark fixtures: the copy bandwidth of each device (measured once per run), the injected slow-down
(a self-test of the regression gate), the CPU thread count (``SUITE_BENCH_THREADS``, default torch's own;
1 is steadier on a machine shared with other work), and torch/CUDA/GPU facts in ``machine_info``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from suite.bench import bandwidth, matrix, workload
from suite.errors import UsageError

THREADS_ENV = "SUITE_BENCH_THREADS"


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> int:
    """Intra-op threads for the whole benchmark run (the copy and the losses use the same number; kept
    after the run so that ``machine_info``, written at the end, records it)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            pytest.exit(f"{THREADS_ENV} must be a positive integer, not {value!r}", returncode=2)
        torch.set_num_threads(int(value))
    return torch.get_num_threads()


@pytest.fixture(scope="session")
def copy_bandwidth() -> Callable[[str], bandwidth.CopyBandwidth]:
    """``get(device)``: the device's copy bandwidth, measured on first use and reused for the whole run."""
    measured: dict[str, bandwidth.CopyBandwidth] = {}

    def get(device: str) -> bandwidth.CopyBandwidth:
        if device not in measured:
            measured[device] = bandwidth.measure_copy(device)
        return measured[device]

    return get


@pytest.fixture(scope="session")
def injected() -> frozenset[str]:
    """Cases named in ``SUITE_BENCH_INJECT_SLOWDOWN`` (they do their work twice); a bad name stops the run."""
    try:
        return workload.injected_cases()
    except UsageError as exc:
        pytest.exit(str(exc), returncode=2)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["torch_version"] = torch.__version__
    machine_info["cuda_version"] = torch.version.cuda
    machine_info["gpu_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["bench_matrix"] = "full" if matrix.full_requested() else "default"
