"""Sessions a person or CI runs.  pip/virtualenv backend; torch pinned to a default that
``--torch VERSION`` (or ``TORCH_VERSION``) overrides, so a CPU build on local disk is used where present.

    nox -s tests                 # the test suite (benchmarks skipped)
    nox -s tests -- -k dtypes    # arguments after -- go to pytest
    nox -s tests -- --torch 2.14.1
"""

from __future__ import annotations

import os

import nox

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


def install(session: nox.Session, *extras: str) -> list[str]:
    """Install the pinned torch first (so nothing pulls an unpinned build), then the suite."""
    version, rest = _split_torch(session.posargs)
    session.install(f"torch=={version}")
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
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    install(session, "dev")
    session.run("ruff", "check", "suite", "tests", "noxfile.py")
    session.run("mypy")
