"""The model: an exact Gaussian process with an isotropic RBF kernel on stimulus features.

Small functions over plain tensors (float64 on the features' device):

* :func:`standardize` -- the one standardization of the targets (mean 0, std 1 over the
  training rows), used both to fit the hyperparameters and to predict, so a response
  ``a * f + b`` (a > 0) gives the model exactly the problem ``f`` gives it.
* :func:`fit` -- hyperparameters (lengthscale, signal and noise variance, constant
  mean) by maximizing the log marginal likelihood with L-BFGS, from the previous
  batch's values and from a fresh start with much noise, keeping the better;
  returns a :class:`GP` (the Cholesky factor and the weights, ready to predict).
* :meth:`GP.predict` -- posterior mean and variance.
* :func:`fantasize` -- the model also conditioned on pending points at its own mean (points asked and
  not yet told, in a pipelined loop).

Numerical failures are loud: a start whose line search fails is dropped with the
others still tried (and a :class:`~mango.errors.NumericalWarning` when every start
fails); a kernel matrix that no jitter makes positive definite raises
:class:`ModelFitError`.  Posterior sample paths (the acquisition) live in
:mod:`.acquisition`.

Why a GP on the *images*: the neuron is a function of the stimulus only, so two
latents that make the same image must get the same prediction; a kernel on the
images also gives the unordered codes of a VQ-VAE a geometry.  Measurements in
benchmarks/surrogate_design.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ...errors import NumericalError, NumericalWarning

__all__ = ["GP", "ModelFitError", "fantasize", "fit", "sqdist", "standardize"]

_LOG_NOISE_MIN = math.log(1e-6)
_LOG_NOISE_MAX = math.log(1.0)
_JITTER_TRIES = 6  # the final factorization adds noise + 1e-8, then 10x more each try


class ModelFitError(NumericalError):
    """The GP could not be factorized (the kernel matrix is not positive definite at any jitter tried) or its
    weights are not finite.  ``fit_failures``: the hyperparameter starts that failed before it."""

    def __init__(self, msg: str, fit_failures: int = 0):
        super().__init__(msg)
        self.fit_failures = fit_failures


def standardize(y: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``(y - mean) / std`` with the mean and std (1 when the values are constant) it used."""
    y_mean = float(y.mean())
    sd = float(y.std()) if len(y) > 1 else 0.0
    y_std = sd if sd > 0 and math.isfinite(sd) else 1.0
    return (y - y_mean) / y_std, y_mean, y_std


