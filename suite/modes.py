"""Execution modes: the same case forward run eagerly, through ``torch.compile`` (``compile``: dynamo's
default, which compiles for the first shape it sees and recompiles for symbolic shapes when another comes;
``compile_dynamic``: ``dynamic=True``, symbolic shapes from the start, as with a varying batch size), or
under ``torch.autocast``; or eagerly on inputs stored in another memory layout (``strided``: every other element of
a buffer; ``transposed``: the last two dimensions swapped in memory), since torch picks its kernel loop by layout
(vectorised for contiguous data, element by element for strided, reordered for transposed) and a reduction adds
in another order.  Compiled functions are built once per (case, reduction, device, mode) and reused across the
batches of a grid; a process compiles for one compile mode at a time (:func:`forward_for` forgets the other's
graphs), and one-off calls compile afresh (:func:`first_call_forward`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping

import torch

from suite import fp_environment
from suite.cases.base import Case

MODES = ("eager", "compile", "compile_dynamic", "autocast", "strided", "transposed")
#: The modes that run through torch.compile.
COMPILE_MODES = ("compile", "compile_dynamic")
#: The modes that run eagerly on inputs in another memory layout (:func:`lay_out`).
LAYOUT_MODES = ("strided", "transposed")
#: Recompilations allowed per code object under :func:`strict_compile`.
RECOMPILE_LIMIT = 1024
AUTOCAST_DTYPES = ("float16", "bfloat16")

Forward = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
_COMPILED: dict[tuple[str, str, str, str, int], Forward] = {}
#: The compile mode whose graphs dynamo's caches hold: one name, or none since the last :func:`fresh_compiles`.
_compiling_for: list[str] = []


def compile_threads_per_job(jobs: int) -> int:
    """Inductor compile workers for each of ``jobs`` processes compiling side by side: an equal share of
    the cores, at least one (inductor's default would give every process every core)."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def applies(mode: str, dtype: str) -> bool:
    """Whether a mode is meaningful for a dtype (autocast only lowers to float16/bfloat16)."""
    check(mode)
    return mode != "autocast" or dtype in AUTOCAST_DTYPES


def check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def lay_out(tensors: Mapping[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
    """``tensors`` with the same values in ``mode``'s memory layout (unchanged outside :data:`LAYOUT_MODES`), each
    a leaf that requires a gradient where its source did, so that ``.grad`` is read from it.  ``strided``: a view
    of every other element of a buffer twice as long in the last dimension; ``transposed``: stored column-major in
    the last two dimensions (a tensor of fewer than two dimensions is as it was).  A 0-d tensor has no layout."""
    if mode not in LAYOUT_MODES:
        return dict(tensors)
    return {name: _laid_out(t, mode) for name, t in tensors.items()}


def _laid_out(t: torch.Tensor, mode: str) -> torch.Tensor:
    source = t.detach()
    if source.ndim == 0 or (mode == "transposed" and source.ndim < 2):
        out = source.clone()
    elif mode == "strided":
        buffer = torch.zeros((*source.shape[:-1], 2 * source.shape[-1]), dtype=source.dtype, device=source.device)
        out = buffer[..., ::2]
        out.copy_(source)
    else:
        out = source.mT.contiguous().mT
    return out.requires_grad_(t.requires_grad)


def forward_for(case: Case, reduction: str, mode: str, device: str) -> Forward:
    """The callable that computes ``case`` with ``reduction`` in ``mode``."""
    check(mode)

    def eager(t: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return case.forward(t, reduction)

    if mode not in COMPILE_MODES:
        return eager
    _compile_for(mode)
    key = (case.name, reduction, torch.device(device).type, mode, id(case.forward))
    if key not in _COMPILED:
        compiled = torch.compile(eager, dynamic=True if mode == "compile_dynamic" else None)
        _COMPILED[key] = _guarded(compiled)
    return _COMPILED[key]


def _compile_for(mode: str) -> None:
    """Let this process compile for ``mode`` alone: dynamo keeps its graphs per code object, whatever options
    they were compiled with, so a graph of one compile mode would serve the other.  Measured: torch 2.4 runs the
    graph ``compile`` built for static shapes at ``compile_dynamic``'s first call on the same inputs (no new
    graph is captured, and a weighted BCE computes where a compile with dynamic shapes raises); torch 2.1, whose
    dynamo breaks the graph before the loss, compiles the loss's own frames once for both.  So switching to
    another compile mode forgets every compiled graph first (:func:`fresh_compiles`)."""
    if _compiling_for and _compiling_for[0] != mode:
        fresh_compiles()
    _compiling_for[:] = [mode]


def dynamo_settings() -> tuple[str, str | None]:
    """This torch's names of dynamo's recompile limit per code object (``recompile_limit`` from 2.7,
    ``cache_size_limit`` before) and of raising at it instead of running eagerly (``fail_on_recompile_limit_hit``
    from 2.7, ``fail_on_cache_limit_hit`` in 2.6, None before)."""
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    fail = next((name for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit")
                 if hasattr(config, name)), None)
    return limit, fail


def _limits_reached() -> int:
    """How many times dynamo has run a frame eagerly because a recompile limit was reached (its ``unimplemented``
    counter, which torch before 2.6 keeps instead of raising)."""
    from torch._dynamo.utils import counters
    return sum(count for reason, count in counters["unimplemented"].items() if "limit" in reason)


def _guarded(compiled: Forward) -> Forward:
    """``compiled``, with this thread's IEEE arithmetic given back after each call where loading its kernels took
    it (:func:`suite.fp_environment.keeping_ieee`), and raising where dynamo ran it eagerly because a recompile
    limit was reached: the check a torch without a setting for it (before 2.6) needs for ``compile`` to mean
    compiled."""
    counted = dynamo_settings()[1] is None

    def call(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        before = _limits_reached() if counted else 0
        with fp_environment.keeping_ieee():
            out = compiled(tensors)
        if counted and _limits_reached() > before:
            raise RuntimeError(f"torch.compile ran eagerly: dynamo's {dynamo_settings()[0]} was reached")
        return out
    return call


def first_call_forward(case: Case, reduction: str, mode: str, device: str) -> Forward:
    """:func:`forward_for` as a user's first call meets it: in a compile mode, every earlier compile is
    forgotten first (:func:`fresh_compiles`).  For one-off calls (a bad-input probe, a mixed-dtype run), whose
    outcome must depend on their own inputs alone: a function compiled earlier for another shape is recompiled
    with symbolic sizes (dynamo's automatic dynamic shapes), which changes what it does and the messages it
    raises (a probe's target of another shape reads ``torch.Size([2, s36])`` instead of ``[2, 3]``).  It resets
    dynamo in the calling process: what else that process compiled is compiled again when next called."""
    if mode in COMPILE_MODES:
        fresh_compiles()
    return forward_for(case, reduction, mode, device)


def fresh_compiles() -> None:
    """Forget every compiled function, so the next ``compile`` run compiles anew for its own shapes.

    A compiled function first compiles for static shapes; called later with another shape (the same case
    on another dtype's grid) dynamo recompiles it with dynamic shapes, whose kernels can round differently
    (see the ``compile-half-mean-target-gradient-flushed`` deviation).  The report calls this before each
    case/dtype job so that its compile results do not depend on which jobs the same process ran before."""
    _COMPILED.clear()
    _compiling_for.clear()
    torch._dynamo.reset()


@contextlib.contextmanager
def compile_limit(limit: int) -> Iterator[None]:
    """At most ``limit`` compiled variants per code object, and reaching it raises instead of running eagerly,
    under this torch's names of the settings (:func:`dynamo_settings`; a torch without a setting for raising has
    :func:`forward_for`'s functions check instead)."""
    name, fail = dynamo_settings()
    settings: dict[str, object] = {name: limit, **({fail: True} if fail else {})}
    with torch._dynamo.config.patch(settings):
        yield


def strict_compile() -> contextlib.AbstractContextManager[None]:
    """Make ``compile`` mean compiled.  Dynamo recompiles a code object at most 8 times and then silently
    runs it eagerly; :func:`forward_for` compiles one closure (one code object) for every case, reduction,
    dtype and shape, so after 8 variants "compile" results would be eager ones.  Inside this context the
    limit is :data:`RECOMPILE_LIMIT` and reaching it raises instead of falling back (:func:`compile_limit`)."""
    return compile_limit(RECOMPILE_LIMIT)


@contextlib.contextmanager
def context(mode: str, device: str, dtype: torch.dtype) -> Iterator[None]:
    """The context a forward and backward run in: ``torch.autocast`` to ``dtype`` for autocast mode,
    :func:`strict_compile` for the compile modes, with this thread's IEEE arithmetic given back after the block
    where loading compiled kernels took it (:func:`suite.fp_environment.keeping_ieee`): keep in it only torch's
    calls, not the suite's arithmetic on their results."""
    if mode == "autocast":
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            yield
    elif mode in COMPILE_MODES:
        with strict_compile(), fp_environment.keeping_ieee():
            yield
    else:
        yield
