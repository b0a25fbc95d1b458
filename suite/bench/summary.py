"""``python -m suite bench-report [RUN.json]``: a saved benchmark run as a Markdown table and a PNG plot
(GB/s and fraction of the copy bandwidth by size, per loss, dtype, device and mode).

The HTML report calls :func:`summarize`, which returns the table rows and writes both files.  Files are
written atomically as ``<run>-summary.md`` and ``<run>-summary.png`` under ``reports/benchmarks`` (``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import atomic
from suite.bench import runs
from suite.bench.matrix import DIRECTIONS, Key
from suite.errors import UsageError

KEYS = tuple(f.name for f in dataclasses.fields(Key))
DIRECTION_TITLES = {"fwd": "forward", "fwdbwd": "forward + backward"}


@dataclass(frozen=True)
class Row(Key):
    """One loss benchmark of a run: its key and figures."""

    median_s: float
    gbps: float
    elements_per_s: float
    copy_fraction: float
    copy_fraction_best: float
    copy_gbps: float


@dataclass(frozen=True)
class Summary:
    rows: list[Row]
    table: Path
    plot: Path


def rows(run: runs.Run) -> list[Row]:
    """Loss benchmarks of ``run`` (those recording a fraction of copy bandwidth), in a fixed order."""
    out = []
    for bench in run["benchmarks"]:
        fraction, median = runs.fraction(bench), runs.stat(bench)
        if fraction is None or median is None:
            continue
        extra = bench["extra_info"]
        try:
            out.append(Row(**{k: extra[k] for k in KEYS}, median_s=median,
                           gbps=float(extra["gbps"]), elements_per_s=float(extra["elements_per_s"]),
                           copy_fraction=fraction, copy_fraction_best=float(extra["copy_fraction_best"]),
                           copy_gbps=float(extra["copy_gbps"])))
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"benchmark {bench['fullname']} lacks the fields of a loss benchmark") from None
    return sorted(out, key=lambda r: (r.device, r.dtype, r.case, r.reduction, r.mode, r.direction, r.numel))


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def markdown(table: Sequence[Row], run: runs.Run, source: str) -> str:
    """The run as Markdown: machine facts, copy bandwidth per device, one line per loss benchmark, and the
    truth-throughput benchmark if the run has one."""
    machine: dict[str, Any] = run.get("machine_info") or {}
    cpu = machine.get("cpu")
    cpu = cpu if isinstance(cpu, dict) else {}
    lines = [f"# Benchmark summary: {source}", "",
             f"- date: {run.get('datetime', '?')}",
             f"- torch {machine.get('torch_version', '?')}, CUDA {machine.get('cuda_version') or 'none'}, "
             f"GPU {machine.get('gpu_name') or 'none'}, CPU {cpu.get('brand_raw', '?')}, "
             f"torch threads {machine.get('torch_threads', '?')}, matrix {machine.get('bench_matrix', '?')}"]
    copies = sorted({(r.device, r.copy_gbps) for r in table})
    lines += [f"- copy bandwidth ({device}, same run): {gbps:.2f} GB/s" for device, gbps in copies]
    lines += ["- GB/s, elements/s and fraction of copy at the median call; fraction (best): best call against "
              "best copy; bytes counted by the model in suite/bench/bandwidth.py"]
    lines += ["", "| case | reduction | dtype | device | mode | direction | elements | median | GB/s | "
              "elements/s | fraction of copy | fraction (best) |", "|" + "---|" * 12]
    lines += [f"| {r.case} | {r.reduction} | {r.dtype} | {r.device} | {r.mode} | {r.direction} | "
              f"2^{r.log2_numel} | {_seconds(r.median_s)} | {r.gbps:.2f} | {r.elements_per_s:.3g} | "
              f"{r.copy_fraction:.3f} | {r.copy_fraction_best:.3f} |" for r in table]
    for bench in run["benchmarks"]:
        extra = bench.get("extra_info") or {}
        if "truth_points_per_s_per_core" in extra:
            lines += ["", f"Truth throughput ({extra.get('case')}, one worker): "
                      f"{extra['truth_points_per_s_per_core']:.0f} points/s per core; bare mpmath formula "
                      f"{extra['bare_mpmath_points_per_s_per_core']:.0f} points/s per core."]
    return "\n".join(lines) + "\n"


def _draw_lines(ax: Any, table: Sequence[Row], metric: str, colours: dict[str, Any]) -> None:
    """One line per (case, mode, reduction) of ``metric`` against size: colour per case, dashed when
    compiled, round markers for ``reduction="none"`` and square ones for ``"mean"``."""
    for key in sorted({(r.case, r.mode, r.reduction) for r in table}):
        line = sorted((r for r in table if (r.case, r.mode, r.reduction) == key), key=lambda r: r.numel)
        ax.plot([r.numel for r in line], [getattr(r, metric) for r in line], color=colours[key[0]],
                linestyle="-" if key[1] == "eager" else "--", marker="o" if key[2] == "none" else "s",
                label=" · ".join(key))


def plot_png(table: Sequence[Row]) -> bytes:
    """PNG: for each (device, dtype) a row of GB/s and a row of fraction of copy bandwidth against size,
    forward and forward+backward side by side; one line per case, mode (line style) and reduction (marker)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("the plot needs matplotlib: pip install matplotlib") from None
    groups = sorted({(r.device, r.dtype) for r in table})
    case_names = sorted({r.case for r in table})
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(case_names)}
    fig, axes = plt.subplots(2 * len(groups), len(DIRECTIONS), squeeze=False, sharex=True,
                             figsize=(6 * len(DIRECTIONS), 3.2 * 2 * len(groups)))
    for g, (device, dtype) in enumerate(groups):
        for d, direction in enumerate(DIRECTIONS):
            for m, (metric, label) in enumerate((("gbps", "GB/s"), ("copy_fraction", "fraction of copy"))):
                ax = axes[2 * g + m][d]
                mine = [r for r in table if (r.device, r.dtype, r.direction) == (device, dtype, direction)]
                _draw_lines(ax, mine, metric, colours)
                ax.set_xscale("log", base=2)
                ax.set_ylabel(label)
                ax.set_title(f"{device} {dtype}: {DIRECTION_TITLES[direction]}", fontsize=9)
                ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("elements")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def summarize(run_path: str | Path | None = None, out_dir: str | Path = runs.STORAGE) -> Summary:
    """Read a saved run (default: the latest under ``reports/benchmarks``), write its Markdown table and PNG
    plot atomically under ``out_dir`` and return the rows (for the HTML report)."""
    path = Path(run_path) if run_path is not None else runs.latest()
    run = runs.load(path)
    table = rows(run)
    if not table:
        raise UsageError(f"{path} has no loss benchmark with a bandwidth fraction")
    out = Path(out_dir)
    md_path, png_path = out / f"{path.stem}-summary.md", out / f"{path.stem}-summary.png"
    for target in (md_path, png_path):  # both checked first: a bad path must not leave half a pair
        atomic.check_writable(target)
    md = atomic.write_text(md_path, markdown(table, run, path.name))
    png = atomic.write_bytes(png_path, plot_png(table))
    return Summary(table, md, png)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", metavar="RUN.json",
                        help=f"a saved run (default: the latest under {runs.STORAGE})")
    parser.add_argument("--out", default=str(runs.STORAGE), help="output folder (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    summary = summarize(args.run, args.out)
    print(f"{len(summary.rows)} benchmarks: {summary.table} and {summary.plot}")
    return 0
