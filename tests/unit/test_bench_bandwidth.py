"""The byte model and throughput arithmetic of suite.bench.bandwidth, against hand-counted values."""

from __future__ import annotations

import math

import pytest

from suite.bench import bandwidth
from suite.bench.bandwidth import CopyBandwidth, Traffic, minimal_traffic, throughput


def test_forward_reads_every_input_and_writes_the_output() -> None:
    # bce_with_logits, reduction="none", 1024 float32 elements: read x and y, write the loss
    traffic = minimal_traffic({"input": 4096, "target": 4096}, 4096)
    assert traffic == Traffic(reads=8192, writes=4096)
    assert traffic.total == 12288


def test_forward_counts_broadcast_parameters_at_their_own_size() -> None:
    # pos_weight of 1024 classes broadcast over 64 rows is read once: 1024 * 4 bytes
    traffic = minimal_traffic({"input": 262144, "target": 262144, "pos_weight": 4096}, 4)
    assert traffic == Traffic(reads=528384, writes=4)


def test_backward_reads_grad_output_rereads_inputs_and_writes_requested_gradients() -> None:
    # mean: the output and its gradient are one element (4 bytes); only "input" gets a gradient
    traffic = minimal_traffic({"input": 4096, "target": 4096}, 4, backward=True, grad_inputs=("input",))
    assert traffic == Traffic(reads=8192 + 4 + 8192, writes=4 + 4096)
    # none: the gradient of the output is as large as the output
    traffic = minimal_traffic({"input": 4096, "target": 4096}, 4096, backward=True, grad_inputs=("input",))
    assert traffic.total == (8192 + 4096 + 8192) + (4096 + 4096)


def test_throughput_figures() -> None:
    copy = CopyBandwidth("cpu", nbytes=10**9, seconds=0.5)  # 2 GB moved in 0.5 s
    assert copy.gbps == pytest.approx(4.0)
    figures = throughput(Traffic(reads=6 * 10**8, writes=4 * 10**8), 0.5, 0.4, 10**8, copy)
    assert figures["bytes_moved"] == 10**9
    assert figures["gbps"] == pytest.approx(2.0)
    assert figures["elements_per_s"] == pytest.approx(2e8)
    assert figures["copy_fraction"] == pytest.approx(0.5)
    assert figures["copy_fraction_best"] == pytest.approx(0.625)  # 2.5 GB/s at the best call
    with pytest.raises(ValueError):
        throughput(Traffic(1, 1), 0.0, 0.0, 1, copy)


def test_measure_copy_times_a_real_copy() -> None:
    copy = bandwidth.measure_copy("cpu", nbytes=1 << 20, repeats=3, seconds=0.0)
    assert copy.nbytes == 1 << 20
    assert 0 < copy.seconds < 1
    assert math.isfinite(copy.gbps) and copy.gbps > 0
    with pytest.raises(ValueError):
        bandwidth.measure_copy("cpu", nbytes=2)
