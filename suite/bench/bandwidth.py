"""The memory-bandwidth limit of a device and how close a benchmark gets to it.

*Copy bandwidth* is measured with ``dst.copy_(src)`` on buffers several times larger than the last-level
cache, best of at least ``COPY_REPEATS`` copies and of as many as fit in ``COPY_SECONDS`` (on a machine shared
with other work the best copy is the one that found the memory system quiet), counted STREAM-style as
``2 * nbytes`` (one read, one write) per copy.

*Bytes moved* is the least traffic a perfectly fused implementation must cause (the byte model):

- forward: read every input once (data inputs and broadcast parameters such as ``pos_weight``) and write the
  output (``numel`` elements for ``reduction="none"``, one element for ``"mean"``);
- forward+backward adds the backward pass as a separate pass, the way autograd runs it: read the gradient of
  the output (as large as the output), re-read every input (the gradients of these losses depend on all of
  them) and write the gradient of each input that requires one.

Intermediates (the ``sigmoid`` of a composition, a ``log_softmax``) are *not* counted: they are traffic an
implementation chooses, so an unfused composition shows up as a lower fraction of the copy bandwidth.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

#: Copy buffer per device type, in bytes (each of source and destination).
COPY_BYTES = {"cpu": 1 << 27, "cuda": 1 << 30}
COPY_REPEATS = 10
COPY_SECONDS = 2.0


def synchronize(device: str) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU), so that a timer measures finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class CopyBandwidth:
    """Best ``dst.copy_(src)`` rate of a device: ``gbps = 2 * nbytes / seconds / 1e9``."""

    device: str
    nbytes: int
    seconds: float

    @property
    def gbps(self) -> float:
        return 2 * self.nbytes / self.seconds / 1e9


def measure_copy(device: str, nbytes: int | None = None, repeats: int = COPY_REPEATS,
                 seconds: float = COPY_SECONDS) -> CopyBandwidth:
    """Copy bandwidth of ``device``: best synchronised copy of an ``nbytes`` float32 buffer (touched
    beforehand, so no page faults or lazily zeroed pages are timed), over at least ``repeats`` copies and
    until ``seconds`` have passed."""
    size = nbytes if nbytes is not None else COPY_BYTES[torch.device(device).type]
    if size < 4 or repeats < 1:
        raise ValueError("measure_copy needs nbytes >= 4 and repeats >= 1")
    src = torch.ones(size // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    synchronize(device)
    best, count, until = float("inf"), 0, time.perf_counter() + seconds
    while count < repeats or time.perf_counter() < until:
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
        count += 1
    return CopyBandwidth(device, src.numel() * 4, best)


@dataclass(frozen=True)
class Traffic:
    """Least bytes read and written by one call (see the module docstring for the model)."""

    reads: int
    writes: int

    @property
    def total(self) -> int:
        return self.reads + self.writes


def minimal_traffic(input_bytes: Mapping[str, int], output_bytes: int, *, backward: bool = False,
                    grad_inputs: Iterable[str] = ()) -> Traffic:
    """Bytes a call must move: ``input_bytes`` maps each input to its size in bytes, ``output_bytes`` is the
    loss's size; with ``backward`` the gradient of the output is read, every input re-read and the gradient
    of each input in ``grad_inputs`` written."""
    inputs = sum(input_bytes.values())
    reads, writes = inputs, output_bytes
    if backward:
        reads += output_bytes + inputs
        writes += sum(input_bytes[name] for name in grad_inputs)
    return Traffic(reads, writes)


def throughput(traffic: Traffic, median_s: float, best_s: float, numel: int,
               copy: CopyBandwidth) -> dict[str, float]:
    """The figures every benchmark records in ``extra_info``: rates at the median call time, and the
    fraction of the copy bandwidth both at the median and at the best call (``copy_fraction_best``: best
    call against best copy, the figure least disturbed by other work on a shared machine)."""
    if median_s <= 0 or best_s <= 0:
        raise ValueError("a call cannot take no time")
    gbps = traffic.total / median_s / 1e9
    return {
        "bytes_moved": traffic.total,
        "bytes_read": traffic.reads,
        "bytes_written": traffic.writes,
        "gbps": gbps,
        "elements_per_s": numel / median_s,
        "copy_gbps": copy.gbps,
        "copy_fraction": gbps / copy.gbps,
        "copy_fraction_best": traffic.total / best_s / 1e9 / copy.gbps,
    }
