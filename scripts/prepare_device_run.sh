#!/usr/bin/env bash
# What a run of scripts/cuda_check.sh on a lent GPU machine carries, made here (run from the repository root):
#   .cache/carry   the cached exact truths of the full grids, largest first, up to LIMIT_MIB (default 53), so
#                  the GPU machine does not spend its minutes in mpmath;
#   .cache/wheels  pytest-xdist, execnet and gmpy2 for the image's Python (default 3.12), which lacks them.
# Both are ignored by git, so they travel only when named: carry [".cache/carry", ".cache/wheels"] (64 MiB in all),
# and set SUITE_CACHE_DIR=.cache/carry CUDA_CHECK_WHEELS=.cache/wheels there.
# Usage: bash scripts/prepare_device_run.sh [LIMIT_MIB [PYTHON_VERSION]]
set -euo pipefail
limit=${1:-53}
python_version=${2:-3.12}
python3 scripts/carry_truths.py .cache/carry --limit-mib "$limit"
rm -rf .cache/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .cache/wheels gmpy2 pytest-xdist execnet
du -sh .cache/carry .cache/wheels
