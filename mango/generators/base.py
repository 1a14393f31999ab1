"""Generator base class: latent points in a Space -> images (torch tensors)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..devices import default_device
from ..errors import ConfigError
from ..spaces import Space
from .transforms import describe_transform

__all__ = ["Generator", "default_device", "as_images"]


def module_device(module: torch.nn.Module, fallback=None) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return default_device(fallback)


def as_images(images, device=None, name: str = "images") -> torch.Tensor:
    """``images`` (torch or numpy, ``[n,C,H,W]`` or ``[n,H,W]``) as a float32 tensor ``[n,C,H,W]``."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ConfigError(f"{name} must be a torch tensor or numpy array [n, C, H, W], got {type(images).__name__}.")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ConfigError(f"{name} must have shape [n, C, H, W] (or [n, H, W]), got {tuple(images.shape)}.")
    images = images.float()
    return images.to(device) if device is not None else images


class Generator:
    """Turns points of :attr:`space` into images ``[n, C, H, W]`` (float32, on :attr:`device`).

    Subclasses implement ``_generate(points: np.ndarray) -> torch.Tensor`` for
    already-validated points and set ``space``, ``device`` and ``output_shape``.
    Calls run without autograd (:func:`torch.no_grad`), in chunks of ``max_batch`` points,
    and apply the optional output ``transform`` (default: none; outputs in [0, 1]).
    """

    name: str = "generator"
    space: Space
    device: torch.device
    output_shape: tuple
    transform: Callable | None = None
    max_batch: int = 1024

    def __call__(self, points) -> torch.Tensor:
        pts = self.space.validate(points)
        outs = []
        # no_grad rather than inference_mode: the images stay ordinary tensors that a
        # user may feed to a model outside no_grad without "inference tensor" errors
        with torch.no_grad():
            for i in range(0, len(pts), self.max_batch):
                x = self._generate(pts[i:i + self.max_batch])
                if self.transform is not None:
                    x = self.transform(x)
                outs.append(x.float())
            if not outs:
                return torch.empty((0, *self.output_shape), device=self.device)
            return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _generate(self, points: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _probe_shape(self) -> tuple:
        """Output shape ``(C, H, W)`` found by generating one point (deterministic)."""
        out = self(self.space.sample(1, seed=0))
        if out.dim() != 4 or out.shape[0] != 1:
            raise ConfigError(
                f"{type(self).__name__} produced a tensor of shape {tuple(out.shape)} for one point; "
                "a generator must return images [n, C, H, W]."
            )
        return tuple(int(s) for s in out.shape[1:])

    def to(self, device) -> "Generator":
        """Move to ``device`` (in place) and return self."""
        self.device = default_device(device)
        return self

    def describe(self) -> dict:
        """JSON-able description: type, space, output shape, device, transform."""
        return {
            "type": type(self).__name__,
            "name": self.name,
            "space": self.space.to_dict(),
            "output_shape": list(self.output_shape),
            "device": str(self.device),
            "transform": describe_transform(self.transform),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space!r}, output_shape={tuple(self.output_shape)})"
