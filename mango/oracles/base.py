"""The Oracle protocol: stimuli -> responses of one or more units.

An oracle is the neuron (or neurons) being probed.  Calling it on a batch of
stimuli returns a float64 numpy array ``[batch, n_units]``::

    responses = oracle(stimuli)        # stimuli: torch tensor [n, C, H, W] (numpy accepted)

Every oracle has ``unit_names`` (one name per response column), ``n_units``,
``device`` (where stimuli are moved before the forward pass),
``queries_per_stimulus`` (how many presentations one stimulus costs; 1, or k
under :class:`~mango.oracles.noise.Repeat`), ``input_shape`` (the expected
shape of one stimulus, or ``None`` when unknown) and ``describe()`` (a
JSON-able dict).  An oracle and a generator compose into the objective that
:func:`mango.maximize` takes (``mango.maximize(oracle, generator=gen)`` or an
explicit :class:`mango.runs.objective.Objective`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, MangoError, ObjectiveError

__all__ = ["Oracle", "OracleWrapper", "resolve_device"]


def resolve_device(device=None, module: torch.nn.Module | None = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` means the module's device (or CPU)."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"device={device!r} is not a torch device ('cpu', 'cuda', 'cuda:1', ...): {exc}")
    if module is not None:
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return torch.device("cpu")


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class Oracle:
    """Base class of oracles.

    Subclasses call ``super().__init__(unit_names, device, input_shape)`` and
    implement :meth:`_respond` (a float32 tensor batch on ``self.device`` ->
    responses ``[n, n_units]`` as a tensor or array).  :meth:`__call__` does the
    conversions and checks:

    * ``stimuli`` may be a torch tensor or a numpy array; it is moved to
      ``self.device`` as float32.
    * If ``input_shape`` is known, a single stimulus of that shape is accepted as
      a batch of one, and flat stimuli ``[n, prod(input_shape)]`` (points of a
      pixel space) are reshaped; any other shape raises :class:`ConfigError`
      naming the expected and the received shape.
    * Responses come back as float64 numpy ``[n, n_units]``.
    """

    queries_per_stimulus: int = 1

    def __init__(self, unit_names: Sequence[str] | None = None, device=None,
                 input_shape: Sequence[int] | None = None):
        self._unit_names = None if unit_names is None else [str(u) for u in unit_names]
        self.device = resolve_device(device)
        if input_shape is not None:
            try:
                input_shape = tuple(int(s) for s in input_shape)
            except (TypeError, ValueError):
                raise ConfigError(f"input_shape must be a tuple of ints such as (1, 28, 28), got {input_shape!r}.")
            if not input_shape or min(input_shape) < 1:
                raise ConfigError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}.")
        self.input_shape = input_shape

    # -- protocol ---------------------------------------------------------
    @property
    def unit_names(self) -> list[str]:
        """One name per response column."""
        return list(self._unit_names or [])

    @property
    def n_units(self) -> int:
        """Number of response columns."""
        return len(self.unit_names)

    def __call__(self, stimuli) -> np.ndarray:
        """Responses ``[n, n_units]`` (float64) of the units to ``stimuli``."""
        x = self._prepare(stimuli)
        if x.shape[0] == 0:
            return np.zeros((0, self.n_units))
        out = self._respond(x)
        return self._finish(out, x.shape[0])

    def describe(self) -> dict[str, Any]:
        """JSON-able description (class, units, parameters)."""
        return {"class": type(self).__name__, "units": self.unit_names, "device": str(self.device),
                "input_shape": None if self.input_shape is None else list(self.input_shape),
                "queries_per_stimulus": int(self.queries_per_stimulus)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(units={self.unit_names!r}, device={str(self.device)!r})"

    # -- helpers for subclasses -------------------------------------------
    def _respond(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def _model_error(self, exc: Exception, x: torch.Tensor) -> Exception:
        """A clear error for a model that failed on ``x`` (usually a shape mismatch)."""
        if isinstance(exc, MangoError):
            return exc
        hint = ("" if self.input_shape is not None else
                " Pass input_shape=(C, H, W) to have stimuli checked before they reach the model.")
        return ConfigError(
            f"{type(self).__name__}: the model failed on stimuli of shape {_shape_str(x.shape)}: "
            f"{type(exc).__name__}: {exc}. If the stimulus shape is wrong, make the generator produce the "
            f"model's input shape.{hint}")

    def _prepare(self, stimuli) -> torch.Tensor:
        if isinstance(stimuli, torch.Tensor):
            x = stimuli
        else:
            arr = np.asarray(stimuli)
            if arr.dtype.kind not in "biuf":
                raise ConfigError(f"stimuli must be numeric (a torch tensor or numpy array), got dtype {arr.dtype}.")
            x = torch.from_numpy(np.ascontiguousarray(arr))
        if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                      torch.int64, torch.bool)):
            raise ConfigError(f"stimuli must be real numbers, got dtype {x.dtype}.")
        shape = self.input_shape
        if shape is not None:
            flat = int(np.prod(shape))
            if tuple(x.shape) == shape:
                x = x.unsqueeze(0)
            elif x.dim() == 2 and x.shape[1] == flat and len(shape) > 1:
                x = x.reshape(x.shape[0], *shape)
            if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
                raise ConfigError(
                    f"stimuli have shape {_shape_str(x.shape)}, but {type(self).__name__} expects a batch of shape "
                    f"(n, {', '.join(map(str, shape))}) (or one stimulus {_shape_str(shape)}, or flat "
                    f"(n, {flat})). Check the generator's output shape."
                )
        elif x.dim() == 0:
            raise ConfigError("stimuli must be a batch [n, ...], got a scalar.")
        return x.to(device=self.device, dtype=torch.float32)

    def _finish(self, out, n: int) -> np.ndarray:
        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu", torch.float64).numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.ndim == 1 and self.n_units <= 1:
            out = out[:, None] if out.shape[0] == n else out
        k = self.n_units
        if out.ndim != 2 or out.shape[0] != n or (k and out.shape[1] != k):
            raise ObjectiveError(
                f"{type(self).__name__} produced responses of shape {out.shape} for {n} stimuli; expected "
                f"({n}, {k if k else 'n_units'})."
            )
        return out


class OracleWrapper(Oracle):
    """Base of wrappers (:class:`Noisy`, :class:`Repeat`): delegate to ``oracle``."""

    def __init__(self, oracle: Oracle):
        if not callable(oracle) or not hasattr(oracle, "unit_names"):
            raise ConfigError(
                f"{type(self).__name__} wraps a mango Oracle (TorchOracle, SNNOracle, CallableOracle, ...), "
                f"got {type(oracle).__name__}. Wrap a plain function with CallableOracle(fn) first."
            )
        self.oracle = oracle

    @property
    def unit_names(self) -> list[str]:
        return list(self.oracle.unit_names)

    @property
    def device(self):
        return self.oracle.device

    @property
    def input_shape(self):
        return getattr(self.oracle, "input_shape", None)

    @property
    def queries_per_stimulus(self) -> int:
        return int(getattr(self.oracle, "queries_per_stimulus", 1))

    def describe(self) -> dict[str, Any]:
        inner = self.oracle.describe() if hasattr(self.oracle, "describe") else {"class": type(self.oracle).__name__}
        return {"class": type(self).__name__, "oracle": inner, "units": self.unit_names,
                "queries_per_stimulus": int(self.queries_per_stimulus)}

    def _inner(self, stimuli) -> np.ndarray:
        out = np.asarray(self.oracle(stimuli), dtype=np.float64)
        if out.ndim == 1:
            out = out[:, None]
        return out
