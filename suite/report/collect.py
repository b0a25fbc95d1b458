"""Run every selected case x dtype x device x mode on its grid and build the ``accuracy.json`` payload
(:mod:`suite.report.schema`), plus the per-value profiles the plots draw.

The truth of a case on a grid is computed once per dtype (it does not depend on the device or mode), with
``workers`` processes, through the on-disk truth cache, so a second run only re-runs torch.  After the grid,
a targeted search (:mod:`suite.report.search_records`) looks for the worst input of each quantity.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

import suite
from suite import bias, cases, compare, dtypes, fp_environment, judge, modes, plugins, run, truth_cache
from suite.cases.base import Case
from suite.dtypes import FloatArray, FloatFormat
from suite.metrics import Label
from suite.report import checkpoint, findings, modes_tables, pool, schema, search_records
from suite.report.progress import Progress
from suite.report.safe_range import TYPICAL, safe_range
from suite.truth import TruthSet


@dataclass
class Options:
    """What to run: case names, dtypes, devices, modes, grid size, plugin modules (by case name), the
    targeted search's examples per case/dtype/device (0: none) and seed; how: ``workers`` processes for
    exact truths, ``jobs`` case/dtype jobs side by side (:mod:`suite.report.pool`), each finished job saved
    in ``checkpoint_dir`` and with ``resume`` reused from there (:mod:`suite.report.checkpoint`); with
    ``saved_only``, only what is saved there makes the report, and nothing else runs (bar the quick
    mixed-dtype promotion table); ``bad_input_devices`` limits the bad-input probes to some of the devices (a
    GPU machine's time is best spent on its GPU's probes, the CPU's run anywhere)."""

    cases: list[str]
    dtypes: list[str]
    devices: list[str]
    modes: list[str] = field(default_factory=lambda: ["eager"])
    quick: bool = False
    plugins: dict[str, str] = field(default_factory=dict)  # case name -> module that registered it
    workers: int = 2
    cache_dir: str | None = None
    search: int = 0
    search_seed: int = 0
    bad_inputs: bool = False
    jobs: int = 1
    checkpoint_dir: str | None = None
    resume: bool = False
    saved_only: bool = False
    bad_input_devices: list[str] | None = None  # where the bad-input probes run (None: every device)

    @property
    def probe_devices(self) -> list[str]:
        """The devices the bad-input probes and mixed dtypes run on: ``bad_input_devices``, else ``devices``."""
        return list(self.bad_input_devices) if self.bad_input_devices else list(self.devices)

    @property
    def reuses_saved(self) -> bool:
        """Whether saved jobs and probe groups are reused (``resume``, or ``saved_only``: nothing else)."""
        return self.resume or self.saved_only


@dataclass
class Profile:
    """One quantity along the main input, for plots: distinct grid values ``x``, the largest ULP error at
    each (NaN where none is defined), and for each label seen, where it occurs."""

    case: str
    dtype: str
    device: str
    quantity: str
    input: str
    x: FloatArray
    max_ulp: FloatArray
    labels: dict[str, npt.NDArray[np.bool_]]


@dataclass
class Collected:
    payload: dict[str, Any]
    profiles: list[Profile]


def _git_commit() -> str | None:
    root = Path(suite.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels were dispatched to (``AVX2``, ``AVX512``, ``DEFAULT``...):
    it picks the kernel, so the rounding of the same loss can differ between two CPUs."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(get()) if get is not None else None


def environment(compile_devices: Sequence[str] = (), compile_threads: int | None = None) -> dict[str, Any]:
    """Versions and hardware of this run, and what compiling on each of ``compile_devices`` (the run's devices
    when it has a compile mode) with its jobs' ``compile_threads`` inductor workers did to the calling thread's
    arithmetic."""
    import mpmath

    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cpu": _cpu(), "cpu_capability": _cpu_capability(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "subnormals": {device: fp_environment.torch_subnormals(device) for device in ["cpu"] + ["cuda"] * cuda},
            "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__, "mpmath": mpmath.__version__,
            "suite": suite.__version__, "suite_commit": _git_commit()}
    if compile_devices:
        env["compile_arithmetic"] = {device: fp_environment.compile_problems(device, compile_threads)
                                     for device in compile_devices}
    return env


def grid_inputs(case: Case, fmt: FloatFormat, quick: bool) -> dict[str, np.ndarray]:
    """The case's deterministic grid (:func:`suite.inputs.grids.case_grid`)."""
    from suite.inputs import grids

    return grids.case_grid(case, fmt, quick=quick)


def truth_for(case: Case, used: Mapping[str, FloatArray], workers: int, cache_dir: str | None) -> TruthSet:
    """The truth at already-rounded inputs, from the on-disk cache or computed with ``workers`` processes."""
    return truth_cache.cached_truth(case, used, workers=workers, cache_dir=cache_dir)


# --------------------------------------------------------------------------------------------------
# Summaries of one quantity.


def _argmax(values: FloatArray) -> tuple[int, ...] | None:
    """Index of the largest non-NaN value (inf counts), or None."""
    finite = np.where(np.isnan(values), -np.inf, values)
    if not (~np.isnan(values)).any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(finite)), values.shape))


