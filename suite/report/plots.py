"""Plots for ``index.html`` (matplotlib, Agg backend), saved as PNG or SVG in a ``plots/`` folder:

- per case and device, the ULP error of the unreduced loss and of the main-input gradient against the main
  input, one colour per dtype, both axes on a symmetric-log scale;
- per case and device, where each non-exact/ok label (nan, inf, clamp, flush, ...) happens along the main
  input, one row per dtype and label.

The main input is drawn in symmetric-log coordinates computed here (``sign(x) log10(1 + |x|/1e-6)``), with
+-inf one decade beyond the largest finite value, at ticks marked "inf".
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from suite import atomic
from suite.dtypes import FloatArray
from suite.report.collect import Profile

PLOT_DIR = "plots"
COLOURS = {"float64": "tab:blue", "float32": "tab:green", "float16": "tab:orange", "bfloat16": "tab:red"}
#: Labels worth marking along the range (exact and ok are the normal case; undefined is out of domain).
MARKED = ("inaccurate", "nan", "spurious_inf", "clamped", "flushed", "overflow", "raised", "device_assert",
          "undetermined")
LINTHRESH_X = 1e-6


@dataclass(frozen=True)
class PlotFile:
    case: str
    file: str  # relative to the report folder
    title: str


def _symlog(x: FloatArray) -> FloatArray:
    """``sign(x) log10(1 + |x| / LINTHRESH_X)``: the symmetric-log coordinate, computed here so that values
    near the float64 limit and infinities stay finite on a linear axis."""
    return np.sign(x) * (np.log10(np.abs(x) + LINTHRESH_X) - math.log10(LINTHRESH_X))


def _positions(x: FloatArray, edge: float | None = None) -> tuple[FloatArray, float]:
    """Symmetric-log coordinates of ``x`` with +-inf one decade beyond the largest finite magnitude."""
    u = _symlog(np.where(np.isfinite(x), x, 0.0))
    if edge is None:
        finite = np.abs(u[np.isfinite(x)])
        edge = (float(finite.max()) if finite.size else 1.0) + 1.0
    return np.where(np.isposinf(x), edge, np.where(np.isneginf(x), -edge, u)), edge


def _x_axis(ax: plt.Axes, name: str, edge: float, has_inf: bool) -> None:
    top = max(1, math.floor(edge - 1 + math.log10(LINTHRESH_X)))
    exponents = sorted({round(e) for e in np.linspace(math.log10(LINTHRESH_X), top, 5)})
    values = [-(10.0 ** e) for e in exponents[::-1]] + [0.0] + [10.0 ** e for e in exponents]
    labels = [f"-1e{e}" for e in exponents[::-1]] + ["0"] + [f"1e{e}" for e in exponents]
    ticks = list(_symlog(np.array(values)))
    if has_inf:
        ticks, labels = [-edge, *ticks, edge], ["-inf", *labels, "inf"]
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlim(-edge - 0.5, edge + 0.5)
    ax.set_xlabel(f"{name} (symmetric log scale, linear within +-{LINTHRESH_X:g})")


def _save(fig: plt.Figure, folder: Path, name: str, fmt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=90, bbox_inches="tight")
    plt.close(fig)
    relative = f"{PLOT_DIR}/{name}.{fmt}"
    atomic.write_bytes(folder / relative, buffer.getvalue())
    return relative


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _ulp_tick(value: float, _: object) -> str:
    """``0``, ``1``, ``10``, ``100``, then ``1e3``, ``1e4``, ... for the ULP axis."""
    if value == 0 or abs(value) < 1000:
        return f"{value:g}"
    return f"{'-' if value < 0 else ''}1e{round(math.log10(abs(value)))}"


def ulp_plot(profiles: list[Profile], folder: Path, name: str, fmt: str) -> str:
    quantities = list(dict.fromkeys(p.quantity for p in profiles))
    fig, axes = plt.subplots(1, len(quantities), figsize=(6.5 * len(quantities), 3.6), squeeze=False)
    for ax, quantity in zip(axes[0], quantities, strict=True):
        group = [p for p in profiles if p.quantity == quantity]
        _, edge = _positions(np.concatenate([p.x for p in group]))
        has_inf = any(bool(np.isinf(p.x).any()) for p in group)
        for p in group:
            x, _ = _positions(p.x, edge)
            keep = np.isfinite(p.max_ulp)
            ax.plot(x[keep], p.max_ulp[keep], ".", ms=1.5, color=COLOURS.get(p.dtype), label=p.dtype,
                    rasterized=True)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.yaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(_ulp_tick))  # plain text: mathtext is slow
        ax.set_ylabel("ULP error (max over other inputs)")
        ax.set_title(f"{quantity}, reduction none", fontsize=9)
        _x_axis(ax, profiles[0].input, edge, has_inf)
        ax.legend(fontsize=7, markerscale=6, loc="upper left")
    return _save(fig, folder, name, fmt)


def label_plot(profiles: list[Profile], folder: Path, name: str, fmt: str) -> str:
    rows: list[tuple[str, FloatArray, str]] = []
    for p in profiles:
        for label in MARKED:
            where = p.labels.get(label)
            if where is not None and where.any():
                rows.append((f"{p.dtype} {p.quantity}: {label}", p.x[where], p.dtype))
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.28 * max(1, len(rows))))
    all_x = np.concatenate([p.x for p in profiles]) if profiles else np.zeros(1)
    _, edge = _positions(all_x)
    for i, (_, xs, dtype) in enumerate(rows):
        pos, _ = _positions(xs, edge)
        ax.plot(pos, np.full(pos.shape, i), "|", ms=7, color=COLOURS.get(dtype))
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set_ylim(-0.8, max(1, len(rows)) - 0.2)
    if not rows:
        ax.text(0.5, 0.5, "no nan, inf, clamp, flush, overflow or ULP excess on the grid", ha="center",
                transform=ax.transAxes)
    _x_axis(ax, profiles[0].input if profiles else "input", edge, bool(np.isinf(all_x).any()))
    ax.set_title("where each label happens along the main input (unreduced)", fontsize=9)
    return _save(fig, folder, name, fmt)


def draw(profiles: list[Profile], folder: Path, fmt: str = "png") -> list[PlotFile]:
    """Both plots for every case and device in ``profiles``; returns the files written under ``folder``."""
    out: list[PlotFile] = []
    groups = dict.fromkeys((p.case, p.device) for p in profiles)
    for case, device in groups:
        group = [p for p in profiles if p.case == case and p.device == device]
        base = _slug(f"{case}-{device}")
        with np.errstate(over="ignore"):  # symlog's inverse transform of ULP errors near 1e38 overflows exp
            ulp_file = ulp_plot(group, folder, f"{base}-ulp", fmt)
        out.append(PlotFile(case, ulp_file, f"{case} on {device}: ULP error against {group[0].input}"))
        out.append(PlotFile(case, label_plot(group, folder, f"{base}-labels", fmt),
                            f"{case} on {device}: where labels happen along {group[0].input}"))
    return out

