"""Rounding bias: whether a loss or gradient errs toward zero (or away from it) on average.

A correctly rounded result errs by at most half an ULP either way, and over many ordinary inputs its signed
errors average to about 0; so do torch's kernels, which compute in float32 or float64 and round to nearest
(``python -m suite bias`` prints every mean; torch's stay well within :data:`MAX_BIAS`).  A store that truncates
(the ``bits >> 16`` bfloat16 conversion of hand-written kernels), a flush, or a formula that always loses the
same term errs by up to an ULP in one direction: within the ULP budget element by element, so no budget test
sees it, but a bias that every sum and every training step accumulates.

:func:`measure` takes the mean signed ULP error (:func:`suite.metrics.signed_ulp_error`, negative toward zero)
over a fixed population of ordinary inputs (:func:`population`), of the elements that are neither exact nor
beyond the budget (the budget tests judge those), and calls it biased where it is beyond :data:`MAX_BIAS` and
beyond :data:`Z_SCORE` standard errors of the mean, with at least :data:`MIN_ELEMENTS` elements.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suite import modes, run, selection
from suite.cases.base import Case
from suite.errors import UsageError
from suite.metrics import signed_ulp_error

FloatArray = npt.NDArray[np.float64]

#: Elements of the population, in rows of :data:`ROW` (a rows case's rows; the last axis of the others).
POPULATION = 4096
ROW = 8
SEED = 20261208
#: Ordinary values of each input kind: ``(low, high, logarithmic)``, uniform in the value or in its log.
KIND_RANGES: dict[str, tuple[float, float, bool]] = {
    "logit": (-16.0, 16.0, False),
    "log_probability": (-16.0, 4.0, False),
    "probability": (0.0, 1.0, False),
    "target": (0.0, 1.0, False),
    "log_target": (-16.0, 0.0, False),
    "weight": (1.0 / 16, 16.0, True),
    "pos_weight": (1.0 / 16, 16.0, True),
}
#: A mean signed error beyond this many ULPs is a bias: a round-to-nearest result's mean is 0 up to its noise,
#: a truncating or flushing one's about half an ULP.
MAX_BIAS = 0.25
#: ... and beyond this many standard errors of the mean, so that a few large errors of a small sample are not one.
Z_SCORE = 5.0
#: Fewer inexact elements than this say nothing about a direction.
MIN_ELEMENTS = 256


@dataclass(frozen=True)
class Bias:
    """The mean signed ULP error of one quantity over the population's inexact elements within budget."""

    mean: float
    stderr: float
    elements: int
    toward_zero: float  # the fraction of those elements rounded toward zero

    @property
    def biased(self) -> bool:
        return (self.elements >= MIN_ELEMENTS and abs(self.mean) > MAX_BIAS
                and abs(self.mean) > Z_SCORE * self.stderr)

    def describe(self) -> str:
        way = "toward zero" if self.mean < 0 else "away from zero"
        return (f"mean signed error {self.mean:+.3f} ULP ({way}) +- {self.stderr:.3f} over {self.elements} "
                f"inexact elements, {self.toward_zero:.0%} rounded toward zero")


def population(case: Case, size: int = POPULATION, seed: int = SEED) -> dict[str, FloatArray]:
    """Ordinary inputs of ``case`` (:data:`KIND_RANGES`), ``size // ROW`` rows of :data:`ROW`, the same every run:
    each data input and weight of that shape, a ``pos_weight`` one per column (it broadcasts over the rows)."""
    rng = np.random.default_rng(seed)
    shape = (max(1, size // ROW), ROW)
    out: dict[str, FloatArray] = {}
    for spec in case.inputs:
        low, high, logarithmic = KIND_RANGES[spec.kind]
        low, high = max(low, spec.low), min(high, spec.high)
        where = shape[-1:] if spec.kind == "pos_weight" else shape
        values = rng.uniform(math.log(low), math.log(high), where) if logarithmic else rng.uniform(low, high, where)
        out[spec.name] = np.exp(values) if logarithmic else values
    return out


def measure(q: run.QuantityResult) -> Bias:
    """The bias of one measured quantity (elementwise: a reduction ``none`` loss or any gradient)."""
    signed = np.asarray(signed_ulp_error(q.got, q.truth, q.fmt), dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        kept = signed[(signed != 0) & (np.abs(signed) <= q.metrics.budget)]
    n = int(kept.size)
    if n == 0:
        return Bias(0.0, math.inf, 0, 0.0)
    stderr = float(kept.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return Bias(float(kept.mean()), stderr, n, float((kept < 0).mean()))


def measure_case(case: Case, dtype: str, device: str = "cpu", mode: str = "eager",
                 size: int = POPULATION) -> dict[str, Bias]:
    """The bias of the unreduced loss and of each gradient of ``case`` on :func:`population`, by quantity."""
    result = run.evaluate(case, population(case, size), dtype, device, reductions=("none",), mode=mode)
    return {quantity: measure(q) for (reduction, quantity), q in sorted(result.quantities.items())}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", action="append", help="comma-separated cases (default: all)")
    parser.add_argument("--dtypes", action="append", help="comma-separated dtypes (default: all)")
    parser.add_argument("--devices", action="append", help="comma-separated devices (default: cpu, cuda if present)")
    parser.add_argument("--modes", action="append", help="comma-separated modes (default: eager,autocast)")
    parser.add_argument("--size", type=int, default=POPULATION, help=f"population size (default {POPULATION})")


def main(args: argparse.Namespace) -> int:
    """Print the bias of every quantity of every selected case, dtype, device and mode; exit 1 when one is
    biased."""
    selected = selection.case_list(args.cases)
    dtype_names = selection.dtype_names(args.dtypes)
    devices = selection.devices(args.devices)
    mode_names = selection.mode_names(args.modes, default=("eager", "autocast"))
    if args.size < MIN_ELEMENTS:
        raise UsageError(f"--size must be at least {MIN_ELEMENTS} (the fewest elements that show a bias)")
    biased = 0
    print(f"{'case':28} {'dtype':9} {'device':7} {'mode':9} {'quantity':12} {'mean':>7} {'stderr':>7} "
          f"{'elements':>8} {'toward 0':>8}")
    for case in selected:
        for dtype in dtype_names:
            for device in devices:
                for mode in mode_names:
                    if not modes.applies(mode, dtype):
                        continue
                    for quantity, b in measure_case(case, dtype, device, mode, args.size).items():
                        biased += b.biased
                        print(f"{case.name:28} {dtype:9} {device:7} {mode:9} {quantity:12} {b.mean:+7.3f} "
                              f"{b.stderr:7.3f} {b.elements:8d} {b.toward_zero:8.0%}{'  BIASED' if b.biased else ''}")
    print(f"{biased} biased (|mean| > {MAX_BIAS} ULP and > {Z_SCORE:g} standard errors)")
    return 1 if biased else 0