def _max(values: FloatArray, mask: npt.NDArray[np.bool_] | None = None) -> float | str | None:
    v = values if mask is None else values[mask]
    v = v[~np.isnan(v)]
    return schema.encode_float(float(v.max())) if v.size else None


def summarize(result: run.CaseResult, q: run.QuantityResult) -> dict[str, Any]:
    """The ``results`` record of one quantity."""
    m = q.metrics
    ulp_at, bits_at = _argmax(m.ulp_error), _argmax(m.bits_error)
    measured = ~np.isnan(m.algorithmic_ulp)
    return {
        "key": findings.result_key(result, q), "case": result.case.name, "dtype": result.fmt.name,
        "device": result.device, "mode": result.mode, "reduction": q.reduction, "quantity": q.quantity,
        "output_dtype": q.fmt.name, "elements": int(q.got.size), "budget": float(m.budget), "error": q.error,
        "labels": m.count(), "histogram": m.histogram(),
        "max_ulp": _max(m.ulp_error), "max_ulp_at": None if ulp_at is None else findings.point(result, q, ulp_at),
        "max_bits": _max(m.bits_error),
        "max_bits_at": None if bits_at is None else findings.point(result, q, bits_at),
        "algorithmic": {"max_ulp": _max(m.algorithmic_ulp),
                        "over_budget": int((m.algorithmic_ulp[measured] > m.budget).sum())},
        "ill_conditioned": {"count": int(m.ill_conditioned.sum()), "max_ulp": _max(m.ulp_error, m.ill_conditioned)},
        "failing": int(judge.failing(q).sum()),
    }


def profile(result: run.CaseResult, q: run.QuantityResult) -> Profile:
    """Per distinct main-input value: the largest ULP error and the labels that occur there."""
    name = result.case.main_input.name
    x = findings.main_values(result, q.got.shape).reshape(-1)
    keep = ~np.isnan(x)
    x = x[keep]
    err = q.metrics.ulp_error.reshape(-1)[keep]
    labels = q.metrics.labels.reshape(-1)[keep]
    values, inverse = np.unique(x, return_inverse=True)
    worst = np.full(values.size, -np.inf)
    np.maximum.at(worst, inverse, np.where(np.isnan(err), -np.inf, err))  # inf stays inf
    worst[np.isneginf(worst)] = np.nan
    seen: dict[str, npt.NDArray[np.bool_]] = {}
    for code in np.unique(labels):
        where = np.zeros(values.size, bool)
        where[inverse[labels == code]] = True
        seen[Label(int(code)).text] = where
    return Profile(result.case.name, result.fmt.name, result.device, q.quantity, name, values, worst, seen)


