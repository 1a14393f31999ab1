"""The field's Bayesian-optimization standard as an optional peer: BoTorch's TuRBO-1.

``turbo`` follows BoTorch's TuRBO tutorial (Eriksson et al. 2019): a
``SingleTaskGP`` with an ARD Matérn-5/2 kernel on the unit cube, fit by marginal
likelihood every batch; a trust region around the best point whose box is
stretched by the lengthscales; Thompson sampling over ``n_candidates`` points
that perturb ``min(1, 20/d)`` of the coordinates; the tutorial's success and
failure tolerances; a restart from a fresh Sobol design when the region
collapses.  It searches a Box (a Grid through its Box); it is registered only
when ``botorch`` is installed (``pip install 'mango-am[peers]'``).

Cost: the exact GP with one lengthscale per dimension is refit on every point
each batch, and Thompson sampling draws jointly over the candidates, so its time
per query grows quickly with the history (hundreds of queries in hundreds of
dimensions take minutes).  Candidates: 2,000 by default (the tutorial's lower
bound; its ``min(5000, 200 d)`` costs 20-25 s per batch on 2 CPU cores at d=784).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ...errors import ConfigError
from ..base import Optimizer

__all__ = ["TurboOptimizer"]


class TurboOptimizer(Optimizer):
    """BoTorch TuRBO-1 (tutorial settings).  ``n_init``: Sobol points before the model (default
    ``min(2 d, 20)``: the tutorial's ``2 d`` is more than a lab budget in hundreds of dimensions).  The
    budget is never read."""

    name = "turbo"
    native = ("box",)
    defaults = {"n_init": None, "n_candidates": None, "success_tol": 10, "failure_tol": None}

    def _setup(self) -> None:
        for key, low in (("n_init", 1), ("n_candidates", 1), ("success_tol", 1), ("failure_tol", 1)):
            v = self.params[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low):
                raise ConfigError(f"turbo: {key} must be an integer >= {low}" + (" (or null: the default)" if
                                  self.defaults[key] is None else "") + f", got {v!r}.")
        d = self.space.dim
        n_init = self.params["n_init"]
        if n_init is None:
            n_init = min(2 * d, 20)
        self.n_init = int(n_init)
        q = int(self.batch_size or 10)
        self.length, self.succ, self.fail = 0.8, 0, 0
        self.fail_tol = int(self.params["failure_tol"] or math.ceil(max(4.0 / q, d / q)))
        # the tutorial's rule is min(5000, max(2000, 200 d)); Thompson sampling draws jointly over the
        # candidates (a Cholesky of their covariance): 5,000 cost 20-25 s per batch on 2 CPU cores at d=784,
        # so the default is the rule's lower bound, 2,000 (about 1/15 of that cost)
        self.n_cand = int(self.params["n_candidates"] or min(2000, max(200, 200 * d)))
        self.X: list[np.ndarray] = []  # unit coordinates of the told points of the current region
        self.Y: list[float] = []
        self._design: list[np.ndarray] = []
        self._sobol_seed = int(self.rng.integers(0, 2 ** 31))

    def _unit(self, x):
        return (np.asarray(x, float) - self.space.low) / (self.space.high - self.space.low)

    def _ask(self, n: int) -> np.ndarray:
        out = []
        while n > 0 and (self._design or len(self.X) + sum(len(o) for o in out) < self.n_init):
            if not self._design:
                from torch.quasirandom import SobolEngine

                eng = SobolEngine(self.space.dim, scramble=True, seed=int(self.rng.integers(0, 2 ** 31)))
                self._design = list(eng.draw(self.n_init).double().numpy())
            take = min(n, len(self._design))
            out.append(np.asarray(self._design[:take]))
            del self._design[:take]
            n -= take
        if n > 0:
            out.append(self._propose(n) if len(self.X) >= 2 else self.rng.random((n, self.space.dim)))
        u = np.concatenate(out)
        return self.space.clip(self.space.low + u * (self.space.high - self.space.low))

    def _propose(self, q: int) -> np.ndarray:
        from botorch.fit import fit_gpytorch_mll
        from botorch.generation import MaxPosteriorSampling
        from botorch.models import SingleTaskGP
        from gpytorch.constraints import Interval
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.likelihoods import GaussianLikelihood
        from gpytorch.mlls import ExactMarginalLogLikelihood

        d = self.space.dim
        X = torch.as_tensor(np.asarray(self.X), dtype=torch.float64)
        Y = torch.as_tensor(self.Y, dtype=torch.float64)[:, None]
        Y = (Y - Y.mean()) / (Y.std() if len(Y) > 1 and Y.std() > 0 else 1.0)
        with torch.random.fork_rng():
            torch.manual_seed(int(self.rng.integers(0, 2 ** 62)))
            likelihood = GaussianLikelihood(noise_constraint=Interval(1e-8, 1e-3))
            covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=d, lengthscale_constraint=Interval(0.005, 4.0)))
            model = SingleTaskGP(X, Y, covar_module=covar, likelihood=likelihood)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
                except Exception:  # noqa: BLE001 - a failed fit keeps the initial hyperparameters, as BoTorch warns
                    pass
            x_center = X[Y.argmax(), :].clone()
            weights = model.covar_module.base_kernel.lengthscale.squeeze().detach().reshape(-1)
            weights = weights / weights.mean()
            weights = weights / torch.prod(weights.pow(1.0 / len(weights)))
            lb = torch.clamp(x_center - weights * self.length / 2.0, 0.0, 1.0)
            ub = torch.clamp(x_center + weights * self.length / 2.0, 0.0, 1.0)
            from torch.quasirandom import SobolEngine

            sobol = SobolEngine(d, scramble=True, seed=int(self.rng.integers(0, 2 ** 31)))
            pert = lb + (ub - lb) * sobol.draw(self.n_cand).to(torch.float64)
            prob = min(20.0 / d, 1.0)
            mask = torch.rand(self.n_cand, d, dtype=torch.float64) <= prob
            ind = torch.where(mask.sum(dim=1) == 0)[0]
            mask[ind, torch.randint(0, d, size=(len(ind),))] = True
            cand = x_center.expand(self.n_cand, d).clone()
            cand[mask] = pert[mask]
            import gpytorch

            with torch.no_grad(), gpytorch.settings.max_cholesky_size(float("inf")):  # as in the tutorial
                ts = MaxPosteriorSampling(model=model, replacement=False)
                nxt = ts(cand, num_samples=q)
        return nxt.detach().numpy()

    def _tell(self, points, values) -> None:
        u = self._unit(points)
        if len(self.X) >= self.n_init and self.Y:  # a trust-region step
            if float(np.max(values)) > max(self.Y) + 1e-3 * abs(max(self.Y)):
                self.succ, self.fail = self.succ + 1, 0
            else:
                self.succ, self.fail = 0, self.fail + 1
            if self.succ == int(self.params["success_tol"]):
                self.length, self.succ = min(2.0 * self.length, 1.6), 0
            elif self.fail == self.fail_tol:
                self.length, self.fail = self.length / 2.0, 0
        self.X.extend(u)
        self.Y.extend(float(v) for v in values)
        if self.length < 0.5 ** 7:  # restart: a fresh design, a fresh model
            self.length, self.succ, self.fail = 0.8, 0, 0
            self.X, self.Y, self._design = [], [], []
