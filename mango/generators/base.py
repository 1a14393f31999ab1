"""Generator base class: latent points in a Space -> images (torch tensors)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .devices import default_device
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
    #: the torch module that makes the images (set by :meth:`_adopt`), moved along by :meth:`to`
    _net: torch.nn.Module | None = None

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

    # -- the differentiable path (used by model-based optimizers; the neuron never needs gradients) --
    @property
    def differentiable(self) -> bool:
        """Whether :meth:`decode` carries gradients from images back to continuous latent coordinates.

        True for generators over a Box or a Grid (whose Box values are decoded) that implement
        ``_decode``; False for discrete latents (VQ-VAE codes, snapped embeddings) and opaque callables.
        """
        return self.space.kind in ("box", "grid") and type(self)._decode is not Generator._decode

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous latent ``z [n, dim]`` (Box coordinates; for a Grid, its Box values) -> images
        ``[n, C, H, W]``, *with* autograd, so that a model of the neuron can be maximized by gradient
        through the generator.  Raises :class:`ConfigError` when the generator is not differentiable."""
        if not self.differentiable:
            raise ConfigError(
                f"{type(self).__name__} over a {self.space.kind} space is not differentiable (a discrete latent or "
                "an opaque generator): gradients cannot pass through it. Use a search that needs no gradient "
                "(e.g. surrogate with acquisition='evolution'), or a continuous view of the latent.")
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.space.dim:
            raise ConfigError(f"decode() takes a float tensor [n, {self.space.dim}], got "
                              f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}.")
        x = self._decode(z.to(device=self.device, dtype=torch.float32))
        if self.transform is not None:
            x = self.transform(x)
        return x.float()

    def _decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden where differentiable
        raise NotImplementedError

    def encode_points(self, images) -> np.ndarray | None:
        """Points of :attr:`space` whose stimuli resemble ``images`` ``[n, C, H, W]``, by the generator's own
        encoder; ``None`` when it has none (then :mod:`mango.runs.natural.screening` inverts a differentiable generator by
        gradient).  Overridden by generators with an encoder (the VQ-VAE)."""
        return None

    def _probe_shape(self) -> tuple:
        """Output shape ``(C, H, W)`` found by generating one point (deterministic)."""
        out = self(self.space.sample(1, seed=0))
        if out.dim() != 4 or out.shape[0] != 1:
            raise ConfigError(
                f"{type(self).__name__} produced a tensor of shape {tuple(out.shape)} for one point; "
                "a generator must return images [n, C, H, W]."
            )
        return tuple(int(s) for s in out.shape[1:])

    def _adopt(self, model, device):
        """Set :attr:`device` for ``model`` and return ``model``: a torch module is put in eval mode and moved
        to ``device`` (default: where its parameters are), and :meth:`to` moves it along later; any other
        callable runs on ``device`` (default: CUDA when available, else the CPU)."""
        if isinstance(model, torch.nn.Module):
            model.eval()
            self.device = module_device(model, device) if device is None else default_device(device)
            model.to(self.device)
            self._net = model
        else:
            self.device = default_device(device)
        return model

    def to(self, device) -> "Generator":
        """Move to ``device`` (in place, with the model :meth:`_adopt` took) and return self."""
        self.device = default_device(device)
        if self._net is not None:
            self._net.to(self.device)
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
