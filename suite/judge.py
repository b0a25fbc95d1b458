"""The verdict on a measured quantity: which elements fail the budgets, and which of those a registered
known deviation explains.  Tests and reports both ask here, so they never disagree."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from suite import budgets, deviations, dtypes, mechanisms, modes, truth
from suite.cases.base import REDUCTION_DIVISORS
from suite.metrics import ElementMetrics, Label, measure
from suite.run import LOSS, CaseResult, QuantityResult

BoolArray = npt.NDArray[np.bool_]


@dataclass
class Verdict:
    """``failing``: elements with a never-acceptable label (see :func:`failing`).  ``known``: for each deviation
    id, the failing elements it explains.  ``unexplained``: failing and explained by none."""

    failing: BoolArray
    known: dict[str, BoolArray] = field(default_factory=dict)
    #: for each deviation id, the labels and algorithmic ULP errors it explains there: the quantity's own, or,
    #: for a reduction explained by its own error, that error's (:func:`reduction_residual`)
    outcomes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def unexplained(self) -> BoolArray:
        explained = np.zeros_like(self.failing)
        for mask in self.known.values():
            explained |= mask
        result: BoolArray = self.failing & ~explained
        return result


def failing(q: QuantityResult) -> BoolArray:
    """Elements of a quantity with a never-acceptable label.  (Conditioning is already in the labels: a 0 at
    an ill-conditioned point whose error the conditioning explains, like ``sigmoid(x) - y`` at ``y = 1``, is
    ``ok``, not ``flushed``.)"""
    result: BoolArray = np.isin(q.metrics.labels, _never_acceptable())
    return result


def _never_acceptable() -> list[int]:
    return [int(Label[n.upper()]) for n in budgets.never_acceptable()]


def reduction_residual(result: CaseResult, q: QuantityResult) -> ElementMetrics | None:
    """The error of a reduced loss against the exact reduction of torch's own unreduced values (None for an
    unreduced quantity or without them): the reduction's own error, apart from the elements' errors.

    The exact sum of the returned elements, divided like the reduction, is the value a faithful reduction
    rounds; its condition number is ``sum |g_i| / |sum g_i|`` (:func:`suite.truth.sum_condition`).  A
    reduction within :func:`residual_budget` of it passes on whatever the elements got wrong; one beyond it (a
    wrong divisor, a 16-bit accumulator) is wrong itself.
    """
    root = result.quantities.get(("none", LOSS))
    divisor_of = REDUCTION_DIVISORS[q.reduction]
    if q.quantity != LOSS or q.got.ndim != 0 or root is None or divisor_of is None:
        return None
    elements, divisor = root.got, divisor_of(result.truth.values.shape)
    nan = np.isnan(elements)
    status = np.where(nan, truth.Status.UNDEFINED, truth.Status.DETERMINED).astype(np.int8)
    parts = truth.Truth(elements, np.zeros_like(elements), status, np.isinf(elements))
    exact = truth.exact_sum(parts, divisor)
    condition = truth.sum_condition(1.0, parts, exact, divisor)
    return measure(q.got, exact, q.fmt, residual_budget(result, q, elements, divisor, float(exact.hi)), condition)


def residual_budget(result: CaseResult, q: QuantityResult, elements: npt.NDArray[np.float64], divisor: float,
                    exact: float) -> float:
    """The budget of a reduction against torch's own ``elements`` (whose exact reduction is ``exact``): the
    ULP budget of the dtype it returns (float32 under CPU autocast), plus in compile modes
    :func:`fused_rounding_ulps`."""
    fused = fused_rounding_ulps(elements, divisor, exact, q.fmt) if result.mode in modes.COMPILE_MODES else 0.0
    return budgets.ulp_budget(result.case.name, q.fmt.name, result.device) + fused


def fused_rounding_ulps(elements: npt.NDArray[np.float64], divisor: float, exact: float,
                        fmt: dtypes.FloatFormat) -> float:
    """How far, in ULPs of ``exact``, a fused kernel's reduction may be from the exact reduction of the
    ``elements`` torch returns, by skipping their rounding: it reduces each element before rounding it to
    ``fmt``, up to half an ULP of that element from the value returned for it, so ``sum(ulp(g_i) / 2) /
    divisor``.  That is about half an ULP of the result where the elements share a sign and binade, and many
    ULPs where they cancel or are subnormal (a float16 ULP of a subnormal is absolute).  Elements that
    overflowed are left out (their error is theirs, not the reduction's); a reduction whose exact value is
    not finite gets 0."""
    finite = elements[np.isfinite(elements)]
    if not math.isfinite(exact) or finite.size == 0:
        return 0.0
    spread = 0.5 * float(np.sum(dtypes.ulp(finite, fmt))) / divisor
    return spread / float(dtypes.ulp(exact, fmt))


def reduction_is_faithful(result: CaseResult, q: QuantityResult) -> bool:
    """True unless ``q`` is a reduced loss whose :func:`reduction_residual` has a never-acceptable label."""
    return _faithful(reduction_residual(result, q))


def _faithful(residual: ElementMetrics | None) -> bool:
    return residual is None or not bool(np.isin(residual.labels, _never_acceptable()).any())


def with_exact(inputs: Mapping[str, np.ndarray], q: QuantityResult) -> dict[str, np.ndarray]:
    """The inputs a region is matched on, with the exact value of ``q`` under :data:`deviations.EXACT_KEY`."""
    return {**inputs, deviations.EXACT_KEY: q.truth.hi}


def judge(result: CaseResult, q: QuantityResult, torch_version: str | None = None) -> Verdict:
    """Verdict on ``q`` (one quantity of ``result``).  Elementwise quantities are matched against deviation
    regions element by element.  A reduced loss (a scalar) whose reduction is faithful to torch's own elements
    (:func:`reduction_is_faithful`) inherits their errors: a deviation that covers, with the same label, any
    element of the batch's unreduced loss (the root cause) explains it.  A reduction that is wrong by itself is
    explained only by a deviation about reductions (one that does not apply to ``none``) whose region holds the
    batch, and which explains either the reduced value's own label or the reduction's own error (its
    :func:`reduction_residual`) while the elements explain the reduced value's label, as for a faithful one.
    Nothing is inherited from a batch with an unexplained failing element (:func:`_elements_explained`).
    Regions are matched with the quantity's exact value as well (:func:`with_exact`)."""
    version = torch_version or torch.__version__
    fails = failing(q)
    verdict = Verdict(fails)
    if not fails.any():
        return verdict
    case, dtype, device, mode = result.case.registry_name, result.fmt.name, result.device, result.mode
    scalar = q.got.ndim == 0
    residual = reduction_residual(result, q)
    entries = deviations.applicable(case, dtype, device, version, mode, q.quantity, q.reduction)
    shape = result.truth.values.shape if scalar else q.got.shape
    count = math.prod(result.truth.values.shape)
    insides = {d.id: d.in_region(with_exact(result.inputs, q), shape, dtype) for d in entries}
    inheriting = scalar and _elements_explained(result, version)
    inherited = {d.id: _inherited(result, q, d, insides[d.id], fails) if inheriting else np.zeros_like(fails)
                 for d in entries} if scalar else {}
    elements_explain = any(bool(h.any()) for h in inherited.values())
    for d in entries:
        inside = insides[d.id]
        outcome = (q.metrics.labels, q.metrics.algorithmic_ulp)
        if scalar and not _faithful(residual):
            assert residual is not None
            own = explains(d, result, q)
            if not own.any() and elements_explain:
                outcome = (residual.labels, residual.algorithmic_ulp)
                own = d.explains(residual.labels, residual.algorithmic_ulp, count)
            hit = fails & own & ("none" not in d.reductions) & bool(inside.any())
        elif scalar:
            hit = inherited[d.id]
        else:
            hit = fails & inside & explains(d, result, q, fails & inside)
        if hit.any():
            verdict.known[d.id] = np.asarray(hit)
            verdict.outcomes[d.id] = outcome
    return verdict


def explains(d: deviations.Deviation, result: CaseResult, q: QuantityResult,
             among: BoolArray | None = None) -> BoolArray:
    """Elements of ``q`` whose outcome ``d`` records: its labels, within its ULP bound for the batch's element
    count, within its error scale (:meth:`deviations.Deviation.within_error_scale`) where it has one, and, for
    an elementwise quantity, within its mechanism (:meth:`deviations.Deviation.within_mechanism`) where it has
    one (a reduced value inherits that from its elements).  ``among``: the only elements the caller asks about
    (the others may be reported False), so that a mechanism is evaluated on those alone."""
    shape = result.truth.values.shape
    ok = d.explains(q.metrics.labels, q.metrics.algorithmic_ulp, math.prod(shape))
    if d.error_scale is not None:
        ok &= d.within_error_scale(q.metrics.absolute_error, result.inputs, shape, _divisor(q, shape), q.fmt,
                                   result.fmt)
    if d.mechanism is not None and q.got.ndim:
        ok &= _within_mechanism(d, result, q, ok if among is None else ok & among)
    return ok


def _within_mechanism(d: deviations.Deviation, result: CaseResult, q: QuantityResult,
                      candidates: BoolArray) -> BoolArray:
    """:meth:`deviations.Deviation.within_mechanism` of the ``candidates`` alone (False elsewhere), each with its
    whole row in a rows case (an element's log-softmax needs its row): a mechanism costs a few dozen array
    operations per element, and few elements of a batch fail."""
    out = np.zeros(q.got.shape, dtype=bool)
    pick = np.asarray(candidates, dtype=bool)
    if not pick.any():
        return out
    if result.case.rows:
        pick = np.broadcast_to(pick.any(axis=-1, keepdims=True), pick.shape)
    width = q.got.shape[-1] if result.case.rows else 1
    chosen = {k: np.broadcast_to(np.asarray(v), q.got.shape)[pick].reshape(-1, width)
              for k, v in result.inputs.items()}
    within = d.within_mechanism(q.got[pick].reshape(-1, width), chosen, _divisor(q, result.truth.values.shape),
                                q.fmt, result.fmt, (result.case.registry_name, q.quantity))
    out[pick] = within.ravel()
    return out


def mechanism_distance(d: deviations.Deviation, result: CaseResult, q: QuantityResult) -> np.ndarray:
    """ULPs from each element of an elementwise ``q`` to ``d``'s mechanism (:mod:`suite.mechanisms`), the number
    its ``mechanism_ulps`` bounds."""
    if d.mechanism is None or not q.got.ndim:
        raise ValueError(f"{d.id} has no mechanism for {q.reduction} {q.quantity}")
    return mechanisms.distance_ulps(d.mechanism, result.inputs, q.got, _divisor(q, result.truth.values.shape),
                                    q.fmt, result.fmt, (result.case.registry_name, q.quantity))


def scaled_error(d: deviations.Deviation, result: CaseResult, q: QuantityResult) -> np.ndarray:
    """``q``'s absolute error in units of ``d``'s error scale (:meth:`deviations.Deviation.error_unit`), the
    number its ``max_scaled_error`` bounds."""
    shape = result.truth.values.shape
    unit = d.error_unit(result.inputs, shape, _divisor(q, shape), q.fmt, scalar=q.got.ndim == 0,
                        input_fmt=result.fmt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(q.metrics.absolute_error / unit)


def _divisor(q: QuantityResult, shape: tuple[int, ...]) -> int:
    """The reduction's divisor of the batch (1 for none and sum), which scales torch's gradients."""
    divisor_of = REDUCTION_DIVISORS[q.reduction]
    return 1 if divisor_of is None else divisor_of(shape)


def _elements_explained(result: CaseResult, torch_version: str) -> bool:
    """Whether every failing element of the batch's unreduced loss is explained: only then may a reduced loss
    inherit their explanations, since a failure that no entry explains (a NaN where an entry explains another
    element's inaccuracy) may be what the reduced value carries."""
    root = result.quantities.get(("none", LOSS))
    return root is None or not judge(result, root, torch_version).unexplained.any()


def _inherited(result: CaseResult, q: QuantityResult, d: deviations.Deviation, inside: BoolArray,
               fails: BoolArray) -> BoolArray:
    """Where a reduced loss's failure is the deviation's, as a faithful reduction passes it on: the entry
    explains the label and covers the batch, or explains a failing element of the unreduced loss, with that
    element's own label (then any label here: the root cause's error may change its kind through the
    reduction, a NaN element making the sum NaN, an inf one inf).  An entry with a mechanism covers the batch
    only where its mechanism gives some element of the unreduced loss: a reduced value inherits the mechanism
    from its elements (an entry about a conversion that none of them went through does not explain their sum)."""
    root = result.quantities.get(("none", LOSS))
    root_cause = False
    in_root: BoolArray | None = None
    if root is not None and "none" in d.reductions:
        in_root = d.in_region(with_exact(result.inputs, root), root.got.shape, result.fmt.name)
        candidates = in_root & failing(root)
        root_cause = bool((candidates & explains(d, result, root, candidates)).any())
    labelled = fails & explains(d, result, q)
    covers = bool(inside.any())
    if covers and labelled.any() and d.mechanism is not None and root is not None and in_root is not None:
        covers = bool(_within_mechanism(d, result, root, in_root).any())
    hit: BoolArray = labelled & (covers or root_cause)
    if not hit.any() and root_cause:
        hit = fails.copy()
    return hit
