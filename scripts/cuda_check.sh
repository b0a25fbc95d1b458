#!/usr/bin/env bash
# The suite's CUDA checks in one run, for a machine with an NVIDIA GPU and without nox (python3 with torch,
# pytest, pytest-benchmark, pytest-xdist, hypothesis, mpmath, numpy and matplotlib installed):
#   bench    the CUDA benchmarks, eager then compiled, alone on the machine (pytest-benchmark JSON);
#   tests    the unit and accuracy tests (CPU and CUDA; CUDA_CHECK_TESTS_K selects with pytest -k);
#   report   the full-grid report on cpu,cuda in CUDA_CHECK_REPORT_MODES (default eager,autocast,strided,transposed;
#            every mode, eager,compile,compile_dynamic,autocast,strided,transposed, needs a call of its own: compiling
#            every case, dtype and reduction on CUDA takes minutes), XDIST_WORKERS case/dtype jobs side by side,
#            with the bad-input probes on CUDA_CHECK_BAD_INPUT_DEVICES (default cuda: the CPU's probes compile for
#            minutes, and any machine can run them; cpu,cuda probes both).
#            The report is written to .cache/cuda-check/full (ignored by git, kept on a warm machine) with
#            --resume, so a call cut off by its time limit is finished by the next call instead of redone;
#            a run cut off by its limit is followed by --saved-only, which writes what it finished as a report
#            marked incomplete (CUDA_CHECK_SAVED_ONLY_S seconds of the step's limit are kept for it: by default
#            a sixth, at least 60 s but at most half; 0 skips it);
#   compile  a quick-grid report on cpu,cuda in eager and compile for BCE and BCEWithLogits in float16 and
#            bfloat16 (compiling every case and dtype takes longer than a device lease allows).
#   kernels  the kernels torch.compile generates on CUDA for the known deviations of the compile modes, with the
#            calls and instructions their reasons name counted (scripts/dump_kernels.py; OUTDIR/kernels.txt, the
#            kernels themselves in logs.tgz): where the reasons infer a cause from values, the kernel settles it.
# tests, report, compile and kernels run side by side after bench.  They share the machine's cores: a report
# that needs its whole limit is better run in a call of its own (beside the tests, its slowest probe groups,
# those of BCE's device-side asserts on CUDA, may not finish).  Each step has its own time limit (SIGTERM, then
# SIGKILL 30 s later), so a slow step is cut off and reported instead of losing the rest.  Every log is
# written into OUTDIR/logs as it runs (a call killed from outside still returns what each step printed) and
# packed into logs.tgz at the end.
# Exact truths are computed on a cache miss; to spare the GPU machine that work, copy the cached truths of the
# full grids here (`python scripts/carry_truths.py .cache/carry`, under 64 MiB), send .cache/carry with the
# working tree and set SUITE_CACHE_DIR=.cache/carry there.  The packages the GPU image lacks (pytest-xdist and
# execnet for -n, gmpy2 for fast truths) are installed from CUDA_CHECK_WHEELS, a folder of wheels, when it is set:
# `bash scripts/prepare_device_run.sh` makes both folders.
# Usage: bash scripts/cuda_check.sh OUTDIR [STEP_SECONDS [XDIST_WORKERS]]
#   CUDA_CHECK_STEPS=tests,report bash scripts/cuda_check.sh OUTDIR     (default: every step)
# OUTDIR gets steps.txt (each step's exit status and seconds), env.txt, bench-eager.json, bench-compile.json,
# tests.log, junit.xml, kernels.txt, logs.tgz (the other steps' output) and reports.tgz (the report folders).
# The report step's checkpoint (.cache/cuda-check/.full.jobs) holds every finished case/dtype job and probe
# group; on a warm machine, calling again with the same settings goes on from there.
set -u
out=${1:?usage: bash scripts/cuda_check.sh OUTDIR [STEP_SECONDS [XDIST_WORKERS]]}
limit=${2:-240}
workers=${3:-6}
steps=",${CUDA_CHECK_STEPS:-bench,tests,report,compile,kernels},"
mkdir -p "$out"
logs="$out/logs"
mkdir -p "$logs"
reports=$(mktemp -d)
if [[ -n ${CUDA_CHECK_WHEELS:-} ]]; then  # into a folder of its own: the image's packages stay as they are
    site=$(mktemp -d)
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" \
        "$CUDA_CHECK_WHEELS"/*.whl ||
        { echo "cannot install the wheels of $CUDA_CHECK_WHEELS" >&2; exit 2; }
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}

