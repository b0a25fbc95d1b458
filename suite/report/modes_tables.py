"""Tables of the mode, device, bad-input and dtype-promotion sections, from their JSON payload: shared by
``python -m suite modes`` and the accuracy report (``accuracy.md`` and ``index.html``).

The payload holds any of ``modes`` and ``devices`` (:class:`suite.compare.Comparison` dicts), ``autocast``
(result dtype or error per case, dtype and device), ``probes`` (bad-input outcomes) and ``promotion``
(mixed dtypes), and ``notes``; parts that did not run are absent.
"""

from __future__ import annotations

import math
from typing import Any

from suite import compare, probes
from suite.report.schema import decode_float
from suite.report.summary import Table, number, value


def comparisons_payload(found: compare.SideComparisons) -> dict[str, Any]:
    """The ``modes``, ``devices`` and ``autocast`` parts of the payload."""
    return {"modes": [c.to_dict() for c in found.by_mode], "devices": [c.to_dict() for c in found.by_device],
            "autocast": found.autocast}


def notes(devices: list[str], mode_names: list[str]) -> list[str]:
    """What the sections cannot show for the devices and modes that ran."""
    out = []
    if not any(d.startswith("cuda") for d in devices):
        out.append("No CUDA device was run (none available or not selected): the CPU-vs-CUDA comparison and "
                   "the CUDA autocast and device-side-assert probes are absent.")
    if mode_names == ["eager"]:
        out.append("Only eager mode ran: --modes eager,compile,compile_dynamic,autocast,strided,transposed adds the "
                   "comparison of modes (strided and transposed: eager on inputs in another memory layout).")
    return out



def comparison_table(title: str, comparisons: list[dict[str, Any]]) -> Table:
    """One row per case, dtype, pair of sides, reduction and quantity."""
    headers = ["case", "dtype", "a", "b", "reduction", "quantity", "formats", "points", "label differs",
               "failing label differs", "ULP differs", "bitwise differs", "largest ULP gap", "worst point (a | b)",
               "errors"]
    rows = []
    for c in comparisons:
        for q in c["quantities"]:
            worst = q["examples"][0] if q["examples"] else None
            point = "-" if worst is None else (
                ", ".join(f"{k}={value(v)}" for k, v in worst["inputs"].items()) +
                f": {worst['labels'][0]} {value(worst['got'][0])} | {worst['labels'][1]} {value(worst['got'][1])} "
                f"(truth {value(worst['truth'])})")
            errors = " | ".join(e or "-" for e in q["errors"]) if any(q["errors"]) else "-"
            rows.append([c["case"], c["dtype"], c["a"], c["b"], q["reduction"], q["quantity"], "/".join(q["formats"]),
                         str(q["points"]), str(q["label_differs"]), str(q.get("failing_differs", "-")),
                         str(q["ulp_differs"]), str(q["bitwise_differs"]), number(q["largest_ulp_gap"]), point,
                         errors])
    return Table(title, headers, rows, comparison_caption(comparisons))


def comparison_caption(comparisons: list[dict[str, Any]]) -> str:
    """What a comparison table adds up to: points compared (elements of every loss and gradient), how many
    differ and how, and the largest ULP gap with where it is ("" for no comparison)."""
    quantities = [(c, q) for c in comparisons for q in c["quantities"]]
    if not quantities:
        return ""
    total = {k: sum(q.get(k, 0) for _, q in quantities)
             for k in ("points", "differing", "label_differs", "failing_differs", "ulp_differs", "bitwise_differs")}
    failing = (f" ({total['failing_differs']:,} with a failing label on one side at least)"
               if all("failing_differs" in q for _, q in quantities) else "")
    text = (f"{total['differing']:,} of {total['points']:,} points differ: {total['label_differs']:,} in label"
            f"{failing}, {total['ulp_differs']:,} by more than the budget with the same label; "
            f"{total['bitwise_differs']:,} differ in bits.")
    gaps = [(decode_float(q["largest_ulp_gap"]), c, q) for c, q in quantities if q["largest_ulp_gap"] is not None]
    gaps = [g for g in gaps if not math.isnan(g[0])]
    if gaps:
        gap, c, q = max(gaps, key=lambda g: g[0])
        text += (f"  Largest ULP gap: {number(gap)} ({c['case']} {c['dtype']}, {c['a']} against {c['b']}, "
                 f"{q['reduction']} {q['quantity']}).")
    return text


def autocast_table(records: list[dict[str, Any]]) -> Table:
    rows = [[r["case"], r["dtype"], r["device"], r["result_dtype"] or "-", r["error"] or "-"] for r in records]
    return Table("Autocast: dtype of the loss, or the error", ["case", "autocast dtype", "device", "result dtype",
                                                                "error"], rows)


def probe_table(outcomes: list[dict[str, Any]]) -> Table:
    headers = ["case", "probe", "dtype", "device", "mode", "outcome", "detail", "result", "backward", "warnings"]
    rows = []
    for o in outcomes:
        result = "-" if o["result_dtype"] is None else f"{o['result_dtype']} {tuple(o['shape'])}"
        rows.append([o["case"], o["probe"], o["dtype"], o["device"], o["mode"], o["kind"], o["message"], result,
                     o["backward"] or "-", "; ".join(o["warnings"]) or "-"])
    return Table(f"Bad inputs (reduction {probes.REDUCTION!r})", headers, rows)


def promotion_table(records: list[dict[str, Any]]) -> Table:
    headers = ["case", "input dtypes", "device", "points", "result", "quantity", "dtype", "max ULP", "labels"]
    rows = []
    for r in records:
        given = ", ".join(f"{k}={v}" for k, v in r["input_dtypes"].items())
        if r["error"]:
            rows.append([r["case"], given, r["device"], str(r["points"]), r["error"], "-", "-", "-", "-"])
        for name, q in r["quantities"].items():
            labels = ", ".join(f"{k} {v}" for k, v in q["labels"].items())
            rows.append([r["case"], given, r["device"], str(r["points"]), r["result_dtype"], name, q["dtype"],
                         number(q["max_ulp"]), labels])
    return Table("Mixed dtypes: result dtype and error against the inputs as given", headers, rows)


def tables(payload: dict[str, Any]) -> list[Table]:
    """The payload's tables, in report order (parts that did not run are left out)."""
    out = []
    if "modes" in payload:
        out.append(comparison_table("Modes against eager (same device, same inputs)", payload["modes"]))
        out.append(autocast_table(payload["autocast"]))
        out.append(comparison_table("Devices against CPU (same mode, same inputs)", payload["devices"]))
    if "probes" in payload:
        out.append(probe_table(payload["probes"]))
    if "promotion" in payload:
        out.append(promotion_table(payload["promotion"]))
    return out


