"""What one benchmark times: a case's own ``forward`` (the code the accuracy tests run) on realistic inputs,
eager or compiled (once per function, dtype and shape, kept in a cache), forward or forward+backward, with
CUDA work synchronised inside the timed call.

Inputs are never zeros: logits ~ N(0, 3^2), probabilities uniform in (0, 1) away from the ends, soft
targets uniform in [0, 1), kl_div inputs and targets the log-softmax and softmax of such logits (rows are
distributions), weights in [0.5, 1.5).  As in training, only the prediction (the first input) requires a
gradient.

``SUITE_BENCH_INJECT_SLOWDOWN=case[,case...]`` makes the named cases do their work twice per call: a
self-test of the regression gate (``nox -s bench_compare`` must then fail and name them).
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from suite import cases, modes, selection
from suite.bench.bandwidth import Traffic, minimal_traffic, synchronize
from suite.bench.matrix import Point
from suite.cases.base import Case, InputSpec
from suite.errors import UsageError

INJECT_ENV = "SUITE_BENCH_INJECT_SLOWDOWN"
LOGIT_SCALE = 3.0
#: Probabilities are kept in [2^-8, 1 - 2^-8], representable below 1 even in bfloat16.
PROBABILITY_MARGIN = 2.0**-8

Forward = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
_COMPILED: dict[str, Forward] = {}
#: The inputs last made (one entry: consecutive points of the matrix share them; memory stays bounded).
_INPUTS: dict[tuple[str, tuple[int, ...], str, str], dict[str, torch.Tensor]] = {}


def injected_cases(value: str | None = None) -> frozenset[str]:
    """Case names listed in ``SUITE_BENCH_INJECT_SLOWDOWN`` (or ``value``); unknown or blank names are a
    UsageError."""
    text = os.environ.get(INJECT_ENV, "") if value is None else value
    chosen = frozenset(selection.names(text, INJECT_ENV) if text else ())
    unknown = sorted(chosen - set(cases.names()))
    if unknown:
        raise UsageError(f"{INJECT_ENV}: unknown cases {', '.join(unknown)}")
    return chosen


def _sample(spec: InputSpec, shape: tuple[int, ...], distribution: bool, gen: torch.Generator,
            device: str) -> torch.Tensor:
    """float32 values of one input kind (see the module docstring)."""
    def logits() -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device) * LOGIT_SCALE

    def uniform() -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device)

    if spec.kind == "logit":
        return logits()
    if spec.kind == "probability":
        return uniform().clamp_(PROBABILITY_MARGIN, 1 - PROBABILITY_MARGIN)
    if spec.kind == "target":
        return torch.softmax(logits(), dim=-1) if distribution else uniform()
    if spec.kind in ("log_probability", "log_target"):
        return torch.log_softmax(logits(), dim=-1)
    if spec.kind in ("weight", "pos_weight"):
        return uniform() + 0.5
    raise ValueError(f"no benchmark inputs for kind {spec.kind!r}")


def make_inputs(case: Case, shape: tuple[int, ...], dtype: torch.dtype, device: str,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """Realistic inputs of ``case`` for a batch of ``shape`` (parameters: one value per class)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    distribution = case.rows or case.main_input.kind == "log_probability"
    out = {}
    for spec in case.inputs:
        spec_shape = shape[-1:] if spec.role == "parameter" else shape
        out[spec.name] = _sample(spec, spec_shape, distribution, gen, device).to(dtype)
    return out


def _own_code(fn: Forward, name: str) -> Forward:
    """``fn`` with a code object of its own: Dynamo caches compiled graphs per code object, so closures of
    one ``def`` would share a cache and hit its recompile limit (falling back to eager) after 8 variants."""
    code = fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def forward_for(point: Point) -> Forward:
    """The case's forward for ``point``: eager, or compiled with static shapes once and cached by id."""
    eager = modes.forward_for(cases.get(point.case), point.reduction, "eager", point.device)
    if point.mode == "eager":
        return eager
    if point.id not in _COMPILED:
        compiled = torch.compile(_own_code(eager, "bench_" + point.id.replace("-", "_")), dynamic=False)
        _COMPILED[point.id] = compiled
    return _COMPILED[point.id]


@dataclass
class Workload:
    """The timed call of one point: ``repeat`` forward (and backward) passes, then a device synchronise."""

    point: Point
    tensors: dict[str, torch.Tensor]
    forward: Forward
    grad_output: torch.Tensor | None
    repeat: int = 1

    def __call__(self) -> None:
        prediction = self.tensors[self.grad_input]
        for _ in range(self.repeat):
            if self.point.backward:
                prediction.grad = None
                self.forward(self.tensors).backward(self.grad_output)
            else:
                self.forward(self.tensors)
        synchronize(self.point.device)

    @property
    def grad_input(self) -> str:
        return cases.get(self.point.case).main_input.name

    def traffic(self) -> Traffic:
        """Least bytes one call must move (``bandwidth`` module's model), ignoring an injected repeat."""
        itemsize = self.tensors[self.grad_input].element_size()
        output = self.point.numel if self.point.reduction == "none" else 1
        sizes = {k: t.numel() * t.element_size() for k, t in self.tensors.items()}
        return minimal_traffic(sizes, output * itemsize, backward=self.point.backward,
                               grad_inputs=(self.grad_input,))


def build(point: Point, inject: frozenset[str] = frozenset()) -> Workload:
    """Inputs, forward and gradient of the output for ``point``; the named ``inject`` cases repeat twice."""
    case = cases.get(point.case)
    dtype = getattr(torch, point.dtype)
    key = (point.case, point.shape, point.dtype, point.device)
    if key not in _INPUTS:
        _INPUTS.clear()
        _INPUTS[key] = make_inputs(case, point.shape, dtype, point.device)
    tensors = dict(_INPUTS[key])
    prediction = tensors[case.main_input.name]
    prediction.grad = None
    prediction.requires_grad_(point.backward)
    grad_output = None
    if point.backward and point.reduction == "none":
        grad_output = torch.ones(point.shape, dtype=dtype, device=point.device)
    return Workload(point, tensors, forward_for(point), grad_output, 2 if point.case in inject else 1)


def plan(seconds_per_call: float, target_s: float = 0.4, min_round_s: float = 2e-3,
         min_rounds: int = 5, max_rounds: int = 100) -> tuple[int, int]:
    """``(rounds, iterations)`` for a call of ``seconds_per_call``: rounds of at least ``min_round_s`` (short
    calls are looped so timer overhead does not count) and about ``target_s`` in all, within the bounds."""
    per_call = max(seconds_per_call, 1e-9)
    iterations = max(1, math.ceil(min_round_s / per_call))
    rounds = math.ceil(target_s / (per_call * iterations))
    return min(max(rounds, min_rounds), max_rounds), iterations
