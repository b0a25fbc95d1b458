"""ULP budgets and never-acceptable labels, as data (``suite/data/budgets.toml``), checked when loaded: a
misspelt key would otherwise make an override match every dtype, and a misspelt label fail no element."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from suite import dtypes
from suite.metrics import Label

BUDGET_FILE = "budgets.toml"
MATCH_KEYS = ("case", "dtype", "device")
OVERRIDE_KEYS = frozenset({*MATCH_KEYS, "ulps", "reason"})
LABELS = frozenset(label.text for label in Label)


@dataclass(frozen=True)
class Budgets:
    """The parsed file: default budget per dtype, overrides (each matching the keys it names), labels."""

    default: Mapping[str, float]
    overrides: tuple[Mapping[str, Any], ...]
    never_acceptable: frozenset[str]


def parse(text: str) -> Budgets:
    """The budgets of a TOML text; ValueError naming the first malformed part."""
    table = tomllib.loads(text)
    unknown = set(table) - {"default", "override", "never_acceptable"}
    if unknown:
        raise ValueError(f"malformed budgets: unknown top-level keys {sorted(unknown)}")
    default = {str(k): _positive(v, f"default.{k}") for k, v in table.get("default", {}).items()}
    if set(default) != set(dtypes.NAMES):
        raise ValueError(f"malformed budgets: [default] must give every dtype {list(dtypes.NAMES)}, "
                         f"not {sorted(default)}")
    overrides = tuple(_override(i, entry) for i, entry in enumerate(table.get("override", [])))
    labels = table.get("never_acceptable", [])
    if not isinstance(labels, list) or not set(labels) <= LABELS:
        raise ValueError(f"malformed budgets: never_acceptable {labels!r} names labels outside {sorted(LABELS)}")
    return Budgets(default, overrides, frozenset(labels))


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"malformed budgets: {where} must be a positive number of ULPs, not {value!r}")
    return float(value)


def _override(index: int, entry: Any) -> Mapping[str, Any]:
    where = f"override {index + 1}"
    if not isinstance(entry, dict):
        raise ValueError(f"malformed budgets: {where} is not a table")
    unknown = set(entry) - OVERRIDE_KEYS
    if unknown:
        raise ValueError(f"malformed budgets: {where} has unknown keys {sorted(unknown)}; "
                         f"known: {sorted(OVERRIDE_KEYS)}")
    if not any(k in entry for k in MATCH_KEYS):
        raise ValueError(f"malformed budgets: {where} names none of {list(MATCH_KEYS)}")
    if "dtype" in entry and entry["dtype"] not in dtypes.NAMES:
        raise ValueError(f"malformed budgets: {where} names unknown dtype {entry['dtype']!r}")
    if not isinstance(entry.get("reason"), str) or not entry["reason"].strip():
        raise ValueError(f"malformed budgets: {where} needs a reason")
    return {**entry, "ulps": _positive(entry.get("ulps"), f"{where} ulps")}


@cache
def _budgets() -> Budgets:
    return parse(resources.files("suite.data").joinpath(BUDGET_FILE).read_text(encoding="utf-8"))


def ulp_budget(case: str, dtype: str, device: str = "cpu") -> float:
    """Budget in ULPs of algorithmic error for a case, dtype and device: the most specific override
    (matching every key it names) or the dtype's default."""
    budgets = _budgets()
    keys = {"case": case, "dtype": dtype, "device": device.split(":")[0]}
    best: tuple[int, float] | None = None
    for entry in budgets.overrides:
        named = [k for k in MATCH_KEYS if k in entry]
        if all(entry[k] == keys[k] for k in named) and (best is None or len(named) > best[0]):
            best = (len(named), float(entry["ulps"]))
    if best is not None:
        return best[1]
    try:
        return budgets.default[dtype]
    except KeyError:
        raise KeyError(f"no ULP budget for dtype {dtype!r}") from None


def never_acceptable() -> frozenset[str]:
    """Labels that fail a test wherever they appear."""
    return _budgets().never_acceptable
