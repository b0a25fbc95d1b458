"""Copy the cached exact truths of the full report grids into a folder small enough to travel with the
working tree to a machine that should not spend its time recomputing them (a lent GPU machine takes at most
64 MiB of ignored files).  The largest grids (the most mpmath work) go first; a file that would pass the
size limit is left out and smaller ones after it still go in.

    python scripts/carry_truths.py .cache/carry --limit-mib 56      # then SUITE_CACHE_DIR=.cache/carry there

Truths missing from the cache are skipped and named (run ``python -m suite report --search 0`` first).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from suite import cases, dtypes, run
from suite.report import collect
from suite.truth_cache import cache_folder, cache_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to copy the truth files into (emptied first)")
    parser.add_argument("--limit-mib", type=float, default=56.0, help="size limit of the folder (default 56)")
    parser.add_argument("--cache-dir", help="truth cache to copy from (default: SUITE_CACHE_DIR, else .cache/truth)")
    args = parser.parse_args(argv)
    grids = []
    for case in (cases.get(n) for n in cases.names()):
        for fmt in (dtypes.get(d) for d in dtypes.NAMES):
            used = run.prepare_inputs(case, collect.grid_inputs(case, fmt, quick=False), fmt)
            elements = max(v.size for v in used.values())
            grids.append((elements, f"{case.name} {fmt.name}", cache_path(case, used, args.cache_dir)))
    if args.out.resolve() == cache_folder(args.cache_dir).resolve():
        parser.error(f"{args.out} is the truth cache itself; name another folder")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    budget, copied = args.limit_mib * 2**20, 0
    for _elements, label, path in sorted(grids, key=lambda g: -g[0]):
        if not path.exists():
            print(f"missing from the cache: {label}", file=sys.stderr)
        elif copied + path.stat().st_size <= budget and not (args.out / path.name).exists():
            shutil.copy2(path, args.out / path.name)
            copied += path.stat().st_size
    print(f"{args.out}: {len(list(args.out.iterdir()))} truth files, {copied / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
