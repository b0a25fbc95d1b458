"""Differences between two accuracy reports A (before) and B (after): new and fixed findings, failing-count
and max-ULP changes, budget changes, safe-range changes, and changes in the bad-input and mixed-dtype tables
(:mod:`suite.report.diff_behaviour`).  B *regressed* when it has a finding A lacks, or one that A's known
deviations explained and B's do not, more failing elements on an equal grid, a larger max ULP that is beyond
its budget, a narrower safe range, a quantity that rounds with a direction (:mod:`suite.bias`), or handles a bad
input or a mixed-dtype call worse; or when a result only B measured (a mode or device A did not run), or one
torch raised for in A and computes in B (a kernel a later release added), has a finding no known deviation
explains.

Where the two grids differ (another suite version, or a grid option), a finding that is new only because B's
grid has points A's lacks is coverage, not torch: there a new finding regresses only when no known deviation
explains it, an unexplained region regresses when it reaches past A's unexplained regions it meets (on equal
grids the failing count says so), and a max-ULP growth or a narrower safe range does not regress.  The change
says so.

Grid findings are matched by their result key and label, and their regions by overlap along the main input (a
region of B that meets none of A's is new; one of A that meets none of B's is fixed; one unexplained in B that
meets only explained regions of A is no longer explained).  A finding of the targeted search (attribution
``"new (search)"``, one point that depends on the search's path) is new, and a regression, when A has no
unexplained finding (grid or search) of the same key and label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from suite.report.diff_behaviour import compare_probes, compare_promotion
from suite.report.schema import SEARCH_ATTRIBUTION, decode_float
from suite.report.summary import is_new, number, region, safe_text


@dataclass
class Change:
    kind: str  # new_finding, fixed_finding, attribution, failing, max_ulp, budget, safe_range, bias, missing,
    # added, bad_input, promotion
    key: str
    text: str
    regression: bool
    failing: int = 0  # of an added or missing result: its failing elements


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(c.regression for c in self.changes)

    def add(self, kind: str, key: str, text: str, regression: bool = False, failing: int = 0) -> None:
        self.changes.append(Change(kind, key, text, regression, failing))


def _findings(payload: dict[str, Any], cases: set[str] | None, search: bool = False,
              ) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Findings of the grid (or, with ``search``, of the targeted search) by result key and label."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in payload["findings"]:
        if (cases is None or f["case"] in cases) and (f["attribution"] == SEARCH_ATTRIBUTION) == search:
            out.setdefault((f["key"], f["label"]), []).append(f)
    return out


def _unexplained(payload: dict[str, Any]) -> set[tuple[str, str]]:
    """Key and label of every unexplained finding, of the grid or the search."""
    return {(f["key"], f["label"]) for f in payload["findings"] if is_new(f)}


def _compare_search(diff: Diff, a: dict[str, Any], b: dict[str, Any], cases: set[str] | None) -> None:
    new_a, new_b = _unexplained(a), _unexplained(b)
    for key, items in sorted(_findings(b, cases, search=True).items()):
        if key not in new_a:
            diff.add("new_finding", key[0], f"new {key[1]} found by the targeted search: {_regions(items)}",
                     regression=True)
    for key, items in sorted(_findings(a, cases, search=True).items()):
        if key not in new_b:
            diff.add("fixed_finding", key[0], f"fixed {key[1]} the targeted search had found: {_regions(items)}")


def _results(payload: dict[str, Any], cases: set[str] | None) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in payload["results"] if cases is None or r["case"] in cases}


def _width(s: dict[str, Any]) -> tuple[float, float] | None:
    if s["status"] == "none":
        return None
    return decode_float(s["low"]), decode_float(s["high"])


def _narrower(a: dict[str, Any], b: dict[str, Any]) -> bool:
    wa, wb = _width(a), _width(b)
    if wa is None:
        return False
    return wb is None or wb[0] > wa[0] or wb[1] < wa[1]


def _overlap(f: dict[str, Any], g: dict[str, Any]) -> bool:
    """Whether two findings' regions of the main input intersect (a reduced value's covers everything)."""
    if not f.get("region") or not g.get("region"):
        return True
    lo_f, hi_f = decode_float(f["region"]["low"]), decode_float(f["region"]["high"])
    lo_g, hi_g = decode_float(g["region"]["low"]), decode_float(g["region"]["high"])
    return lo_f <= hi_g and lo_g <= hi_f


def _regions(items: Iterable[dict[str, Any]]) -> str:
    return "; ".join(f"{region(f)} ({f['count']} elements, {f['attribution']})" for f in items)


def compare(a: dict[str, Any], b: dict[str, Any], cases: set[str] | None = None) -> Diff:
    """Everything that changed from ``a`` to ``b`` (only ``cases`` when given).  A result only one of them
    measured (another mode, device or dtype) is one ``added`` or ``missing`` change, not a list of its findings:
    there is nothing to compare them with, and an added result regresses only where no known deviation explains
    one of its findings."""
    diff = Diff()
    ra, rb = _results(a, cases), _results(b, cases)
    # torch raised in A and computes in B (a kernel a later release added): A measured no value to compare with
    computes = {name for name in ra.keys() & rb.keys() if ra[name].get("error") and not rb[name].get("error")}
    both = (ra.keys() & rb.keys()) - computes
    fa = {k: v for k, v in _findings(a, cases).items() if k[0] in both}
    fb = {k: v for k, v in _findings(b, cases).items() if k[0] in both}
    for key in sorted(fb.keys() - fa.keys()):
        _add_new_finding(diff, key, f"new {key[1]}", fb[key], _grid_note(ra, rb, key[0]))
    for key in sorted(fa.keys() - fb.keys()):
        diff.add("fixed_finding", key[0], f"fixed {key[1]}: {_regions(fa[key])}")
    for key in sorted(fa.keys() & fb.keys()):
        fresh = [f for f in fb[key] if not any(_overlap(f, g) for g in fa[key])]
        gone = [f for f in fa[key] if not any(_overlap(f, g) for g in fb[key])]
        grid = _grid_note(ra, rb, key[0])
        if fresh:
            _add_new_finding(diff, key, f"new {key[1]} region", fresh, grid)
        grown = [f for f in fb[key] if grid and f not in fresh and _grown(f, fa[key])]
        if grown:
            diff.add("new_finding", key[0], f"unexplained {key[1]} region grew: {_regions(grown)}{grid}",
                     regression=True)
        if gone:
            diff.add("fixed_finding", key[0], f"fixed {key[1]} region: {_regions(gone)}")
        _compare_attribution(diff, key, fa[key], fb[key])
    _compare_search(diff, a, b, cases)
    unexplained_b = {key for key, _ in _unexplained(b)}
    for name in sorted(ra.keys() - rb.keys()):
        diff.add("missing", name, "measured in A only (not compared)", failing=int(ra[name].get("failing", 0)))
    for name in sorted(rb.keys() - ra.keys()):
        _add_one_sided(diff, "added", name, rb[name], "measured in B only", name in unexplained_b)
    for name in sorted(computes):
        _add_one_sided(diff, "computes", name, rb[name], f"raised in A ({ra[name]['error']}), computes in B",
                       name in unexplained_b)
    for name in sorted(both):
        _compare_result(diff, name, ra[name], rb[name], _grid_note(ra, rb, name))
    sa = {(s["case"], s["dtype"], s["device"], s.get("mode", "eager")): s for s in a["safe_ranges"]}
    for s in b["safe_ranges"]:
        k = (s["case"], s["dtype"], s["device"], s.get("mode", "eager"))
        if k in sa and (cases is None or s["case"] in cases) and _width(sa[k]) != _width(s):
            grid = _grid_note(ra, rb, "/".join((*k, "none", "loss")))
            diff.add("safe_range", "/".join(k), f"safe range {safe_text(sa[k])} -> {safe_text(s)}{grid}",
                     regression=_narrower(sa[k], s) and not grid)
    _compare_bias(diff, a, b, cases)
    compare_probes(diff, a, b, cases)
    compare_promotion(diff, a, b, cases)
    return diff


def _bias_key(record: dict[str, Any]) -> str:
    return "/".join(record[k] for k in ("case", "dtype", "device", "mode", "quantity"))


def _compare_bias(diff: Diff, a: dict[str, Any], b: dict[str, Any], cases: set[str] | None) -> None:
    """A quantity that rounds with a direction in B (:mod:`suite.bias`) but not in A regresses; one that no longer
    does is fixed.  Quantities only one report measured, and reports written before bias was measured, are not
    compared."""
    before = {_bias_key(r): r for r in a.get("rounding_bias", [])}
    for r in b.get("rounding_bias", []):
        earlier = before.get(_bias_key(r))
        if earlier is None or (cases is not None and r["case"] not in cases) or earlier["biased"] == r["biased"]:
            continue
        verdict = "biased" if r["biased"] else "no longer biased"
        diff.add("bias", _bias_key(r), f"mean signed error {earlier['mean']:+.3f} -> {r['mean']:+.3f} ULP: {verdict}",
                 regression=r["biased"])


def _add_one_sided(diff: Diff, kind: str, name: str, result: dict[str, Any], what: str, new: bool) -> None:
    """A result of B that A has no values of: one change, a regression only where no known deviation explains
    one of its findings (``new``)."""
    failing = int(result.get("failing", 0))
    counted = ("no failing element" if not failing else f"{failing} failing elements, "
               + ("some that no known deviation explains" if new else "each explained by a known deviation"))
    diff.add(kind, name, f"{what}: {counted}", regression=new, failing=failing)


def _grid_elements(results: dict[str, dict[str, Any]], key: str) -> int | None:
    """Size of the grid behind result ``key`` (``case/dtype/device/mode/reduction/quantity``): the elements of
    its unreduced loss, since a reduced value holds one element whatever the grid."""
    parts = key.split("/")
    result = results.get("/".join((*parts[:4], "none", "loss"))) or results.get(key)
    return None if result is None else int(result["elements"])


def _grid_note(ra: dict[str, dict[str, Any]], rb: dict[str, dict[str, Any]], key: str) -> str:
    """``""`` when A and B measured result ``key`` on grids of the same size, else a note saying they did not
    (a result one of them lacks counts as the same grid: nothing says otherwise)."""
    a, b = _grid_elements(ra, key), _grid_elements(rb, key)
    if a is None or b is None or a == b:
        return ""
    return f" (on a different grid: {a} elements in A, {b} in B)"


def _add_new_finding(diff: Diff, key: tuple[str, str], what: str, fresh: list[dict[str, Any]], grid: str) -> None:
    """Findings of B that A lacks: a regression, unless the grids differ (B's may be points A never measured)
    and a known deviation explains every one of them."""
    regression = not grid or any(is_new(f) for f in fresh)
    diff.add("new_finding", key[0], f"{what}: {_regions(fresh)}{grid}", regression=regression)


def _grown(f: dict[str, Any], a: list[dict[str, Any]]) -> bool:
    """Whether B's unexplained finding ``f`` reaches past the span of A's unexplained findings it meets (of the
    same key and label); False for a finding with no region (a reduced value) or one that meets none of them."""
    met = [g for g in a if is_new(g) and _overlap(f, g)]
    if not is_new(f) or not met or not f.get("region"):
        return False
    spans = [(decode_float(g["region"]["low"]), decode_float(g["region"]["high"])) for g in met if g.get("region")]
    if not spans:
        return False
    low, high = decode_float(f["region"]["low"]), decode_float(f["region"]["high"])
    return low < min(lo for lo, _ in spans) or high > max(hi for _, hi in spans)


def _compare_attribution(diff: Diff, key: tuple[str, str], a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Regions of B (one key and label) that no known deviation explains where A's overlapping regions were all
    explained (torch now fails beyond what its entries allow: a regression), and B's explained regions where
    A's were all unexplained (a registry entry now explains them)."""
    unexplained, explained = [], []
    for f in b:
        overlapping = [g for g in a if _overlap(f, g)]
        if overlapping and is_new(f) and not any(is_new(g) for g in overlapping):
            unexplained.append((f, overlapping))
        elif overlapping and not is_new(f) and all(is_new(g) for g in overlapping):
            explained.append((f, overlapping))
    for pairs, what, regression in ((unexplained, "no longer explained", True), (explained, "now explained", False)):
        for f, was in pairs:
            diff.add("attribution", key[0], f"{key[1]} {what}: {_regions([f])}; A had {_regions(was)}",
                     regression=regression)


def _compare_result(diff: Diff, key: str, a: dict[str, Any], b: dict[str, Any], grid: str) -> None:
    if a["budget"] != b["budget"]:
        diff.add("budget", key, f"budget {number(a['budget'])} -> {number(b['budget'])} ULP")
    fail_a, fail_b = int(a.get("failing", 0)), int(b.get("failing", 0))
    if not grid and fail_a != fail_b:
        diff.add("failing", key, f"failing elements {fail_a} -> {fail_b}", regression=fail_b > fail_a)
    ua, ub = decode_float(a["max_ulp"]), decode_float(b["max_ulp"])
    if not _same(ua, ub):
        worse = (math.isnan(ua) or ub > ua) and not math.isnan(ub)
        over = decode_float(b["algorithmic"]["max_ulp"]) > float(b["budget"])
        diff.add("max_ulp", key, f"max ULP {number(a['max_ulp'])} -> {number(b['max_ulp'])}{grid}",
                 regression=worse and over and not grid)


def _same(x: float, y: float) -> bool:
    """Equal up to a relative 1e-9 (text round trips), NaN equal to NaN, an infinity only to itself."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return x == y or abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def render(diff: Diff, a_name: str, b_name: str) -> str:
    """The diff as Markdown: regressions first."""
    lines = [f"# Accuracy diff: {a_name} -> {b_name}\n"]
    if not diff.changes:
        return lines[0] + "\nNo differences.\n"
    verdict = "REGRESSED" if diff.regressed else "no regression"
    lines.append(f"{len(diff.changes)} changes; {verdict}.\n")
    for title, regression in (("Regressions", True), ("Other changes", False)):
        items = [c for c in diff.changes if c.regression == regression]
        grouped = [] if regression else [c for c in items if c.kind in _ONE_SIDED]
        if items:
            lines.append(f"## {title}\n")
            lines += [f"- `{c.key}` ({c.kind}): {c.text}" for c in items if c not in grouped]
            lines += _one_sided_lines(grouped)
            lines.append("")
    return "\n".join(lines)


_ONE_SIDED = ("added", "missing")


def _one_sided_lines(changes: list[Change]) -> list[str]:
    """One line per kind, device and mode for the results only one report measured and that do not regress:
    a mode or device added to a run adds hundreds of results, each of which says only that it was not compared.
    The regressing ones keep a line each, since those are the ones to read."""
    groups: dict[tuple[str, str], list[Change]] = {}
    for c in changes:
        parts = c.key.split("/")
        groups.setdefault((c.kind, "/".join(parts[2:4])), []).append(c)
    lines = []
    for (kind, where), items in sorted(groups.items()):
        side = "B" if kind == "added" else "A"
        failing = sum(c.failing > 0 for c in items)
        detail = (f"; {failing} with failing elements, each explained by a known deviation" if kind == "added"
                  else "")
        lines.append(f"- `{where}` ({kind}): {len(items)} results measured in {side} only (not compared){detail}")
    return lines
