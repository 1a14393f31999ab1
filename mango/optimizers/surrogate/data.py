"""The data the GP is fit on: which of the told points, in which order.

Past ``max_points`` points an exact GP costs too much, so :func:`training_set` keeps the best tenth
*by rank* (the incumbent first) and fills the rest with the points nearest the trust region's
centre.  Only the order of the values is read, never their level, so a response ``a * f + b``
(a > 0) selects exactly the points ``f`` selects -- a membrane potential, a selectivity difference or
a loss may sit anywhere on the real line.  The hyperparameters are fit on the first rows
(:func:`.gp.fit`'s ``fit_points``), which therefore hold the best points too.
"""

from __future__ import annotations

import numpy as np
import torch

from .gp import sqdist

__all__ = ["training_set"]


def training_set(F: torch.Tensor, y: np.ndarray, center: torch.Tensor, max_points: int) -> np.ndarray:
    """At most ``max_points`` row indices of ``F [n, D]``, most relevant first.

    First the best ``max(1, m // 10)`` points by value (``m = min(max_points, n)``), best
    first, ties in the order told; then the other points by distance of their features to ``center [D]``,
    nearest first, ties in the order told.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    m = min(int(max_points), n)
    k = max(1, m // 10)
    top = np.argsort(-y, kind="stable")[:k]
    rest = np.ones(n, dtype=bool)
    rest[top] = False
    rest = np.flatnonzero(rest)
    if m - k <= 0 or len(rest) == 0:
        return top[:m]
    d = sqdist(center[None], F[torch.as_tensor(rest, device=F.device)])[0].cpu().numpy()
    return np.concatenate([top, rest[np.argsort(d, kind="stable")[:m - k]]])
