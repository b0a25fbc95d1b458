"""``python -m suite report``: run every case on the grids and write accuracy.json, accuracy.md and
index.html (with plots) into one folder.  The folder is built beside the target and swapped in at the end, so
an interrupted run leaves the previous report intact."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from suite import atomic, cases, dtypes, modes, plugins, selection, truth_cache
from suite.errors import UsageError
from suite.report import baselines, checkpoint, collect, diff, html, markdown, plots, schema, summary
from suite.report.progress import Progress

DIFF_FILE = "diff.md"
DESCRIPTION = """\
Measure how accurate torch's BCELoss, BCEWithLogitsLoss and kl_div are, against exact (mpmath) values.

Runs every registered case x dtype x device x mode x reduction, forward and gradients, on deterministic
full-range grids (exhaustive for float16/bfloat16; for float32/float64, 4096 points even in bit patterns plus
32 in every binade of magnitudes 1/32 to 1024), then a targeted Hypothesis search for the worst input of each
case, dtype, device and reduction (eager; a batch with a failure no known deviation explains first), and writes
into --out:
  accuracy.json  every number, in a versioned schema (suite/report/schema.py)
  accuracy.md    summary, safe ranges, worst cases, search results, findings with reproducers
  index.html     the same with plots (ULP error and labels along the main input)
With several --modes or --devices, the same grid results are compared side by side: each mode against eager on
the same device and each device against CPU in the same mode (points whose labels differ, or whose ULP errors
differ by more than the budget); --bad-inputs adds the bad-input and mixed-dtype tables.
Exact truths are cached on disk, so a second run only re-runs torch.  The previous report in --out is
replaced only when the new one is complete; each finished case/dtype job is saved until then, and --resume
goes on from where an interrupted run stopped (--saved-only writes what such a run finished, marked
incomplete, running nothing new).  Progress goes to stderr (a bar on a terminal, else one line
per case and dtype).  Bad options exit with status 2.

examples:
  python -m suite report --quick --out /tmp/quick      # a fast look
  python -m suite report --cases bce_with_logits --dtypes float16,bfloat16
  python -m suite report --modes eager,compile,compile_dynamic,autocast,strided,transposed --bad-inputs  # all
  python -m suite report --modes eager,compile --jobs 4 --resume   # 4 jobs at a time, reusing finished ones
  python -m suite report --plugin my_losses --cases my_bce,bce_with_logits
  python -m suite diff reports/baselines reports/<torch>-cpu   # what changed since the baseline; exit 1: worse"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--cases", action="append", metavar="NAME[,NAME]",
                        help=f"cases to run, comma-separated or repeated (default: every registered case: "
                             f"{', '.join(cases.names())}, plus those of --plugin modules)")
    parser.add_argument("--dtypes", action="append", metavar="DTYPE[,DTYPE]",
                        help=f"dtypes to run (default: {', '.join(dtypes.NAMES)})")
    parser.add_argument("--devices", action="append", metavar="DEVICE[,DEVICE]",
                        help="devices to run, e.g. cpu,cuda:0 (default: cpu, and cuda when "
                             "torch.cuda.is_available())")
    parser.add_argument("--modes", action="append", metavar="MODE[,MODE]",
                        help=f"execution modes, of {', '.join(modes.MODES)} (default: eager); autocast runs "
                             "only the dtypes it casts to")
    parser.add_argument("--quick", action="store_true",
                        help="small grids (one to two hundred main-input values per case and dtype) for a "
                             "fast look; the default grids sweep each dtype's whole range")
    parser.add_argument("--search", type=int, default=25, metavar="N",
                        help="0 skips the search; else its examples per case, dtype, device and reduction "
                             "(default: 25)")
    parser.add_argument("--search-seed", type=int, default=0, metavar="S",
                        help="seed of the targeted search; the same seed and torch give the same inputs "
                             "(default: 0)")
    parser.add_argument("--out", metavar="DIR",
                        help=f"report folder, replaced when the run completes (default: "
                             f"reports/<torch version>-<devices>, here {default_out(selection.default_devices())})")
    parser.add_argument("--plugin", action="append", metavar="MODULE", default=[],
                        help="import MODULE (importable from the current folder or PYTHONPATH), which "
                             "registers cases of its own with suite.cases.register; they run with the "
                             "built-in ones and their findings and reproducers appear next to torch's "
                             "(repeatable)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="processes computing exact truths on a cache miss (default: 2)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="case/dtype jobs run side by side in N worker processes (default: 1); on a "
                             "machine with many cores this shortens runs in compile mode, whose compiling is "
                             "single-threaded per job.  The numbers do not depend on N, except in the compile "
                             "modes of torch 2.1 to 2.3, which turn flush-to-zero on where inductor compiles in "
                             "the calling process (see reports/README.md)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the jobs an interrupted or timed-out run of the same command finished "
                             "(each finished job is saved beside --out until the report is written; a job "
                             "is reused only with the same suite, torch, settings and inputs)")
    parser.add_argument("--saved-only", action="store_true",
                        help="write the report from what earlier runs of the same command saved (the jobs and "
                             "bad-input probe groups --resume would reuse) and run nothing else: for a "
                             "time-limited machine, the results of a run cut off by its limit.  The report opens "
                             "with what it lacks; the saved jobs are kept, so --resume can finish the run")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="truth cache folder (default: SUITE_CACHE_DIR, else .cache/truth)")
    parser.add_argument("--bad-inputs", action="store_true",
                        help="also probe what torch does with inputs outside the domain (raises, NaN, a number, "
                             "a device-side assert, each CUDA-risky probe in a child process) and with mixed "
                             "input dtypes, for the selected cases, dtypes, devices and modes")
    parser.add_argument("--bad-input-devices", action="append", metavar="DEVICE[,DEVICE]",
                        help="run the --bad-inputs probes on these of the --devices only (default: all of them); "
                             "on a lent GPU machine, --bad-input-devices cuda leaves the CPU's probes, which "
                             "take minutes of compiling, to a CPU machine")
    parser.add_argument("--baseline", metavar="DIR",
                        help="once the report is written, compare it with this earlier report, or with the "
                             "baseline of a folder of baselines (reports/baselines: the one of this torch and "
                             "devices, else of the newest older torch; none for these devices: no diff), into "
                             "diff.md in the report folder (python -m suite diff gives the same, with its exit "
                             "status)")
    parser.add_argument("--plot-format", choices=("png", "svg"), default="png",
                        help="image format of the plots next to index.html (default: png)")



