"""``index.html``: the report as one static page (no scripts) with the plots next to it."""

from __future__ import annotations

from html import escape
from typing import Any

from suite.report import modes_tables, summary
from suite.report.plots import PlotFile
from suite.report.schema import SEARCH_ATTRIBUTION
from suite.report.summary import Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 110em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.bad td, p.incomplete { background: #fff0f0; }
p.incomplete { border: 1px solid #d88; padding: 0.5em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { display: inline-block; margin: 0.5em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def table(t: Table, bad_column: int | None = None, bad_text: str = "new findings") -> str:
    """``t`` as an HTML table; rows whose ``bad_column`` starts with ``bad_text`` are highlighted."""
    head = f"<h2>{escape(t.title)}</h2>" + (f"<p>{escape(t.caption)}</p>" if t.caption else "")
    if not t.rows:
        return f"{head}<p>(none)</p>"
    cells = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = []
    for row in t.rows:
        cls = ' class="bad"' if bad_column is not None and row[bad_column].startswith(bad_text) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f"{head}<table><tr>{cells}</tr>{''.join(body)}</table>"


def _plots(plots: list[PlotFile]) -> str:
    parts = ["<h2>Plots</h2>"]
    for case in dict.fromkeys(p.case for p in plots):
        parts.append(f"<h3>{escape(case)}</h3>")
        for p in (p for p in plots if p.case == case):
            parts.append(f'<figure><img src="{escape(p.file)}" alt="{escape(p.title)}">'
                         f"<figcaption>{escape(p.title)}</figcaption></figure>")
    return "\n".join(parts)


def _reproducers(payload: dict[str, Any]) -> str:
    parts = ["<h2>Findings with reproducers</h2>"]
    for f in payload["findings"]:
        title = (f"{f['case']} {f['dtype']} {summary.device_mode(f)} {f['reduction']} {f['quantity']}: {f['label']} "
                 f"({f['attribution']}), {f['count']} elements, {summary.region(f)}")
        parts.append(f"<details><summary>{escape(title)}</summary><p>{escape(f['description'])}; worst: "
                     f"{escape(summary.point_text(f.get('worst')))}</p><pre>{escape(f['reproducer'])}</pre>"
                     "</details>")
    return "\n".join(parts)


def _search(payload: dict[str, Any]) -> str:
    """The search table and the reproducers of the worst inputs that are new findings."""
    t = summary.search(payload)
    if not payload["search"]:
        return f"<h2>{escape(t.title)}</h2><p>(not run: --search 0)</p>"
    parts = [table(t, bad_column=6, bad_text="new")]
    for r in payload["search"]:
        if r["attribution"] == SEARCH_ATTRIBUTION:
            title = (f"{r['case']} {r['dtype']} {r['device']} {r['quantity']}: {r['label']} (new), "
                     f"{summary.point_text(r['worst'])}")
            parts.append(f"<details><summary>{escape(title)}</summary><pre>{escape(r['reproducer'])}</pre>"
                         "</details>")
    return "\n".join(parts)


def sections(payload: dict[str, Any]) -> str:
    """The notes and tables of a modes/devices/bad-inputs payload (:mod:`suite.report.modes_tables`)."""
    notes = "".join(f"<p><em>{escape(n)}</em></p>" for n in payload["notes"])
    return notes + "\n".join(table(t) for t in modes_tables.tables(payload))


def render(payload: dict[str, Any], plots: list[PlotFile]) -> str:
    env = payload["environment"]
    items = "".join(f"<li>{escape(line)}</li>" for line in summary.environment_lines(payload))
    incomplete = summary.incomplete_text(payload)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Accuracy of torch {escape(env['torch'])} losses</title><style>{STYLE}</style></head><body>",
        f"<h1>Accuracy of torch {escape(env['torch'])} losses</h1>",
        f'<p class="incomplete"><strong>{escape(incomplete)}</strong></p>' if incomplete else "", f"<ul>{items}</ul>",
        "<p>ULP errors against the exact loss of the exact inputs (0.5 ULP = correctly rounded). Failing "
        "elements have a never-acceptable label. The safe range is the largest interval of grid values of the "
        "main input around its typical value where the unreduced loss and its gradient never fail.</p>",
        table(summary.summary(payload), bad_column=9), table(summary.safe_ranges(payload)), _plots(plots),
        table(summary.worst(payload)), _search(payload),
        table(summary.rounding_bias(payload), bad_column=8, bad_text="biased"),
        table(summary.label_totals(payload)),
        table(summary.findings(payload), bad_column=9, bad_text="new"),
        sections(payload["comparisons"]) if "comparisons" in payload else "", _reproducers(payload),
        "</body></html>", ""])
