"""Oracles on spiking networks (snntorch): rates, counts or membranes over time.

Two kinds of network are supported (``mode``):

* ``"step"`` -- a stateful single-step network (snntorch neurons with
  ``init_hidden=True``): ``model(x)`` advances one time step.  mango steps it
  ``num_steps`` times.  If the network is an ``nn.Sequential`` and the input is
  constant in time, its leading *stateless* modules (convolutions, pooling,
  linear, flatten, batch norm in eval, activations, ...; no spiking neuron) are
  computed once per batch instead of once per step (the *constant prefix*);
  the result is identical to stepping the whole network.
* ``"loop"`` -- ``model(x)`` runs the whole time loop itself (e.g. it returns
  spike / membrane recordings ``[T, n, ...]``).  mango calls it once per batch
  and accumulates the target layer's output over every step the loop takes.

Every spiking neuron of the network is reset to zero state before every batch
(:func:`reset_snn`), so state can never leak from one batch to the next.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError, UnknownNameError
from .base import Oracle, resolve_device
from .torch import UnitReadout, _ensure_eval, _StopForward, _units, find_layer

__all__ = ["SNNOracle", "reset_snn", "spiking_layers", "stateless_prefix"]

_READOUTS = ("rate", "count", "membrane")
_ENCODINGS = ("constant", "poisson")
_MODES = ("auto", "step", "loop")

# modules whose output depends only on their input at the same time step
_STATELESS = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.Bilinear, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.ZeroPad2d, nn.ConstantPad2d, nn.Upsample,
)


def _neuron_class():
    import snntorch

    return snntorch.SpikingNeuron


def spiking_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every snntorch spiking neuron layer, in registration order."""
    cls = _neuron_class()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, cls)]


def reset_snn(model: nn.Module) -> None:
    """Reset every snntorch neuron of ``model`` (at any depth) to zero state."""
    cls = _neuron_class()
    fallback = False
    for m in model.modules():
        if isinstance(m, cls):
            if hasattr(m, "reset_mem"):
                m.reset_mem()
            else:  # older snntorch
                fallback = True
    if fallback:
        from snntorch import utils

        utils.reset(model)


def _is_stateless(m: nn.Module) -> bool:
    if isinstance(m, nn.Sequential):
        return all(_is_stateless(c) for c in m)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d,
                      nn.Dropout2d, nn.Dropout3d)) and m.training:
        return False
    return type(m) in _STATELESS  # exact types: a subclass may hide state


def stateless_prefix(model: nn.Module, stop_at: nn.Module | None = None) -> int:
    """Number of leading children of an ``nn.Sequential`` that are stateless.

    The count stops before the first child that holds a spiking neuron (or any
    module not known to be stateless) and before the child containing
    ``stop_at``.  Returns 0 for models that are not ``nn.Sequential``.
    """
    if not isinstance(model, nn.Sequential):
        return 0
    k = 0
    for child in model:
        if stop_at is not None and any(m is stop_at for m in child.modules()):
            break
        if not _is_stateless(child):
            break
        k += 1
    return k