def options_from(args: argparse.Namespace) -> tuple[collect.Options, list[cases.Case]]:
    """Validated options: unknown cases, dtypes, devices or modes are a UsageError."""
    owners = plugins.load_all(args.plugin)
    selected = selection.case_list(args.cases)
    names = [c.name for c in selected]
    dtype_names = selection.dtype_names(args.dtypes)
    devices = selection.devices(args.devices)
    mode_names = selection.mode_names(args.modes)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.search < 0:
        raise UsageError("--search must be 0 (no search) or a number of examples")
    probe_devices = bad_input_devices(args, devices)
    out = Path(args.out) if args.out else default_out(devices)
    check_out(out)
    truth_cache.check_folder(args.cache_dir)
    return collect.Options(names, dtype_names, devices, mode_names, args.quick, owners, args.workers,
                           args.cache_dir, args.search, args.search_seed, args.bad_inputs, args.jobs,
                           str(checkpoint.folder_for(out)), args.resume, args.saved_only,
                           probe_devices), selected


def bad_input_devices(args: argparse.Namespace, devices: list[str]) -> list[str] | None:
    """``--bad-input-devices``, checked: it needs ``--bad-inputs``, and names devices the run has."""
    if args.bad_input_devices is None:
        return None
    if not args.bad_inputs:
        raise UsageError("--bad-input-devices needs --bad-inputs")
    chosen = selection.devices(args.bad_input_devices, "--bad-input-devices")
    strays = [d for d in chosen if d not in devices]
    if strays:
        raise UsageError(f"--bad-input-devices {','.join(strays)} is not among --devices {','.join(devices)}")
    return chosen


def default_out(devices: list[str]) -> Path:
    return Path("reports") / baselines.folder_name(torch.__version__, devices)


