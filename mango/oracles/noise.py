"""Wrappers: response noise (:class:`Noisy`) and repeated presentations (:class:`Repeat`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, ObjectiveError, UnknownNameError
from .base import OracleWrapper

__all__ = ["ResponseNoise", "Noisy", "Repeat"]


class ResponseNoise:
    """Seeded trial-to-trial noise on responses (an array of any shape): the one noise model of mango.

    * ``kind="gaussian"``: ``response + N(0, scale**2)``; mean = response,
      variance = ``scale**2``.
    * ``kind="poisson"``: responses are firing *rates* (non-negative) in units
      of ``unit`` over a counting ``window``; a spike count
      ``k ~ Poisson(window * rate / unit)`` is drawn and the rate estimate
      ``k / window * unit`` returned (mean = rate, variance =
      ``rate * unit / window``), or the raw count ``k`` with ``counts=True``.
      E.g. ``unit`` = a neuron's maximum response and ``window`` = its peak
      spike count: a response equal to the maximum yields ``window`` spikes
      on average.  Negative rates raise :class:`ObjectiveError` unless
      ``clip_negative=True`` (then they count as 0).

    Noise is drawn from a numpy Generator seeded with ``seed``: the same seed and
    the same sequence of calls give the same responses.  Used by
    :class:`Noisy` (an oracle's responses) and by the benchmark
    (:mod:`mango.bench.problems`, an objective's values).
    """

    def __init__(self, kind: str = "gaussian", scale: float | None = None, *, window: float = 1.0,
                 unit: float = 1.0, counts: bool = False, clip_negative: bool = False, seed: int | None = 0):
        if kind not in ("gaussian", "poisson"):
            raise UnknownNameError("noise kind", kind, ["gaussian", "poisson"])
        if kind == "gaussian":
            scale = 1.0 if scale is None else scale
            if not np.isfinite(scale) or scale < 0:
                raise ConfigError(f"scale (the Gaussian noise std) must be >= 0, got {scale!r}.")
        elif scale is not None:
            raise ConfigError("scale is the std of Gaussian noise; Poisson noise is set by window= (the counting "
                              "window: variance = rate / window).")
        if not np.isfinite(window) or window <= 0:
            raise ConfigError(f"window must be > 0, got {window!r}.")
        if not np.isfinite(unit) or unit <= 0:
            raise ConfigError(f"unit (the response that counts as rate 1) must be > 0, got {unit!r}.")
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ConfigError(f"seed must be a non-negative int or None, got {seed!r}.")
        self.kind, self.scale, self.window, self.unit = kind, scale, float(window), float(unit)
        self.counts, self.clip_negative, self.seed = bool(counts), bool(clip_negative), seed
        self.rng = np.random.default_rng(seed)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """Noisy copies of responses ``r`` (rows = stimuli)."""
        r = np.asarray(r)
        if self.kind == "gaussian":
            return r + self.rng.normal(0.0, self.scale, size=r.shape)
        if np.any(r < 0) or not np.all(np.isfinite(r)):
            if self.clip_negative and np.all(np.isfinite(r)):
                r = np.maximum(r, 0.0)
            else:
                bad = ~(r >= 0) if r.ndim < 2 else np.any(~(r >= 0), axis=tuple(range(1, r.ndim)))
                rows = np.flatnonzero(bad)[:10].tolist()
                raise ObjectiveError(
                    f"Poisson noise needs non-negative finite rates, but stimuli {rows} got responses "
                    f"(min {np.nanmin(r):.3g}); read a spike rate, or pass clip_negative=True, or use "
                    "kind='gaussian'.")
        if self.unit == 1.0:  # the plain rate model (kept apart: the same floats as ever)
            k = self.rng.poisson(r * self.window).astype(np.float64)
            return k if self.counts else k / self.window
        k = self.rng.poisson(self.window * r / self.unit).astype(np.float64)
        return k if self.counts else k / self.window * self.unit

    def describe(self) -> dict[str, Any]:
        """The noise parameters (for result files)."""
        return {"kind": self.kind, "scale": self.scale, "window": self.window, "unit": self.unit,
                "counts": self.counts, "seed": self.seed}


class Noisy(OracleWrapper):
    """Add trial-to-trial noise to an oracle's responses (:class:`ResponseNoise`; see there for the model).

    * ``kind="gaussian"``: ``response + N(0, scale**2)``.
    * ``kind="poisson"``: a spike count ``k ~ Poisson(rate * window)``; the
      oracle returns ``k / window`` (or ``k`` with ``counts=True``).
      Negative rates raise :class:`ObjectiveError` unless ``clip_negative=True``.

    Noise is drawn from a numpy Generator seeded with ``seed``: the same seed and
    the same sequence of calls give the same responses.
    """

    def __init__(self, oracle, kind: str = "gaussian", scale: float | None = None, *, window: float = 1.0,
                 counts: bool = False, clip_negative: bool = False, seed: int | None = 0):
        super().__init__(oracle)
        self.noise = ResponseNoise(kind, scale, window=window, counts=counts, clip_negative=clip_negative, seed=seed)
        self.kind, self.scale, self.window = self.noise.kind, self.noise.scale, self.noise.window
        self.counts, self.clip_negative, self.seed = self.noise.counts, self.noise.clip_negative, seed

    @property
    def rng(self) -> np.random.Generator:
        """The noise's random generator."""
        return self.noise.rng

    def __call__(self, stimuli) -> np.ndarray:
        """Noisy responses ``[n, n_units]`` to ``stimuli``."""
        return self.noise(self._inner(stimuli))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(kind=self.kind, scale=self.scale, window=self.window, counts=self.counts, seed=self.seed)
        return d


class Repeat(OracleWrapper):
    """Present every stimulus ``times`` times and reduce the responses.

    The stimuli are sent as one batch of ``times * n`` (the whole batch
    repeated ``times`` times), and the ``times`` responses of each stimulus are
    reduced by ``"mean"`` or ``"median"``.  ``queries_per_stimulus`` is
    multiplied by ``times``, so :func:`mango.maximize` charges every
    presentation to the budget.
    """

    def __init__(self, oracle, times: int, reduce: str = "mean"):
        super().__init__(oracle)
        if isinstance(times, bool) or int(times) != times or times < 1:
            raise ConfigError(f"times must be a positive int, got {times!r}.")
        if reduce not in ("mean", "median"):
            raise UnknownNameError("reduction", reduce, ["mean", "median"])
        self.times, self.reduce = int(times), reduce

    @property
    def queries_per_stimulus(self) -> int:
        return int(getattr(self.oracle, "queries_per_stimulus", 1)) * self.times

    def __call__(self, stimuli) -> np.ndarray:
        """Reduced responses ``[n, n_units]`` over ``times`` presentations."""
        shape = self.input_shape
        if shape is not None and tuple(np.shape(stimuli)) == tuple(shape):  # one stimulus
            stimuli = stimuli[None]
        if isinstance(stimuli, torch.Tensor):
            n = stimuli.shape[0]
            tiled = stimuli.repeat((self.times,) + (1,) * (stimuli.dim() - 1))
        else:
            arr = np.asarray(stimuli)
            n = arr.shape[0]
            tiled = np.concatenate([arr] * self.times)
        r = self._inner(tiled)
        if r.shape[0] != n * self.times:
            raise ObjectiveError(f"the wrapped oracle returned {r.shape[0]} rows for {n * self.times} stimuli.")
        r = r.reshape(self.times, n, -1)
        return r.mean(0) if self.reduce == "mean" else np.median(r, axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(times=self.times, reduce=self.reduce)
        return d
