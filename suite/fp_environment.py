"""The floating-point environment: whether this thread's arithmetic follows IEEE 754's defaults, which the
suite's own numbers need, and whether torch's CPU kernels keep subnormals, which the report records.

The suite's ULP errors, roundings of exact values and grids are numpy and Python float arithmetic.  They are
right only with subnormals kept and rounding to nearest.  A process can lose either without asking for it:
``torch.set_flush_denormal(True)`` sets flush-to-zero (FTZ: subnormal results become 0) and
denormals-are-zero (DAZ: subnormal operands read as 0), and so does loading a shared library built with
``-ffast-math`` (its start-up code sets them).  Then ``numpy.spacing(0.0)`` is 0 and every error near zero is
wrong without a sign.  These modes belong to a thread (x86's MXCSR, Arm's FPCR): torch's intra-op worker
threads keep their own, so under ``set_flush_denormal(True)`` a large tensor is flushed only in the calling
thread's share of it (:func:`torch_subnormals` measures that).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from suite.errors import UsageError

#: Elements per torch probe: several intra-op chunks (torch's grain size is 32768) for each thread.
_CHUNK = 32768


def _float_problems(typ: type[np.float64] | type[np.float32]) -> list[str]:
    """IEEE defaults checked on one float type, on arrays, so that numpy's vector loops are checked too."""
    with warnings.catch_warnings():  # numpy 1 warns that its smallest subnormal is zero: this check says so itself
        warnings.simplefilter("ignore")
        info = np.finfo(typ)
    one, half, eps = typ(1), typ(0.5), info.eps
    ones = np.full(64, one, dtype=typ)
    kind = info.dtype.name
    problems = []
    if not (np.full(64, info.smallest_subnormal, dtype=typ) * ones > 0).all():
        problems.append(f"{kind} subnormal operands read as zero (denormals-are-zero)")
    if not (np.full(64, info.smallest_normal, dtype=typ) * half > 0).all():
        problems.append(f"{kind} subnormal results flushed to zero (flush-to-zero)")
    quarter = np.full(64, eps * typ(0.75), dtype=typ)
    # to nearest: 1 + 3/4 eps is 1 + eps and -1 - 3/4 eps is -(1 + eps); 1 + eps/2 is a tie, to even: 1
    if not ((ones + quarter == one + eps).all() and (-ones - quarter == -(one + eps)).all()
            and (ones + eps * half == one).all()):
        problems.append(f"{kind} arithmetic does not round to nearest (ties to even)")
    return problems


def ieee_problems() -> list[str]:
    """What in this thread's float arithmetic departs from IEEE 754's defaults; empty when nothing does.
    Python floats run on the same hardware and flags as numpy's, so float64 and float32 arrays cover both."""
    return _float_problems(np.float64) + _float_problems(np.float32)


def require_ieee(where: str = "") -> None:
    """Refuse to go on (:class:`UsageError`: one line, exit status 2) when this thread's arithmetic is not
    IEEE 754's default, because every error the suite would compute near zero would then be wrong.
    ``where`` says what was just done (``"after importing plugin 'x'"``), so that the line names the cause."""
    problems = ieee_problems()
    if problems:
        raise UsageError(f"this process's floating-point arithmetic is not IEEE 754's default{where and ' ' + where}"
                         f" ({'; '.join(problems)}), so the suite's exact errors would be wrong; "
                         "something set flush-to-zero or a rounding mode (torch.set_flush_denormal(True), or a "
                         "library built with -ffast-math): run without it")


@contextlib.contextmanager
def flushing_subnormals() -> Iterator[None]:
    """Run a block with this thread's flush-to-zero and denormals-are-zero on (``torch.set_flush_denormal``),
    as in a process where a library built with ``-ffast-math`` set them, and IEEE arithmetic again after it: for
    the tests of these checks and the mutants that imitate such a process.  RuntimeError where the CPU has no
    such mode."""
    if not torch.set_flush_denormal(True):
        raise RuntimeError("this CPU has no flush-to-zero mode for torch.set_flush_denormal to set")
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def keeping_ieee() -> Iterator[None]:
    """Run a block of torch calls and give this thread IEEE 754's default arithmetic back after it, where the
    block took it away: loading inductor's compiled CPU kernels sets flush-to-zero and denormals-are-zero in
    the calling thread in some torch releases (2.4 and 2.5 build them with ``-ffast-math``), which would make
    every later number of the suite, and every later eager kernel of the thread, wrong near zero.  What torch
    computed inside the block is its own observation and is kept."""
    try:
        yield
    finally:
        if ieee_problems():
            torch.set_flush_denormal(False)


def compile_problems(device: str = "cpu", compile_threads: int | None = None) -> list[str]:
    """What compiling and calling a small function with ``torch.compile`` on ``device`` does to the calling
    thread's arithmetic (:func:`ieee_problems` after it; empty where nothing), with ``compile_threads`` inductor
    compile workers (None: inductor's default).  Measured in a fresh child process: a kernel sets these modes when
    it is loaded, and in a process that has compiled before, the same kernel may come from a module already
    loaded.  The workers matter: torch 2.1 to 2.3 set them only where inductor compiles in the calling process
    (one worker), 2.4 and 2.5 either way (measured on 2.1.2 to 2.13.0)."""
    code = ("import json, torch\nfrom suite import fp_environment\n"
            f"torch.compile(lambda x: x * 2 + 1)(torch.linspace(-1.0, 1.0, 7, device={device!r}))\n"
            "print(json.dumps(fp_environment.ieee_problems()))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    if compile_threads is not None:
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(compile_threads)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        return [f"compiling failed: {(done.stderr.strip().splitlines() or ['no message'])[-1]}"]
    problems: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return problems


#: torch float dtype -> (the integer type of its width, its number of stored mantissa bits)
_BIT_FORMATS = {torch.float64: (torch.int64, 52), torch.float32: (torch.int32, 23),
                torch.float16: (torch.int16, 10), torch.bfloat16: (torch.int16, 7)}


def _from_bits(bits: int, n: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``n`` copies of the float whose bit pattern is ``bits``, made without float arithmetic (a fill value
    converted on a flushing thread would already be 0)."""
    integer, _ = _BIT_FORMATS[dtype]
    return torch.full((n,), bits, dtype=integer, device=device).view(dtype)


def torch_subnormals(device: str = "cpu") -> dict[str, str]:
    """For each torch float dtype, what ``device``'s kernels do with subnormals: ``"kept"``, ``"flushed"``, or
    ``"flushed in part (k of n)"`` when only some threads flush (FTZ/DAZ are per thread).  Both a subnormal
    operand (the smallest subnormal times 1) and a subnormal result (the smallest normal halved) are probed, on
    tensors large enough to be split among torch's threads; they are read back as bits, never compared as
    floats (a comparison on a flushing thread would read a subnormal as 0)."""
    n = _CHUNK * 2 * min(max(1, torch.get_num_threads()), 64)  # at most 4 Mi elements (32 MiB in float64)
    out = {}
    for dtype, (integer, mantissa_bits) in _BIT_FORMATS.items():
        operand = _from_bits(1, n, dtype, device) * 1
        result = _from_bits(1 << mantissa_bits, n, dtype, device) / 2
        zero = (operand.view(integer) == 0) | (result.view(integer) == 0)
        flushed = int(zero.sum().item())
        name = str(dtype).removeprefix("torch.")
        out[name] = "kept" if flushed == 0 else "flushed" if flushed == n else f"flushed in part ({flushed} of {n})"
    return out