def check_out(out: Path) -> None:
    """Refuse, before the long run, an ``--out`` that the finished report cannot replace without loss: a file,
    or a folder that holds something other than a report (the report replaces its whole folder)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and not (out / "accuracy.json").exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is a folder that holds no report (no accuracy.json), and the report "
                         "replaces its folder whole: choose an empty or new folder")


def staging_dir(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system, so the final rename is atomic); checked before the
    long run so an unwritable target fails at once."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise UsageError(f"cannot write to {out.parent}: {exc.strerror or exc}") from None


def publish(staging: Path, out: Path) -> None:
    """Swap the finished ``staging`` folder in for ``out`` (in one step on Linux); the previous report is removed
    only after."""
    check_out(out)  # again: the folder may have changed during the run
    atomic.replace_folder(staging, out)


def write_report(result: collect.Collected, folder: Path, plot_format: str = "png") -> None:
    """accuracy.json, the plots, accuracy.md and index.html into ``folder``."""
    atomic.write_json(folder / "accuracy.json", result.payload)
    files = plots.draw(result.profiles, folder, plot_format)
    atomic.write_text(folder / "accuracy.md", markdown.render(result.payload))
    atomic.write_text(folder / "index.html", html.render(result.payload, files))


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (``timeout``, a batch system's time limit) into SystemExit, so that an interrupted run
    cleans up and says what it saved, as on Ctrl-C; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(args: argparse.Namespace) -> int:
    options, selected = options_from(args)
    out = Path(args.out) if args.out else default_out(options.devices)
    baseline = baselines.resolve(args.baseline, torch.__version__, options.devices) if args.baseline else None
    # read now: a missing or malformed baseline stops the run before it starts, and a baseline that is the
    # report folder itself (--out) is compared as it was, not as this run rewrites it
    earlier = None if baseline is None else schema.load(baseline)
    if args.baseline and baseline is None:
        print(f"{baselines.no_baseline(args.baseline, options.devices)}: no diff.md", file=sys.stderr)
    saved = checkpoint.folder_for(out)
    if options.saved_only and not checkpoint.saved_jobs(saved):
        raise UsageError(f"--saved-only: {saved} holds no saved jobs (an earlier run of this command with "
                         "the same --out saves them)")
    staging = staging_dir(out)
    progress = Progress()
    if not options.reuses_saved and checkpoint.saved_jobs(saved):
        progress.line(f"{saved} holds {checkpoint.saved_jobs(saved)} jobs of an unfinished run; --resume "
                      "would reuse those that match this run (all are removed once this report is written)")
    try:
        with sigterm_as_exit():
            result = collect.collect(options, selected, progress)
            progress.line("writing plots and pages")
            write_report(result, staging, args.plot_format)
            staging.chmod(0o755)
            publish(staging, out)
            complete = schema.is_complete(result.payload)
            if complete:
                checkpoint.remove(saved)
    except BaseException:
        if checkpoint.saved_jobs(saved):
            progress.line(f"stopped: {saved} holds {checkpoint.saved_jobs(saved)} saved jobs; the same command "
                          "with --resume goes on from there (with --saved-only, writes what they hold)")
        raise
    finally:
        progress.close()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    new = sum(summary.is_new(f) for f in result.payload["findings"])
    print(f"wrote {out}/index.html, accuracy.md, accuracy.json: {len(result.payload['findings'])} findings "
          f"({new} new) in {result.payload['seconds']}s")
    if not complete:
        lacks = schema.missing(result.payload)
        print(f"incomplete: {len(lacks['jobs'])} case/dtype jobs and {len(lacks['probe_groups'])} probe groups "
              f"missing (listed in the report); {saved} keeps the saved ones for --resume", file=sys.stderr)
    if baseline is not None and earlier is not None:
        if complete:
            write_diff(earlier, str(baseline), out)
        else:
            print("no diff.md: an incomplete report would show what it lacks as gone", file=sys.stderr)
    return 0


def write_diff(earlier: dict[str, Any], baseline: str, out: Path) -> None:
    """``out/diff.md``: what changed from the baseline report (read before the run) to the report just
    written."""
    changes = diff.compare(earlier, schema.load(out))
    atomic.write_text(out / DIFF_FILE, diff.render(changes, baseline, str(out)))
    print(f"wrote {out / DIFF_FILE}: {len(changes.changes)} changes since {baseline}, "
          f"{'REGRESSED' if changes.regressed else 'no regression'}")
