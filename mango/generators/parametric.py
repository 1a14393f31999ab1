"""Classic neuroscience stimuli: sinusoidal gratings and Gabor patches."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError
from ..spaces import Box
from .base import Generator, default_device

__all__ = ["ParametricGenerator", "PARAMETER_RANGES"]

#: default (low, high) of every parameter.  orientation in radians [0, pi) (0 = vertical bars,
#: i.e. luminance varies along x); frequency in cycles per image width; phase in radians;
#: contrast in [0, 1] (Michelson, relative to ``mean``); size: grating = aperture radius,
#: gabor = Gaussian sigma, both as a fraction of the image width; x, y: centre offset
#: as a fraction of the image width/height (0 = centre, +x right, +y down);
#: red/green/blue: chromatic direction of the modulation (channels=3 only).
PARAMETER_RANGES = {
    "orientation": (0.0, math.pi),
    "frequency": (0.5, 8.0),
    "phase": (0.0, 2 * math.pi),
    "contrast": (0.0, 1.0),
    "size": (0.05, 0.8),
    "x": (-0.5, 0.5),
    "y": (-0.5, 0.5),
    "red": (0.0, 1.0),
    "green": (0.0, 1.0),
    "blue": (0.0, 1.0),
}
_SIZE_RANGES = {"grating": (0.1, 0.8), "gabor": (0.03, 0.4)}


class ParametricGenerator(Generator):
    """Sinusoidal gratings (``kind="grating"``, soft circular aperture) or Gabor patches.

    The space is a Box over the free named parameters (:attr:`param_names`, in the order
    of :data:`PARAMETER_RANGES`); ``fixed={"x": 0, "y": 0}`` removes parameters from the
    search and holds them constant; ``ranges={"frequency": (1, 4)}`` overrides bounds.
    Pixel value = ``background + envelope * (mean + contrast * a * colour * cos(...) - background)``
    with ``a = min(mean, 1 - mean)``, so images stay in [0, 1].  ``mean=0.5, background=0.5``
    is the classic grey screen; ``background=0`` suits networks trained on dark backgrounds.
    """

    name = "parametric"

    def __init__(self, kind: str = "grating", size=(28, 28), channels: int = 1, fixed: dict | None = None,
                 ranges: dict | None = None, mean: float = 0.5, background: float | None = None,
                 device=None, transform=None):
        if kind not in ("grating", "gabor"):
            raise ConfigError(f"ParametricGenerator kind must be 'grating' or 'gabor', got {kind!r}.")
        if channels not in (1, 3):
            raise ConfigError(f"ParametricGenerator channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
        size = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 2:
            raise ConfigError(f"ParametricGenerator size must be (H, W) >= 2, got {size!r}.")
        if not 0.0 <= mean <= 1.0:
            raise ConfigError(f"mean luminance must be in [0, 1], got {mean!r}.")
        self.kind, self.size, self.channels = kind, size, int(channels)
        self.mean = float(mean)
        self.background = self.mean if background is None else float(background)
        if not 0.0 <= self.background <= 1.0:
            raise ConfigError(f"background must be in [0, 1], got {background!r}.")
        names = [n for n in PARAMETER_RANGES if channels == 3 or n not in ("red", "green", "blue")]
        rng = {n: PARAMETER_RANGES[n] for n in names}
        rng["size"] = _SIZE_RANGES[kind]
        for n, r in (ranges or {}).items():
            if n not in rng:
                raise ConfigError(f"unknown parameter {n!r} in ranges; parameters are {names}.")
            if len(r) != 2 or not r[0] < r[1]:
                raise ConfigError(f"range of {n!r} must be (low, high) with low < high, got {r!r}.")
            rng[n] = (float(r[0]), float(r[1]))
        fixed = dict(fixed or {})
        for n in fixed:
            if n not in rng:
                raise ConfigError(f"unknown parameter {n!r} in fixed; parameters are {names}.")
        self.fixed = {n: float(v) for n, v in fixed.items()}
        self.all_names = names
        self.param_names = [n for n in names if n not in self.fixed]
        if not self.param_names:
            raise ConfigError("every parameter is fixed: leave at least one free to search over.")
        self.ranges = rng
        self.space = Box(len(self.param_names), [rng[n][0] for n in self.param_names],
                         [rng[n][1] for n in self.param_names])
        self.device = default_device(device)
        self.transform = transform
        self.output_shape = (self.channels, *self.size)

    def params(self, points) -> dict:
        """Points -> ``{name: array [n]}`` for every parameter (fixed ones included)."""
        pts = self.space.validate(points)
        out = {n: pts[:, i] for i, n in enumerate(self.param_names)}
        for n, v in self.fixed.items():
            out[n] = np.full(len(pts), v)
        return out

    def point(self, **values) -> np.ndarray:
        """One point from named values; unnamed free parameters take their range's middle."""
        for n in values:
            if n not in self.param_names:
                raise ConfigError(f"{n!r} is not a free parameter; free parameters are {self.param_names}.")
        return np.array([float(values.get(n, sum(self.ranges[n]) / 2)) for n in self.param_names])

    def _generate(self, points: np.ndarray) -> torch.Tensor:
        return self._decode(torch.as_tensor(np.asarray(points, dtype=np.float32), device=self.device))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        p = {n: z[:, i].reshape(-1, 1, 1) for i, n in enumerate(self.param_names)}
        for n, v in self.fixed.items():
            p[n] = torch.full((len(z), 1, 1), v, dtype=torch.float32, device=z.device)
        h, w = self.size
        # pixel centres in units of the image width, origin at the image centre
        ys = (torch.arange(h, dtype=torch.float32, device=self.device) + 0.5 - h / 2) / w
        xs = (torch.arange(w, dtype=torch.float32, device=self.device) + 0.5 - w / 2) / w
        yy, xx = ys.reshape(1, h, 1), xs.reshape(1, 1, w)
        dx, dy = xx - p["x"], yy - p["y"] * (h / w)
        th = p["orientation"]
        u = dx * torch.cos(th) + dy * torch.sin(th)  # coordinate across the bars
        carrier = torch.cos(2 * math.pi * p["frequency"] * u + p["phase"])
        r2 = dx * dx + dy * dy
        if self.kind == "gabor":
            env = torch.exp(-r2 / (2 * p["size"] ** 2))
        else:  # soft-edged disk, edge width ~1 pixel
            env = torch.sigmoid((p["size"] - torch.sqrt(r2.clamp_min(1e-12))) * w * 2.0)  # no inf gradient at r=0
        a = min(self.mean, 1.0 - self.mean)
        if self.channels == 3:
            col = torch.stack([p["red"], p["green"], p["blue"]], 1)  # [n, 3, 1, 1]
        else:
            col = torch.ones_like(p["contrast"]).unsqueeze(1)
        mod = (p["contrast"] * a * carrier).unsqueeze(1) * col  # [n, C, h, w]
        img = self.background + env.unsqueeze(1) * (self.mean + mod - self.background)
        return img.clamp(0.0, 1.0)

    def describe(self) -> dict:
        d = super().describe()
        d.update(kind=self.kind, param_names=self.param_names, fixed=self.fixed,
                 ranges={n: list(self.ranges[n]) for n in self.param_names}, mean=self.mean,
                 background=self.background)
        return d
