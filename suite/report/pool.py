"""Where the torch side of report jobs runs: in this process, one job after another, or side by side in
``jobs`` worker processes.

Workers start with ``spawn`` (a fresh interpreter: forking a process that has touched CUDA is unsafe),
import the plugin modules (:func:`suite.plugins.load_in_child`; one that fails there fails every job with its
:class:`suite.plugins.PluginError`) so that every case resolves by name, and use the parent's number of torch
threads, so a job gives the same numbers in a worker as in the parent (CPU reductions split their sums by
thread).  ``torch.compile``'s own compile workers are divided among the jobs instead of each job taking
every core.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

import torch

from suite import modes, plugins

T = TypeVar("T")


class InProcess(Executor):
    """An executor that runs each job when it is submitted, in this process (``jobs = 1``)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, like a worker's error
            future.set_exception(exc)
        return future


#: In a worker: why its plugin modules failed to import (None: they did), raised by each job it is given.
_plugin_error: plugins.PluginError | None = None


def _start_worker(modules: list[str], torch_threads: int, compile_threads: int) -> None:
    global _plugin_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers
    try:
        plugins.load_in_child(modules)
    except plugins.PluginError as exc:  # kept for the jobs: a failed initializer only breaks the pool, unexplained
        _plugin_error = exc
    torch.set_num_threads(torch_threads)
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = compile_threads


def _run_job(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a job in a worker, unless the worker's plugins failed to import: then their error."""
    if _plugin_error is not None:
        raise _plugin_error
    return fn(*args, **kwargs)


def job_compile_threads(jobs: int) -> int | None:
    """The inductor compile workers each of ``jobs`` jobs at a time compiles with: a share of the cores in
    :class:`Workers` (:func:`suite.modes.compile_threads_per_job`), inductor's default for one job in process."""
    return modes.compile_threads_per_job(jobs) if jobs > 1 else None


class Workers(ProcessPoolExecutor):
    """Spawned worker processes that load this process's plugin modules (:func:`suite.plugins.modules`) before
    their first job."""

    def __init__(self, jobs: int) -> None:
        super().__init__(jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                         initargs=(plugins.modules(), torch.get_num_threads(), modes.compile_threads_per_job(jobs)))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(_run_job, fn, *args, **kwargs)


@contextlib.contextmanager
def executor(jobs: int) -> Iterator[Executor]:
    """An executor running ``jobs`` jobs at a time (:class:`Workers` for more than one).  On a job's error,
    jobs not yet started are cancelled; on an interruption, running ones are stopped as well."""
    if jobs <= 1:
        yield InProcess()
        return
    pool = Workers(jobs)
    try:
        yield pool
    except Exception:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the running jobs too
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

