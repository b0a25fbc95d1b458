"""Exact functions on numpy arrays (float64 or ``numpy.longdouble``), in forms that neither overflow nor lose
the small tail: the sigmoid and its logarithm, which the error scales, the mechanisms and the kernel replays all
evaluate at logits of any size."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


def log_sigmoid(x: Array) -> Array:
    """``log(1 / (1 + exp(-x)))`` as ``-softplus(-x)``."""
    return np.asarray(-np.logaddexp(np.zeros_like(x), -x))


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))`` as ``exp(-softplus(-x))``."""
    return np.asarray(np.exp(log_sigmoid(x)))
