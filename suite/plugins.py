"""Plugin modules: a user's modules that register cases of their own (``--plugin``), loaded in this process
and again in every child process the suite starts.

A child (a ``--jobs`` worker, a bad-input probe child, the screening of a CUDA batch) is a fresh interpreter
that looks each case up by name, so it must import the plugin modules before its first task, or every task of
a plugin case fails as "unknown case".  The parent loads them through :func:`load_all` (or :func:`load`),
which remembers them; whoever starts a child passes :func:`modules` to it, and the child calls
:func:`load_in_child` on them.  A plugin that fails there raises :class:`PluginError`, which the parent
re-raises as one clear error instead of a failure per task.

    owners = plugins.load_all(["my_losses"])      # case name -> module, as the report records it
    plugins.load_in_child(plugins.modules())      # what a child does first
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from suite import cases, fp_environment
from suite.cases.base import Case
from suite.errors import UsageError

#: Module -> the cases it added, for every plugin module loaded in this process, in load order.
_LOADED: dict[str, list[Case]] = {}


class PluginError(UsageError):
    """A plugin module that this process imported failed to import in a child process (one line, exit 2)."""


def load(module: str) -> list[Case]:
    """Import ``module`` (which registers cases), check that it left IEEE arithmetic alone, and remember it
    for the children; the cases it added.  Errors are the import's own (and :class:`UsageError`)."""
    added = cases.load_plugin(module)
    fp_environment.require_ieee(f"after importing plugin {module!r}")
    _LOADED.setdefault(module, []).extend(added)
    return added


def load_all(names: Iterable[str]) -> dict[str, str]:
    """Load each plugin module of the command line; case name -> module that registered it.  A module that
    cannot be imported, or whose own code fails, is a :class:`UsageError` naming it."""
    owners: dict[str, str] = {}
    for module in names:
        try:
            added = load(module)
        except ImportError as exc:
            raise UsageError(f"cannot import plugin {module!r}: {exc}") from None
        except UsageError:
            raise
        except (Exception, SystemExit) as exc:  # the plugin's own code failed (or exited) while it was imported
            raise UsageError(f"plugin {module!r} failed on import: {type(exc).__name__}: {exc}") from None
        owners.update({c.name: module for c in added})
    return owners


def modules() -> list[str]:
    """The plugin modules a child must import, in load order: those loaded here that this process still has
    imported (a test that forgets a plugin removes it from ``sys.modules``)."""
    return [m for m in _LOADED if m in sys.modules]


def resolvable(case: Case) -> bool:
    """Whether a child process that imports :func:`modules` finds ``case`` under its name: it is the case
    registered under that name here, and built in or added by a loaded plugin (not registered by hand)."""
    if case.name not in cases.names() or cases.get(case.name) is not case:
        return False
    return case.name in cases.BUILTIN or any(case is c for m in modules() for c in _LOADED[m])


def load_in_child(names: Iterable[str]) -> None:
    """In a child process, before its first task: load the parent's plugin modules (:func:`modules`).
    :class:`PluginError` names the module and what went wrong, for the parent to report once."""
    for module in names:
        if module in _LOADED:
            continue
        try:
            load(module)
        except (Exception, SystemExit) as exc:
            raise PluginError(f"plugin {module!r} failed to import in a child process: {type(exc).__name__}: "
                              f"{exc}") from None
