"""Explicit output transforms for generators: range, normalization, size, channels.

Each transform is a callable ``images [n, C, H, W] -> images`` with ``describe()``.
Generators output images in [0, 1] by default (what the zoo classifiers take);
put the target network's own preprocessing here, e.g.
``Compose([Resize((224, 224)), ToChannels(3), Normalize(IMAGENET_MEAN, IMAGENET_STD)])``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["Transform", "Normalize", "Clamp01", "Affine", "Resize", "ToChannels", "Compose", "describe_transform"]


class Transform:
    """Base class: ``__call__(images) -> images`` and a JSON-able ``describe()``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        d = self.describe()
        args = ", ".join(f"{k}={v!r}" for k, v in d.items() if k != "type")
        return f"{d['type']}({args})"


def _per_channel(v, what: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).reshape(-1)
    if t.numel() < 1 or not torch.isfinite(t).all():
        raise ConfigError(f"{what} must be a finite number or one per channel, got {v!r}.")
    return t


class Normalize(Transform):
    """``(x - mean) / std`` per channel (one value, or one per channel)."""

    def __init__(self, mean, std):
        self.mean = _per_channel(mean, "Normalize mean")
        self.std = _per_channel(std, "Normalize std")
        if (self.std <= 0).any():
            raise ConfigError(f"Normalize std must be > 0, got {std!r}.")

    def __call__(self, x):
        c = x.shape[1]
        for name, t in (("mean", self.mean), ("std", self.std)):
            if t.numel() not in (1, c):
                raise ConfigError(f"Normalize {name} has {t.numel()} values but the images have {c} channels.")
        m = self.mean.to(x.device).reshape(1, -1, 1, 1)
        s = self.std.to(x.device).reshape(1, -1, 1, 1)
        return (x - m) / s

    def describe(self):
        return {"type": "Normalize", "mean": self.mean.tolist(), "std": self.std.tolist()}


class Clamp01(Transform):
    """Clamp pixel values into [0, 1]."""

    def __call__(self, x):
        return x.clamp(0.0, 1.0)


class Affine(Transform):
    """``x * scale + shift`` (e.g. ``Affine(2, -1)`` maps [0, 1] to [-1, 1])."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0):
        self.scale, self.shift = float(scale), float(shift)

    def __call__(self, x):
        return x * self.scale + self.shift

    def describe(self):
        return {"type": "Affine", "scale": self.scale, "shift": self.shift}


class Resize(Transform):
    """Bilinear resize to ``size`` (H, W)."""

    def __init__(self, size: int | Sequence[int], mode: str = "bilinear"):
        size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"Resize size must be an int or (H, W) of positive ints, got {size!r}.")
        self.size, self.mode = size, mode

    def __call__(self, x):
        kw = {"align_corners": False} if self.mode in ("bilinear", "bicubic") else {}
        return F.interpolate(x, size=self.size, mode=self.mode, **kw)

    def describe(self):
        return {"type": "Resize", "size": list(self.size), "mode": self.mode}


class ToChannels(Transform):
    """Grey -> ``channels`` copies (e.g. 1 -> 3 for RGB networks), or RGB -> grey (mean) for 1."""

    def __init__(self, channels: int):
        if int(channels) < 1:
            raise ConfigError(f"ToChannels needs channels >= 1, got {channels!r}.")
        self.channels = int(channels)

    def __call__(self, x):
        c = x.shape[1]
        if c == self.channels:
            return x
        if c == 1:
            return x.expand(-1, self.channels, -1, -1).contiguous()
        if self.channels == 1:
            return x.mean(1, keepdim=True)
        raise ConfigError(f"ToChannels cannot map {c} channels to {self.channels}; only 1 <-> n.")

    def describe(self):
        return {"type": "ToChannels", "channels": self.channels}


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise ConfigError(f"Compose needs callables, got {type(t).__name__}.")

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def describe(self):
        return {"type": "Compose", "transforms": [describe_transform(t) for t in self.transforms]}


def describe_transform(t) -> dict | None:
    """JSON-able description of any transform callable (None for no transform)."""
    if t is None:
        return None
    if hasattr(t, "describe"):
        return t.describe()
    return {"type": getattr(t, "__qualname__", type(t).__name__)}