wanted() { [[ $steps == *",$1,"* ]]; }
step() {  # step NAME LOGDIR SECONDS COMMAND...: run with a time limit, output to LOGDIR/NAME.log
    local name=$1 dir=$2 seconds=$3 start=$SECONDS
    shift 3
    timeout -k 30 "$seconds" "$@" >"$dir/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status after $((SECONDS - start)) s (limit $seconds s): $*" >>"$out/steps.txt"
}

{
    nvidia-smi -L
    python3 -c 'import sys, torch, numpy, mpmath, hypothesis
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "numpy", numpy.__version__, "mpmath", mpmath.__version__, "hypothesis", hypothesis.__version__)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
try:
    import gmpy2
    print("gmpy2", gmpy2.version())
except ImportError:
    print("gmpy2 missing: exact truths use plain mpmath (slower)")'
} >"$out/env.txt" 2>&1

if wanted bench; then
    bench=(python3 -m pytest tests/bench/test_losses.py --benchmark-only --benchmark-enable -p no:cacheprovider -q)
    step bench-eager "$logs" $((limit / 2)) "${bench[@]}" -k "cuda and eager" --benchmark-json="$out/bench-eager.json"
    step bench-compile "$logs" "$limit" "${bench[@]}" -k "cuda and compile" --benchmark-json="$out/bench-compile.json"
fi
if wanted tests; then
    # -v: a line per test as it ends, so a run cut off by its limit still names each failure (-rfEX's summary,
    # the slowest tests and junit.xml are written only at the end); worksteal: idle workers take queued tests
    # from busy ones, since the compiled CUDA tests take far longer than the rest
    step tests "$out" "$limit" python3 -m pytest tests/unit tests/accuracy -n "$workers" --dist worksteal \
        -p no:cacheprovider -v -rfEX --durations=25 --junitxml="$out/junit.xml" -k "${CUDA_CHECK_TESTS_K:-}" &
fi
if wanted report; then
    rm -rf .cache/cuda-check/full  # an earlier call's report; its saved jobs (.full.jobs) stay for --resume
    report=(python3 -m suite report --devices cpu,cuda --modes "${CUDA_CHECK_REPORT_MODES:-eager,autocast,strided,transposed}"
            --bad-inputs --bad-input-devices "${CUDA_CHECK_BAD_INPUT_DEVICES:-cuda}"
            --workers "$workers" --jobs "$workers" --search 10 --out .cache/cuda-check/full)
    # kept for writing what a run cut off by its limit finished: CUDA_CHECK_SAVED_ONLY_S seconds of the limit
    # (default a sixth, at least 60 s but at most half; 0 writes nothing, for a call a second call finishes)
    saved_only=$((limit / 6 > 60 ? limit / 6 : 60))
    saved_only=${CUDA_CHECK_SAVED_ONLY_S:-$((saved_only > limit / 2 ? limit / 2 : saved_only))}
    (step report "$logs" $((limit - saved_only)) "${report[@]}" --resume
     [[ -f .cache/cuda-check/full/accuracy.json || $saved_only -le 0 ]] ||
         step report-saved-only "$logs" "$saved_only" "${report[@]}" --saved-only
     cp -r .cache/cuda-check/full "$reports/full" 2>/dev/null) &
fi
if wanted compile; then
    step compile "$logs" "$limit" python3 -m suite report --devices cpu,cuda --modes eager,compile --quick \
        --cases bce,bce_with_logits --dtypes float16,bfloat16 --workers 2 --search 0 --out "$reports/compile" &
fi
if wanted kernels; then
    (step kernels "$logs" "$limit" python3 scripts/dump_kernels.py "$logs/kernels" --device cuda
     cp "$logs/kernels/kernels.txt" "$out/kernels.txt" 2>/dev/null) &
fi
wait
tar czf "$out/logs.tgz" -C "$logs" . && rm -rf "$logs"
tar czf "$out/reports.tgz" -C "$reports" .
cat "$out/steps.txt"
