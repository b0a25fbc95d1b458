"""Sessions a person or CI runs.  pip/virtualenv backend; torch pinned to a default that
``--torch VERSION`` (or ``TORCH_VERSION``) overrides.  Pinned, because an unpinned torch pulls a multi-GB CUDA
build; where the wheel comes from is pip's own configuration (here ``PIP_FIND_LINKS`` holds a CPU build of the
default on local disk).

    nox -s tests                 # the test suite (benchmarks skipped)
    nox -s tests -- -k dtypes    # arguments after -- go to pytest
    nox -s tests -- --torch 2.14.1
"""

from __future__ import annotations

import os
from pathlib import Path

import nox
from packaging.version import InvalidVersion, Version

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

DEFAULT_TORCH = "2.13.0"


def _split_torch(posargs: list[str]) -> tuple[str, list[str]]:
    """Take ``--torch VERSION`` out of the session arguments; the rest goes to the tool."""
    version = os.environ.get("TORCH_VERSION", DEFAULT_TORCH)
    rest: list[str] = []
    args = iter(posargs)
    for arg in args:
        if arg == "--torch":
            version = next(args, version)
        elif arg.startswith("--torch="):
            version = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return version, rest


#: The first torch built against numpy 2: an older one cannot exchange arrays with numpy 2 (suite/interop.py).
NUMPY2_TORCH = Version("2.3")


def install(session: nox.Session, *extras: str) -> list[str]:
    """Install the pinned torch first (so nothing pulls an unpinned build), with numpy<2 for a torch built against
    numpy 1.x, then the suite."""
    version, rest = _split_torch(session.posargs)
    try:
        numpy1 = Version(version) < NUMPY2_TORCH
    except InvalidVersion:
        session.error(f"--torch {version!r} is not a version")
    session.install(f"torch=={version}", *(["numpy<2"] if numpy1 else []))
    target = "." if not extras else f".[{','.join(extras)}]"
    session.install("-e", target)
    return rest


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and accuracy tests (benchmarks are skipped; CUDA tests skip without a GPU)."""
    args = install(session)
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    session.run("pytest", *(args or ["tests"]), env=env)


@nox.session
def report(session: nox.Session) -> None:
    """The main job: accuracy report of the installed torch under reports/<torch>-cpu/ (JSON, Markdown, HTML
    with plots, the bad-input and mixed-dtype tables), one case/dtype job per core (at most 8) at a time,
    and its diff against the committed baseline (diff.md in the report folder; for a torch without a baseline,
    against the newest older one).  A run cut short goes on with `nox -s report -- --resume`.  Extra arguments go to
    `python -m suite report` (e.g. `-- --modes eager,compile,autocast` for the comparison of modes)."""
    args = install(session)
    jobs = str(min(os.cpu_count() or 1, 8))  # case/dtype jobs side by side; `-- --jobs 1` for one at a time
    # diff.md against the committed baseline of this torch, else of the newest committed torch: what an upgrade
    # changed (arguments after -- come last, so a --baseline of the user's wins)
    session.run("python", "-m", "suite", "report", "--bad-inputs", "--jobs", jobs,
                "--baseline", "reports/baselines", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    install(session, "dev")
    session.run("ruff", "check", "suite", "tests", "scripts", "noxfile.py")
    session.run("mypy")


# --------------------------------------------------------------------------------------------------
# Benchmarks (tests/bench, suite/bench): throughput against the copy bandwidth measured in the same run.

BENCH_STORAGE = "reports/benchmarks"
BENCH_PYTEST = ["tests/bench", "--benchmark-only", "--benchmark-enable",
                f"--benchmark-storage=file://{BENCH_STORAGE}"]


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput benchmarks, saved under reports/benchmarks/ (SUITE_BENCH_FULL=1: the full matrix)."""
    args = install(session)
    session.run("pytest", *BENCH_PYTEST, "--benchmark-save=bench", *args)


@nox.session
def bench_compare(session: nox.Session) -> None:
    """Rerun the benchmarks against the latest saved run; fail when a time per call (SUITE_BENCH_STAT,
    default median) is slower by more than SUITE_BENCH_THRESHOLD percent (default 15) or a fraction of copy
    bandwidth (normalised by the copy measured in the same run) lower by as much.  Benchmarks over the
    threshold are re-measured (SUITE_BENCH_RETRIES times, default 2) and each counts its best attempt, so the
    run-to-run noise of a shared machine passes while a benchmark slower in every attempt fails.  The baseline
    pools the last SUITE_BENCH_POOL (default 3) saved runs of the same torch and thread count."""
    args = install(session)
    threshold = os.environ.get("SUITE_BENCH_THRESHOLD", "15")
    stat = os.environ.get("SUITE_BENCH_STAT", "median")
    retries = os.environ.get("SUITE_BENCH_RETRIES", "2")
    if not retries.isdigit():
        session.error(f"SUITE_BENCH_RETRIES={retries!r} is not a number of re-measurements (0, 1, 2, ...)")
    pool = os.environ.get("SUITE_BENCH_POOL", "3")
    recent = session.run("python", "-m", "suite.bench.compare", "--latest", BENCH_STORAGE, "--recent", pool,
                         silent=True)
    *earlier, baseline = [line for line in str(recent).splitlines() if line.endswith(".json")]
    pooled = [arg for path in earlier for arg in ("--also-baseline", path)]
    attempts = [f"{BENCH_STORAGE}/compare-current.json"]
    suspects = f"{BENCH_STORAGE}/compare-suspects.txt"
    session.run("pytest", *BENCH_PYTEST, f"--benchmark-compare={baseline}", f"--benchmark-json={attempts[0]}",
                *args)
    for attempt in range(1, int(retries) + 2):
        # exit 1 (slower) writes the suspects; exit 2 (bad input: its one line above) fails the session here
        Path(suspects).unlink(missing_ok=True)
        session.run("python", "-m", "suite.bench.compare", baseline, *attempts, *pooled, "--threshold",
                    threshold, "--stat", stat, "--suspects", suspects, success_codes=[0, 1])
        nodes = Path(suspects).read_text().split()
        if not nodes:
            return
        if attempt > int(retries):
            session.error(f"benchmarks slower than the baseline by more than {threshold}% in every one of "
                          f"{len(attempts)} attempts (see above)")
        attempts.append(f"{BENCH_STORAGE}/compare-retry{attempt}.json")
        session.log(f"re-measuring the {len(nodes)} benchmark(s) over the threshold, to tell noise from a regression")
        session.run("pytest", *nodes, *BENCH_PYTEST[1:], f"--benchmark-json={attempts[-1]}", *args)
