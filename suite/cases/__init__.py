"""Registry of cases: every public form of the three losses, plus whatever a user registers.

    from suite import cases
    case = cases.get("bce_with_logits")
    cases.register(my_case)          # from a user's own module
    cases.load_plugin("my_losses")   # import a module that registers cases
"""

from __future__ import annotations

import importlib

from suite.cases import bce_with_logits, binary_cross_entropy, compositions, kl_div
from suite.cases.base import INPUT_KINDS, REDUCTION_DIVISORS, Case, InputSpec

__all__ = ["INPUT_KINDS", "REDUCTION_DIVISORS", "Case", "InputSpec", "all_cases", "get", "load_plugin",
           "names", "register", "unregister"]

_REGISTRY: dict[str, Case] = {}
BUILTIN: tuple[str, ...] = ()


def register(case: Case, *, replace: bool = False) -> Case:
    """Add a case; a name already taken is an error unless ``replace``."""
    if case.name in _REGISTRY and not replace:
        raise ValueError(f"a case named {case.name!r} is already registered")
    _REGISTRY[case.name] = case
    return case


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> Case:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown case {name!r}; known cases: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    return list(_REGISTRY)


def all_cases() -> list[Case]:
    return list(_REGISTRY.values())


def load_plugin(module: str) -> list[Case]:
    """Import ``module`` (which calls :func:`register`) and return the cases it added."""
    before = set(_REGISTRY)
    importlib.import_module(module)
    return [c for n, c in _REGISTRY.items() if n not in before]


for _module in (binary_cross_entropy, bce_with_logits, kl_div, compositions):
    for _case in _module.CASES:
        register(_case)
BUILTIN = tuple(_REGISTRY)
