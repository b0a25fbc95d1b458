"""Known torch deviations, as data (``suite/data/deviations.toml``).

Each entry is something the suite discovered by running its grids and strategies, then recorded: an id, a
description and reason, the torch versions, cases, dtypes, devices and modes it applies to, the quantity or
quantities (``loss``, ``grad_<input>``) and reductions, the label or labels torch gives there (optionally
``max_ulps``, a widened budget: the largest *algorithmic* ULP error the entry excuses, so that at an
ill-conditioned point the error the conditioning explains does not count against it; for an entry about reductions
only, ``max_ulps_per_element``: that budget times the batch's element count N, the worst case of a sum of N terms
in any order, ``|s' - s| <= (N - 1) u sum |x_i|`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., eq. 4.4), which is N - 1 algorithmic ULPs of the sum since its inherent error is ``u sum |x_i|``, plus
the rounding of a mean's division; for a cancellation in torch's formula, ``error_scale`` and
``max_scaled_error``: the absolute error may be at most ``max_scaled_error`` unit roundoffs times the formula's
scale (:mod:`suite.error_scales`); for a documented clamp or a lost term, ``mechanism`` and ``mechanism_ulps``:
torch's value must be within that many ULPs of what the clamp or the loss of the term gives
(:mod:`suite.mechanisms`), so that another wrong value in the same region is not excused; and a ``witness``: a batch on
which the suite found it, for deviations too rare for a short search to meet again, its values broadcast to
each of its ``shapes`` in turn when it names them), and a *region*: for each
input, one or more closed intervals; an element is in the region when every named input lies in one of its
intervals.  Where the bounds follow the dtype's range (a sigmoid that underflows, an exp that overflows), a
``dtype_region`` table gives a dtype its own region, so that no dtype excuses what only another one does; a
``device_torch`` table gives a device its own torch versions (a CPU kernel that a later release added).
A key ``"row:<input>"`` (rows cases) asks for a value of the element's row in the intervals instead, the key
``"exact"`` for the exact value of the judged quantity (where only that says it: a sum that is subnormal),
and the key ``"elements"`` for the number of elements of the batch (a mean whose element count overflows the
dtype).  An input the case does not have puts none of its elements in the region.  Tests use entries to
excuse exactly these elements (so anything else still fails) and to run a strict xfail per entry, so a torch
that fixes a deviation shows up as XPASS.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from suite import error_scales, mechanisms
from suite.dtypes import FloatFormat
from suite.metrics import Label
from suite.modes import MODES

DEVIATION_FILE = "deviations.toml"
#: A region key ``"row:<input>"`` selects the elements of rows (the last axis) where any value of the input
#: lies in the intervals: a softmax overflows through another element of the row.
ROW_PREFIX = "row:"
#: A region key for the exact value of the judged quantity itself (a reduced loss that is subnormal).
EXACT_KEY = "exact"
#: A region key for the number of elements of the whole batch (the same for each of its elements).
ELEMENTS_KEY = "elements"
#: Region keys that name no input of the case.
DERIVED_KEYS = frozenset({EXACT_KEY, ELEMENTS_KEY})
Interval = tuple[float, float]


def _number(value: Any) -> float:
    """A bound from TOML: a number, or the strings ``"inf"``/``"-inf"``."""
    if isinstance(value, str):
        return float(value)
    return float(value)


@dataclass(frozen=True)
class Deviation:
    """One known deviation of torch from the exact loss (see the module docstring)."""

    id: str
    description: str
    reason: str
    torch: str
    cases: tuple[str, ...]
    dtypes: tuple[str, ...]
    quantities: tuple[str, ...]
    labels: tuple[str, ...]
    region: Mapping[str, tuple[Interval, ...]]
    devices: tuple[str, ...] = ("cpu", "cuda")
    modes: tuple[str, ...] = MODES
    reductions: tuple[str, ...] = ("none", "mean", "sum", "batchmean")
    max_ulps: float | None = None
    max_ulps_per_element: float | None = None
    error_scale: str | None = None
    max_scaled_error: float | None = None
    mechanism: str | None = None
    mechanism_ulps: float | None = None
    seen: Mapping[str, Any] = field(default_factory=dict)
    witness: Mapping[str, Any] = field(default_factory=dict)  # a batch the suite found it on: case, dtype, inputs
    dtype_regions: Mapping[str, Mapping[str, tuple[Interval, ...]]] = field(default_factory=dict)
    device_torch: Mapping[str, str] = field(default_factory=dict)  # a device's own torch versions

    def torch_on(self, device: str) -> str:
        """The torch versions the entry is about on ``device``: its own ``device_torch`` entry, else ``torch``."""
        return self.device_torch.get(device.split(":")[0], self.torch)

    def about_torch(self, torch_version: str, device: str = "cpu") -> bool:
        """Whether the entry is about this torch version (its local build tag ignored) on ``device``."""
        return Version(torch_version.split("+")[0]) in SpecifierSet(self.torch_on(device))

    def applies(self, case: str, dtype: str, device: str, torch_version: str, mode: str = "eager",
                quantity: str | None = None, reduction: str | None = None) -> bool:
        """Whether the entry is about this case, dtype, device, torch version, mode (and quantity/reduction)."""
        return (case in self.cases and dtype in self.dtypes and device.split(":")[0] in self.devices
                and mode in self.modes and self.about_torch(torch_version, device)
                and (quantity is None or quantity in self.quantities)
                and (reduction is None or reduction in self.reductions))

    def region_for(self, dtype: str) -> Mapping[str, tuple[Interval, ...]]:
        """The region in ``dtype``: its own ``dtype_region`` entry, else the common ``region``."""
        return self.dtype_regions.get(dtype, self.region)

    @property
    def home_mode(self) -> str:
        """The mode the entry is checked and measured in: eager where it applies, else its first mode."""
        return "eager" if "eager" in self.modes else self.modes[0]

    def region_inputs(self, dtype: str) -> set[str]:
        """The case inputs the region in ``dtype`` names (``row:`` keys as their input; not the
        :data:`DERIVED_KEYS`)."""
        return {key.removeprefix(ROW_PREFIX) for key in self.region_for(dtype)} - DERIVED_KEYS

    def in_region(self, inputs: Mapping[str, npt.ArrayLike], shape: tuple[int, ...],
                  dtype: str) -> npt.NDArray[np.bool_]:
        """Elements of a batch of ``shape`` in ``dtype`` whose inputs lie in the region."""
        inside = np.ones(shape, dtype=bool)
        for key, intervals in self.region_for(dtype).items():
            whole_row = key.startswith(ROW_PREFIX)
            name = key.removeprefix(ROW_PREFIX)
            if name == ELEMENTS_KEY:
                values = np.full(shape, float(math.prod(shape)))
            elif name not in inputs:  # a region on an input the case does not have (a weight) excludes it
                return np.zeros(shape, dtype=bool)
            else:
                values = np.broadcast_to(np.asarray(inputs[name], dtype=np.float64), shape)
            hit = np.zeros(shape, dtype=bool)
            for low, high in intervals:
                hit |= (values >= low) & (values <= high)
            if whole_row and hit.ndim:
                hit = np.broadcast_to(hit.any(axis=-1, keepdims=True), shape)
            inside &= hit
        return inside

    def matches(self, case: str, dtype: str, device: str, torch_version: str,
                inputs: Mapping[str, npt.ArrayLike], mode: str = "eager") -> npt.NDArray[np.bool_]:
        """Elements of a batch this entry is about: it applies, and the inputs lie in its region."""
        shape = np.broadcast_shapes(*(np.shape(v) for v in inputs.values()))
        if not self.applies(case, dtype, device, torch_version, mode):
            return np.zeros(shape, dtype=bool)
        return self.in_region(inputs, shape, dtype)

    def error_unit(self, inputs: Mapping[str, npt.ArrayLike], batch_shape: tuple[int, ...], divisor: int,
                   fmt: FloatFormat, scalar: bool = False,
                   input_fmt: FloatFormat | None = None) -> npt.NDArray[np.float64]:
        """``(u S + eta) / divisor`` for the entry's error scale ``S`` (:mod:`suite.error_scales`) of a result in
        ``fmt`` from inputs in ``input_fmt`` (default ``fmt``), per element of the batch, or for a ``scalar`` (a
        reduced value) with the sum of its batch's ``S``."""
        if self.error_scale is None:
            raise ValueError(f"{self.id} has no error scale")
        size = error_scales.scale(self.error_scale, inputs, batch_shape, fmt, input_fmt, divisor)
        with np.errstate(invalid="ignore", over="ignore"):  # a batch of huge terms: the sum's scale is inf
            total = np.sum(size) if scalar else size
            return np.asarray((fmt.unit_roundoff * total + fmt.smallest_subnormal / 2) / divisor)

    def within_error_scale(self, absolute_error: npt.ArrayLike, inputs: Mapping[str, npt.ArrayLike],
                           batch_shape: tuple[int, ...], divisor: int, fmt: FloatFormat,
                           input_fmt: FloatFormat | None = None) -> npt.NDArray[np.bool_]:
        """Where an absolute error is within ``max_scaled_error`` of :meth:`error_unit` (everywhere when the
        entry has no error scale)."""
        error = np.asarray(absolute_error, dtype=np.float64)
        if self.error_scale is None or self.max_scaled_error is None:
            return np.ones(error.shape, dtype=bool)
        unit = self.error_unit(inputs, batch_shape, divisor, fmt, scalar=error.ndim == 0, input_fmt=input_fmt)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.asarray(error <= self.max_scaled_error * unit)

    def within_mechanism(self, got: npt.ArrayLike, inputs: Mapping[str, npt.ArrayLike], divisor: int,
                         fmt: FloatFormat, input_fmt: FloatFormat | None = None,
                         formula: tuple[str, str] = ("", "")) -> npt.NDArray[np.bool_]:
        """Where torch's elementwise values ``got`` (in ``fmt``, from inputs in ``input_fmt``, default ``fmt``, of
        ``formula``: the registry's case and the quantity) are within ``mechanism_ulps`` of the entry's
        mechanism (:func:`suite.mechanisms.distance_ulps`), and of the mechanism's own evaluation error
        (everywhere when the entry has no mechanism)."""
        values = np.asarray(got, dtype=np.float64)
        if self.mechanism is None or self.mechanism_ulps is None:
            return np.ones(values.shape, dtype=bool)
        distance = mechanisms.distance_ulps(self.mechanism, inputs, values, divisor, fmt, input_fmt, formula)
        return np.asarray(distance <= self.mechanism_ulps + mechanisms.evaluation_ulps(fmt))

    def ulp_bound(self, elements: int = 1) -> float | None:
        """The largest algorithmic ULP error the entry excuses on a batch of ``elements`` elements (None: any):
        ``max_ulps``, and ``max_ulps_per_element`` times the count, whichever is smaller."""
        bounds = [b for b in (self.max_ulps,
                              None if self.max_ulps_per_element is None else self.max_ulps_per_element * elements)
                  if b is not None]
        return min(bounds) if bounds else None

    def explains(self, labels: npt.ArrayLike, algorithmic_ulp: npt.ArrayLike,
                 elements: int = 1) -> npt.NDArray[np.bool_]:
        """Elements whose outcome is a recorded one: one of the entry's labels, and an algorithmic ULP error
        (:mod:`suite.metrics`) within :meth:`ulp_bound` for a batch of ``elements`` elements."""
        lab = np.asarray(labels)
        ok = np.isin(lab, [int(Label[name.upper()]) for name in self.labels])
        bound = self.ulp_bound(elements)
        if bound is not None:
            with np.errstate(invalid="ignore"):
                ok &= np.asarray(algorithmic_ulp) <= bound
        return ok


