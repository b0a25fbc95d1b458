"""What a case is: a loss form as data (torch callable, exact reference, input domains, reductions)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suite.truth import ReferenceFn

if TYPE_CHECKING:
    import torch

TorchFn = Callable[[Mapping[str, "torch.Tensor"], str], "torch.Tensor"]

#: Input kinds, used by the input generators to pick values that matter for each input.
INPUT_KINDS = ("logit", "probability", "target", "log_probability", "log_target", "weight", "pos_weight")


@dataclass(frozen=True)
class InputSpec:
    """One input of a case.

    ``low``/``high`` bound the mathematical domain (inclusive); values outside make the truth undefined.
    ``role`` is ``"data"`` for inputs of the full batch shape, ``"parameter"`` for broadcast parameters
    (``weight``, ``pos_weight``) that torch does not differentiate here.
    """

    name: str
    kind: str
    low: float = -math.inf
    high: float = math.inf
    differentiable: bool = True
    role: str = "data"

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(INPUT_KINDS)})")
        if self.role not in ("data", "parameter"):
            raise ValueError(f"input {self.name!r}: role must be 'data' or 'parameter'")

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Case:
    """A loss form under test.

    ``forward(tensors, reduction)`` calls torch; ``module_forward`` is the same through ``nn.Module`` (the two
    must agree bit for bit).  ``reference`` maps one sample of exact inputs to a :class:`suite.truth.Reference`.
    With ``rows`` a sample is a row along the last axis (softmax compositions), else one element.
    ``fused`` names the case a composition should be compared with; ``known_as`` names the built-in case whose
    registered deviations this one shares.
    """

    name: str
    family: str
    description: str
    inputs: tuple[InputSpec, ...]
    forward: TorchFn
    reference: ReferenceFn
    reductions: tuple[str, ...] = ("none", "mean", "sum")
    module_forward: TorchFn | None = None
    rows: bool = False
    fused: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    known_as: str | None = None

    @property
    def registry_name(self) -> str:
        """The name under which known deviations are registered: a variant of a built-in loss (``known_as``)
        inherits the built-in's, so that only what the variant changes is judged."""
        return self.known_as or self.name

    def __post_init__(self) -> None:
        unknown = set(self.reductions) - set(REDUCTION_DIVISORS)
        if unknown:
            raise ValueError(f"case {self.name!r}: unknown reductions {sorted(unknown)}")

    @property
    def main_input(self) -> InputSpec:
        return self.inputs[0]

    @property
    def differentiable(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs if s.differentiable)

    def spec(self, name: str) -> InputSpec:
        for s in self.inputs:
            if s.name == name:
                return s
        raise KeyError(f"case {self.name!r} has no input {name!r}")

    def in_domain(self, sample: Mapping[str, list[float]]) -> bool:
        """True when every value of the sample lies in its input's domain."""
        return all(self.spec(name).contains(v) for name, values in sample.items() for v in values)


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


#: How the exact reduced value is formed from the exact sum: the divisor for a batch of a given shape.
REDUCTION_DIVISORS: dict[str, Callable[[tuple[int, ...]], int] | None] = {
    "none": None,
    "sum": lambda shape: 1,
    "mean": _numel,
    "batchmean": lambda shape: shape[0] if shape else 1,
}