class SNNOracle(Oracle):
    """Read units of an snntorch spiking network over ``num_steps`` time steps.

    Parameters
    ----------
    model : the snntorch network (``nn.Module``); put in eval mode (a model in
        training mode triggers a warning and ``model.eval()``).
    layer : dotted module name (``"lif2"``, ``"3"`` in a Sequential) or
        ``"output"`` = the last spiking neuron layer of the network.  A spiking
        layer's output is its spikes (the first element when it returns
        ``(spk, mem)``); its membrane is the second element or its ``.mem``.
        A non-spiking layer may also be read (``rate`` / ``count`` then average
        / sum its output over time).
    unit, spatial : which units, as in :class:`~mango.oracles.TorchOracle`
        (channel + spatial reduction for conv layers, flat index otherwise, a
        list for a population).
    num_steps : time steps per stimulus.  Required in ``"step"`` mode (default:
        ``model.num_steps`` if the model has it); in ``"loop"`` mode the model
        runs its own loop and ``num_steps`` is only the length of the Poisson
        spike train passed in.
    readout : ``"rate"`` (spike count / number of steps), ``"count"`` (spike
        count) or ``"membrane"`` (mean membrane potential over steps).
    encoding : ``"constant"`` (the image is the input current at every step, as
        in the paper) or ``"poisson"`` (Bernoulli rate coding: at each step a
        pixel of intensity ``p`` in [0, 1] spikes with probability ``p``; drawn
        from a ``torch.Generator`` on the oracle's device seeded by ``seed``, so
        the same seed gives the same sequence of responses).  In ``"loop"``
        mode Poisson input is passed as one tensor ``[num_steps, n, ...]``.
    mode : ``"step"``, ``"loop"`` or ``"auto"`` (``"step"`` when every spiking
        neuron has ``init_hidden=True``, else ``"loop"``).  In step mode a
        forward pass that runs the target layer more than once raises an
        error suggesting ``mode="loop"``.
    shortcut : compute the constant stateless prefix once per batch (step
        mode, ``nn.Sequential``, constant encoding).  Exact: equal to the
        naive time loop.
    stop_early : in step mode, end each step's forward pass after the target
        layer (later layers cannot influence it in a feed-forward network).
        Disable for networks with feedback from later layers.
    input_shape, device, max_batch : as in :class:`~mango.oracles.TorchOracle`.

    Every neuron is reset before each batch (and each ``max_batch`` chunk), so
    responses never depend on earlier batches.
    """

    def __init__(self, model: nn.Module, layer: str = "output", unit=0, *, num_steps: int | None = None,
                 readout: str = "rate", encoding: str = "constant", seed: int | None = 0, mode: str = "auto",
                 spatial="mean", shortcut: bool = True, stop_early: bool = True,
                 input_shape: Sequence[int] | None = None, device=None, max_batch: int | None = None):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"SNNOracle needs a torch.nn.Module (an snntorch network), got {type(model).__name__}.")
        neurons = spiking_layers(model)
        if not neurons:
            raise ConfigError(f"{type(model).__name__} contains no snntorch spiking neurons (snn.Leaky, ...); "
                              "use TorchOracle for non-spiking networks.")
        for name, val, valid in (("readout", readout, _READOUTS), ("encoding", encoding, _ENCODINGS),
                                 ("mode", mode, _MODES)):
            if val not in valid:
                raise UnknownNameError(name, val, valid)
        if mode == "auto":
            mode = "step" if all(getattr(m, "init_hidden", False) for _, m in neurons) else "loop"
        self._steps_given = num_steps is not None
        if num_steps is None:
            num_steps = getattr(model, "num_steps", None)
        if num_steps is None and (mode == "step" or encoding == "poisson"):
            raise ConfigError(f"num_steps is required ({mode} mode, {encoding} encoding): pass e.g. num_steps=25.")
        if num_steps is not None and (int(num_steps) != num_steps or num_steps < 1):
            raise ConfigError(f"num_steps must be a positive int, got {num_steps!r}.")
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ConfigError(f"seed must be a non-negative int or None, got {seed!r}.")
        if max_batch is not None and (int(max_batch) != max_batch or max_batch < 1):
            raise ConfigError(f"max_batch must be a positive int or None, got {max_batch!r}.")
        self.model = model
        self.layer_name = neurons[-1][0] if layer == "output" else layer
        self.layer = layer
        self.module = find_layer(model, self.layer_name)
        self.is_neuron = isinstance(self.module, _neuron_class())
        if readout == "membrane" and not self.is_neuron:
            raise ConfigError(f"readout='membrane' needs a spiking layer; {self.layer_name!r} is a "
                              f"{type(self.module).__name__}. Spiking layers: {', '.join(n for n, _ in neurons)}.")
        self.readout_kind, self.encoding, self.mode = readout, encoding, mode
        self.num_steps = None if num_steps is None else int(num_steps)
        self.seed = None if seed is None else int(seed)
        self.shortcut, self.stop_early = bool(shortcut), bool(stop_early)
        self.max_batch = None if max_batch is None else int(max_batch)
        self.readout = UnitReadout(self.layer_name, _units(unit), spatial)
        dev = resolve_device(device, model)
        if device is not None:
            model.to(dev)
        super().__init__(self.readout.names(self.layer_name), dev, input_shape)
        self.device = dev
        _ensure_eval(model, "SNNOracle")
        self._checked = False  # has a full forward call shown the target layer runs once per step?
        self._gen = None
        if encoding == "poisson":
            self._gen = torch.Generator(device=dev)
            if self.seed is None:
                self._gen.seed()
            else:
                self._gen.manual_seed(self.seed)
        self.prefix = (stateless_prefix(model, stop_at=self.module)
                       if (mode == "step" and encoding == "constant" and self.shortcut) else 0)
        self.steps_seen: int | None = None  # time steps the target layer ran in the last batch
        if self.input_shape is not None:
            state = None if self._gen is None else self._gen.get_state()
            self(torch.zeros((1,) + self.input_shape))  # validates layer and units
            if state is not None:
                self._gen.set_state(state)

    # ------------------------------------------------------------------
    def _respond(self, x: torch.Tensor) -> torch.Tensor:
        if any(m.training for m in self.model.modules()):
            _ensure_eval(self.model, "SNNOracle")
        if self.encoding == "poisson":
            lo, hi = float(x.min()), float(x.max())
            if lo < 0 or hi > 1:
                raise ConfigError(f"poisson encoding needs stimulus intensities in [0, 1] (spike probabilities), "
                                  f"got values in [{lo:.3g}, {hi:.3g}]; rescale the generator's output or use "
                                  "encoding='constant'.")
        try:
            if self.max_batch is None or x.shape[0] <= self.max_batch:
                return self._batch(x)
            return torch.cat([self._batch(c) for c in torch.split(x, self.max_batch)])
        except RuntimeError as exc:
            raise self._model_error(exc, x) from exc

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(x, generator=self._gen)

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        acc: list = [None]
        steps = [0]
        want_mem = self.readout_kind == "membrane"
        # early stop only once a full step has shown the target runs once per forward call
        stop = [self.stop_early and self.mode == "step" and self._checked]

        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                spk = output[0]
                mem = output[1] if len(output) > 1 else getattr(module, "mem", None)
            else:
                spk, mem = output, getattr(module, "mem", None) if self.is_neuron else None
            val = mem if want_mem else spk
            if not isinstance(val, torch.Tensor):
                raise ConfigError(f"cannot read the {'membrane' if want_mem else 'output'} of layer "
                                  f"{self.layer_name!r} (it returned {type(output).__name__}).")
            r = self.readout(val).double()
            acc[0] = r if acc[0] is None else acc[0] + r
            steps[0] += 1
            if stop[0]:
                raise _StopForward

        reset_snn(self.model)
        handle = self.module.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                if self.mode == "loop":
                    inp = x
                    if self.encoding == "poisson":
                        inp = torch.stack([self._encode(x) for _ in range(self.num_steps)])
                    self.model(inp)
                else:
                    self._step_loop(x, steps, stop)
        finally:
            handle.remove()
            reset_snn(self.model)
        if steps[0] == 0:
            raise ConfigError(f"layer {self.layer_name!r} was not called during the forward pass of "
                              f"{type(self.model).__name__}; choose a layer the network uses.")
        if (self.mode == "loop" and self._steps_given and self.encoding == "constant"
                and steps[0] != self.num_steps and self.steps_seen is None):
            warnings.warn(f"SNNOracle: num_steps={self.num_steps}, but the model's own time loop ran layer "
                          f"{self.layer_name!r} {steps[0]} times; in loop mode the model decides the number of "
                          "steps (rates are divided by the steps it ran). Set the model's num_steps instead.",
                          UserWarning, stacklevel=4)
        self.steps_seen = steps[0]
        if self.readout_kind == "count":
            return acc[0]
        return acc[0] / steps[0]

    def _step_loop(self, x: torch.Tensor, steps: list, stop: list) -> None:
        model = self.model
        k = self.prefix
        if k:
            children = list(model)
            h0 = x
            for m in children[:k]:
                h0 = m(h0)
            rest = children[k:]

            def step(_):
                h = h0
                for m in rest:
                    h = m(h)
        elif self.encoding == "poisson":
            def step(_):
                model(self._encode(x))
        else:
            def step(_):
                model(x)
        for t in range(self.num_steps):
            try:
                step(t)
            except _StopForward:
                pass
            if steps[0] != t + 1:
                if steps[0] > t + 1:
                    raise ConfigError(
                        f"layer {self.layer_name!r} ran {steps[0] - t} times in one forward call: the model's "
                        "forward() seems to run its own time loop. Use SNNOracle(..., mode='loop').")
                break  # not called: reported by the caller
            if not self._checked:
                self._checked = True
                stop[0] = self.stop_early

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(model=type(self.model).__name__, layer=self.layer_name, unit=list(self.readout.units),
                 spatial=self.readout.spatial if isinstance(self.readout.spatial, str) else list(self.readout.spatial),
                 num_steps=self.num_steps, readout=self.readout_kind, encoding=self.encoding, seed=self.seed,
                 mode=self.mode, constant_prefix=self.prefix)
        return d
