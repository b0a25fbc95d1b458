"""Where the torch side of report jobs runs: in this process, one job after another, or side by side in
``jobs`` worker processes.

Workers start with ``spawn`` (a fresh interpreter: forking a process that has touched CUDA is unsafe),
import the plugin modules so that every case resolves by name, and use the parent's number of torch
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

from suite import cases, modes

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


def _start_worker(plugins: list[str], torch_threads: int, compile_threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the workers
    for module in plugins:
        cases.load_plugin(module)
    torch.set_num_threads(torch_threads)
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = compile_threads


@contextlib.contextmanager
def executor(jobs: int, plugins: list[str]) -> Iterator[Executor]:
    """An executor running ``jobs`` jobs at a time.  On a job's error, jobs not yet started are cancelled;
    on an interruption, running ones are stopped as well."""
    if jobs <= 1:
        yield InProcess()
        return
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                               initargs=(plugins, torch.get_num_threads(), modes.compile_threads_per_job(jobs)))
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


def is_registered(case: cases.Case) -> bool:
    """Whether ``case`` is the one registered under its name (what a worker would resolve)."""
    return case.name in cases.names() and cases.get(case.name) is case
