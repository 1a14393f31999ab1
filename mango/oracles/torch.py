"""Oracles on PyTorch networks: read a named layer's unit through a forward hook."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, UnknownNameError
from .base import Oracle, resolve_device

__all__ = ["TorchOracle", "find_layer", "UnitReadout"]


class StopForward(Exception):
    """Raised from a forward hook to end the forward pass after the target layer (shared by the oracles)."""


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule of ``model`` named ``layer`` (dotted, as in ``model.named_modules()``).

    Raises :class:`UnknownNameError` listing the closest layer names.
    """
    if not isinstance(layer, str) or not layer:
        raise ConfigError(f"layer must be a dotted module name such as 'features.3' or 'output', got {layer!r}.")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        raise UnknownNameError("layer", layer, [n for n in modules if n] + ["output"])
    return modules[layer]


def unit_list(unit) -> list[int]:
    """``unit`` (an int or a sequence of ints) as a non-empty list of ints; a clear error otherwise."""
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        units = [int(unit)]
    else:
        try:
            units = [int(u) for u in unit]
        except (TypeError, ValueError):
            raise ConfigError(f"unit must be an int or a list of ints (a population), got {unit!r}.")
        if any(int(u) != u for u in unit):
            raise ConfigError(f"unit indices must be integers, got {unit!r}.")
    if not units:
        raise ConfigError("unit is an empty list; give at least one unit index.")
    return units


def _first_tensor(out, layer: str) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"layer {layer!r} returned {type(out).__name__}, not a tensor; choose another layer.")


def layer_outputs(model: nn.Module, module: nn.Module, layer: str, x: torch.Tensor,
                  stop_after: int | None = None) -> list[torch.Tensor]:
    """The outputs of ``module`` (named ``layer``) during ``model(x)``, in call order; the forward pass ends
    after ``stop_after`` calls (``None``: runs to the end).  The hook is removed also when the pass fails."""
    seen: list[torch.Tensor] = []

    def hook(mod, inputs, output):
        seen.append(_first_tensor(output, layer))
        if stop_after is not None and len(seen) == stop_after:
            raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except StopForward:
        pass
    finally:
        handle.remove()
    if not seen:
        raise ConfigError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}; "
                          "choose a layer the forward pass uses.")
    return seen


