"""Saved jobs of an unfinished report run, so that ``python -m suite report --resume`` goes on where an
interrupted or timed-out run stopped instead of starting again.

Each finished case/dtype job, and each finished group of bad-input probes, is written (atomically) to one
file in a folder beside the report.  Its name is a digest of everything the job's numbers depend on: the
suite's own source files, the plugin modules' sources, torch's version, the devices, modes and search
settings, the case, the dtype and the bytes of the inputs (for probes: the tasks).  A job is reused only
when all of these match, so a changed suite, torch or grid recomputes it.
The files are pickles written by this program for this program: the folder belongs to the user's report
and is removed once the report is published.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import suite
from suite import atomic, probes, truth_cache

CHECKPOINT_VERSION = "1"
_SUFFIX = ".job.pkl"


@functools.cache
def suite_digest() -> str:
    """Digest of the suite package's source and data files (a changed suite never reuses saved jobs)."""
    root = Path(suite.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def module_source(module: str) -> str:
    """Source of a plugin module; when it cannot be read, a string no later run repeats (so that the jobs of
    a plugin that may have changed are never reused)."""
    never = f"{module} (source unreadable) {uuid.uuid4()}"
    try:
        return truth_cache.source_of(importlib.import_module(module), unreadable=never)
    except ImportError:
        return never


def folder_for(out: Path) -> Path:
    """Where the jobs of a run writing the report ``out`` are saved: a hidden folder beside it."""
    return out.parent / f".{out.name}.jobs"


class Store:
    """The saved jobs of runs that share ``context`` (strings naming the run's settings) in ``folder``."""

    def __init__(self, folder: Path, context: Iterable[str]) -> None:
        self.folder = folder
        digest = hashlib.sha256()
        for part in (CHECKPOINT_VERSION, suite_digest(), *context):
            digest.update(part.encode() + b"\0")
        self._context = digest.hexdigest()

    def _digest(self, head: str) -> Any:
        digest = hashlib.sha256(self._context.encode())
        digest.update(head.encode())
        return digest

    def key(self, case: str, dtype: str, inputs: Mapping[str, np.ndarray]) -> str:
        """The file name of a job: its case and dtype, then a digest of the run's context and the inputs."""
        digest = self._digest(f"{case}\0{dtype}\0")
        truth_cache.add_arrays(digest, inputs)
        return f"{case}-{dtype}-{digest.hexdigest()[:32]}{_SUFFIX}"

    def text_key(self, name: str, text: str) -> str:
        """The file name of a part of the run that ``text`` describes in full (a group of probe tasks)."""
        digest = self._digest(name + "\0" + text + "\0")
        return f"{name}-{digest.hexdigest()[:32]}{_SUFFIX}"

    def load(self, key: str) -> Any | None:
        """The saved job under ``key``, or None when there is none or it cannot be read (then it is rerun)."""
        try:
            with open(self.folder / key, "rb") as handle:
                return pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError, TypeError):
            return None

    def save(self, key: str, job: Any) -> None:
        atomic.write_bytes(self.folder / key, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))


class ProbeMemo:
    """The outcomes of finished probe groups in a :class:`Store` (:class:`suite.probes.GroupMemo`): each
    finished group is saved; with ``resume``, a saved group is reused.  ``said`` hears one line per group."""

    def __init__(self, store: Store, resume: bool, said: Callable[[str], None] | None = None) -> None:
        self.store, self.resume, self.said = store, resume, said

    def _key(self, tasks: Sequence[probes.Task]) -> str:
        return self.store.text_key(f"probes-{tasks[0].case}", json.dumps([asdict(t) for t in tasks]))

    def _say(self, tasks: Sequence[probes.Task], what: str) -> None:
        if self.said is not None:
            case, device, dtype, stage = probes.group_of(tasks[0])
            self.said(f"probes {case} {dtype} on {device}, {stage}: {len(tasks)} {what}")

    def load(self, tasks: Sequence[probes.Task]) -> list[probes.Outcome] | None:
        saved = self.store.load(self._key(tasks)) if self.resume and tasks else None
        if not (isinstance(saved, list) and len(saved) == len(tasks)
                and all(isinstance(o, probes.Outcome) and o.task == t for o, t in zip(saved, tasks, strict=True))):
            return None
        self._say(tasks, "saved by an earlier run (--resume)")
        return saved

    def save(self, tasks: Sequence[probes.Task], outcomes: Sequence[probes.Outcome], seconds: float) -> None:
        if tasks:
            self.store.save(self._key(tasks), list(outcomes))
            self._say(tasks, f"run in {seconds:.1f}s")


def saved_jobs(folder: Path) -> int:
    """How many job files ``folder`` holds (of any run)."""
    return sum(1 for _ in folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else 0


def remove(folder: Path) -> None:
    """Delete the saved jobs, once the report they served is published."""
    shutil.rmtree(folder, ignore_errors=True)
