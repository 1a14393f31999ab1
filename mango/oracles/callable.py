"""Wrap any Python function ``stimuli -> responses`` as an oracle."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError, ObjectiveError
from .base import Oracle

__all__ = ["CallableOracle"]


class CallableOracle(Oracle):
    """An oracle backed by a plain function.

    Parameters
    ----------
    fn : ``fn(stimuli) -> responses``, responses ``[n, n_units]`` or ``[n]``
        (one unit) as a numpy array, torch tensor or list.
    n_units : number of response columns (default: ``len(unit_names)``, else
        learned from the first call).
    unit_names : names of the columns (default ``"unit0"``, ``"unit1"``, ...).
    input_shape : expected shape of one stimulus; checked on every call.
    device : where stimuli are moved before ``fn`` sees them (default CPU).
    input : ``"torch"`` (fn receives a float32 tensor on ``device``, default)
        or ``"numpy"`` (fn receives a float32 numpy array).
    nonfinite : ``"raise"`` (default: a NaN / inf response raises
        :class:`~mango.errors.ObjectiveError` naming the stimuli) or ``"pass"``
        (return it; the loop's ``nonfinite=`` policy then applies).
    name : a label for :meth:`describe` (default: the function's name).
    """

    def __init__(self, fn: Callable, n_units: int | None = None, unit_names: Sequence[str] | None = None, *,
                 input_shape: Sequence[int] | None = None, device=None, input: str = "torch",
                 nonfinite: str = "raise", name: str | None = None):
        if not callable(fn):
            raise ConfigError(f"CallableOracle needs a callable fn(stimuli) -> responses, got {type(fn).__name__}.")
        if input not in ("torch", "numpy"):
            raise ConfigError(f"input must be 'torch' or 'numpy', got {input!r}.")
        if nonfinite not in ("raise", "pass"):
            raise ConfigError(f"nonfinite must be 'raise' or 'pass', got {nonfinite!r}.")
        if unit_names is not None:
            unit_names = [str(u) for u in unit_names]
            if n_units is not None and n_units != len(unit_names):
                raise ConfigError(f"n_units={n_units} but {len(unit_names)} unit_names were given; make them agree.")
        elif n_units is not None:
            if int(n_units) != n_units or n_units < 1:
                raise ConfigError(f"n_units must be a positive int, got {n_units!r}.")
            unit_names = [f"unit{i}" for i in range(int(n_units))]
        super().__init__(unit_names, device, input_shape)
        self.fn, self.input, self.nonfinite = fn, input, nonfinite
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def _respond(self, x: torch.Tensor) -> np.ndarray:
        arg = x.detach().cpu().numpy() if self.input == "numpy" else x
        out = self.fn(arg)
        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu", torch.float64).numpy()
        try:
            out = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ObjectiveError(f"{self.name} must return numbers [n, n_units]; got {type(out).__name__}: {exc}")
        n = x.shape[0]
        if out.ndim == 1 and out.shape[0] == n:
            out = out[:, None]
        if out.ndim != 2 or out.shape[0] != n:
            raise ObjectiveError(f"{self.name} returned shape {out.shape} for {n} stimuli; it must return "
                                 f"[{n}, n_units] (or [{n}] for one unit).")
        if self._unit_names is None:
            self._unit_names = [f"unit{i}" for i in range(out.shape[1])]
        elif out.shape[1] != len(self._unit_names):
            raise ObjectiveError(f"{self.name} returned {out.shape[1]} unit(s) per stimulus, but the oracle "
                                 f"declares {len(self._unit_names)}; fix n_units / unit_names or the function.")
        if self.nonfinite == "raise" and not np.all(np.isfinite(out)):
            rows = np.flatnonzero(~np.all(np.isfinite(out), axis=1))
            raise ObjectiveError(
                f"{self.name} returned non-finite responses (NaN/inf) for stimuli {rows[:10].tolist()}"
                f"{' ...' if len(rows) > 10 else ''} of the batch of {n}. Fix the function, or pass "
                "nonfinite='pass' and let maximize(..., nonfinite='worst') handle them.")
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(name=self.name, input=self.input)
        return d
