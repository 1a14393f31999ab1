"""The acquisition optimizers: where each Thompson path is highest, inside the trust region.

* :func:`distinct_argmax` -- each path's best candidate, no candidate taken twice;
* :func:`ascend` -- gradient ascent of each path from its pick, *through the generator*, clipped to
  the region's box (continuous spaces with a differentiable generator or none);
* :func:`evolve` -- a few generations of one-position mutations of each pick, scored on its own
  path (VQ-VAE codes, opaque generators).

``features`` is a :class:`~.features.Features`; ``paths`` an :class:`~.acquisition.Paths`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["ascend", "distinct_argmax", "evolve"]


def distinct_argmax(scores: torch.Tensor) -> np.ndarray:
    """Row index of each column's maximum, no row taken twice (greedy in column order)."""
    s = scores.detach().cpu().numpy().copy()
    out = []
    for j in range(s.shape[1]):
        i = int(np.argmax(s[:, j]))
        out.append(i)
        s[i, :] = -np.inf
    return np.asarray(out)


def ascend(paths, features, u0: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: int,
           lr: float) -> np.ndarray:
    """Gradient ascent of path ``j`` from ``u0[j]`` (unit coordinates) inside ``[lo, hi]``; each path's best point.

    A step whose value is not finite is never kept: the result is the best finite point seen.
    """
    dev = features.device
    lo_t = torch.as_tensor(lo, dtype=torch.float32, device=dev)
    hi_t = torch.as_tensor(hi, dtype=torch.float32, device=dev)
    u = torch.tensor(u0, dtype=torch.float32, device=dev, requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    best_u = u.detach().clone()
    best_val = torch.full((len(u0),), -math.inf, dtype=torch.float64, device=dev)
    for i in range(steps + 1):
        val = paths.diagonal(features.from_unit(u))
        with torch.no_grad():  # u is inside the region here: keep each path's best point
            better = val > best_val
            best_u[better] = u[better]
            best_val = torch.where(better, val, best_val)
        if i == steps:
            break
        # autograd.grad, not backward(): no gradient is computed for (or left on) the generator's weights
        (u.grad,) = torch.autograd.grad(-val.sum(), [u])
        opt.step()
        with torch.no_grad():
            u.copy_(torch.minimum(torch.maximum(u, lo_t), hi_t))
    return best_u.cpu().numpy().astype(float)


def evolve(paths, features, pts: np.ndarray, center: np.ndarray, sizes: np.ndarray, cap: int, rounds: int,
           rng: np.random.Generator, kids: int = 8) -> np.ndarray:
    """``rounds`` generations of ``kids`` one-position mutations of each pick ``pts[j]`` (codes), scored on
    path ``j``; a mutant replaces its parent when better and differs from ``center`` in at most ``cap``
    positions (the region)."""
    q, d = pts.shape
    with torch.no_grad():
        best = paths.diagonal(features(pts))
    for _ in range(rounds):
        mut = np.repeat(pts, kids, axis=0)
        pos = rng.integers(0, d, len(mut))
        mut[np.arange(len(mut)), pos] = (mut[np.arange(len(mut)), pos] + rng.integers(1, sizes[pos])) % sizes[pos]
        ok = (mut != np.repeat(center[None], len(mut), 0)).sum(1) <= cap  # stay inside the region
        with torch.no_grad():
            f = paths(features(mut))  # [q*kids, q]
        own = f[torch.arange(len(mut)), torch.as_tensor(np.repeat(np.arange(q), kids))].cpu().numpy()
        own[~ok] = -np.inf
        own = own.reshape(q, kids)
        j = own.argmax(1)
        gain = own[np.arange(q), j] > best.cpu().numpy()
        for i in np.flatnonzero(gain):
            pts[i] = mut[i * kids + j[i]]
            best[i] = float(own[i, j[i]])
    return pts
