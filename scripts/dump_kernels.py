"""Keep the kernels torch.compile generates for the known deviations of its compile modes on a device, and
count the instructions their reasons name, so that a GPU session reads a deviation's cause in the kernel
instead of inferring it from the values.

Each entry runs in a child process of its own, with inductor's and Triton's caches in OUTDIR/<entry id>/, so
the source generated for that entry alone lands there (inductor's output code, Triton's PTX, the C++ of a CPU
kernel).  The child runs the entry's witness and its region's grid points in its home mode, as its strict xfail
does, and says how many elements still show it.  OUTDIR/kernels.txt sums up each entry: the elements shown,
the generated files, and how often each pattern of PATTERNS occurs in them.

Usage: python scripts/dump_kernels.py OUTDIR [--device cuda] [ENTRY_ID ...]
  (default: every entry whose home mode compiles and which applies to this torch on the device)
"""

from __future__ import annotations

import argparse
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
RESULT_PREFIX = "KERNEL-DUMP "


def default_entries(device: str) -> list[str]:
    """Entries whose home mode compiles and which apply to this torch on ``device``."""
    from suite import deviations, modes, witness

    return [d.id for d in deviations.load() if d.home_mode in modes.COMPILE_MODES and witness.combos(d, device)]


def show(entry_id: str, device: str) -> dict[str, int]:
    """Run the entry's witness and its region's grid points (what its strict xfail runs, without the search):
    the elements that show it and the failing elements in its region it does not explain."""
    from suite import cases, deviations, dtypes, witness

    deviation = deviations.get(entry_id)
    shown, stray = witness.witness_shows(deviation, device), 0
    for case_name, dtype in witness.combos(deviation, device):
        grid_shown, grid_stray = witness.grid_shows(deviation, cases.get(case_name), dtypes.get(dtype), device)
        shown, stray = shown + grid_shown, stray + grid_stray
    return {"shown": shown, "stray": stray}


def count_patterns(folder: Path) -> tuple[list[str], Counter[str]]:
    """The generated files under ``folder`` (inductor's output code is a .py with a Triton or C++ kernel) and
    the count of each pattern in them."""
    files, counts = [], Counter[str]()
    for path in sorted(folder.rglob("*")):
        patterns = PATTERNS.get(path.suffix)
        if not path.is_file() or patterns is None:
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".py" and "@triton.jit" not in text and "cpp_fused" not in text:
            continue  # inductor's cache also holds other Python; only kernels are of interest
        files.append(str(path.relative_to(folder)))
        for pattern in patterns:
            counts.update(re.findall(pattern, text))
    return files, counts


def run_entry(out: Path, entry_id: str, device: str) -> str:
    """Run one entry in a child with caches of its own; its summary lines."""
    folder = out / entry_id
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
           "TRITON_CACHE_DIR": str(folder / "triton"), "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    child = subprocess.run([sys.executable, __file__, str(out), "--device", device, "--child", entry_id],
                           env=env, capture_output=True, text=True, check=False)
    (folder / "child.log").parent.mkdir(parents=True, exist_ok=True)
    (folder / "child.log").write_text(child.stdout + child.stderr)
    results = [line[len(RESULT_PREFIX):] for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    last = (child.stderr.strip().splitlines() or [""])[-1]
    shown = json.loads(results[-1]) if results else {"error": f"child exited with status {child.returncode}: {last}"}
    files, counts = count_patterns(folder)
    lines = [f"{entry_id} on {device}: {json.dumps(shown)}; {len(files)} generated files"]
    lines += [f"  {name}: {n}" for name, n in sorted(counts.items())]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the kernels and kernels.txt")
    parser.add_argument("entries", nargs="*", metavar="ENTRY_ID", help="deviation ids (default: see above)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--child", metavar="ENTRY_ID", help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the suite, run from anywhere
    if args.child:
        print(RESULT_PREFIX + json.dumps(show(args.child, args.device)), flush=True)
        return 0
    from suite import deviations

    known = {d.id for d in deviations.load()}
    unknown = [e for e in args.entries if e not in known]
    if unknown:
        print(f"dump_kernels: unknown deviation id(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    entries = args.entries or default_entries(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = "\n".join(run_entry(args.out, e, args.device) for e in entries) + "\n"
    (args.out / "kernels.txt").write_text(summary)
    print(summary, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
