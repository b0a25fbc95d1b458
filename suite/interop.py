"""Whether torch and numpy can exchange arrays in this installation.

Every number the suite measures crosses between torch and numpy (``torch.from_numpy``, ``Tensor.numpy``).  A torch
built against numpy 1.x (the releases before 2.3; measured on 2.2.2) cannot do so under numpy 2: it imports, but
each exchange raises ``RuntimeError: Numpy is not available``.  The suite checks once, before it measures
anything, and stops with one line that says what to install, instead of failing in every case and test.
"""

from __future__ import annotations

import numpy as np
import torch

from suite.errors import UsageError


def numpy_interop_problem() -> str | None:
    """Why torch and numpy cannot exchange arrays here, or None when they can (both ways)."""
    try:
        back = torch.from_numpy(np.arange(3.0)).numpy()
    except RuntimeError as exc:
        return (f"torch {torch.__version__} cannot exchange arrays with numpy {np.__version__} ({exc}); "
                f"a torch built against numpy 1.x (before 2.3) needs numpy<2: pip install 'numpy<2'")
    if back.tolist() != [0.0, 1.0, 2.0]:
        return f"torch {torch.__version__} and numpy {np.__version__} exchange arrays wrongly"
    return None


def require_numpy_interop() -> None:
    """Refuse to go on (:class:`UsageError`: one line, exit status 2) when torch and numpy cannot exchange arrays."""
    problem = numpy_interop_problem()
    if problem:
        raise UsageError(problem)
