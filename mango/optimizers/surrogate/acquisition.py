"""The acquisition: batch Thompson sampling with posterior sample paths of the GP.

:func:`sample_paths` draws ``q`` functions from the posterior of a fitted :class:`~.gp.GP` by
*pathwise conditioning* (Wilson et al. 2020): a prior path from random Fourier features plus an
exact kernel update.  The paths are ordinary differentiable functions of the features, so an
acquisition built on them can be maximized by gradient through the generator
(:mod:`.optimize`), and ``q`` independent paths give ``q`` different maximizers (a diverse batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .gp import GP

__all__ = ["Paths", "sample_paths"]


def sample_paths(model: GP, q: int, generator: torch.Generator, n_features: int = 1024,
                 temper: float = 1.0) -> "Paths":
    """``q`` posterior function draws of ``model`` (pathwise conditioning with random Fourier features).

    ``temper`` < 1 draws ``m + temper * (f - m)`` instead of ``f`` (``m`` the posterior mean): paths whose
    deviations from the mean are scaled down, a greedier Thompson sampling (``0`` is the mean itself).
    """
    D = model.X.shape[1]
    dev, dt = model.X.device, model.X.dtype
    W = torch.randn(D, n_features, generator=generator, dtype=dt).to(dev) / math.exp(model.log_ls)
    b = (2 * math.pi) * torch.rand(n_features, generator=generator, dtype=dt).to(dev)
    w = torch.randn(n_features, q, generator=generator, dtype=dt).to(dev)
    eps = torch.randn(len(model.X), q, generator=generator, dtype=dt).to(dev) * math.exp(0.5 * model.log_sn2)
    scale = math.sqrt(2.0 * math.exp(model.log_sf2) / n_features)
    prior_X = scale * torch.cos(model.X @ W + b) @ w  # [n, q]
    resid = (model.y - model.mean0)[:, None] - prior_X - eps
    v = torch.cholesky_solve(resid, model.chol)  # [n, q]
    if temper != 1.0:  # m + t (f - m) = mean0 + t prior(x) + k(x, X) (t v + (1 - t) alpha)
        w = temper * w
        v = temper * v + (1.0 - temper) * model.alpha[:, None]
    return Paths(model, W, b, w, scale, v)


@dataclass
class Paths:
    """``q`` posterior sample functions; ``paths(Xs)`` gives ``[len(Xs), q]`` in the units of y."""

    gp: GP
    W: torch.Tensor
    b: torch.Tensor
    w: torch.Tensor
    scale: float
    v: torch.Tensor

    def __call__(self, Xs: torch.Tensor) -> torch.Tensor:
        prior = self.scale * torch.cos(Xs @ self.W + self.b) @ self.w
        f = self.gp.mean0 + prior + self.gp.cross(Xs) @ self.v
        return f * self.gp.y_std + self.gp.y_mean

    def diagonal(self, Xs: torch.Tensor) -> torch.Tensor:
        """Path ``j`` evaluated at ``Xs[j]`` only (``len(Xs) == q``): the objective of a gradient step."""
        prior = self.scale * (torch.cos(Xs @ self.W + self.b) * self.w.T).sum(1)
        update = (self.gp.cross(Xs) * self.v.T).sum(1)
        return (self.gp.mean0 + prior + update) * self.gp.y_std + self.gp.y_mean