def sqdist(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances ``[len(a), len(b)]`` (clamped at 0); ``b_sq``: ``(b * b).sum(1)``, when known."""
    if b_sq is None:
        b_sq = (b * b).sum(1)
    d = (a * a).sum(1, keepdim=True) - 2.0 * a @ b.T + b_sq[None, :]
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
    fit_failures: int = 0  # hyperparameter starts whose optimizer raised or ended non-finite
    x_sq: torch.Tensor | None = None  # (X * X).sum(1), computed once: every kernel row against X needs it

    def __post_init__(self):
        if self.x_sq is None:
            self.x_sq = (self.X * self.X).sum(1)

    @property
    def hypers(self) -> list[float]:
        return [self.log_ls, self.log_sf2, self.log_sn2, self.mean0]

    def cross(self, Xs: torch.Tensor) -> torch.Tensor:
        """The kernel between ``Xs`` and the training features ``[len(Xs), n]``."""
        return math.exp(self.log_sf2) * torch.exp(-0.5 * sqdist(Xs, self.X, self.x_sq) / math.exp(2 * self.log_ls))

    def mean(self, Xs: torch.Tensor) -> torch.Tensor:
        """Posterior mean of the latent function at ``Xs``, in the original units of y (no variance: cheaper)."""
        return (self.mean0 + self.cross(Xs) @ self.alpha) * self.y_std + self.y_mean

    def train_mean(self) -> torch.Tensor:
        """Posterior mean at the training rows, in the original units of y, without a kernel evaluation:
        ``K alpha = (K + s I) alpha - s alpha = (y - mean0) - s alpha`` (``s`` the diagonal term factorized)."""
        return (self.y - math.exp(self.log_sn2) * self.alpha) * self.y_std + self.y_mean

    def predict(self, Xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function at ``Xs``, in the original units of y."""
        Ks = self.cross(Xs)
        mu = self.mean0 + Ks @ self.alpha
        v = torch.linalg.solve_triangular(self.chol, Ks.T, upper=False)
        var = (math.exp(self.log_sf2) - (v * v).sum(0)).clamp_min(1e-12)
        return mu * self.y_std + self.y_mean, var * self.y_std ** 2


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

    The targets are standardized once, over all ``n`` rows; the hyperparameters are fit on the first
    ``fit_points`` rows in those same units (the caller puts the most relevant first: the marginal
    likelihood's gradient costs O(n^3) per evaluation, the final solve once), so what is fit is what
    predicts.  Raises :class:`ModelFitError` when no jitter makes the kernel matrix factorizable.
    """
    ys, y_mean, y_std = standardize(y)
    d2 = sqdist(X, X)
    m = min(len(X), int(fit_points))
    sub = d2[:m, :m]
    log_ls0 = math.log(max(float(sub[sub > 0].median().sqrt()), 1e-6)) if bool((sub > 0).any()) else 0.0
    # a cold fit starts twice (little noise, much noise), a warm one from `init` and from much noise: from the
    # previous values alone it can stay in the corner where a short lengthscale explains noise as wiggles
    # (measured on Poisson responses); the better fit is kept
    noisy = [log_ls0, 0.0, math.log(0.3), 0.0]
    starts = [init if init is not None else [log_ls0, 0.0, math.log(1e-2), 0.0], noisy]
    params, failed = torch.tensor(starts[0], dtype=X.dtype, device=X.device), 0
    if steps > 0 and m > 2:
        params, failed = _fit_hypers(starts, X[:m], ys[:m], d2[:m, :m], log_ls0, steps)
    log_ls, log_sf2, log_sn2, mean0 = [float(v) for v in params]
    log_sn2 = min(max(log_sn2, _LOG_NOISE_MIN), _LOG_NOISE_MAX)
    log_sf2 = min(max(log_sf2, -6.0), 6.0)
    return _factorize(X, ys, y_mean, y_std, d2, log_ls, log_sf2, log_sn2, mean0, failed)


def fantasize(model: GP, Xp: torch.Tensor) -> GP:
    """``model`` also conditioned on ``Xp [m, D]`` taking its posterior mean there (the "kriging believer").

    For the points asked and not yet told (a pipelined loop asks the next batch while the rig presents the
    last): the posterior mean is unchanged -- the standardization and hyperparameters are ``model``'s --
    but the variance at and near ``Xp`` falls to the noise's, so Thompson paths drawn from the result look
    for their maxima elsewhere instead of proposing the pending points again.
    """
    if len(Xp) == 0:
        return model
    Xp = Xp.to(dtype=model.X.dtype, device=model.X.device)
    mu, _ = model.predict(Xp)
    X = torch.cat([model.X, Xp])
    ys = torch.cat([model.y, (mu - model.y_mean) / model.y_std])
    return _factorize(X, ys, model.y_mean, model.y_std, sqdist(X, X), model.log_ls, model.log_sf2, model.log_sn2,
                      model.mean0, 0)


def _factorize(X, ys, y_mean: float, y_std: float, d2, log_ls: float, log_sf2: float, log_sn2: float, mean0: float,
               failed: int) -> GP:
    """The GP of fixed hyperparameters on ``X``, standardized targets ``ys``: its Cholesky factor and weights."""
    K = torch.exp(log_sf2 - 0.5 * d2 / math.exp(2 * log_ls))
    jitter = math.exp(log_sn2) + 1e-8
    eye = torch.eye(len(X), dtype=X.dtype, device=X.device)
    for _ in range(_JITTER_TRIES):
        L, info = torch.linalg.cholesky_ex(K + jitter * eye)
        if int(info) == 0:
            break
        jitter *= 10.0
    else:
        raise ModelFitError(f"the GP's kernel matrix ({len(X)} points) is not positive definite even with "
                            f"{jitter / 10.0:.3g} added to its diagonal (lengthscale {math.exp(log_ls):.3g}, "
                            f"signal variance {math.exp(log_sf2):.3g}); are the features finite and not all "
                            "identical?", fit_failures=failed)
    alpha = torch.cholesky_solve((ys - mean0)[:, None], L)[:, 0]
    if not bool(torch.isfinite(alpha).all()):
        raise ModelFitError(f"the GP's weights are not finite ({len(X)} points, jitter {jitter:.3g}).",
                            fit_failures=failed)
    return GP(X, ys, y_mean, y_std, log_ls, log_sf2, math.log(jitter), mean0, L, alpha, fit_failures=failed)


def _fit_hypers(starts: list, X: torch.Tensor, ys: torch.Tensor, d2: torch.Tensor, log_ls0: float,
                steps: int) -> tuple[torch.Tensor, int]:
    """The hyperparameters of the best of ``starts`` after L-BFGS (the first start's values, with a warning,
    when none ends finite) and the number of starts whose optimizer raised or ended non-finite."""
    best, params, failures = math.inf, None, []
    for start in starts:
        p = torch.tensor(start, dtype=X.dtype, device=X.device, requires_grad=True)
        opt = torch.optim.LBFGS([p], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = _nll(p, X, ys, d2, log_ls0)
            if torch.isfinite(loss):
                loss.backward()
            return loss

        try:
            opt.step(closure)
        except RuntimeError as e:  # a failed line search: keep this start's last finite values, try the others
            failures.append(f"{type(e).__name__}: {e}")
        if torch.isfinite(p.detach()).all():
            with torch.no_grad():
                val = float(_nll(p, X, ys, d2, log_ls0))
            if val < best:
                best, params = val, p.detach()
            elif not math.isfinite(val):
                failures.append("the marginal likelihood is not finite")
        else:
            failures.append("non-finite hyperparameters")
    if params is None:
        warnings.warn(f"surrogate: the GP's hyperparameter fit failed from all {len(starts)} starts "
                      f"({'; '.join(failures)}); the first start's values are used.", NumericalWarning, stacklevel=3)
        params = torch.tensor(starts[0], dtype=X.dtype, device=X.device)
    return params, len(failures)
