"""Gradients scale with the upstream gradient (``grad_output``).

The report and the accuracy tests measure gradients with an upstream gradient of ones, where a backward that
ignores it, or applies one element's to every element, is right by accident; a model's loss is rarely the last
operation (AMP's loss scaling, a weighted sum of losses), so that bug reaches users.  This runs the backward
again with powers of two, cycling through :data:`SCALES` over the elements of an unreduced loss (over the rows of a
case whose sample is a row).  A power of two scales every rounding exactly, away from overflow and subnormals,
so wherever torch's gradient ``g`` for ones and ``s g`` are normal numbers, the gradient for ``s`` must be ``s g``.
It is judged within :data:`RELATIVE_TOLERANCE`, at elements whose inputs are ordinary (:func:`ordinary`) and whose
gradients are far from overflow: an intermediate may still leave the normal range with one upstream gradient and
not the other (torch's float64 BCE gradient at p = 5e-324 divides a subnormal; its float16 one at p = 6e-8
overflows an intermediate for an upstream of 4), while a wrong upstream is off by a factor of 2 or more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from suite import dtypes, run
from suite.cases.base import REDUCTION_DIVISORS, Case
from suite.dtypes import FloatArray, FloatFormat

BoolArray = npt.NDArray[np.bool_]
#: What a problem is: a gradient off by a factor (the upstream gradient misused), or one that overflows with the
#: larger upstream gradient where s g is a normal number (an intermediate past the dtype's range).
FACTOR, OVERFLOW = "factor", "overflow"


@dataclass(frozen=True)
class Problem:
    """One reduction's gradient that does not scale: its kind (:data:`FACTOR` or :data:`OVERFLOW`) and a line."""

    kind: str
    text: str


@dataclass(frozen=True)
class KnownOverflow:
    """A registered torch behaviour: the gradient of ``case`` in ``dtypes`` and ``modes`` on ``device`` overflows
    with an upstream gradient larger than one, where it is finite for ones; ``witness`` shows it (in the first
    mode)."""

    id: str
    description: str
    reason: str
    torch: str
    case: str
    dtypes: tuple[str, ...]
    modes: tuple[str, ...]
    device: str
    witness: Mapping[str, list[float]] = field(default_factory=dict)

    def applies(self, case: str, dtype: str, device: str, mode: str, torch_version: str) -> bool:
        return (case == self.case and dtype in self.dtypes and device.split(":")[0] == self.device
                and mode in self.modes and Version(torch_version.split("+")[0]) in SpecifierSet(self.torch))


KNOWN_OVERFLOWS = (
    KnownOverflow(
        "sigmoid-bce-cpu-half-grad-overflows-with-upstream",
        "sigmoid then BCE in float16 on CPU (under autocast too, not compiled): the logit gradient is -inf for an "
        "upstream gradient of 2 where it is about -1 for ones (x = -11.09, y = 1)",
        "BCE's backward gives dL/dp = -g/p, -65281 g at p = 1.5e-5, which the sigmoid's float16 backward holds "
        "(CPU autocast computes BCE in float32 but keeps the sigmoid in float16), inf beyond 65504, before it "
        "multiplies by p (1 - p); AMP's loss scaling (g = 65536) meets it at every p below 1.  Torch before 2.4 "
        "raises for a float16 BCE on CPU, and 2.1 has no float16 CPU autocast; a compiled kernel keeps dL/dp in "
        "float32",
        ">=2.2", "sigmoid_bce", ("float16",), ("autocast", "eager", "strided", "transposed"), "cpu",
        {"input": [-11.0859375], "target": [1.0]}),
)


def known_overflow(case: str, dtype: str, device: str, mode: str, torch_version: str) -> KnownOverflow | None:
    """The registered overflow of this case, dtype, device and mode in this torch, if any."""
    return next((k for k in KNOWN_OVERFLOWS if k.applies(case, dtype, device, mode, torch_version)), None)

#: Upstream gradients, element by element in turn (a reduced loss takes the first).
SCALES = (4.0, 2.0, 8.0)
#: A relative difference torch's rounding never reaches and a factor of 2 (the least a wrong upstream makes) passes.
RELATIVE_TOLERANCE = 0.25
#: Inputs larger than the largest value over this are not ordinary: an intermediate may overflow.
HEADROOM = 64.0


def scales_for(shape: tuple[int, ...], rows: bool) -> FloatArray:
    """The upstream gradient of an unreduced loss of ``shape``: :data:`SCALES` in turn over its elements, or
    over its rows for a case whose sample is a row (an element's gradient there sums the upstream gradients of
    its whole row, so one scale per row keeps the gradient a multiple of the one for ones)."""
    samples = shape[:-1] if rows else shape
    per_sample = np.resize(np.asarray(SCALES), int(np.prod(samples))).reshape(samples)
    result: FloatArray = np.broadcast_to(per_sample[..., None], shape) if rows else per_sample
    return result


