"""The model: an exact Gaussian process with an isotropic RBF kernel on stimulus features.

Small functions over plain tensors (float64 on the features' device):

* :func:`fit` -- hyperparameters (lengthscale, signal and noise variance, constant
  mean) by maximizing the log marginal likelihood with L-BFGS, from the previous
  batch's values and from a fresh start with much noise, keeping the better;
  returns a :class:`GP` (the Cholesky factor and the weights, ready to predict).
* :meth:`GP.predict` -- posterior mean and variance.
* :meth:`GP.sample_paths` -- ``q`` functions drawn from the posterior by *pathwise
  conditioning* (Wilson et al. 2020): a prior path from random Fourier features
  plus an exact kernel update.  The paths are ordinary differentiable functions
  of the features, so an acquisition built on them can be maximized by gradient
  through the generator, and ``q`` independent paths give ``q`` different
  maximizers (a diverse batch: batch Thompson sampling).

Why a GP on the *images*: the neuron is a function of the stimulus only, so two
latents that make the same image must get the same prediction; a kernel on the
images also gives the unordered codes of a VQ-VAE a geometry.  Measurements in
benchmarks/surrogate_design.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["GP", "fit", "sqdist"]

_LOG_NOISE_MIN = math.log(1e-6)
_LOG_NOISE_MAX = math.log(1.0)


def sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[len(a), len(b)]`` (clamped at 0)."""
    d = (a * a).sum(1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return d.clamp_min(0.0)


@dataclass
class GP:
    """A fitted GP: training features ``X`` [n, D], standardized targets, hyperparameters, Cholesky factor."""

    X: torch.Tensor
    y: torch.Tensor  # standardized
    y_mean: float
    y_std: float
    log_ls: float
    log_sf2: float
    log_sn2: float
    mean0: float
    chol: torch.Tensor
    alpha: torch.Tensor  # (K + sn2 I)^-1 (y - mean0)

    @property
    def hypers(self) -> list[float]:
        return [self.log_ls, self.log_sf2, self.log_sn2, self.mean0]

    def kernel(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return math.exp(self.log_sf2) * torch.exp(-0.5 * sqdist(A, B) / math.exp(2 * self.log_ls))

    def predict(self, Xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function at ``Xs``, in the original units of y."""
        Ks = self.kernel(Xs, self.X)
        mu = self.mean0 + Ks @ self.alpha
        v = torch.linalg.solve_triangular(self.chol, Ks.T, upper=False)
        var = (math.exp(self.log_sf2) - (v * v).sum(0)).clamp_min(1e-12)
        return mu * self.y_std + self.y_mean, var * self.y_std ** 2

    def sample_paths(self, q: int, generator: torch.Generator, n_features: int = 1024,
                     temper: float = 1.0) -> "Paths":
        """``q`` posterior function draws (pathwise conditioning with random Fourier features).

        ``temper`` < 1 draws ``m + temper * (f - m)`` instead of ``f`` (``m`` the posterior mean): paths whose
        deviations from the mean are scaled down, a greedier Thompson sampling (``0`` is the mean itself).
        """
        D = self.X.shape[1]
        dev, dt = self.X.device, self.X.dtype
        W = torch.randn(D, n_features, generator=generator, dtype=dt).to(dev) / math.exp(self.log_ls)
        b = (2 * math.pi) * torch.rand(n_features, generator=generator, dtype=dt).to(dev)
        w = torch.randn(n_features, q, generator=generator, dtype=dt).to(dev)
        eps = torch.randn(len(self.X), q, generator=generator, dtype=dt).to(dev) * math.exp(0.5 * self.log_sn2)
        scale = math.sqrt(2.0 * math.exp(self.log_sf2) / n_features)
        prior_X = scale * torch.cos(self.X @ W + b) @ w  # [n, q]
        resid = (self.y - self.mean0)[:, None] - prior_X - eps
        v = torch.cholesky_solve(resid, self.chol)  # [n, q]
        if temper != 1.0:  # m + t (f - m) = mean0 + t prior(x) + k(x, X) (t v + (1 - t) alpha)
            w = temper * w
            v = temper * v + (1.0 - temper) * self.alpha[:, None]
        return Paths(self, W, b, w, scale, v)


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
        f = self.gp.mean0 + prior + self.gp.kernel(Xs, self.gp.X) @ self.v
        return f * self.gp.y_std + self.gp.y_mean

    def diagonal(self, Xs: torch.Tensor) -> torch.Tensor:
        """Path ``j`` evaluated at ``Xs[j]`` only (``len(Xs) == q``): the objective of a gradient step."""
        prior = self.scale * (torch.cos(Xs @ self.W + self.b) * self.w.T).sum(1)
        update = (self.gp.kernel(Xs, self.gp.X) * self.v.T).sum(1)
        return (self.gp.mean0 + prior + update) * self.gp.y_std + self.gp.y_mean


def _nll(params: torch.Tensor, X: torch.Tensor, y: torch.Tensor, d2: torch.Tensor, log_ls0: float) -> torch.Tensor:
    log_ls, log_sf2, log_sn2, mean0 = params
    log_sn2 = log_sn2.clamp(_LOG_NOISE_MIN, _LOG_NOISE_MAX)
    K = torch.exp(log_sf2 - 0.5 * d2 / torch.exp(2 * log_ls))
    K = K + (torch.exp(log_sn2) + 1e-8) * torch.eye(len(X), dtype=X.dtype, device=X.device)
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) != 0:
        return torch.tensor(float("inf"), dtype=X.dtype)
    r = (y - mean0)[:, None]
    a = torch.cholesky_solve(r, L)
    n = len(X)
    # weak priors keep the fit away from degenerate corners at small n (as BoTorch's defaults do); the
    # lengthscale's, centred on the median distance, keeps noise from being explained as wiggles
    prior = (0.5 * (log_sf2 / 2.0) ** 2 + 0.5 * ((log_sn2 - math.log(1e-2)) / 3.0) ** 2
             + 0.5 * ((log_ls - log_ls0) / 0.75) ** 2)
    return (0.5 * (r * a).sum() + torch.log(torch.diagonal(L)).sum()) / n + 0.5 * math.log(2 * math.pi) + prior / n


def fit(X: torch.Tensor, y: torch.Tensor, init: list[float] | None = None, steps: int = 25,
        fit_points: int = 256) -> GP:
    """Fit a GP to features ``X [n, D]`` and values ``y [n]`` (float64 tensors).

    The hyperparameters are fit on the first ``fit_points`` rows (the caller puts the most relevant
    first): the marginal likelihood's gradient costs O(n^3) per evaluation, the final solve once.
    """
    y_mean = float(y.mean())
    y_std = float(y.std()) if len(y) > 1 and float(y.std()) > 0 else 1.0
    ys = (y - y_mean) / y_std
    d2 = sqdist(X, X)
    m = min(len(X), int(fit_points))
    sub = d2[:m, :m]
    log_ls0 = math.log(max(float(sub[sub > 0].median().sqrt()), 1e-6)) if bool((sub > 0).any()) else 0.0
    # a cold fit starts twice (little noise, much noise), a warm one from `init` and from much noise: from the
    # previous values alone it can stay in the corner where a short lengthscale explains noise as wiggles
    # (measured on Poisson responses); the better fit is kept
    noisy = [log_ls0, 0.0, math.log(0.3), 0.0]
    starts = [init if init is not None else [log_ls0, 0.0, math.log(1e-2), 0.0], noisy]
    params = torch.tensor(starts[0], dtype=X.dtype, device=X.device)
    if steps > 0 and m > 2:
        ys_m = (ys[:m] - ys[:m].mean()) / (ys[:m].std() if float(ys[:m].std()) > 0 else 1.0)
        d2_m = d2[:m, :m]
        best = math.inf
        for start in starts:
            p = torch.tensor(start, dtype=X.dtype, device=X.device, requires_grad=True)
            opt = torch.optim.LBFGS([p], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = _nll(p, X[:m], ys_m, d2_m, log_ls0)
                if torch.isfinite(loss):
                    loss.backward()
                return loss

            try:
                opt.step(closure)
            except RuntimeError:  # a failed line search keeps the last finite parameters
                pass
            if torch.isfinite(p.detach()).all():
                with torch.no_grad():
                    val = float(_nll(p, X[:m], ys_m, d2_m, log_ls0))
                if val < best:
                    best, params = val, p.detach()
    log_ls, log_sf2, log_sn2, mean0 = [float(v) for v in params]
    log_sn2 = min(max(log_sn2, _LOG_NOISE_MIN), _LOG_NOISE_MAX)
    log_sf2 = min(max(log_sf2, -6.0), 6.0)
    K = torch.exp(log_sf2 - 0.5 * d2 / math.exp(2 * log_ls))
    jitter = math.exp(log_sn2) + 1e-8
    eye = torch.eye(len(X), dtype=X.dtype, device=X.device)
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(K + jitter * eye)
        if int(info) == 0:
            break
        jitter *= 10.0
    alpha = torch.cholesky_solve((ys - mean0)[:, None], L)[:, 0]
    return GP(X, ys, y_mean, y_std, log_ls, log_sf2, math.log(jitter), mean0, L, alpha)
