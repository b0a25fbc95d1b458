"""``python -m suite report``: run every case on the grids and write accuracy.json, accuracy.md and
index.html (with plots) into one folder.  The folder is built beside the target and swapped in at the end, so
an interrupted run leaves the previous report intact."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from suite import atomic, cases, dtypes, modes
from suite.errors import UsageError
from suite.report import collect, html, markdown, plots

DESCRIPTION = """\
Run every registered case x dtype x device x mode x reduction, forward and gradients, on the deterministic
full-range grids (exhaustive for float16/bfloat16) against exact truths, and write accuracy.json (versioned
schema), accuracy.md (summary, worst cases, findings with reproducers, safe ranges) and index.html (the same
with plots) into --out.  Truths are cached on disk (.cache/truth or SUITE_CACHE_DIR), so a second run only
re-runs torch.  Progress goes to stderr."""


def _names(values: list[str] | None) -> list[str]:
    """Comma-separated and repeated option values, in order, without duplicates."""
    out: list[str] = []
    for v in values or []:
        out += [n.strip() for n in v.split(",") if n.strip() and n.strip() not in out]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--cases", action="append", metavar="NAME[,NAME]",
                        help="cases to run (default: every registered case, plugins included)")
    parser.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]",
                        help=f"dtypes to run (default: {', '.join(collect.DTYPES)})")
    parser.add_argument("--devices", action="append", metavar="DEVICE[,DEVICE]",
                        help="devices to run (default: cpu, and cuda when torch.cuda.is_available())")
    parser.add_argument("--modes", action="append", metavar="MODE[,MODE]",
                        help=f"execution modes, of {', '.join(modes.MODES)} (default: eager)")
    parser.add_argument("--quick", action="store_true",
                        help="small grids (about a hundred main-input values) for a fast look")
    parser.add_argument("--out", metavar="DIR",
                        help="report folder (default: reports/<torch version>-<devices>)")
    parser.add_argument("--plugin", action="append", metavar="MODULE", default=[],
                        help="import MODULE, which registers cases of its own; its findings and reproducers "
                             "appear next to torch's (repeatable)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="processes computing exact truths (default: 2)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="truth cache folder (default: SUITE_CACHE_DIR or .cache/truth)")
    parser.add_argument("--plot-format", choices=("png", "svg"), default="png", help="plot files (default: png)")


def load_plugins(modules: list[str]) -> dict[str, str]:
    """Import each plugin module; case name -> module that registered it."""
    owners: dict[str, str] = {}
    for module in modules:
        try:
            added = cases.load_plugin(module)
        except ImportError as exc:
            raise UsageError(f"cannot import plugin {module!r}: {exc}") from None
        owners.update({c.name: module for c in added})
    return owners


def options_from(args: argparse.Namespace) -> tuple[collect.Options, list[cases.Case]]:
    """Validated options: unknown cases, dtypes, devices or modes are a UsageError."""
    plugins = load_plugins(args.plugin)
    names = _names(args.cases) or cases.names()
    try:
        selected = [cases.get(n) for n in names]
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    try:
        dtype_names = [dtypes.get(d).name for d in _names(args.dtypes) or list(collect.DTYPES)]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    devices = _names(args.devices) or collect.default_devices()
    for device in devices:
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise UsageError(f"unknown device {device!r}") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {device!r} requested but torch.cuda.is_available() is false")
        if kind not in ("cpu", "cuda"):
            raise UsageError(f"device {device!r}: only cpu and cuda are supported")
    mode_names = _names(args.modes) or ["eager"]
    for mode in mode_names:
        if mode not in modes.MODES:
            raise UsageError(f"unknown mode {mode!r}; choose from {', '.join(modes.MODES)}")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    return collect.Options(names, dtype_names, devices, mode_names, args.quick, plugins, args.workers,
                           args.cache_dir), selected


def default_out(devices: list[str]) -> Path:
    return Path("reports") / f"{torch.__version__.split('+')[0]}-{'+'.join(d.replace(':', '') for d in devices)}"


def staging_dir(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system, so the final rename is atomic); checked before the
    long run so an unwritable target fails at once."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None


def publish(staging: Path, out: Path) -> None:
    """Swap the finished ``staging`` folder in for ``out``; the previous report is removed only after."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(result: collect.Collected, folder: Path, plot_format: str = "png") -> None:
    """accuracy.json, the plots, accuracy.md and index.html into ``folder``."""
    atomic.write_json(folder / "accuracy.json", result.payload)
    files = plots.draw(result.profiles, folder, plot_format)
    atomic.write_text(folder / "accuracy.md", markdown.render(result.payload))
    atomic.write_text(folder / "index.html", html.render(result.payload, files))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    options, selected = options_from(args)
    out = Path(args.out) if args.out else default_out(options.devices)
    staging = staging_dir(out)
    try:
        result = collect.collect(options, selected, _progress)
        _progress("writing plots and pages")
        write_report(result, staging, args.plot_format)
        staging.chmod(0o755)
        publish(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    new = sum(f["attribution"] == "new" for f in result.payload["findings"])
    print(f"wrote {out}/index.html, accuracy.md, accuracy.json: {len(result.payload['findings'])} findings "
          f"({new} new) in {result.payload['seconds']}s")
    return 0
