"""A pretrained feature network and a linear readout per unit: the model of ``inception(backbone=...)``.

The classic inception-loop model (Walker et al. 2019; Bashivan et al. 2019):
a network trained on the stimulus domain gives features, and each recorded
unit's response is a linear function of them, learned from the responses:

* :class:`Backbone`: a frozen torch model cut at a named layer; images in,
  flattened features out, differentiable in the images (for synthesis).
* :class:`LinearReadout`: Bayesian ridge regression of every unit's
  (standardized) responses on the (standardized) features, solved in the dual
  (an ``n x n`` eigendecomposition shared by all units), each unit's ridge
  chosen by exact leave-one-out error over a grid.  It predicts a mean and a
  posterior standard deviation, differentiable in the features; feature
  directions the data never moved along keep their prior uncertainty.

A pretrained network shares what every unit's responses teach across all of
them: ten units' 1,000 responses fit ten readouts of one fixed representation,
where a model learned from scratch must find the representation too.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError

__all__ = ["Backbone", "LinearReadout"]


class Backbone:
    """The frozen model ``spec`` (``zoo:NAME`` or ``FILE.py:FACTORY``) cut at ``layer``: images -> ``[n, D]``."""

    def __init__(self, spec: str, layer: str, device=None):
        from ...zoo.build import build_model  # the optimizers do not import the builders at module level
        from ...oracles.torch import find_layer

        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"backbone must name a model, e.g. 'zoo:cnn-digits' or 'my_net.py:build', got {spec!r}.")
        if not isinstance(layer, str) or not layer:
            raise ConfigError(f"backbone {spec!r} needs backbone_layer, the layer whose output is the features "
                              "(e.g. 'features.relu2' for zoo:cnn-digits; a wrong name lists the model's layers).")
        self.spec, self.layer = spec, layer
        self.model = build_model(spec, device=device)
        self.model.eval()
        for q in self.model.parameters():
            q.requires_grad_(False)
        self.module = find_layer(self.model, layer)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[n, D]`` of images ``[n, C, H, W]`` (differentiable in the images)."""
        from ...oracles.torch import layer_outputs

        try:
            return layer_outputs(self.model, self.module, self.layer, images, stop_after=1)[0].flatten(1)
        except RuntimeError as exc:
            raise ConfigError(f"backbone {self.spec!r} cannot take the generator's images of shape "
                              f"{tuple(images.shape[1:])}: {exc}. Use a backbone trained on stimuli of that "
                              "shape.") from exc


class LinearReadout:
    """Bayesian ridge regression of ``K`` targets on shared features (see the module doc).

    Parameters
    ----------
    ridges : the grid of ridge strengths, relative to the mean eigenvalue of the features' Gram matrix;
        each target takes the one with the least leave-one-out squared error.
    """

    def __init__(self, ridges=tuple(np.logspace(-3, 2, 11))):
        self.ridges = np.asarray(ridges, dtype=float)

    def fit(self, features: np.ndarray, values: np.ndarray) -> "LinearReadout":
        f = np.asarray(features, dtype=float)
        y = np.asarray(values, dtype=float)
        y = y.reshape(len(y), -1)
        n, d = f.shape
        if n < 2:
            raise ConfigError("a linear readout needs at least 2 responses.")
        self.f_mu = f.mean(0)
        sd = f.std(0)
        self.f_sd = np.where(sd > 1e-8 * max(sd.max(), 1e-300), sd, 1.0) * np.sqrt(d)  # |z|^2 ~ 1 per point
        z = (f - self.f_mu) / self.f_sd
        self.y_mu = y.mean(0)
        ysd = y.std(0)
        self.y_sd = np.where(ysd > 0, ysd, 1.0)
        t = (y - self.y_mu) / self.y_sd
        s, u = np.linalg.eigh(z @ z.T)
        keep = s > 1e-10 * max(s.max(), 1e-300)
        s, u = s[keep], u[:, keep]
        ut = u.T @ t  # [r, K]
        base = s.mean() if len(s) else 1.0
        best = np.full(t.shape[1], np.inf)
        self.lam = np.full(t.shape[1], base * self.ridges[-1])
        for r in self.ridges:  # the intercept is not penalized: the hat matrix is 11^T/n + G (G + lam I)^-1
            lam = base * r
            shrink = s / (s + lam)
            resid = t - u @ (ut * shrink[:, None])
            hdiag = 1.0 / n + (u ** 2) @ shrink
            loo = ((resid / np.maximum(1.0 - hdiag, 1e-12)[:, None]) ** 2).mean(0)  # exact leave-one-out residuals
            better = loo < best
            best[better], self.lam[better] = loo[better], lam
        self.noise = best  # leave-one-out mean squared error: the predictive noise, in standardized units
        # primal weights w_j = Z^T (G + lam_j I)^-1 t_j; V = Z^T U S^-1/2 spans the features the data moved along
        coef = np.stack([u @ (ut[:, j] / (s + self.lam[j])) for j in range(t.shape[1])], axis=1)
        self.w = z.T @ coef  # [D, K]
        self.v = (z.T @ u) / np.sqrt(s)  # [D, r]
        self.s = s
        self._torch: dict = {}
        return self

    def _tensors(self, device, dtype) -> dict:
        key = (str(device), dtype)
        if key not in self._torch:
            as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
            self._torch[key] = {k: as_t(getattr(self, k)) for k in ("f_mu", "f_sd", "w", "v", "s", "lam", "noise")}
        return self._torch[key]

    def predict(self, features: torch.Tensor, targets=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized ``(mean, std)`` of every target (``[n, K]``), or of ``targets[i]`` at row ``i`` (``[n]``)."""
        p = self._tensors(features.device, features.dtype)
        z = (features - p["f_mu"]) / p["f_sd"]
        q = z @ p["v"]  # coordinates in the span the data covers
        zz = (z * z).sum(1, keepdim=True)
        qq = (q * q).sum(1, keepdim=True)
        # the posterior variance noise * phi^T (Z^T Z + lam I)^-1 phi, split into the span of the data (through
        # its eigenvalues) and the rest (prior variance: directions no response has constrained)
        inside = (q * q) @ (1.0 / (p["s"][:, None] + p["lam"][None, :]))  # [n, K]
        outside = (zz - qq).clamp_min(0) / p["lam"][None, :]
        var = p["noise"][None, :] * (inside + outside)
        mean = z @ p["w"]
        std = var.clamp_min(0).sqrt()
        if targets is None:
            return mean, std
        rows = torch.arange(len(z), device=z.device)
        return mean[rows, targets], std[rows, targets]

    def to_values(self, mean: np.ndarray) -> np.ndarray:
        """Standardized predictions -> the responses' units."""
        return np.asarray(mean) * self.y_sd + self.y_mu