def problems(case: Case, inputs: Mapping[str, npt.ArrayLike], dtype: str, device: str, mode: str = "eager",
             reductions: Sequence[str] | None = None) -> list[Problem]:
    """One problem per reduction, gradient and kind where torch's gradient does not scale with the upstream
    gradient (see the module's docstring); empty when it does, or when torch refuses the batch (the accuracy
    tests judge that)."""
    fmt = dtypes.get(dtype)
    used = run.prepare_inputs(case, inputs, fmt)
    names = [s.name for s in case.inputs if s.differentiable]
    found: list[Problem] = []
    for reduction in reductions or case.reductions:
        try:
            ones = _gradients(case, used, fmt, device, mode, reduction, names, scaled=False)
            scaled = _gradients(case, used, fmt, device, mode, reduction, names, scaled=True)
        except Exception:  # a refusal: not this property's business
            continue
        for name in sorted(set(ones) & set(scaled)):
            (g, g_fmt), (g_scaled, _) = ones[name], scaled[name]
            s = scales_for(g.shape, case.rows) if reduction == "none" else np.full(g.shape, SCALES[0])
            divisor_of = REDUCTION_DIVISORS[reduction]
            divisor = 1 if divisor_of is None else divisor_of(g.shape)
            with np.errstate(over="ignore"):  # a gradient near the top of float64 times s: inf, not judged
                judged = ordinary(case, used, fmt, g.shape) & _with_headroom(s * g * divisor, g_fmt)
            found += _compare(f"{reduction} grad_{name}", g, g_scaled, g_fmt, s, judged)
    return found


def _gradients(case: Case, used: Mapping[str, FloatArray], fmt: FloatFormat, device: str, mode: str,
               reduction: str, names: list[str], *, scaled: bool) -> dict[str, tuple[FloatArray, FloatFormat]]:
    """Each gradient's values (carriers) and dtype, for an upstream gradient of ones or :func:`scales_for`."""
    out, tensors = run.run_forward(case, used, fmt, device, mode, reduction, names)
    upstream = torch.ones_like(out)
    if scaled and out.ndim:
        upstream = torch.tensor(scales_for(tuple(out.shape), case.rows), dtype=out.dtype, device=out.device)
    elif scaled:
        upstream = torch.full_like(out, SCALES[0])
    grads = run.backward_carriers(out, tensors, names, mode, device, fmt, upstream)
    return {n: (g, dtypes.get(grad.dtype)) for n, g in grads.items() if (grad := tensors[n].grad) is not None}


def ordinary(case: Case, used: Mapping[str, FloatArray], fmt: FloatFormat, shape: tuple[int, ...]) -> BoolArray:
    """Elements of a gradient of ``shape`` whose inputs (their whole row's, in a rows case) are each 0, infinite,
    or normal and below ``fmt``'s largest value over :data:`HEADROOM`."""
    result = np.ones(shape, bool)
    for values in used.values():
        a = np.abs(np.broadcast_to(values, shape))
        result &= (a == 0) | np.isinf(a) | ((a >= fmt.smallest_normal) & (a <= fmt.max_finite / HEADROOM))
    if case.rows:
        result = np.broadcast_to(result.all(axis=-1, keepdims=True), shape)
    return result


def _compare(what: str, ones: FloatArray, scaled: FloatArray, fmt: FloatFormat, s: FloatArray,
             ordinary_inputs: BoolArray) -> list[Problem]:
    """The problems where ``scaled`` (gradients for the upstream ``s``) is not ``s`` times ``ones``: a finite
    value off by more than the tolerance, or an overflow."""
    with np.errstate(over="ignore"):  # exact in float64 (a power of two times a value of fmt) or inf, not judged
        expected = s * ones
    judged = ordinary_inputs & _normal(ones, fmt) & _normal(expected, fmt)
    with np.errstate(invalid="ignore"):
        off = judged & ~(np.abs(scaled - expected) <= RELATIVE_TOLERANCE * np.abs(expected))
    out = []
    for kind, where in ((FACTOR, off & np.isfinite(scaled)), (OVERFLOW, off & ~np.isfinite(scaled))):
        if where.any():
            i = tuple(int(j) for j in np.argwhere(where)[0])
            out.append(Problem(kind, f"{what}: {int(where.sum())} of {int(judged.sum())} gradients are not the "
                                     f"upstream gradient times the gradient for ones ({kind}); first at {list(i)}: "
                                     f"upstream {float(s[i])!r}, gradient {float(scaled[i])!r}, expected "
                                     f"{float(expected[i])!r} ({float(ones[i])!r} for ones)"))
    return out


def _with_headroom(values: FloatArray, fmt: FloatFormat) -> BoolArray:
    """Where ``values`` (a gradient times its reduction's divisor: the size of what the backward computes
    before dividing) are below ``fmt``'s largest value over :data:`HEADROOM`."""
    with np.errstate(invalid="ignore"):
        result: BoolArray = np.abs(values) <= fmt.max_finite / HEADROOM
    return result


def _normal(values: FloatArray, fmt: FloatFormat) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        result: npt.NDArray[np.bool_] = (np.abs(values) >= fmt.smallest_normal) & (np.abs(values) <= fmt.max_finite)
    return result
