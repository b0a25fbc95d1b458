"""What torch does with bad inputs: for each case, dtype, device and mode, a probe feeds one kind of bad
input (a value outside an input's domain, NaN, a target of another shape, integer or mismatched dtypes,
empty tensors) and records the outcome: raises (first line of the message), returns NaN, returns a number,
returns an empty tensor, or triggers a CUDA device-side assert.

A device-side assert poisons the CUDA context of its process, so probes on CUDA (or all, with ``isolate``)
run in child processes: one child runs tasks in turn and reports each on a line; when a child dies (a
signal, ``os._exit``), hangs past the timeout, or stops after a device-side assert, the task is recorded
as such and a fresh child takes the rest.  The parent never touches CUDA for them.  Each child first imports
the parent's plugin modules (:mod:`suite.plugins`), so that a user's cases resolve by name there too; one
that fails to import there stops the run with its :class:`suite.plugins.PluginError`.

    outcomes = probes.run_probes(probes.tasks_for(cases.all_cases(), ["float32"], ["cpu"], ["eager"]))
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from suite import cases, dtypes, modes, plugins
from suite.cases.base import Case, InputSpec

#: Outcome kinds.
RAISES, NAN, NUMBER, EMPTY = "raises", "nan", "number", "empty"
DEVICE_ASSERT, CHILD_DIED, TIMEOUT = "device_assert", "child_died", "timeout"
NOT_APPLICABLE = "not_applicable"
#: Reduction every probe uses: torch's default.
REDUCTION = "mean"
#: Seconds a child may take for one probe (compilation included) and to start (import torch and the suite).
TIMEOUT_S = 120.0
STARTUP_S = 120.0
RESULT_PREFIX = "PROBE-RESULT "
#: Probe-name prefix of a batch saved to a file: ``saved:<path of an .npz>`` (see :func:`screen`).
SAVED = "saved:"
#: Outcomes after which the batch must not be run in this process.
FATAL = (DEVICE_ASSERT, CHILD_DIED, TIMEOUT)
READY_LINE = "PROBE-READY"
#: Line of a child whose plugin modules failed to import, followed by the error (JSON text); no task ran.
PLUGIN_ERROR_LINE = "PROBE-PLUGIN-ERROR "

#: Batch shape of the data inputs; parameters (weight, pos_weight) are per-class vectors of the last axis.
SHAPE = (2, 4)
#: Typical in-domain values of each input kind (one row, repeated for the batch).
TYPICAL: dict[str, tuple[float, ...]] = {
    "logit": (-2.0, -0.5, 0.5, 3.0), "probability": (0.125, 0.375, 0.625, 0.875),
    "target": (0.0, 0.25, 0.5, 1.0), "log_probability": (-3.0, -1.0, -0.5, -0.125),
    "log_target": (-2.0, -1.0, -0.5, -0.25), "weight": (1.0, 2.0, 0.5, 3.0), "pos_weight": (2.0, 0.5, 1.0, 3.0)}
#: Distance outside a finite domain bound of a probed value.
OUTSIDE = 0.5

Tensors = dict[str, torch.Tensor]
#: A probe builds the bad inputs for a case in a dtype on a device, or returns None where it does not apply.
Builder = Callable[[Case, torch.dtype, str], Tensors | None]


@dataclass(frozen=True)
class Task:
    """One probe to run: ``probe`` is a name of :data:`PROBES` or ``"module:function"`` (a :data:`Builder`)."""

    case: str
    probe: str
    dtype: str
    device: str
    mode: str
    reduction: str = REDUCTION


@dataclass
class Outcome:
    """What one probe did: ``kind`` (one of the outcome kinds) and ``message`` (the error's first line, the
    value, or what killed the child); result dtype and shape when torch returned a tensor; the distinct
    warnings (first lines); and the kind and message of the backward pass when the forward returned a value."""

    task: Task
    kind: str
    message: str
    result_dtype: str | None = None
    shape: list[int] | None = None
    warnings: list[str] = field(default_factory=list)
    backward: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.task), "kind": self.kind, "message": self.message, "result_dtype": self.result_dtype,
                "shape": self.shape, "warnings": self.warnings, "backward": self.backward}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Outcome:
        task = Task(d["case"], d["probe"], d["dtype"], d["device"], d["mode"], d["reduction"])
        return cls(task, d["kind"], d["message"], d.get("result_dtype"), d.get("shape"), list(d.get("warnings", [])),
                   d.get("backward"))


# --------------------------------------------------------------------------------------------------
# Building the inputs of a probe.


def typical(case: Case, dtype: torch.dtype, device: str) -> Tensors:
    """In-domain inputs of ``case``: data inputs of :data:`SHAPE`, parameters of its last axis."""
    out = {}
    for spec in case.inputs:
        row = torch.tensor(TYPICAL[spec.kind], dtype=torch.float64)
        value = row if spec.role == "parameter" else row.expand(SHAPE).clone()
        out[spec.name] = value.to(dtype).to(device)
    return out


def _data(case: Case) -> list[InputSpec]:
    return [s for s in case.inputs if s.role == "data"]


def _finite_bound(bound: float) -> bool:
    return math.isfinite(bound) and abs(bound) < sys.float_info.max


def _set_first(t: Tensors, name: str, value: float) -> Tensors:
    t[name] = t[name].clone()
    t[name].view(-1)[0] = value
    return t


def _outside(name: str, above: bool) -> Builder:
    def build(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
        spec = next((s for s in case.inputs if s.name == name), None)
        if spec is None or spec.role != "data":
            return None
        bound = spec.high if above else spec.low
        if not _finite_bound(bound):
            return None
        return _set_first(typical(case, dtype, device), name, bound + OUTSIDE if above else bound - OUTSIDE)
    return build


def _nan(name: str) -> Builder:
    def build(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
        if name not in {s.name for s in _data(case)}:
            return None
        return _set_first(typical(case, dtype, device), name, math.nan)
    return build


def _second(case: Case) -> str | None:
    data = _data(case)
    return data[1].name if len(data) > 1 else None


def _target_shape(columns: int) -> Builder:
    """The second data input (the target) with ``columns`` columns instead of the input's."""
    def build(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
        name = _second(case)
        if name is None:
            return None
        t = typical(case, dtype, device)
        t[name] = t[name][..., :columns].contiguous()
        return t
    return build


def _integer(which: int) -> Builder:
    """Data input number ``which`` as int64 (its typical values truncated)."""
    def build(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
        data = _data(case)
        if which >= len(data):
            return None
        t = typical(case, dtype, device)
        t[data[which].name] = t[data[which].name].to(torch.int64)
        return t
    return build


def _empty(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
    t = typical(case, dtype, device)
    for spec in _data(case):
        t[spec.name] = t[spec.name][:0]
    return t


def _mismatched(case: Case, dtype: torch.dtype, device: str) -> Tensors | None:
    """The second data input in another floating dtype (float64, or float32 when the dtype is float64)."""
    name = _second(case)
    if name is None:
        return None
    t = typical(case, dtype, device)
    t[name] = t[name].to(torch.float32 if dtype == torch.float64 else torch.float64)
    return t


#: Built-in probes: name -> (what it feeds, builder).  Domain probes exist for inputs with a finite bound.
PROBES: dict[str, tuple[str, Builder]] = {
    "input_above": ("input above its domain (p = 1.5)", _outside("input", True)),
    "input_below": ("input below its domain (p = -0.5)", _outside("input", False)),
    "target_above": ("target above its domain (1.5)", _outside("target", True)),
    "target_below": ("target below its domain (-0.5)", _outside("target", False)),
    "input_nan": ("one NaN in input", _nan("input")),
    "target_nan": ("one NaN in target", _nan("target")),
    "target_broadcastable": ("target (2, 1) for input (2, 4)", _target_shape(1)),
    "target_other_shape": ("target (2, 3) for input (2, 4)", _target_shape(3)),
    "integer_input": ("input as int64", _integer(0)),
    "integer_target": ("target as int64", _integer(1)),
    "empty": ("empty input and target (0, 4)", _empty),
    "mismatched_dtype": ("target in float64 (float32 for float64)", _mismatched),
}


def _saved(path: str) -> Builder:
    """Inputs saved by :func:`screen`: carrier arrays (float64, exactly representable in the dtype)."""
    def build(case: Case, dtype: torch.dtype, device: str) -> Tensors:
        from suite.run import to_tensor  # run imports this module

        with np.load(path) as data:
            return {name: to_tensor(data[name], dtypes.get(dtype), device) for name in data.files}
    return build


def builder(name: str) -> Builder:
    """The builder of a probe name: a built-in, ``saved:<path>`` (a batch saved by :func:`screen`), or
    ``module:function`` imported from a user's module."""
    if name in PROBES:
        return PROBES[name][1]
    if name.startswith(SAVED):
        return _saved(name[len(SAVED):])
    module, sep, function = name.partition(":")
    if not sep:
        raise KeyError(f"unknown probe {name!r}; known probes: {', '.join(PROBES)}")
    found: Builder = getattr(importlib.import_module(module), function)
    return found


def tasks_for(selected: Iterable[Case], dtype_names: Sequence[str], devices: Sequence[str],
              mode_names: Sequence[str], probe_names: Sequence[str] | None = None) -> list[Task]:
    """Every applicable task: each case x dtype x device x mode (that applies to the dtype) x probe (whose
    builder applies to the case)."""
    names = list(probe_names or PROBES)
    out = []
    for case in selected:
        for name in names:
            if builder(name)(case, torch.float64, "cpu") is None:  # cheap applicability check on CPU
                continue
            out += [Task(case.name, name, d, dev, m) for d in dtype_names for dev in devices
                    for m in mode_names if modes.applies(m, d)]
    return out


# --------------------------------------------------------------------------------------------------
# Running one probe (in this process or a child).


#: How dynamo reports the error an operation raised while tracing: ``...: got ValueError('message')``.
_TRACED_ERROR = re.compile(r"""got (\w+)\((['"])(.*?)\2\)""")


#: A Python object's memory address in its repr (``<function f at 0x7f...>``), which torch.compile's messages quote
#: before 2.6: it differs between processes and a recorded outcome must not, so it is left out.
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception.  torch.compile wraps the error an operation raised in a generic
    one ("RuntimeError when making fake tensor call"); the wrapped error is appended when it can be found
    (the explicit cause, the ``got Error('...')`` dynamo writes, or the line after a first line that ends in a
    colon)."""
    text = str(exc).strip()
    line = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    cause = exc.__cause__
    traced = _TRACED_ERROR.search(text)
    if cause is not None and str(cause).strip():
        line += f" (from {type(cause).__name__}: {str(cause).strip().splitlines()[0]})"
    elif traced:
        line += f" (from {traced.group(1)}: {traced.group(3)})"
    elif len(lines := text.splitlines()) > 1 and lines[0].rstrip().endswith(":") and lines[1].strip():
        line += f" ({lines[1].strip()})"  # torch.compile before 2.6: the wrapped error's message on the next line
    return _ADDRESS.sub("", line)


def _describe_value(out: torch.Tensor) -> tuple[str, str]:
    values = out.detach().to("cpu", torch.float64).reshape(-1)
    if values.numel() == 0:
        return EMPTY, "empty tensor"
    if torch.isnan(values).any():
        return NAN, f"{int(torch.isnan(values).sum())} of {values.numel()} NaN"
    shown = ", ".join(f"{v:.6g}" for v in values[:4].tolist()) + (", ..." if values.numel() > 4 else "")
    return NUMBER, shown


def _failure(task: Task, exc: BaseException) -> Outcome:
    message = first_line(exc)
    kind = DEVICE_ASSERT if "device-side assert" in str(exc) else RAISES
    return Outcome(task, kind, message)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def execute(task: Task) -> Outcome:
    """Run one probe in this process.  Exceptions are the observation, never propagated."""
    case = cases.get(task.case)
    fmt = dtypes.get(task.dtype)
    built = builder(task.probe)(case, fmt.torch_dtype, task.device)
    if built is None:
        return Outcome(task, NOT_APPLICABLE, "probe does not apply to this case")
    tensors = modes.lay_out(built, task.mode)
    for spec in case.inputs:
        t = tensors[spec.name]
        if spec.differentiable and t.is_floating_point():
            t.requires_grad_(True)
    forward = modes.first_call_forward(case, task.reduction, task.mode, task.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # the garbage collector's, of whatever object it frees
        try:
            with modes.context(task.mode, task.device, fmt.torch_dtype):
                out = forward(tensors)
            _sync(task.device)
        except Exception as exc:  # torch's error is the observation
            return _failure(task, exc)
        kind, message = _describe_value(out)
        outcome = Outcome(task, kind, message, str(out.dtype).removeprefix("torch."), list(out.shape))
        outcome.backward = _backward(task, fmt.torch_dtype, out, tensors)
    texts = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
    outcome.warnings = list(dict.fromkeys(texts))
    return outcome


def _backward(task: Task, dtype: torch.dtype, out: torch.Tensor, tensors: Tensors) -> str | None:
    """The backward pass's outcome, run in the forward's context (autocast to the task's ``dtype``, as
    :mod:`suite.run` does, not to the result's: a float32 result would make the suite itself warn)."""
    if not out.requires_grad:
        return None
    try:
        with modes.context(task.mode, task.device, dtype):
            out.backward(torch.ones_like(out))
        _sync(task.device)
    except Exception as exc:
        failure = _failure(task, exc)
        return f"{failure.kind}: {failure.message}"
    grads = [t.grad for t in tensors.values() if t.grad is not None]
    if not grads:
        return "no gradient"
    kinds = [_describe_value(g)[0] for g in grads]
    return NAN if NAN in kinds else (EMPTY if all(k == EMPTY for k in kinds) else NUMBER)


# --------------------------------------------------------------------------------------------------
# Isolation in child processes.


def child_main() -> None:
    """Entry point of a child: read the plugin modules and the tasks (JSON) on stdin, import the plugins
    (their error, on one line, ends the child), run the tasks in turn, print each outcome on a line; stop
    after a device-side assert (the CUDA context is poisoned)."""
    given = json.loads(sys.stdin.read())
    try:
        plugins.load_in_child(given["plugins"])
    except plugins.PluginError as exc:
        print(PLUGIN_ERROR_LINE + json.dumps(str(exc)), flush=True)
        return
    tasks = [Task(**t) for t in given["tasks"]]
    if any(t.mode in modes.COMPILE_MODES for t in tasks):  # a second and more to import: part of the start-up,
        import torch._dynamo  # noqa: F401                 # not of the first probe's time (only compiles need it)

    print(READY_LINE, flush=True)
    for task in tasks:
        try:
            outcome = execute(task)
        except Exception as exc:  # a broken probe builder: report it, go on
            outcome = Outcome(task, RAISES, f"probe failed: {first_line(exc)}")
        print(RESULT_PREFIX + json.dumps(outcome.to_dict()), flush=True)
        if outcome.kind == DEVICE_ASSERT:
            return


def _child_env(compile_threads: int | None) -> dict[str, str]:
    """This process's environment, with the suite importable and, when given (and the user set none),
    ``compile_threads`` compile workers for inductor, so children side by side do not each take every core."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
    if compile_threads is not None:
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(compile_threads))
    return env


def _reader(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _died(task: Task, proc: subprocess.Popen[str], stderr: IO[str]) -> Outcome:
    code = proc.wait()
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    stderr.seek(0)
    last = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    return Outcome(task, CHILD_DIED, how + (f"; stderr: {last[-1][:200]}" if last else ""))


class StoppedError(Exception):
    """The run that these children serve was interrupted: no new child starts."""


class Children:
    """The child processes of one run of probes, so that an interrupted run (Ctrl-C, SIGTERM from a time
    limit) stops them all at once instead of waiting for each group to finish.  Each child compiles with
    ``compile_threads`` inductor workers (None: inductor's default)."""

    def __init__(self, compile_threads: int | None = None) -> None:
        self._compile_threads = compile_threads
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False

    def start(self, stderr: IO[str]) -> subprocess.Popen[str]:
        """A new child reading tasks on stdin; :class:`StoppedError` once :meth:`stop` was called."""
        with self._lock:
            if self._stopped:
                raise StoppedError
            proc = subprocess.Popen([sys.executable, "-c", "from suite.probes import child_main; child_main()"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                    env=_child_env(self._compile_threads))
            self._running.add(proc)
            return proc

    def finished(self, proc: subprocess.Popen[str]) -> None:
        """Forget a child that has ended."""
        with self._lock:
            self._running.discard(proc)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Kill every running child, wait until each has ended, and start none after."""
        with self._lock:
            self._stopped = True
            for proc in self._running:
                proc.kill()
            for proc in self._running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


def _run_child(tasks: Sequence[Task], timeout: float, startup: float, children: Children) -> list[Outcome]:
    """Run ``tasks`` in one child until it finishes, dies, hangs or stops; the outcomes it gave, plus one for
    the task it died or hung on.  An interruption here kills the child."""
    with tempfile.TemporaryFile("w+") as stderr:
        proc = children.start(stderr)
        try:
            outcomes = _outcomes_of(proc, tasks, timeout, startup, stderr)
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.wait()
            children.finished(proc)
        if children.stopped:  # killed by stop(): what it gave is not an outcome
            raise StoppedError
        return outcomes


def _outcomes_of(proc: subprocess.Popen[str], tasks: Sequence[Task], timeout: float, startup: float,
                 stderr: IO[str]) -> list[Outcome]:
    """Send this process's plugin modules and ``tasks`` to a started child and read its outcomes until it ends
    (or is killed, hung); :class:`suite.plugins.PluginError` when the plugins failed to import there."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"plugins": plugins.modules(), "tasks": [asdict(t) for t in tasks]}))
    proc.stdin.close()
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    outcomes: list[Outcome] = []
    wait = startup
    while len(outcomes) < len(tasks):
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            proc.kill()
            proc.wait()
            outcomes.append(Outcome(tasks[len(outcomes)], TIMEOUT, f"no answer within {wait:g} s; killed"))
            return outcomes
        if line is None:
            if not outcomes or outcomes[-1].kind != DEVICE_ASSERT:
                outcomes.append(_died(tasks[len(outcomes)], proc, stderr))
            return outcomes
        if line.startswith(PLUGIN_ERROR_LINE):
            raise plugins.PluginError(json.loads(line[len(PLUGIN_ERROR_LINE):]))
        if line.startswith(READY_LINE):
            wait = timeout
        elif line.startswith(RESULT_PREFIX):
            outcomes.append(Outcome.from_dict(json.loads(line[len(RESULT_PREFIX):])))
    return outcomes


def run_isolated(tasks: Sequence[Task], *, timeout: float = TIMEOUT_S, startup: float = STARTUP_S,
                 children: Children | None = None) -> list[Outcome]:
    """Run ``tasks`` in child processes, a fresh one after each death, hang or device-side assert.
    ``children``: the run's children (how they compile; another thread may stop them, then this raises
    :class:`StoppedError`)."""
    children = children or Children()
    outcomes: list[Outcome] = []
    while len(outcomes) < len(tasks):
        outcomes += _run_child(tasks[len(outcomes):], timeout, startup, children)
    return outcomes


def screen(case: Case, inputs: Mapping[str, npt.NDArray[np.float64]], dtype: str, device: str, mode: str,
           reductions: Sequence[str], *, timeout: float = TIMEOUT_S) -> dict[str, Outcome]:
    """Run ``case`` on a batch (carrier arrays) in child processes first, one task per reduction, so that a
    device-side assert (or a crash) poisons a child's CUDA context and not this process's; the outcome of
    each reduction.  ``case`` must resolve in a child (:func:`suite.plugins.resolvable`: the child looks it up
    by name)."""
    with tempfile.TemporaryDirectory(prefix="suite-screen-") as folder:
        path = os.path.join(folder, "batch.npz")
        arrays = {name: np.asarray(v, dtype=np.float64) for name, v in inputs.items()}
        np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stubs confuse **arrays with allow_pickle
        tasks = [Task(case.name, SAVED + path, dtype, device, mode, r) for r in reductions]
        return dict(zip(reductions, run_isolated(tasks, timeout=timeout), strict=True))


class GroupMemo(Protocol):
    """Where the outcomes of finished probe groups are kept, so that an interrupted run need not redo them
    (the report's :class:`suite.report.checkpoint.Store`)."""

    def load(self, tasks: Sequence[Task]) -> list[Outcome] | None:
        """The saved outcomes of exactly these tasks, or None."""

    def save(self, tasks: Sequence[Task], outcomes: Sequence[Outcome], seconds: float) -> None:
        """Keep the outcomes of a finished group, run in ``seconds``."""


#: The two stages of a case, device and dtype's probes, each a child-process group of its own.
UNCOMPILED, COMPILED = "uncompiled", "compiled"
Group = tuple[str, str, str, str]


def group_of(task: Task) -> Group:
    """The child-process group of an isolated task: its case, device, dtype and stage (:data:`COMPILED` for the
    compile modes, :data:`UNCOMPILED` for the others).  Each probe's outcome depends on its task alone
    (:func:`modes.first_call_forward`), so the groups only decide which probes share a process.  Split by
    stage, the start-ups that follow device-side asserts (eager CUDA BCE asserts on every probability outside
    [0, 1]) cost an import, not a warm-up of the compiler, and a run cut off by its time limit keeps a finished
    stage for ``--resume``."""
    return task.case, task.device, task.dtype, COMPILED if task.mode in modes.COMPILE_MODES else UNCOMPILED


def groups_in_run_order(tasks: Iterable[Task]) -> dict[Group, list[Task]]:
    """The child-process groups of ``tasks`` (:func:`group_of`), each in task order, those on accelerators
    before those on the CPU: on a machine lent for a limited time, what only its accelerator can run is done
    first, and a run cut off by the time limit lacks CPU groups, which any machine can run."""
    groups: dict[Group, list[Task]] = {}
    for task in tasks:
        groups.setdefault(group_of(task), []).append(task)
    return dict(sorted(groups.items(), key=lambda item: torch.device(item[0][1]).type == "cpu"))


def run_probes(tasks: Sequence[Task], *, isolate: bool | None = None, timeout: float = TIMEOUT_S,
               jobs: int = 1, memo: GroupMemo | None = None, run_unsaved: bool = True) -> list[Outcome]:
    """Outcomes of ``tasks`` in order.  ``isolate``: True runs every task in child processes, False none,
    None (default) those on CUDA devices (where a device-side assert may happen).  Isolated tasks run in one
    child per case, device, dtype and stage (:func:`groups_in_run_order`; a fresh one after a death, hang or
    assert), ``jobs`` children at a time, each with its share of the cores for compiling: what a probe gives
    depends on its task alone, never on how many run side by side or which probes ran before it.  (A compiled
    probe run in this process resets dynamo here: :func:`modes.first_call_forward`.)  With ``memo``, a group
    saved by an earlier run is reused and each finished group is saved; with ``run_unsaved`` False, a group
    that is not saved is not run either, and its tasks have no outcome in the list."""
    def isolated(task: Task) -> bool:
        return isolate if isolate is not None else torch.device(task.device).type == "cuda"

    def run_group(group: list[Task]) -> list[Outcome] | None:
        saved = memo.load(group) if memo is not None else None
        if saved is not None or not run_unsaved:
            return saved
        started = time.monotonic()
        outcomes = run_isolated(group, timeout=timeout, children=children)
        if memo is not None:
            memo.save(group, outcomes, time.monotonic() - started)
        return outcomes

    here = [t for t in tasks if not isolated(t)]
    groups = groups_in_run_order(t for t in tasks if isolated(t))
    by_task = {id(t): o for t, o in zip(here, [execute(t) for t in here], strict=True)}
    children = Children(modes.compile_threads_per_job(jobs))
    waiting = ThreadPoolExecutor(max(1, jobs))  # threads that wait on child processes
    try:
        for group, outcomes in zip(groups.values(), waiting.map(run_group, groups.values()), strict=True):
            if outcomes is not None:
                by_task.update({id(t): o for t, o in zip(group, outcomes, strict=True)})
    except BaseException:  # interrupted (or a broken group): stop now, keeping the groups already saved
        children.stop()
        waiting.shutdown(wait=False, cancel_futures=True)
        raise
    waiting.shutdown()
    return [by_task[id(t)] for t in tasks if id(t) in by_task]