def safe_range_record(result: run.CaseResult) -> dict[str, Any]:
    """Safe range of the main input for the unreduced loss and the gradient with respect to the main input."""
    case = result.case
    main = case.main_input
    failures: dict[str, npt.NDArray[np.bool_]] = {}
    shape = result.truth.values.shape
    for quantity in (run.LOSS, run.grad_name(main.name)):
        q = result.quantities.get(("none", quantity))
        if q is None:
            continue
        fails = judge.failing(q)
        for code in np.unique(q.metrics.labels[fails]):
            failures[f"{quantity} {Label(int(code)).text}"] = fails & (q.metrics.labels == code)
    x = findings.main_values(result, shape)
    center = TYPICAL.get(main.kind, 0.0)
    found = safe_range(x, failures, center)
    return {"case": case.name, "dtype": result.fmt.name, "device": result.device, "mode": result.mode,
            "input": main.name, "kind": main.kind, "center": center,
            "low": schema.encode_float(found.low) if found.low is not None else None,
            "high": schema.encode_float(found.high) if found.high is not None else None,
            "limits": found.limits, "status": found.status}


# --------------------------------------------------------------------------------------------------
# The run.


@dataclass
class _Parts:
    results: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    safe_ranges: list[dict[str, Any]] = field(default_factory=list)
    search: list[dict[str, Any]] = field(default_factory=list)
    rounding_bias: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    sides: compare.SideComparisons = field(default_factory=compare.SideComparisons)

    def extend(self, other: _Parts) -> None:
        self.results += other.results
        self.findings += other.findings
        self.safe_ranges += other.safe_ranges
        self.search += other.search
        self.rounding_bias += other.rounding_bias
        self.profiles += other.profiles
        self.sides.extend(other.sides)


@dataclass
class JobOutput:
    """What one case/dtype job adds to the report: its records, the grid's shape, and the seconds its
    torch runs (with metrics) and its targeted search took."""

    parts: _Parts
    shape: list[int]
    torch_seconds: float
    search_seconds: float


def collect_case(case: Case, fmt: FloatFormat, used: Mapping[str, FloatArray], truth_set: TruthSet,
                 devices: list[str], mode_names: list[str], plugin: str | None, parts: _Parts) -> None:
    """Run one case and dtype on every device and mode, adding its records to ``parts``, and compare the
    modes and devices on these same inputs (:func:`suite.compare.compare_sides`)."""
    version = torch.__version__
    results: dict[compare.Side, run.CaseResult] = {}
    for device in devices:
        for mode in mode_names:
            if not modes.applies(mode, fmt.name):
                continue
            result = run.evaluate(case, used, fmt, device, mode=mode, truth_set=truth_set)
            results[(device, mode)] = result
            parts.results.extend(summarize(result, q) for q in result.quantities.values())
            parts.findings.extend(findings.find(result, version, plugin))
            parts.safe_ranges.append(safe_range_record(result))
            parts.rounding_bias += bias_records(case, fmt, device, mode)
            for quantity in (run.LOSS, run.grad_name(case.main_input.name)):
                q = result.quantities.get(("none", quantity))
                if q is not None and mode == mode_names[0]:
                    parts.profiles.append(profile(result, q))
    parts.sides.extend(compare.compare_sides(results))


def bias_records(case: Case, fmt: FloatFormat, device: str, mode: str) -> list[dict[str, Any]]:
    """The ``rounding_bias`` records (:mod:`suite.report.schema`) of one case, dtype, device and mode: one per
    quantity, measured on :func:`suite.bias.population`."""
    return [{"case": case.name, "dtype": fmt.name, "device": device, "mode": mode, "quantity": quantity,
             "mean": round(b.mean, 4), "stderr": schema.encode_float(round(b.stderr, 4)), "elements": b.elements,
             "toward_zero": round(b.toward_zero, 4), "biased": b.biased}
            for quantity, b in bias.measure_case(case, fmt.name, device, mode).items()]


def _case_info(case: Case, plugin: str | None) -> dict[str, Any]:
    return {"family": case.family, "description": case.description, "main_input": case.main_input.name,
            "main_kind": case.main_input.kind, "inputs": [s.name for s in case.inputs], "rows": case.rows,
            "reductions": list(case.reductions), "plugin": plugin, "grid": {}}


