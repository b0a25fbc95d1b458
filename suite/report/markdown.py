"""``accuracy.md``: the report as Markdown, from the payload alone (see :mod:`suite.report.summary`)."""

from __future__ import annotations

from typing import Any

from suite import budgets
from suite.metrics import Label
from suite.report import modes_tables, summary
from suite.report.schema import SEARCH_ATTRIBUTION
from suite.report.summary import Table

#: Reproducers shown in full per case (all of them are in accuracy.json); new findings come first.
REPRODUCERS_PER_CASE = 3


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table, level: int = 2) -> str:
    head = f"{'#' * level} {t.title}\n\n" + (f"{t.caption}\n\n" if t.caption else "")
    if not t.rows:
        return head + "(none)\n"
    lines = ["| " + " | ".join(t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return head + "\n".join(lines) + "\n"


def _reproducer(title: str, source: str) -> str:
    return f"**{title}**\n\n```python\n{source}```\n"


def _reproducers(payload: dict[str, Any]) -> str:
    parts = ["## Reproducers\n",
             f"Up to {REPRODUCERS_PER_CASE} per case, new findings first and unreduced values before reduced "
             "ones (those of the targeted search are above); every finding's reproducer is in "
             "`accuracy.json`.\n"]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for f in payload["findings"]:
        if f["attribution"] != SEARCH_ATTRIBUTION:
            by_case.setdefault(f["case"], []).append(f)
    for case, items in by_case.items():
        items = sorted(items, key=lambda f: (not summary.is_new(f), f["reduction"] != "none"))
        parts.append(f"### {case}\n")
        for f in items[:REPRODUCERS_PER_CASE]:
            parts.append(_reproducer(f"{f['dtype']} {summary.device_mode(f)} {f['reduction']} {f['quantity']}: "
                                     f"{f['label']} ({f['attribution']}) at {summary.region(f)}", f["reproducer"]))
    return "\n".join(parts)


def _search(payload: dict[str, Any]) -> str:
    """The search table, then the reproducer of every worst input that is a new finding."""
    t = summary.search(payload)
    if not payload["search"]:
        return f"## {t.title}\n\n(not run: --search 0)\n"
    new = [r for r in payload["search"] if r["attribution"] == SEARCH_ATTRIBUTION]
    parts = [table(t), f"{len(new)} of {len(payload['search'])} worst inputs are new findings (failing, and "
                       "explained by no known deviation)" + (":\n" if new else ".\n")]
    parts += [_reproducer(f"{r['case']} {r['dtype']} {r['device']} {r['quantity']}: {r['label']} at "
                          f"{summary.point_text(r['worst'])}", r["reproducer"]) for r in new]
    return "\n".join(parts)


def sections(payload: dict[str, Any], level: int = 2) -> str:
    """The notes and tables of a modes/devices/bad-inputs payload (:mod:`suite.report.modes_tables`)."""
    notes = "".join(f"> {n}\n\n" for n in payload["notes"])
    return notes + "\n".join(table(t, level) for t in modes_tables.tables(payload))


def _comparisons(payload: dict[str, Any]) -> str:
    """Modes against eager, devices against CPU, autocast dtypes, and (with --bad-inputs) bad inputs and
    mixed dtypes; nothing for reports written before these sections existed."""
    return sections(payload["comparisons"]) if "comparisons" in payload else ""


def render(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    new = sum(summary.is_new(f) for f in payload["findings"])
    incomplete = summary.incomplete_text(payload)
    lines = [f"# Accuracy of torch {env['torch']} losses\n",
             *([f"> **{incomplete}**\n"] if incomplete else []),
             *(f"- {line}" for line in summary.environment_lines(payload)),
             f"- {len(payload['findings'])} findings ({new} new, {len(payload['findings']) - new} known "
             f"deviations); plots in `index.html`\n",
             "How to read: ULP errors are against the exact value of the loss for the exact inputs; a correctly "
             "rounded result is within 0.5 ULP.  *failing* counts elements with a never-acceptable label "
             f"({_never_acceptable_text()}).  The safe range "
             "is the largest interval of grid values of the main input around its typical value where the "
             "unreduced loss and its gradient never fail, for every other input on the grid.\n",
             table(summary.summary(payload)), table(summary.safe_ranges(payload)),
             table(summary.worst(payload)), _search(payload), table(summary.rounding_bias(payload)),
             table(summary.label_totals(payload)), table(summary.findings(payload)), _comparisons(payload),
             _reproducers(payload)]
    return "\n".join(lines)


def _never_acceptable_text() -> str:
    """The never-acceptable labels of ``budgets.toml``, as the reader meets them (``inaccurate`` is an excess)."""
    names = sorted(budgets.never_acceptable(), key=lambda n: Label[n.upper()])
    return ", ".join("inaccurate beyond the ULP budget" if n == "inaccurate" else n for n in names)