class UnitReadout:
    """Select units from a layer output ``[n, ...]``.

    * ``[n, F]`` (linear layers, logits): ``unit`` is a flat index ``0..F-1``.
    * ``[n, C, *spatial]`` (conv layers): ``unit`` is a channel ``0..C-1``; the
      spatial positions are reduced by ``spatial``: ``"mean"`` (mean over space),
      ``"center"`` (the centre position, ``size // 2`` in each spatial dim) or a
      tuple of indices, e.g. ``(y, x)``.
    """

    def __init__(self, layer: str, units: list[int], spatial="mean"):
        if isinstance(spatial, str):
            if spatial not in ("mean", "center"):
                raise ConfigError(f"spatial must be 'mean', 'center' or a tuple (y, x), got {spatial!r}.")
        else:
            try:
                spatial = tuple(int(s) for s in spatial)
            except (TypeError, ValueError):
                raise ConfigError(f"spatial must be 'mean', 'center' or a tuple (y, x), got {spatial!r}.")
        self.layer, self.units, self.spatial = layer, units, spatial
        self._idx = torch.tensor(units, dtype=torch.long)
        self.checked_shape: tuple | None = None

    def check(self, out: torch.Tensor) -> None:
        """Validate units / spatial indices against a layer output (once per shape)."""
        shape = tuple(out.shape[1:])
        if shape == self.checked_shape:
            return
        if len(shape) == 0:
            size, what = 1, "scalar output (unit 0 only)"
        else:
            size, what = shape[0], ("flat units" if len(shape) == 1 else "channels")
        bad = [u for u in self.units if not 0 <= u < size]
        if bad:
            raise ConfigError(
                f"unit {bad[0]} is out of range for layer {self.layer!r}, whose output has shape "
                f"(n, {', '.join(map(str, shape))}): valid {what} are 0..{size - 1}."
            )
        if isinstance(self.spatial, tuple) and len(shape) >= 2:
            sp = shape[1:]
            if len(self.spatial) != len(sp) or any(not 0 <= i < s for i, s in zip(self.spatial, sp)):
                raise ConfigError(
                    f"spatial={self.spatial} does not fit layer {self.layer!r}, whose spatial size is "
                    f"{tuple(sp)}; give {len(sp)} indices with 0 <= index < size, or 'mean' / 'center'."
                )
        self.checked_shape = shape

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        """``[n, ...]`` -> ``[n, len(units)]`` (float64: selected, then reduced in double precision)."""
        self.check(out)
        if out.dim() == 1:
            return out[:, None].double()
        idx = self._idx.to(out.device)
        sel = out.index_select(1, idx).double()
        if sel.dim() == 2:
            return sel
        if self.spatial == "mean":
            return sel.flatten(2).mean(2)
        pos = tuple(s // 2 for s in sel.shape[2:]) if self.spatial == "center" else self.spatial
        return sel[(slice(None), slice(None)) + tuple(pos)]

    def names(self, prefix: str) -> list[str]:
        sp = "" if self.spatial == "mean" else (f"@center" if self.spatial == "center" else f"@{self.spatial}")
        return [f"{prefix}:{u}{sp}" for u in self.units]


def ensure_eval(model: nn.Module, who: str) -> None:
    """Switch ``model`` to eval mode, warning (as ``who``) when it was training."""
    if any(m.training for m in model.modules()):
        warnings.warn(
            f"{who}: the model was in training mode; switched it to eval mode (model.eval()) so that dropout and "
            "batch norm behave deterministically. Call model.eval() yourself to silence this warning.",
            UserWarning, stacklevel=3,
        )
        model.eval()


class TorchOracle(Oracle):
    """Read units of any ``torch.nn.Module``.

    Parameters
    ----------
    model : the network.  It is put in eval mode: a model in training mode
        triggers a warning and ``model.eval()`` (at construction and, if it was
        switched back, at every call).
    layer : dotted module name as listed by ``model.named_modules()``
        (``"features.3"``, ``"layer3.1.relu"``) or ``"output"`` (the model's
        return value; a tuple return uses its first element).  A module that
        returns a tuple is read at its first element.  A module called several
        times in one forward pass (e.g. torchvision's shared ``relu`` in a
        ResNet block) is read at its *last* call.
    unit : an index or a list of indices (a population).  For conv outputs
        ``[n, C, H, W]`` it is a channel, reduced over space by ``spatial``;
        for flat outputs ``[n, F]`` (linear layers, ``"output"``) a flat index,
        e.g. the class index.
    spatial : ``"mean"`` (default), ``"center"`` or a position ``(y, x)``.
    softmax : read the softmax probability over dim 1 instead of the raw value
        (logits); needs a flat ``[n, F]`` output.
    input_shape : shape of one stimulus, e.g. ``(3, 32, 32)``.  When given,
        stimuli are checked against it and the layer / unit are validated by a
        dry forward at construction; otherwise at the first call.
    device : where the model runs; ``None`` = where its parameters are.  A
        given device moves the model there (``model.to(device)``).
    max_batch : split larger batches into chunks of this size (memory).
    stop_early : end the forward pass right after the target layer (the rest of
        the network is not computed).  Disable for models whose later layers
        must run (e.g. they have side effects).

    The forward pass runs under ``torch.inference_mode()``; hooks are removed
    after every call, also when the call fails.
    """

    def __init__(self, model: nn.Module, layer: str = "output", unit=0, *, spatial="mean",
                 softmax: bool = False, input_shape: Sequence[int] | None = None, device=None,
                 max_batch: int | None = None, stop_early: bool = True):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"TorchOracle needs a torch.nn.Module, got {type(model).__name__}; "
                              "wrap plain functions with CallableOracle.")
        self.model = model
        self.layer = layer
        self.module = None if layer == "output" else find_layer(model, layer)
        self.readout = UnitReadout(layer, unit_list(unit), spatial)
        self.softmax = bool(softmax)
        if max_batch is not None and (int(max_batch) != max_batch or max_batch < 1):
            raise ConfigError(f"max_batch must be a positive int or None, got {max_batch!r}.")
        self.max_batch = None if max_batch is None else int(max_batch)
        self.stop_early = bool(stop_early)
        dev = resolve_device(device, model)
        if device is not None:
            model.to(dev)
        super().__init__(self.readout.names(layer), dev, input_shape)
        self.device = dev
        ensure_eval(model, "TorchOracle")
        self._calls: int | None = None  # how many times the target module runs per forward
        if self.input_shape is not None:
            self(torch.zeros((1,) + self.input_shape))

    # ------------------------------------------------------------------
    def _respond(self, x: torch.Tensor) -> torch.Tensor:
        if any(m.training for m in self.model.modules()):
            ensure_eval(self.model, "TorchOracle")
        try:
            if self.max_batch is None or x.shape[0] <= self.max_batch:
                return self._forward(x)
            return torch.cat([self._forward(c) for c in torch.split(x, self.max_batch)])
        except RuntimeError as exc:
            raise self._model_error(exc, x) from exc

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.module is None:
                out = _first_tensor(self.model(x), "output")
            else:
                out = self._hooked(x)
            if self.softmax:
                if out.dim() != 2:
                    raise ConfigError(f"softmax=True needs a flat output [n, F]; layer {self.layer!r} gives shape "
                                      f"{tuple(out.shape)}. Use softmax=False or layer='output'.")
                out = torch.softmax(out.double(), dim=1)
            return self.readout(out)

    def _hooked(self, x: torch.Tensor) -> torch.Tensor:
        seen = layer_outputs(self.model, self.module, self.layer, x, self._calls if self.stop_early else None)
        if self._calls is None:
            self._calls = len(seen)
        return seen[-1]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model=type(self.model).__name__, layer=self.layer, unit=list(self.readout.units),
                 spatial=self.readout.spatial if isinstance(self.readout.spatial, str) else list(self.readout.spatial),
                 softmax=self.softmax)
        return d
