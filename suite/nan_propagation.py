"""NaN propagation: a NaN among a loss's inputs must reach every result that depends on it, and no other.

A loss that turns a NaN input into a number (a "sanitising" ``where(isnan(x), 0, x)``, a clamp written with a
comparison that drops NaN, a maximum that skips it) hides whatever made the NaN: training goes on with a
plausible loss.  A NaN that spreads (through a vector lane, a reduction's shared partial, the maximum of a
softmax row) corrupts results that never saw it.  Torch may also refuse the batch, as BCE does for a
probability outside [0, 1] (NaN is not in it): a raised error or a device-side assert is a clear refusal and
passes.

Judged, for a batch with NaNs against the same batch without them (``clean``):

* the unreduced loss is NaN at every element that depends on a NaN input (:func:`dependent`) and, elsewhere,
  NaN only where the clean batch's is;
* every reduced loss is NaN;
* every gradient, outside the dependent elements, is NaN only where the clean batch's is.  A gradient at a
  dependent element is not judged: a derivative need not depend on the poisoned input (BCE-with-logits'
  ``dL/dy = -w x`` is a number for any ``y``).

    problems = nan_propagation.problems(cases.get("bce_with_logits"), clean, poisoned, "float32", "cpu")
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from suite import dtypes, probes, run
from suite.cases.base import Case
from suite.dtypes import FloatArray

BoolArray = npt.NDArray[np.bool_]


def dependent(case: Case, used: Mapping[str, FloatArray], gradient: bool = False) -> BoolArray:
    """Which elements of the unreduced loss (of a gradient, with ``gradient``) depend on a NaN input: where any
    input, broadcast to the loss's shape as torch broadcasts it, is NaN.  In a rows case (a softmax along the
    last axis) a NaN in the main input reaches its whole row, and the gradient of an element depends on every
    input of its row (``d/dx_k`` of a row's KL is ``softmax_k sum_j t_j - t_k``)."""
    shape = np.broadcast_shapes(*(np.shape(used[s.name]) for s in case.inputs if s.role == "data"))
    mask: BoolArray = np.zeros(shape, dtype=bool)
    for spec in case.inputs:
        nan: BoolArray = np.isnan(np.asarray(used[spec.name]))
        if case.rows and spec.name == case.main_input.name and nan.ndim:
            nan = np.asarray(nan.any(axis=-1, keepdims=True))
        mask |= np.broadcast_to(nan, shape)
    if case.rows and gradient and mask.ndim:
        mask = np.broadcast_to(mask.any(axis=-1, keepdims=True), shape)
    return mask


Outcome = tuple[FloatArray, dict[str, FloatArray]] | str


def _outcome(case: Case, used: Mapping[str, FloatArray], dtype: str, device: str, mode: str,
             reduction: str, screened: probes.Outcome | None) -> Outcome:
    """torch's loss and gradients (carriers) of one reduction, or the one line saying how torch refused."""
    if screened is not None and screened.kind in probes.FATAL:
        return f"{screened.kind}: {screened.message}"
    fmt = dtypes.get(dtype)
    names = [s.name for s in case.inputs if s.differentiable]
    try:
        out, tensors = run.run_forward(case, used, fmt, device, mode, reduction, names)
    except Exception as exc:  # a clear refusal
        return probes.first_line(exc)
    backward_failed = screened is not None and (screened.backward or "").partition(": ")[0] in probes.FATAL
    grads: dict[str, FloatArray] = {}
    if names and not backward_failed:
        with contextlib.suppress(Exception):  # a refused backward leaves only the loss to judge
            grads = run.backward_carriers(out, tensors, names, mode, device, fmt)
    return run.to_carrier(out), grads


def problems(case: Case, clean: Mapping[str, npt.ArrayLike], poisoned: Mapping[str, npt.ArrayLike],
             dtype: str, device: str, mode: str = "eager", reductions: Sequence[str] | None = None) -> list[str]:
    """One line per way ``case`` mishandles the NaNs of ``poisoned`` (the inputs ``clean`` with some values
    replaced by NaN), in each of ``reductions`` (default all); empty when NaN goes exactly where it should."""
    fmt = dtypes.get(dtype)
    used_clean = run.prepare_inputs(case, clean, fmt)
    used = run.prepare_inputs(case, poisoned, fmt)
    masks = dependent(case, used), dependent(case, used, gradient=True)
    wanted = tuple(reductions or case.reductions)
    screened = probes.screen(case, used, fmt.name, device, mode, wanted) \
        if run.needs_screening(case, used, device) else {}
    found: list[str] = []
    for reduction in wanted:
        got = _outcome(case, used, dtype, device, mode, reduction, screened.get(reduction))
        if isinstance(got, str):
            continue  # refused: a clear answer to a NaN
        base = _outcome(case, used_clean, dtype, device, mode, reduction, None)
        if isinstance(base, str):
            found.append(f"{reduction}: the batch without NaN raised ({base}) where the one with NaN did not")
            continue
        found += _compare(reduction, got, base, *masks)
    return found


def _compare(reduction: str, got: tuple[FloatArray, dict[str, FloatArray]],
             base: tuple[FloatArray, dict[str, FloatArray]], mask: BoolArray, grad_mask: BoolArray) -> list[str]:
    loss, grads = got
    clean_loss, clean_grads = base
    found = []
    if reduction == "none":
        loss = loss.reshape(mask.shape)
        swallowed = mask & ~np.isnan(loss)
        if swallowed.any():
            i = _first(swallowed)
            found.append(f"none loss: {int(swallowed.sum())} element(s) that depend on a NaN input are numbers; "
                         f"first at {i}: {float(loss[i])!r}")
        found += _spread(f"{reduction} loss", loss, clean_loss.reshape(mask.shape), mask)
    elif not np.isnan(loss).all():
        found.append(f"{reduction} loss: {float(loss.reshape(-1)[0])!r} for a batch with NaN inputs")
    for name, grad in sorted(grads.items()):
        if name in clean_grads:
            found += _spread(f"{reduction} grad_{name}", grad.reshape(mask.shape),
                             clean_grads[name].reshape(mask.shape), grad_mask)
    return found


def _spread(what: str, values: FloatArray, clean: FloatArray, mask: BoolArray) -> list[str]:
    """A NaN among ``values`` outside ``mask`` where the clean batch has a number."""
    leaked = ~mask & np.isnan(values) & ~np.isnan(clean)
    if not leaked.any():
        return []
    i = _first(leaked)
    return [f"{what}: NaN spread to {int(leaked.sum())} element(s) that depend on no NaN input; first at {i} "
            f"(without the NaNs: {float(clean[i])!r})"]


def _first(where: BoolArray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(where)[0])
