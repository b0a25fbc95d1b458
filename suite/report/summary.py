"""Tables a person reads, selected from an ``accuracy.json`` payload: the Markdown and HTML renderers share
them, so both say the same thing.  Nothing is recomputed: every number is read from the payload."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from suite import bias
from suite.report import schema
from suite.report.schema import decode_float


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""  # a sentence under the title: what the rows add up to


def number(value: Any) -> str:
    """A measured number in short form: ``-`` for none/NaN, ``inf``, 3 significant digits otherwise."""
    v = decode_float(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.3g}"
    return f"{v:.3e}"


def value(v: Any) -> str:
    """An input or output value, short but faithful (up to 9 significant digits)."""
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    x = decode_float(v)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.9g}"


def region(finding: dict[str, Any]) -> str:
    """``input in [a, b]`` (plus the other inputs' values there), or ``whole grid``."""
    r = finding.get("region")
    if not r:
        return "whole grid"
    low, high = value(r["low"]), value(r["high"])
    text = f"{finding['input']} = {low}" if low == high else f"{finding['input']} in [{low}, {high}]"
    for name, other in finding.get("others", {}).items():
        if "values" in other:
            text += f", {name} in {{{', '.join(value(v) for v in other['values'])}}}"
        else:
            text += f", {name} in [{value(other['low'])}, {value(other['high'])}]"
    return text


def point_text(point: dict[str, Any] | None) -> str:
    if not point:
        return "-"
    inputs = point.get("inputs")
    where = ", ".join(f"{k}={value(v)}" for k, v in inputs.items()) if inputs else "reduced value"
    return f"{where}: got {value(point['got'])}, exact {value(point['exact'])}"


def is_new(finding: dict[str, Any]) -> bool:
    """Whether a finding (of the grid or the search) is explained by no known deviation."""
    return str(finding["attribution"]).startswith("new")


def environment_lines(payload: dict[str, Any]) -> list[str]:
    env, options = payload["environment"], payload["options"]
    gpus = ", ".join(env.get("gpus") or []) or "none"
    return [f"torch {env['torch']} (CUDA {env.get('cuda') or 'none'}; GPUs: {gpus})",
            f"CPU: {env.get('cpu')}"
            + (f" (torch kernels: {env['cpu_capability']})" if env.get("cpu_capability") else "")
            + (f"; {env['torch_threads']} torch threads" if env.get("torch_threads") else "")
            + f"; Python {env.get('python')}; {env.get('platform')}",
            *_subnormal_lines(env.get("subnormals")),
            *_compile_lines(env.get("compile_arithmetic")),
            f"suite {env.get('suite')} at commit {env.get('suite_commit') or 'unknown'}; created {payload['created']}",
            f"grid: {options.get('grid')}; {_search_line(options.get('search'))}",
            f"dtypes {', '.join(options['dtypes'])}; devices {', '.join(options['devices'])}; "
            f"modes {', '.join(options['modes'])}"
            + (f"; plugins {', '.join(options['plugins'])}" if options.get("plugins") else ""),
            *([f"{options['resumed_jobs']} case/dtype jobs reused from an interrupted run (--resume); "
               f"{payload['seconds']} s is this run's time only"] if options.get("resumed_jobs") else [])]


def _subnormal_lines(subnormals: dict[str, dict[str, str]] | None) -> list[str]:
    """One line per device whose torch kernels did not keep every subnormal (flush-to-zero): those make
    every result near zero differ from an IEEE run.  Nothing when all were kept, or not recorded."""
    lines = []
    for device, by_dtype in (subnormals or {}).items():
        flushed = {dtype: what for dtype, what in by_dtype.items() if what != "kept"}
        if flushed:
            lines.append(f"{device}: torch's kernels flush subnormals to zero (FTZ/DAZ) in this run: "
                         + ", ".join(f"{dtype} {what}" for dtype, what in flushed.items()))
    return lines


def _compile_lines(problems: dict[str, list[str]] | None) -> list[str]:
    """One line per device where compiling with torch.compile took IEEE arithmetic from the calling thread
    (inductor's CPU kernels built with -ffast-math set flush-to-zero when loaded): a user's later eager results
    in that thread change too.  Nothing where it did not, or was not measured."""
    return [f"{device}: torch.compile left the calling thread's arithmetic non-IEEE ({'; '.join(found)}); the "
            f"suite gave it back after each compiled call" for device, found in (problems or {}).items() if found]


def incomplete_text(payload: dict[str, Any]) -> str | None:
    """The warning an incomplete report opens with (what it lacks and how to finish it); None when complete."""
    if schema.is_complete(payload):
        return None
    lacks = schema.missing(payload)
    parts = [f"{len(names)} {what}: {', '.join(names)}" for what, names in
             (("case/dtype jobs", lacks["jobs"]), ("bad-input probe groups", lacks["probe_groups"])) if names]
    return ("Incomplete report: written with --saved-only from an unfinished run, it lacks " + "; ".join(parts)
            + ". Its tables and findings cover only what the run finished; the same command with --resume "
              "finishes it.")


def _index(results: Iterable[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {(r["case"], r["dtype"], r["device"], r["mode"], r["reduction"], r["quantity"]): r for r in results}


def _failing(r: dict[str, Any] | None) -> int:
    return int(r.get("failing", 0)) if r else 0


def safe_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    if s["status"] == "none":
        return f"none ({s['limits'].get('low')})"
    text = f"[{value(s['low'])}, {value(s['high'])}]"
    return text + (" (whole grid)" if s["status"] == "whole_grid" else "")


def device_mode(record: dict[str, Any]) -> str:
    """The device, and the mode where it is not eager: one column that tells apart the rows of several modes."""
    mode = record.get("mode", "eager")
    return str(record["device"]) if mode == "eager" else f"{record['device']} {mode}"


def summary(payload: dict[str, Any]) -> Table:
    """One row per case, dtype, device and mode: the unreduced loss and main-input gradient at a glance."""
    results = _index(payload["results"])
    safe = {(s["case"], s["dtype"], s["device"], s["mode"]): s for s in payload["safe_ranges"]}
    counts: dict[tuple[str, ...], list[int]] = {}
    for f in payload["findings"]:
        c = counts.setdefault((f["case"], f["dtype"], f["device"], f["mode"]), [0, 0])
        c[0 if is_new(f) else 1] += 1
    rows = []
    for key, s in safe.items():
        case, dtype = key[:2]
        grad = f"grad_{payload['cases'][case]['main_input']}"
        loss, g = results.get((*key, "none", "loss")), results.get((*key, "none", grad))
        new, known = counts.get(key, [0, 0])
        status = "ok" if new + known == 0 else ("new findings" if new else "known only")
        rows.append([case, dtype, device_mode(s),
                     number(loss["max_ulp"]) if loss else "-", number(g["max_ulp"]) if g else "-",
                     str(_failing(loss)), str(_failing(g)), f"{new} / {known}", safe_text(s), status])
    return Table("Summary", ["case", "dtype", "device", "max ULP loss", "max ULP grad", "failing loss",
                             "failing grad", "findings new / known", "safe range of the main input", "status"],
                 rows)


def worst(payload: dict[str, Any], count: int = 12) -> Table:
    """Quantities with the largest algorithmic ULP error (NaN/inf labels are in the findings)."""
    def score(r: dict[str, Any]) -> float:
        v = decode_float(r["algorithmic"]["max_ulp"])
        return -1.0 if math.isnan(v) else v

    ranked = sorted(payload["results"], key=score, reverse=True)[:count]
    rows = [[r["key"], number(r["algorithmic"]["max_ulp"]), number(r["max_ulp"]), number(r["budget"]),
             str(r["algorithmic"]["over_budget"]), point_text(r.get("max_ulp_at"))] for r in ranked]
    return Table("Worst cases", ["case/dtype/device/mode/reduction/quantity", "max algorithmic ULP", "max ULP",
                                 "budget", "elements over budget", "worst input"], rows)


def findings(payload: dict[str, Any]) -> Table:
    rows = [[f["case"], f["dtype"], device_mode(f), f["reduction"], f["quantity"], f["label"], str(f["count"]),
             region(f), point_text(f.get("worst")), f["attribution"]] for f in payload["findings"]]
    return Table("Findings", ["case", "dtype", "device", "reduction", "quantity", "label", "elements", "region",
                              "worst point", "attribution"], rows)


def safe_ranges(payload: dict[str, Any]) -> Table:
    rows = []
    for s in payload["safe_ranges"]:
        limits = s.get("limits") or {}
        rows.append([s["case"], s["dtype"], device_mode(s), f"{s['input']} ({s['kind']})", value(s["center"]),
                     safe_text(s), limits.get("low") or "-", limits.get("high") or "-"])
    return Table("Safe ranges", ["case", "dtype", "device", "input", "typical", "safe range",
                                 "fails below at", "fails above at"], rows)


#: Rows of the rounding-bias table besides the biased ones: the largest means, however small.
BIAS_ROWS = 8


def rounding_bias(payload: dict[str, Any]) -> Table:
    """Every biased quantity (:mod:`suite.bias`), then the largest other means, largest first."""
    records = sorted(payload.get("rounding_bias", []), key=lambda r: (not r["biased"], -abs(r["mean"])))
    biased = sum(r["biased"] for r in records)
    rows = [[r["case"], r["dtype"], device_mode(r), r["quantity"], f"{r['mean']:+.3f}", number(r["stderr"]),
             str(r["elements"]), f"{r['toward_zero']:.0%}", "biased" if r["biased"] else "-"]
            for r in records[:biased + BIAS_ROWS]]
    return Table("Rounding bias", ["case", "dtype", "device", "quantity", "mean signed ULP", "std. error",
                                   "elements", "toward zero", "verdict"], rows,
                 f"{biased} of {len(records)} quantities biased: a mean signed error (negative toward zero) over "
                 f"ordinary inputs beyond {bias.MAX_BIAS} ULP and {bias.Z_SCORE:g} standard errors, which "
                 "round-to-nearest never has; the biased ones, then the largest other means")


def label_totals(payload: dict[str, Any]) -> Table:
    """Count of every label over all quantities, per dtype."""
    totals: dict[str, dict[str, int]] = {}
    for r in payload["results"]:
        row = totals.setdefault(r["dtype"], {})
        for label, n in r["labels"].items():
            row[label] = row.get(label, 0) + int(n)
    labels = sorted({label for row in totals.values() for label in row},
                    key=lambda k: list(payload["results"][0]["labels"]).index(k) if payload["results"] else 0)
    return Table("Labels over all quantities", ["dtype", *labels],
                 [[d, *(str(row.get(label, 0)) for label in labels)] for d, row in totals.items()])


def _search_line(search: dict[str, Any] | None) -> str:
    if not search or not search.get("examples"):
        return "no targeted search"
    return (f"targeted search: {search['examples']} examples per case, dtype, device and reduction, "
            f"seed {search['seed']}")


def search_verdict(record: dict[str, Any]) -> str:
    """``ok`` (the worst input found passes), ``known: <id>`` or ``new (search)``."""
    return str(record["attribution"]) if record["attribution"] else "ok"


def search(payload: dict[str, Any]) -> Table:
    """The targeted search: per case, dtype, device, reduction and quantity, the worst input found and its
    verdict."""
    rows = [[r["case"], r["dtype"], r["device"], r["reduction"], r["quantity"], number(r["algorithmic_ulp"]),
             r["label"], search_verdict(r), point_text(r["worst"])] for r in payload["search"]]
    return Table("Targeted search (eager)",
                 ["case", "dtype", "device", "reduction", "quantity", "worst algorithmic ULP", "label", "known/new",
                  "worst input"], rows)