def _parse(entry: Mapping[str, Any]) -> Deviation:
    try:
        region = _region(entry["region"])
        dtype_regions = {dtype: _region(r) for dtype, r in entry.get("dtype_region", {}).items()}
        if not set(dtype_regions) <= set(entry["dtypes"]):
            raise ValueError(f"dtype_region names dtypes the entry is not about: "
                             f"{sorted(set(dtype_regions) - set(entry['dtypes']))}")
        deviation = Deviation(
            id=entry["id"], description=entry["description"], reason=entry["reason"], torch=entry["torch"],
            cases=tuple(entry["cases"]), dtypes=tuple(entry["dtypes"]), quantities=_names(entry["quantity"]),
            labels=_names(entry["label"]), region=region, devices=tuple(entry.get("devices", ("cpu", "cuda"))),
            modes=tuple(entry.get("modes", MODES)),
            reductions=tuple(entry.get("reductions", ("none", "mean", "sum", "batchmean"))),
            max_ulps=entry.get("max_ulps"), max_ulps_per_element=entry.get("max_ulps_per_element"),
            error_scale=entry.get("error_scale"), max_scaled_error=entry.get("max_scaled_error"),
            mechanism=entry.get("mechanism"), mechanism_ulps=entry.get("mechanism_ulps"),
            seen=entry.get("seen", {}), witness=entry.get("witness", {}), dtype_regions=dtype_regions,
            device_torch=dict(entry.get("device_torch", {})))
        for spec in (deviation.torch, *deviation.device_torch.values()):
            SpecifierSet(spec)
        if not set(deviation.device_torch) <= set(deviation.devices):
            raise ValueError(f"device_torch names devices the entry is not about: "
                             f"{sorted(set(deviation.device_torch) - set(deviation.devices))}")
        if (deviation.error_scale is None) != (deviation.max_scaled_error is None):
            raise ValueError("error_scale and max_scaled_error go together")
        if deviation.error_scale is not None and deviation.error_scale not in error_scales.SCALES:
            raise ValueError(f"unknown error_scale {deviation.error_scale!r}; known: {sorted(error_scales.SCALES)}")
        if (deviation.mechanism is None) != (deviation.mechanism_ulps is None):
            raise ValueError("mechanism and mechanism_ulps go together")
        if deviation.mechanism is not None and deviation.mechanism not in mechanisms.MECHANISMS:
            raise ValueError(f"unknown mechanism {deviation.mechanism!r}; known: {sorted(mechanisms.MECHANISMS)}")
        if deviation.max_ulps_per_element is not None and "none" in deviation.reductions:
            raise ValueError("max_ulps_per_element bounds a reduction's error: the entry must be about reductions only")
        for name in deviation.labels:
            Label[name.upper()]
    except (KeyError, TypeError, ValueError, InvalidSpecifier) as exc:
        raise ValueError(f"malformed deviation entry {entry.get('id', '?')!r}: {exc!r}") from None
    return deviation


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _region(table: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Interval, ...]]:
    return {name: _intervals(bounds) for name, bounds in table.items()}


