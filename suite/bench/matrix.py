"""The benchmark matrix: which case, reduction, dtype, device, mode, direction and size are timed.

Every point has a stable id ``case-reduction-dtype-device-mode-direction-2pK`` (``2pK`` = 2^K elements), so
saved runs stay comparable across versions.  The default matrix fits ``nox -s bench`` on a small CPU;
``SUITE_BENCH_FULL=1`` selects the full one (every dtype, more sizes).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from suite import cases

#: The losses benchmarked: BCE, BCE-with-logits with and without pos_weight, kl_div and the compositions.
CASES = ("bce", "bce_with_logits", "bce_with_logits_pos_weight", "kl_div", "sigmoid_bce",
         "log_softmax_kl_div")
REDUCTIONS = ("none", "mean")
MODES = ("eager", "compile")
DIRECTIONS = ("fwd", "fwdbwd")
#: Length of the last axis (classes): samples are rows of this many elements; ``pos_weight`` has this size.
CLASSES = 1024

#: (dtypes, log2 sizes) per device type, default and full.
DEFAULT = {"cpu": (("float32",), (16, 24)), "cuda": (("float32",), (20, 28))}
FULL = {"cpu": (("float64", "float32", "float16", "bfloat16"), (16, 20, 24)),
        "cuda": (("float64", "float32", "float16", "bfloat16"), (16, 20, 24, 28))}
FULL_ENV = "SUITE_BENCH_FULL"


@dataclass(frozen=True)
class Key:
    """What identifies a benchmark: a case, reduction, dtype, device, mode, direction and ``2**log2_numel``
    elements (also for saved runs, whose cases this version may not know)."""

    case: str
    reduction: str
    dtype: str
    device: str
    mode: str
    direction: str
    log2_numel: int

    @property
    def id(self) -> str:
        return "-".join((self.case, self.reduction, self.dtype, self.device, self.mode, self.direction,
                         f"2p{self.log2_numel}"))

    @property
    def numel(self) -> int:
        return 1 << self.log2_numel


@dataclass(frozen=True)
class Point(Key):
    """A benchmark of this version's matrix: a :class:`Key` whose case, reduction, mode and size are valid."""

    def __post_init__(self) -> None:
        case = cases.get(self.case)
        if self.reduction not in case.reductions:
            raise ValueError(f"case {self.case!r} has no reduction {self.reduction!r}")
        if self.mode not in MODES or self.direction not in DIRECTIONS:
            raise ValueError(f"mode must be one of {MODES} and direction one of {DIRECTIONS}")
        if (1 << self.log2_numel) % CLASSES:
            raise ValueError(f"2^{self.log2_numel} elements do not fill rows of {CLASSES}")

    @property
    def shape(self) -> tuple[int, int]:
        """Batch shape: rows of :data:`CLASSES` elements."""
        return (self.numel // CLASSES, CLASSES)

    @property
    def backward(self) -> bool:
        return self.direction == "fwdbwd"


def full_requested() -> bool:
    """Whether ``SUITE_BENCH_FULL`` asks for the full matrix."""
    return os.environ.get(FULL_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def points(full: bool | None = None, devices: tuple[str, ...] = ("cpu", "cuda")) -> list[Point]:
    """The matrix in a fixed order (default or full; ``None`` follows ``SUITE_BENCH_FULL``)."""
    table = FULL if (full_requested() if full is None else full) else DEFAULT
    out: list[Point] = []
    for device in devices:
        dtypes, sizes = table[device]
        # points that share inputs (case, dtype, size) are consecutive, so the inputs are made once
        out.extend(Point(case, reduction, dtype, device, mode, direction, k) for case, dtype, k, reduction, mode,
                   direction in itertools.product(CASES, dtypes, sizes, REDUCTIONS, MODES, DIRECTIONS))
    return out