def search_case(case: Case, fmt: FloatFormat, options: Options, plugin: str | None, parts: _Parts) -> None:
    """The targeted search on every device, adding its records and new findings to ``parts``."""
    for device in options.devices:
        records, found = search_records.search_case(case, fmt, device, options.search, options.search_seed,
                                                    torch.__version__, plugin)
        parts.search.extend(records)
        parts.findings.extend(found)


def comparisons(options: Options, cases_to_run: list[Case], sides: compare.SideComparisons,
                progress: Progress, store: checkpoint.Store | None = None) -> dict[str, Any]:
    """The ``comparisons`` section: modes against eager and devices against CPU on the report's own grids,
    the autocast dtypes, and with ``bad_inputs`` the bad-input probes and mixed-dtype promotion of
    :mod:`suite.modes_report` for the report's cases, dtypes, devices and modes.  The probes run in child
    processes, one per case, device, dtype and stage (compiled or not), ``options.jobs`` at a time (compiling
    every probe's shape takes minutes); each finished group is saved in ``store`` (:func:`checkpoint_store`), and
    reused with ``options.resume``; with ``options.saved_only``, only saved groups are reported and
    ``probe_groups_missing`` names the others.  They run after the jobs, not beside them: beside them, the
    compiling children and the jobs' OpenMP threads share the cores, which made a 4-mode report slower."""
    from suite import modes_report

    out: dict[str, Any] = {"notes": modes_tables.notes(options.devices, options.modes),
                           **modes_tables.comparisons_payload(sides)}
    if options.bad_inputs and options.probe_devices != list(options.devices):
        out["notes"].append(f"Bad-input probes and mixed dtypes ran on {', '.join(options.probe_devices)} only "
                            "(--bad-input-devices); the other devices' are in reports run there.")
    if options.bad_inputs:
        progress.line("bad-input probes and mixed dtypes")
        memo = checkpoint.ProbeMemo(store, options.reuses_saved, progress.line) if store is not None else None
        extra = modes_report.sections(options.probe_devices, options.modes, options.quick,
                                      case_names=[c.name for c in cases_to_run], dtype_names=options.dtypes,
                                      isolate=True, parts=("probes", "promotion"), jobs=options.jobs, memo=memo,
                                      run_unsaved=not options.saved_only)
        out.update({k: extra[k] for k in ("probes", "promotion", "probe_groups_missing") if k in extra})
    return out


def run_job(case: Case | str, dtype: str, used: Mapping[str, FloatArray], truth_set: TruthSet,
            options: Options) -> JobOutput:
    """The torch side of one case/dtype job: every device and mode on the grid, then the targeted search.
    ``case`` is a Case, or in a worker process the name of a registered one.  Compile mode compiles afresh
    for the job's grid (:func:`modes.fresh_compiles`), so no job's numbers depend on the jobs before it."""
    case = cases.get(case) if isinstance(case, str) else case  # workers get names: forwards need not pickle
    fmt, plugin, parts = dtypes.get(dtype), options.plugins.get(case.name), _Parts()
    if set(options.modes) & set(modes.COMPILE_MODES):
        modes.fresh_compiles()
    t0 = time.monotonic()
    collect_case(case, fmt, used, truth_set, options.devices, options.modes, plugin, parts)
    t1 = time.monotonic()
    if options.search > 0:
        search_case(case, fmt, options, plugin, parts)
    return JobOutput(parts, list(truth_set.values.shape), t1 - t0, time.monotonic() - t1)


def _gpu_models() -> list[str]:
    """The NVIDIA GPU models the driver lists, read without initialising CUDA in this process (forking the
    truth workers after that would be unsafe)."""
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            models += [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                       if line.startswith("Model:")]
    return models


