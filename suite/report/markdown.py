"""``accuracy.md``: the report as Markdown, from the payload alone (see :mod:`suite.report.summary`)."""

from __future__ import annotations

from typing import Any

from suite.report import summary
from suite.report.summary import Table

#: Reproducers shown in full per case (all of them are in accuracy.json); new findings come first.
REPRODUCERS_PER_CASE = 3


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table, level: int = 2) -> str:
    head = f"{'#' * level} {t.title}\n\n"
    if not t.rows:
        return head + "(none)\n"
    lines = ["| " + " | ".join(t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return head + "\n".join(lines) + "\n"


def _reproducers(payload: dict[str, Any]) -> str:
    parts = ["## Reproducers\n",
             f"Up to {REPRODUCERS_PER_CASE} per case, new findings first and unreduced values before reduced "
             "ones; every finding's reproducer is in `accuracy.json`.\n"]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for f in payload["findings"]:
        by_case.setdefault(f["case"], []).append(f)
    for case, items in by_case.items():
        items = sorted(items, key=lambda f: (f["attribution"] != "new", f["reduction"] != "none"))
        parts.append(f"### {case}\n")
        for f in items[:REPRODUCERS_PER_CASE]:
            parts.append(f"**{f['dtype']} {f['device']} {f['reduction']} {f['quantity']}: {f['label']}** "
                         f"({f['attribution']}) at {summary.region(f)}\n\n```python\n{f['reproducer']}```\n")
    return "\n".join(parts)


def render(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    new = sum(f["attribution"] == "new" for f in payload["findings"])
    lines = [f"# Accuracy of torch {env['torch']} losses\n",
             *(f"- {line}" for line in summary.environment_lines(payload)),
             f"- {len(payload['findings'])} findings ({new} new, {len(payload['findings']) - new} known "
             f"deviations); plots in `index.html`\n",
             "How to read: ULP errors are against the exact value of the loss for the exact inputs; a correctly "
             "rounded result is within 0.5 ULP.  *failing* counts elements with a never-acceptable label "
             "(nan, spurious_inf, clamped, flushed, inaccurate beyond the ULP budget, raised).  The safe range "
             "is the largest interval of grid values of the main input around its typical value where the "
             "unreduced loss and its gradient never fail, for every other input on the grid.\n",
             table(summary.summary(payload)), table(summary.safe_ranges(payload)),
             table(summary.worst(payload)), table(summary.label_totals(payload)),
             table(summary.findings(payload)), _reproducers(payload)]
    return "\n".join(lines)
