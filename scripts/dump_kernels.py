"""Keep the kernels torch.compile generates for the known deviations of its compile modes on a device, and
count the instructions their reasons name, so that a GPU session reads a deviation's cause in the kernel
instead of inferring it from the values.

An entry's witness and each of its case/dtype pairs run in a child process of their own (a first compile, as in
the report's jobs), with inductor's and Triton's caches in OUTDIR/<entry id>/<witness or case-dtype>/, so the
source generated for it alone lands there: inductor's output code, Triton's PTX, the C++ of a CPU kernel
(compiled binaries are deleted).  The child runs the witness, or the grid points inside the entry's region, in
the entry's home mode, and says how many elements show the deviation.  Entries for the device alone come first,
and each finished run adds its lines to OUTDIR/kernels.txt at once: the elements shown, the kernel files, and
for each pattern of PATTERNS how often it occurs and in how many of them.
Exit status: 0, 1 when a child failed or ran past its time, 2 for an unknown entry.

Usage: python scripts/dump_kernels.py OUTDIR [--device cuda] [--timeout S] [ENTRY_ID ...]
  (default: every entry whose home mode compiles and which applies to this torch on the device)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: Generated files by suffix, and the calls and instructions counted in them: libdevice and Triton's math
#: (which exp, log1p, sigmoid a kernel calls), PTX's approximate and flush-to-zero instructions and fused
#: multiply-adds, and the vector math of CPU kernels.
PATTERNS: dict[str, tuple[str, ...]] = {
    ".py": (r"libdevice\.\w+", r"tl_math\.\w+", r"tl\.sigmoid", r"tl\.math\.\w+", r"tl\.fma"),
    ".ptx": (r"ex2\.approx[.\w]*", r"lg2\.approx[.\w]*", r"fma\.rn[.\w]*", r"div\.(?:full|approx|rn)[.\w]*",
             r"rcp\.approx[.\w]*", r"\b(?:add|sub|mul)(?:\.rn)?\.ftz\.f32"),
    ".cpp": (r"Sleef_\w+", r"std::(?:exp|expm1|log|log1p|fma)\b", r"\.(?:exp|exp_u20|expm1|log|log1p|sigmoid)\(\)"),
}
#: Generated files kept (sources and intermediate code); compiled binaries are deleted.
KEPT_SUFFIXES = {".py", ".cpp", ".h", ".ptx", ".llir", ".ttir", ".ttgir", ".log"}
#: Inductor output code that is not a kernel of the case: the wrapper, which embeds each kernel's source a
#: second time, and the probe of the CPU's vector instructions.
NOT_KERNELS = ("async_compile.triton(", "async_compile.cpp_pybinding(", "_chk_kernel")
RESULT_PREFIX = "KERNEL-DUMP "
WITNESS = "witness"


def default_entries(device: str) -> list[str]:
    """Entries whose home mode compiles and which apply to this torch on ``device``; those for this kind of
    device alone first (the others are also seen on the CPU, where any machine dumps them)."""
    import torch

    from suite import deviations, modes, witness

    kind = torch.device(device).type
    found = [d for d in deviations.load() if d.home_mode in modes.COMPILE_MODES and witness.combos(d, device)]
    return [d.id for d in sorted(found, key=lambda d: d.devices != (kind,))]


def units(entry_id: str, device: str) -> list[str]:
    """What runs in a child each: the entry's witness (if it has one) and each applicable ``case/dtype``."""
    from suite import deviations, witness

    deviation = deviations.get(entry_id)
    pairs = witness.combos(deviation, device)
    return ([WITNESS] if deviation.witness and pairs else []) + [f"{c}/{d}" for c, d in pairs]


def show(entry_id: str, unit: str, device: str) -> dict[str, int]:
    """In a child: the elements of the witness, or of the grid points in the entry's region for one case and
    dtype, that show the entry, and the failing ones in the region it does not explain."""
    from suite import cases, deviations, dtypes, witness

    deviation = deviations.get(entry_id)
    if unit == WITNESS:
        return {"shown": witness.witness_shows(deviation, device), "stray": 0}
    case_name, dtype = unit.split("/")
    shown, stray = witness.grid_shows(deviation, cases.get(case_name), dtypes.get(dtype), device)
    return {"shown": shown, "stray": stray}


