"""GAN generator: a continuous latent in a Box, or the paper's Grid discretization of it."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..spaces import Box, Grid
from .base import Generator

__all__ = ["GANGenerator"]


class GANGenerator(Generator):
    """Images from a GAN generator ``model(z [n, latent_dim]) -> images [n, C, H, W]``.

    The space is ``Box(latent_dim, low, high)`` (default [-4, 4], which holds almost
    all of a N(0, 1) prior), or with ``levels`` the Grid ``Grid(Box(...), levels)`` —
    e.g. ``levels=64`` — whose integer points are mapped to Box values before decoding.
    For a zoo model use ``mango.zoo.load_generator("gan-digits")``; ``latent_dim`` is read from
    ``model.latent_dim`` unless given.
    """

    name = "gan"

    def __init__(self, model, low=-4.0, high=4.0, levels: int | None = None, latent_dim: int | None = None,
                 device=None, transform=None):
        if isinstance(model, str):
            raise ConfigError(
                f"GANGenerator needs a model, got the name {model!r}; for a zoo model use "
                f"mango.zoo.load_generator({model!r}) (or pass mango.zoo.load({model!r}))."
            )
        if not callable(model):
            raise ConfigError(f"GANGenerator needs a callable model z -> images, got {type(model).__name__}.")
        latent_dim = latent_dim if latent_dim is not None else getattr(model, "latent_dim", None)
        if latent_dim is None:
            raise ConfigError(
                f"cannot tell the latent size of {type(model).__name__}: pass latent_dim= "
                "or give the model a .latent_dim attribute."
            )
        self.model = self._adopt(model, device)
        self.latent_dim = int(latent_dim)
        self.transform = transform
        self.box = Box(self.latent_dim, low, high)
        self.levels = levels
        self.space = self.box if levels is None else Grid(self.box, levels)
        self.output_shape = self._probe_shape()

    def latent(self, points) -> np.ndarray:
        """Points of :attr:`space` -> latent vectors ``[n, latent_dim]`` (Grid indices -> values)."""
        pts = self.space.validate(points)
        return self.space.values(pts) if isinstance(self.space, Grid) else pts.astype(float)

    def _generate(self, points: np.ndarray) -> torch.Tensor:
        z = self.space.values(points) if isinstance(self.space, Grid) else points
        return self._decode(torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)

    def describe(self) -> dict:
        d = super().describe()
        d.update(latent_dim=self.latent_dim, levels=self.levels, model=type(self.model).__name__,
                 zoo_name=getattr(self.model, "zoo_name", None))
        return d
