"""Independent oracles for the unit tests: values of each format drawn from bit patterns, and correct
rounding of an exact rational by comparing it with the nearest representable candidates that torch/numpy
produce.  Nothing here uses suite.dtypes, so tests built on it check the suite against numpy and torch."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt
import torch

#: (format name, torch dtype, integer type of the same width for bit views)
TORCH_TYPES = {"float64": (torch.float64, torch.int64), "float32": (torch.float32, torch.int32),
               "float16": (torch.float16, torch.int16), "bfloat16": (torch.bfloat16, torch.int16)}


def all_16bit_values(name: str) -> npt.NDArray[np.float64]:
    """Every non-NaN value of a 16-bit format (both zeros, both infinities), from its 65,536 bit patterns."""
    dtype, int_type = TORCH_TYPES[name]
    patterns = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(int_type)
    values = patterns.view(dtype).to(torch.float64).numpy()
    return values[~np.isnan(values)]


def random_values(name: str, count: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """``count`` finite values of a format, uniform in bit-pattern space (all binades and subnormals)."""
    dtype, int_type = TORCH_TYPES[name]
    bits = torch.iinfo(int_type).bits
    raw = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=4 * count, dtype=np.int64)
    values = torch.from_numpy(raw).to(int_type).view(dtype).to(torch.float64).numpy()
    return values[np.isfinite(values)][:count]


def torch_next(values: npt.ArrayLike, toward: float, name: str) -> npt.NDArray[np.float64]:
    """``nextafter`` in the format, computed by torch on tensors of that dtype; by numpy's ``float16`` where torch
    has no float16 ``nextafter`` on CPU (torch 2.1)."""
    dtype, _ = TORCH_TYPES[name]
    t = torch.tensor(np.asarray(values, dtype=np.float64)).to(dtype)
    try:
        return torch.nextafter(t, torch.full_like(t, toward)).to(torch.float64).numpy()
    except RuntimeError:
        if name != "float16":
            raise
        half = np.asarray(values, dtype=np.float64).astype(np.float16)
        return np.nextafter(half, np.float16(toward)).astype(np.float64)


def _is_even(value: float, name: str) -> bool:
    dtype, int_type = TORCH_TYPES[name]
    return int(torch.tensor([value], dtype=torch.float64).to(dtype).view(int_type).item()) % 2 == 0


def oracle_round(exact: Fraction, name: str) -> float:
    """Round an exact rational to a format, nearest with ties to even, overflow to inf: the nearest of the
    candidates around torch's (possibly doubly rounded) conversion, compared in exact arithmetic."""
    dtype, _ = TORCH_TYPES[name]
    largest = float(torch.finfo(dtype).max)
    below_max = float(torch_next([largest], 0.0, name)[0])
    threshold = Fraction(largest) + (Fraction(largest) - Fraction(below_max)) / 2
    if abs(exact) >= threshold:
        return float("inf") if exact > 0 else float("-inf")
    approx = float(torch.tensor(float(exact), dtype=torch.float64).to(dtype).to(torch.float64))
    approx = max(min(approx, largest), -largest)
    candidates = {approx, *torch_next([approx], np.inf, name).tolist(), *torch_next([approx], -np.inf, name).tolist()}
    finite = [c for c in candidates if np.isfinite(c)]
    best = min(abs(Fraction(c) - exact) for c in finite)
    nearest = [c for c in finite if abs(Fraction(c) - exact) == best]
    if len(nearest) > 1:
        nearest = [c for c in nearest if _is_even(c, name)]
    result = nearest[0]
    if result == 0:
        return -0.0 if exact < 0 else 0.0
    return result
