"""ULP budgets and never-acceptable labels, as data (``suite/data/budgets.toml``)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

BUDGET_FILE = "budgets.toml"


@cache
def _table() -> dict[str, Any]:
    text = resources.files("suite.data").joinpath(BUDGET_FILE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def ulp_budget(case: str, dtype: str, device: str = "cpu") -> float:
    """Budget in ULPs of algorithmic error for a case, dtype and device: the most specific override
    (matching every key it names) or the dtype's default."""
    table = _table()
    best: tuple[int, float] | None = None
    for entry in table.get("override", []):
        keys = {"case": case, "dtype": dtype, "device": device.split(":")[0]}
        named = [k for k in keys if k in entry]
        if all(entry[k] == keys[k] for k in named) and (best is None or len(named) > best[0]):
            best = (len(named), float(entry["ulps"]))
    if best is not None:
        return best[1]
    try:
        return float(table["default"][dtype])
    except KeyError:
        raise KeyError(f"no ULP budget for dtype {dtype!r}") from None


def never_acceptable() -> frozenset[str]:
    """Labels that fail a test wherever they appear."""
    return frozenset(_table()["never_acceptable"])