def _intervals(bounds: Sequence[Any]) -> tuple[Interval, ...]:
    """``[lo, hi]`` or ``[[lo, hi], ...]`` -> intervals, each checked to be ordered."""
    pairs = [bounds] if bounds and not isinstance(bounds[0], list | tuple) else list(bounds)
    out = []
    for pair in pairs:
        low, high = (_number(b) for b in pair)
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"bad interval {pair!r}")
        out.append((low, high))
    return tuple(out)


@cache
def load() -> tuple[Deviation, ...]:
    """All registered deviations (ids unique)."""
    text = resources.files("suite.data").joinpath(DEVIATION_FILE).read_text(encoding="utf-8")
    entries = tuple(_parse(e) for e in tomllib.loads(text).get("deviation", []))
    ids = [e.id for e in entries]
    duplicated = {i for i in ids if ids.count(i) > 1}
    if duplicated:
        raise ValueError(f"duplicate deviation ids: {sorted(duplicated)}")
    return entries


def applicable(case: str, dtype: str, device: str, torch_version: str, mode: str = "eager",
               quantity: str | None = None, reduction: str | None = None) -> list[Deviation]:
    return [d for d in load() if d.applies(case, dtype, device, torch_version, mode, quantity, reduction)]


def get(deviation_id: str) -> Deviation:
    for d in load():
        if d.id == deviation_id:
            return d
    raise KeyError(f"no deviation {deviation_id!r}")
