"""Features the model sees: the stimulus a point makes, or the point itself.

:class:`Features` turns points of a space into feature vectors ``[n, D]`` (float64):

* with a generator: the generated images, flattened (average-pooled to at most
  ``max_dim`` values for large images), so the model works in stimulus space;
* with a generator and a ``backbone`` (a frozen pretrained network cut at a
  layer, :class:`mango.optimizers.inception.readout.Backbone`): that layer's activations
  to the generated images, so distances are the backbone's;
* without one: the point in unit coordinates (a Box or Grid scaled to [0, 1]^d,
  a Codebook one-hot).

For continuous spaces :meth:`Features.from_unit` is differentiable in the unit
coordinates (through :meth:`mango.generators.Generator.decode` when there is a
generator), which is what the gradient acquisition optimizer needs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, NumericalError

__all__ = ["Features", "to_unit", "from_unit"]


def to_unit(space, points: np.ndarray) -> np.ndarray:
    """Points of a Box (coordinates) or Grid (indices) -> [0, 1]^d."""
    if space.kind == "box":
        return (np.asarray(points, float) - space.low) / np.maximum(space.high - space.low, 1e-300)
    if space.kind == "grid":
        return np.asarray(points, float) / np.maximum(space.sizes - 1, 1)
    raise ConfigError(f"unit coordinates exist for Box and Grid spaces, not {space.kind}.")


def from_unit(space, u: np.ndarray) -> np.ndarray:
    """[0, 1]^d -> points of a Box (coordinates) or Grid (nearest indices)."""
    u = np.clip(np.asarray(u, float), 0.0, 1.0)
    if space.kind == "box":
        return space.low + u * (space.high - space.low)
    return np.rint(u * (space.sizes - 1)).astype(np.int64)


class Features:
    """Feature map of a space, through ``generator`` when given (see the module doc)."""

    def __init__(self, space, generator=None, max_dim: int = 4096, device=None, backbone=None):
        if backbone is not None and generator is None:
            raise ConfigError("backbone features need a generator of images; this campaign has none. Drop backbone "
                              "or give a generator.")
        self.space = space
        self.generator = generator
        self.backbone = backbone
        self.device = torch.device(device) if device is not None else (
            generator.device if generator is not None else torch.device("cpu"))
        self.pool = 1
        if backbone is not None:
            backbone.model.to(self.device)
        elif generator is not None:
            c, h, w = generator.output_shape
            while c * math.ceil(h / self.pool) * math.ceil(w / self.pool) > max_dim:
                self.pool *= 2
        if space.kind in ("box", "grid"):
            box = space if space.kind == "box" else space.box
            self._low = torch.as_tensor(box.low, dtype=torch.float32, device=self.device)
            self._span = torch.as_tensor(box.high - box.low, dtype=torch.float32, device=self.device)

    @property
    def differentiable(self) -> bool:
        """Whether :meth:`from_unit` carries gradients (a continuous space, and a differentiable generator or none)."""
        return self.space.kind in ("box", "grid") and (self.generator is None or self.generator.differentiable)

    def _flatten(self, images: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            return self.backbone(images.float()).double()
        if self.pool > 1:
            images = F.avg_pool2d(images, self.pool, ceil_mode=True)
        return images.reshape(len(images), -1).double()

    def __call__(self, points: np.ndarray) -> torch.Tensor:
        """Features of points of the space ``[n, D]`` (no gradient).

        Raises :class:`~mango.errors.NumericalError`, naming the generator (or backbone), when any is NaN or inf.
        """
        points = np.asarray(points)
        if self.generator is not None:
            with torch.no_grad():
                return self._checked(self._flatten(self.generator(points).to(self.device)))
        if self.space.kind == "codebook":
            onehot = np.zeros((len(points), self.space.dim * self.space.codes))
            onehot[np.arange(len(points))[:, None], np.arange(self.space.dim) * self.space.codes + points] = 1.0
            return torch.as_tensor(onehot, device=self.device)
        return torch.as_tensor(to_unit(self.space, points), dtype=torch.float64, device=self.device)

    def _checked(self, feats: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(feats).all(1)
        if bool(bad.any()):
            who = (f"the backbone {self.backbone.spec} ({self.backbone.layer}) on the images of the generator "
                   f"{self.generator!r}"
                   if self.backbone is not None else f"the generator {self.generator!r}")
            raise NumericalError(f"{who} gave non-finite values (NaN or inf) for {int(bad.sum())} of {len(feats)} "
                                 "points; the surrogate model cannot compare such stimuli. Check the generator's "
                                 "weights and the range of its latent space.")
        return feats

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        """Differentiable features of unit coordinates ``u [n, d]`` of a Box or Grid (a Grid's Box values)."""
        if self.generator is None:
            return u.double()
        z = self._low + u.float() * self._span
        return self._flatten(self.generator.decode(z))