def checkpoint_store(options: Options) -> checkpoint.Store | None:
    """Where finished jobs are saved (None: nowhere), keyed by everything their numbers depend on: the
    suite (in :class:`checkpoint.Store`), torch and the machine (its CPU kernels too: ``ATEN_CPU_CAPABILITY``
    picks another set on the same CPU), the settings, the plugins."""
    if options.checkpoint_dir is None:
        return None
    import hypothesis

    plugins = sorted(set(options.plugins.values()))
    cuda = any(torch.device(d).type == "cuda" for d in options.devices)
    return checkpoint.Store(Path(options.checkpoint_dir), [
        f"torch {torch.__version__} threads {torch.get_num_threads()} numpy {np.__version__} "
        f"hypothesis {hypothesis.__version__}", f"cpu {_cpu()} kernels {_cpu_capability()}",
        f"gpus {_gpu_models() if cuda else []}",
        ",".join(options.devices), ",".join(options.modes), f"search {options.search} seed {options.search_seed}",
        *(f"{m}\n{checkpoint.module_source(m)}" for m in plugins)])


@dataclass
class _Pending:
    number: int
    label: str
    key: str | None
    truth_seconds: float


def run_jobs(options: Options, jobs: list[tuple[Case, FloatFormat]], progress: Progress,
             inputs_for: Callable[[Case, FloatFormat], Mapping[str, np.ndarray]] | None,
             store: checkpoint.Store | None) -> tuple[dict[int, JobOutput], int, list[str]]:
    """Every job's output by job number (from 1), how many came from saved jobs (``options.resume``), and
    with ``options.saved_only`` the jobs that are not saved (``case dtype``), which are not run.
    Grids are made first, then the jobs run largest first (:func:`largest_first`); exact truths are made here,
    one job after another, and the torch side of each job runs in
    :func:`pool.executor` (``options.jobs`` at a time) while the next truths are computed, with at most
    twice ``options.jobs`` jobs waiting (each holds its inputs and truths).  Each job is saved to the
    checkpoint store when it is reported; on an error or an interruption, every job that has finished is saved
    before the error goes on."""
    started = time.monotonic()
    outputs: dict[int, JobOutput] = {}
    resumed = 0
    missing: list[str] = []

    def finished(job: _Pending, output: JobOutput, reused: bool) -> None:
        outputs[job.number] = output
        if store is not None and job.key is not None and not reused:
            store.save(job.key, output)
        elements = int(np.prod(output.shape))
        progress.done(job.number, job.label, f"{elements} elements, " + (
            "saved by an earlier run (--resume)" if reused else
            f"truth {job.truth_seconds:.1f}s, torch+metrics {output.torch_seconds:.1f}s, "
            f"search {output.search_seconds:.1f}s") + f" (total {time.monotonic() - started:.0f}s)")

    with pool.executor(options.jobs) as runner:
        pending: dict[Future[JobOutput], _Pending] = {}

        def reap(keep: int) -> None:
            """Report (and save) every finished job, waiting until at most ``keep`` are pending."""
            while pending and (len(pending) > keep or any(f.done() for f in pending)):
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f].number):
                    finished(pending.pop(future), future.result(), reused=False)

        grids = {}
        for number, (case, fmt) in enumerate(jobs, 1):
            progress.step(number, f"{case.name} {fmt.name}", "grid")
            raw = inputs_for(case, fmt) if inputs_for else grid_inputs(case, fmt, options.quick)
            grids[number] = run.prepare_inputs(case, raw, fmt)
        try:
            for number in largest_first({n: _elements(used) for n, used in grids.items()}):
                case, fmt = jobs[number - 1]
                label = f"{case.name} {fmt.name}"
                used = grids.pop(number)
                key = store.key(case.name, fmt.name, used) if store is not None else None
                saved = store.load(key) if store is not None and key is not None and options.reuses_saved else None
                if isinstance(saved, JobOutput):
                    finished(_Pending(number, label, key, 0.0), saved, reused=True)
                    resumed += 1
                    continue
                if options.saved_only:
                    missing.append(label)
                    progress.done(number, label, "not saved by an earlier run: missing (--saved-only)")
                    continue
                progress.step(number, label, "exact truth")
                t0 = time.monotonic()
                truth_set = truth_for(case, used, options.workers, options.cache_dir)
                job = _Pending(number, label, key, time.monotonic() - t0)
                progress.step(number, label, "torch and metrics" + (", targeted search" if options.search else ""))
                name: Case | str = case.name if options.jobs > 1 else case
                pending[runner.submit(run_job, name, fmt.name, used, truth_set, options)] = job
                reap(keep=2 * options.jobs)
            reap(keep=0)
        except BaseException:  # a job's error or an interruption: first keep every job that has finished
            for future, job in list(pending.items()):
                if future.done() and not future.cancelled() and future.exception() is None:
                    finished(job, future.result(), reused=False)
            raise
    return outputs, resumed, missing


