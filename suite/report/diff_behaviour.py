"""Differences in what torch *does* between two accuracy reports (with ``--bad-inputs``): the bad-input table
(:mod:`suite.probes`) and the mixed-dtype table (:mod:`suite.promotion`), matched row by row.

A bad input is handled best by an error, worse by a NaN that shows, worse still by a number that looks
right, and worst by a crash (a device-side assert, a dead or hung child).  A probe (or its backward pass)
whose outcome moves down that order is a regression: torch started to accept silently, or to crash on, an
input it used to refuse.  Other changes (a new error message, another result dtype, an error where a value
was) are listed, not judged.  A mixed-dtype row regresses when it has more never-acceptable elements on the
same points, or raises where it returned a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from suite import budgets, probes

#: How badly an outcome handles a bad input (higher is worse); kinds not listed (not applicable) rank 0.
SEVERITY = {probes.RAISES: 0, probes.EMPTY: 0, probes.NAN: 1, probes.NUMBER: 2,
            probes.DEVICE_ASSERT: 3, probes.CHILD_DIED: 3, probes.TIMEOUT: 3}


class ChangeSink(Protocol):
    def add(self, kind: str, key: str, text: str, regression: bool = False) -> None: ...


Row = dict[str, Any]


def _rows(payload: Row, section: str, key: Callable[[Row], str], cases: set[str] | None) -> dict[str, Row]:
    rows: Iterable[Row] = (payload.get("comparisons") or {}).get(section) or []
    return {key(r): r for r in rows if cases is None or r["case"] in cases}


def _probe_key(r: Row) -> str:
    return "/".join(str(r[k]) for k in ("case", "dtype", "device", "mode", "reduction")) + f" probe {r['probe']}"


def _promotion_key(r: Row) -> str:
    dtypes = ",".join(f"{name}={dtype}" for name, dtype in r["input_dtypes"].items())
    return f"{r['case']}/{r['device']}/{r.get('mode', 'eager')} ({dtypes})"


def _backward_kind(r: Row) -> str | None:
    """The kind of the backward pass, written ``"<kind>: <message>"`` (None: the forward gave no value)."""
    text = r.get("backward")
    return None if text is None else str(text).split(":", 1)[0]


def _outcome(kind: str | None, message: str | None = None) -> str:
    if kind == probes.RAISES and message:
        return f"raises ({message})"
    return "no value" if kind is None else kind


def compare_probes(diff: ChangeSink, a: Row, b: Row, cases: set[str] | None = None) -> None:
    """Each bad-input probe run in both reports whose forward or backward outcome, result dtype or error
    message changed; a move to a worse :data:`SEVERITY` is a regression."""
    ra, rb = _rows(a, "probes", _probe_key, cases), _rows(b, "probes", _probe_key, cases)
    for key in sorted(ra.keys() & rb.keys()):
        old, new = ra[key], rb[key]
        for stage, kind_a, kind_b in (("forward", old["kind"], new["kind"]),
                                      ("backward", _backward_kind(old), _backward_kind(new))):
            message_a = old["message"] if stage == "forward" else None
            message_b = new["message"] if stage == "forward" else None
            if kind_a != kind_b or (kind_a == probes.RAISES and message_a != message_b):
                worse = SEVERITY.get(kind_b or "", 0) > SEVERITY.get(kind_a or "", 0)
                diff.add("bad_input", key, f"{stage}: {_outcome(kind_a, message_a)} -> {_outcome(kind_b, message_b)}",
                         regression=worse)
        if old.get("result_dtype") != new.get("result_dtype") and old["kind"] == new["kind"]:
            diff.add("bad_input", key, f"result dtype {old.get('result_dtype')} -> {new.get('result_dtype')}")


def _failing(quantity: Row) -> int:
    never = set(budgets.never_acceptable())
    return sum(int(n) for label, n in quantity.get("labels", {}).items() if label in never)


def compare_promotion(diff: ChangeSink, a: Row, b: Row, cases: set[str] | None = None) -> None:
    """Each mixed-dtype combination in both reports whose result dtype, error or never-acceptable element
    count changed; more failing elements on the same points, or an error instead of a value, is a regression."""
    ra, rb = _rows(a, "promotion", _promotion_key, cases), _rows(b, "promotion", _promotion_key, cases)
    for key in sorted(ra.keys() & rb.keys()):
        old, new = ra[key], rb[key]
        if old.get("error") != new.get("error"):
            diff.add("promotion", key, f"{old.get('error') or 'a value'} -> {new.get('error') or 'a value'}",
                     regression=old.get("error") is None)
        if old.get("result_dtype") != new.get("result_dtype") and old.get("error") == new.get("error"):
            diff.add("promotion", key, f"result dtype {old.get('result_dtype')} -> {new.get('result_dtype')}")
        if old.get("points") != new.get("points"):
            continue
        qa, qb = old.get("quantities") or {}, new.get("quantities") or {}
        for quantity in sorted(qa.keys() & qb.keys()):
            fail_a, fail_b = _failing(qa[quantity]), _failing(qb[quantity])
            if fail_a != fail_b:
                diff.add("promotion", f"{key} {quantity}", f"failing elements {fail_a} -> {fail_b}",
                         regression=fail_b > fail_a)
