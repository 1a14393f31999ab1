"""Wrap any user module ``latent -> image`` as a Generator."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..spaces import Grid, Space
from .base import Generator

__all__ = ["ModuleGenerator"]


class ModuleGenerator(Generator):
    """A generator from any callable (usually a ``torch.nn.Module``) ``latent -> images``.

    Points of ``space`` are passed as a float32 tensor ``[n, dim]`` on ``device``
    (Grid points are first mapped to their Box values; Codebook points are passed as
    an int64 tensor).  The module must return ``[n, C, H, W]``; the shape is checked
    once at construction by generating one point.
    """

    name = "module"

    def __init__(self, module, space: Space, transform=None, device=None):
        if not callable(module):
            raise ConfigError(
                f"ModuleGenerator needs a callable module latent -> images, got {type(module).__name__}."
            )
        if not isinstance(space, Space):
            raise ConfigError(
                f"ModuleGenerator needs a mango Space (Box, Grid or Codebook) for its latent, "
                f"got {type(space).__name__}. Example: ModuleGenerator(net, Box(16, -3, 3))."
            )
        self.module = self._adopt(module, device)
        self.space = space
        self.transform = transform
        self.output_shape = self._probe_shape()

    def _generate(self, points: np.ndarray) -> torch.Tensor:
        if isinstance(self.space, Grid):
            z = torch.as_tensor(self.space.values(points), dtype=torch.float32, device=self.device)
        elif self.space.dtype is float:
            z = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        else:
            z = torch.as_tensor(points, dtype=torch.long, device=self.device)
        return self._decode(z)

    @property
    def differentiable(self) -> bool:
        """Probed once: a user's module is differentiable when gradients flow from its images to its input
        (a module that goes through numpy, or a Codebook of integer codes, is not)."""
        if self.space.kind not in ("box", "grid"):
            return False
        if not hasattr(self, "_differentiable"):
            box = self.space if self.space.kind == "box" else self.space.box
            z = torch.as_tensor(box.center()[None], dtype=torch.float32, device=self.device).requires_grad_(True)
            try:
                out = self._decode(z)
                self._differentiable = bool(out.requires_grad) and bool(
                    torch.autograd.grad(out.float().sum(), [z], allow_unused=True)[0] is not None)
            except Exception:  # noqa: BLE001 - anything that breaks the graph means: no gradient
                self._differentiable = False
        return self._differentiable

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.module(z)
        if not isinstance(out, torch.Tensor):
            raise ConfigError(f"the module returned {type(out).__name__}; it must return a torch tensor [n, C, H, W].")
        if out.dim() != 4 or out.shape[0] != len(z):
            raise ConfigError(
                f"the module returned shape {tuple(out.shape)} for {len(z)} points; it must return "
                f"images [n, C, H, W] with n = {len(z)} (reshape inside the module or a transform)."
            )
        if not torch.isfinite(out.detach()).all():
            raise ConfigError("the module returned NaN or infinite pixel values.")
        return out

    def describe(self) -> dict:
        d = super().describe()
        d["module"] = type(self.module).__name__
        return d