def largest_first(elements: Mapping[int, int]) -> list[int]:
    """Job numbers, the largest grid first (ties in job order): the pool starts the longest jobs first, so the
    last to finish is a short one (longest-processing-time-first scheduling: in case order, the exhaustive
    16-bit grids of the last cases started last and finished long after the others)."""
    return sorted(elements, key=lambda number: (-elements[number], number))


def _elements(used: Mapping[str, np.ndarray]) -> int:
    return int(np.prod(np.broadcast_shapes(*(np.shape(v) for v in used.values()))))


def collect(options: Options, cases_to_run: list[Case], progress: Progress | None = None,
            inputs_for: Callable[[Case, FloatFormat], Mapping[str, np.ndarray]] | None = None) -> Collected:
    """Run everything ``options`` selects (:func:`run_jobs`), reporting each job's steps to ``progress``
    (default: none); ``inputs_for`` replaces the grids (tests pass small inputs).  Results keep the job order
    whatever order jobs finish in."""
    started = time.monotonic()
    jobs = [(case, dtypes.get(d)) for case in cases_to_run for d in options.dtypes]
    if options.jobs > 1:
        for case in cases_to_run:
            if not plugins.resolvable(case):
                raise ValueError(f"case {case.name!r} is not registered as a built-in or plugin case: jobs > 1 "
                                 "runs those only (workers look cases up by name)")
    progress = progress or Progress(quiet=True)
    progress.total = len(jobs)
    store = checkpoint_store(options)
    if options.saved_only and store is None:
        raise ValueError("saved_only needs a checkpoint_dir to read the saved jobs from")
    outputs, resumed, missing_jobs = run_jobs(options, jobs, progress, inputs_for, store)
    parts = _Parts()
    case_info: dict[str, Any] = {}
    for number, (case, fmt) in enumerate(jobs, 1):
        info = case_info.setdefault(case.name, _case_info(case, options.plugins.get(case.name)))
        output = outputs.get(number)
        if output is None:  # missing (saved_only)
            continue
        parts.extend(output.parts)
        info["grid"][fmt.name] = {"elements": int(np.prod(output.shape)), "shape": output.shape}
    compared = comparisons(options, cases_to_run, parts.sides, progress, store)
    missing = {"jobs": missing_jobs, "probe_groups": compared.pop("probe_groups_missing", [])}
    payload = {
        "schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment(options.devices if set(options.modes) & set(modes.COMPILE_MODES) else (),
                                   pool.job_compile_threads(options.jobs)),
        "options": {"cases": [c.name for c in cases_to_run], "dtypes": list(options.dtypes),
                    "devices": list(options.devices), "modes": list(options.modes), "quick": options.quick,
                    "plugins": sorted(set(options.plugins.values())),
                    "grid": "custom" if inputs_for else ("quick" if options.quick else "full"),
                    "search": {"examples": options.search, "seed": options.search_seed},
                    "jobs": options.jobs, "resumed_jobs": resumed, "missing": missing,
                    "bad_input_devices": options.probe_devices if options.bad_inputs else []},
        "cases": case_info, "results": parts.results, "findings": parts.findings,
        "safe_ranges": parts.safe_ranges, "search": parts.search, "rounding_bias": parts.rounding_bias,
        "comparisons": compared,
        "seconds": round(time.monotonic() - started, 1),
    }
    return Collected(schema.validate(payload, "the collected report"), parts.profiles)