def count_patterns(folder: Path) -> tuple[list[str], Counter[str], Counter[str]]:
    """The kernel files under ``folder`` (distinct contents), and for each pattern match its occurrences and
    the number of files it occurs in."""
    files, seen, occurrences, in_files = [], set(), Counter[str](), Counter[str]()
    for path in sorted(folder.rglob("*")):
        patterns = PATTERNS.get(path.suffix)
        if not path.is_file() or patterns is None:
            continue
        text = path.read_text(errors="replace")
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen or any(marker in text for marker in NOT_KERNELS):
            continue
        if path.suffix == ".py" and "@triton.jit" not in text:
            continue  # inductor's cache holds other Python too
        seen.add(digest)
        files.append(str(path.relative_to(folder)))
        found = Counter(m for pattern in patterns for m in re.findall(pattern, text))
        occurrences.update(found)
        in_files.update(found.keys())
    return files, occurrences, in_files


def _prune(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in KEPT_SUFFIXES:
            path.unlink()


def run_unit(out: Path, entry_id: str, unit: str, device: str, timeout: float) -> tuple[bool, str]:
    """Run one unit in a child with caches of its own: whether it finished, and its summary lines."""
    folder = out / entry_id / unit.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
           "TRITON_CACHE_DIR": str(folder / "triton"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    command = [sys.executable, __file__, str(out), "--device", device, "--child", entry_id, unit]
    try:
        child = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        log, status = child.stdout + child.stderr, child.returncode
    except subprocess.TimeoutExpired as expired:  # what it printed may come back as bytes
        log = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or ""
                      for x in (expired.stdout, expired.stderr))
        status = None
    (folder / "child.log").write_text(log)
    results = [line[len(RESULT_PREFIX):] for line in log.splitlines() if line.startswith(RESULT_PREFIX)]
    if results:
        what = results[-1]
    elif status is None:
        what = f"ran past {timeout:g} s; killed"
    else:
        what = f"child exited with status {status}: {(log.strip().splitlines() or [''])[-1]}"
    _prune(folder)
    files, occurrences, in_files = count_patterns(folder)
    lines = [f"{entry_id} {unit} on {device}: {what}; {len(files)} kernel files"]
    lines += [f"  {name}: {n} in {in_files[name]} of {len(files)} files" for name, n in sorted(occurrences.items())]
    return bool(results), "\n".join(lines) + "\n"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the suite, run from anywhere
    from suite.errors import OneLineParser, UsageError

    parser = OneLineParser(prog="dump_kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the kernels and kernels.txt")
    parser.add_argument("entries", nargs="*", metavar="ENTRY_ID", help="deviation ids (default: see above)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=150.0, metavar="S", help="seconds for each child")
    parser.add_argument("--child", nargs=2, metavar=("ENTRY_ID", "UNIT"), help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args()
    if args.child:
        entry_id, unit = args.child
        print(RESULT_PREFIX + json.dumps(show(entry_id, unit, args.device)), flush=True)
        return 0
    import torch

    from suite import deviations, selection

    known = {d.id for d in deviations.load()}
    unknown = [e for e in args.entries if e not in known]
    try:
        selection.require_device(args.device)
        if unknown:
            raise UsageError(f"unknown deviation id(s): {', '.join(unknown)}")
    except UsageError as exc:
        parser.error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / "kernels.txt"
    summary.write_text("")

    def say(text: str) -> None:  # at once: a step cut off by its time limit keeps what finished
        with summary.open("a") as f:
            f.write(text)
        print(text, end="", flush=True)

    entries = args.entries or default_entries(args.device)
    if not entries:
        say(f"no compile-mode deviation applies to torch {torch.__version__} on {args.device}\n")
    finished = True
    for entry in entries:
        todo = units(entry, args.device)
        if not todo:
            say(f"{entry}: does not apply to torch {torch.__version__} on {args.device}\n")
        for unit in todo:
            ok, text = run_unit(args.out, entry, unit, args.device, args.timeout)
            finished &= ok
            say(text)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
