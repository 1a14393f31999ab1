"""Oracles on spiking networks (snntorch or SpikingJelly): rates, counts or membranes over time.

Three kinds of network are supported (``mode``):

* ``"step"`` -- a stateful single-step network (snntorch neurons with
  ``init_hidden=True``): ``model(x)`` advances one time step.  mango steps it
  ``num_steps`` times.  If the network is an ``nn.Sequential`` and the input is
  constant in time, its leading *stateless* modules (convolutions, pooling,
  linear, flatten, batch norm in eval, activations, ...; no spiking neuron) are
  computed once per batch instead of once per step (the *constant prefix*);
  the result is identical to stepping the whole network.
* ``"loop"`` -- ``model(x)`` runs the whole time loop itself (e.g. it returns
  spike / membrane recordings ``[T, n, ...]``), or -- SpikingJelly in multi-step
  mode -- repeats the image over ``T`` itself (as the MANGO research code's
  spiking ResNet does).  mango calls it once per batch and accumulates the
  target layer's output over every step the loop takes.
* ``"multistep"`` -- SpikingJelly in multi-step mode (``step_mode='m'``):
  ``model(x_seq)`` takes the whole input sequence ``[T, n, ...]``, which mango
  builds (the image repeated, or Poisson spike trains).

A SpikingJelly layer in ``'m'`` mode returns ``[T, n, ...]``: every time step
is read from it.  In the multi-step modes with constant input, the stateless
SpikingJelly layers that run before the first neuron (convolutions, batch norm
in eval, pooling, ...) are computed for one time step and broadcast over ``T``
whenever their input is the same at every step (checked, so always exact).

Every spiking neuron of the network is reset before every batch
(:func:`reset_snn`; SpikingJelly's ``functional.reset_net``), so state can
never leak from one batch to the next.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError, MangoError, UnknownNameError
from . import spikingjelly as sj
from .base import Oracle, resolve_device
from .torch import StopForward, UnitReadout, ensure_eval, find_layer, unit_list

__all__ = ["SNNOracle", "reset_snn", "spiking_layers", "stateless_prefix"]

_READOUTS = ("rate", "count", "membrane")
_ENCODINGS = ("constant", "poisson")
_MODES = ("auto", "step", "loop", "multistep")

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


def _neuron_classes() -> tuple:
    """snntorch's ``SpikingNeuron`` and SpikingJelly's ``BaseNode`` (when in use)."""
    sjc = sj.neuron_class()
    return (_neuron_class(),) + ((sjc,) if sjc is not None else ())


def spiking_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every spiking neuron layer (snntorch or SpikingJelly), in registration order."""
    cls = _neuron_classes()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, cls)]


def reset_snn(model: nn.Module) -> None:
    """Reset every spiking neuron of ``model`` (at any depth) to its initial state.

    snntorch neurons get zero state; a network with SpikingJelly modules gets
    ``functional.reset_net`` (neurons, dropout masks and any other memory module).
    """
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
    if sj.neuron_class() is not None and any(sj.is_neuron(m) for m in model.modules()):
        sj.reset(model)


def _is_stateless(m: nn.Module) -> bool:
    if isinstance(m, nn.Sequential):
        return all(_is_stateless(c) for c in m)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d,
                      nn.Dropout2d, nn.Dropout3d)) and m.training:
        return False
    if type(m) in sj.stateless_types():  # SpikingJelly layers in single-step mode
        return sj.step_mode(m) == "s"
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
    """Read units of a spiking network (snntorch or SpikingJelly) over ``num_steps`` time steps.

    Parameters
    ----------
    model : the network (``nn.Module``) with snntorch spiking neurons
        (``snn.Leaky``, ...) or SpikingJelly ones (any ``neuron.BaseNode``).  It
        must be in eval mode: an snntorch model in training mode triggers a
        warning and ``model.eval()``; a SpikingJelly model in training mode is a
        :class:`~mango.errors.ConfigError` (call ``net.eval()``).
    layer : dotted module name (``"lif2"``, ``"3"`` in a Sequential,
        ``"layer4.1.sn2"``) or ``"output"`` = the last spiking neuron layer of the
        network.  A spiking layer's output is its spikes (the first element when
        it returns ``(spk, mem)``); its membrane is the second element or its
        ``.mem`` (snntorch), or its ``.v`` after each step (SpikingJelly: after
        the firing reset; ``.v_seq`` in multi-step mode, recorded by mango).  A
        non-spiking layer may also be read (``rate`` / ``count`` then average /
        sum its output over time).  A SpikingJelly layer in multi-step mode
        outputs ``[T, n, ...]``: each of its ``T`` steps counts.
    unit, spatial : which units, as in :class:`~mango.oracles.TorchOracle`
        (channel + spatial reduction for conv layers, flat index otherwise, a
        list for a population).
    num_steps : time steps per stimulus.  Required in ``"step"`` and
        ``"multistep"`` mode (default: ``model.num_steps``, or ``model.T`` for
        SpikingJelly); in ``"loop"`` mode the model runs its own loop and
        ``num_steps`` is only the length of the Poisson spike train passed in.
    readout : ``"rate"`` (spike count / number of steps), ``"count"`` (spike
        count) or ``"membrane"`` (mean membrane potential over steps).  Note
        that SpikingJelly's ``.v`` is read after the firing reset, so it drops
        when a neuron starts to fire (snntorch's ``mem`` is read before the
        reset its spike triggers): to drive a SpikingJelly neuron hard, maximize
        its rate.
    encoding : ``"constant"`` (the image is the input current at every step, as
        in the paper) or ``"poisson"`` (Bernoulli rate coding: at each step a
        pixel of intensity ``p`` in [0, 1] spikes with probability ``p``; drawn
        from a ``torch.Generator`` on the oracle's device seeded by ``seed``, so
        the same seed gives the same sequence of responses).  In ``"loop"`` and
        ``"multistep"`` mode Poisson input is passed as one tensor
        ``[num_steps, n, ...]``.
    mode : ``"step"``, ``"loop"``, ``"multistep"`` or ``"auto"``: ``"step"`` when
        every snntorch neuron has ``init_hidden=True`` or every SpikingJelly
        neuron is in single-step mode (``'s'``); for SpikingJelly neurons in
        multi-step mode (``'m'``), ``"loop"`` when the model has an int
        ``num_steps`` or ``T`` attribute (its ``forward`` repeats the input over
        time, SpikingJelly's tutorial convention), else ``"multistep"``;
        otherwise ``"loop"``.  In step mode a forward pass that runs the target
        layer more than once raises an error suggesting ``mode="loop"``; a step
        mode that does not match the input (``[T, n, ...]`` for ``'m'``,
        ``[n, ...]`` for ``'s'``) is a :class:`~mango.errors.ConfigError`.
    shortcut : compute the constant stateless prefix once per batch (constant
        encoding; step mode: the leading stateless children of an
        ``nn.Sequential``; multi-step SpikingJelly networks: the stateless layers
        before the first neuron, for one time step, broadcast over ``T``).
        Exact: equal to the naive time loop.
    stop_early : end each forward pass after the target layer (later layers
        cannot influence it in a feed-forward network), once a full pass has
        shown that the target runs once per forward call (step mode; multi-step
        targets).  Disable for networks with feedback from later layers.
    input_shape, device, max_batch : as in :class:`~mango.oracles.TorchOracle`.

    Every neuron is reset before each batch (and each ``max_batch`` chunk), so
    responses never depend on earlier batches.
    """

    def __init__(self, model: nn.Module, layer: str = "output", unit=0, *, num_steps: int | None = None,
                 readout: str = "rate", encoding: str = "constant", seed: int | None = 0, mode: str = "auto",
                 spatial="mean", shortcut: bool = True, stop_early: bool = True,
                 input_shape: Sequence[int] | None = None, device=None, max_batch: int | None = None):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"SNNOracle needs a torch.nn.Module (a spiking network), got {type(model).__name__}.")
        neurons = spiking_layers(model)
        if not neurons:
            raise ConfigError(f"{type(model).__name__} contains no snntorch or SpikingJelly spiking neurons "
                              "(snn.Leaky, neuron.LIFNode, ...); use TorchOracle for non-spiking networks.")
        for name, val, valid in (("readout", readout, _READOUTS), ("encoding", encoding, _ENCODINGS),
                                 ("mode", mode, _MODES)):
            if val not in valid:
                raise UnknownNameError(name, val, valid)
        sj_neurons = [(n, m) for n, m in neurons if sj.is_neuron(m)]
        self.framework = "spikingjelly" if sj_neurons else "snntorch"
        if sj_neurons and len(sj_neurons) != len(neurons):
            raise ConfigError(f"{type(model).__name__} mixes snntorch and SpikingJelly neurons; SNNOracle reads "
                              "networks built with one of the two.")
        if sj_neurons:
            mode = self._sj_mode(model, sj_neurons, mode)
        elif mode == "multistep":
            raise ConfigError("mode='multistep' is for SpikingJelly networks in multi-step mode; this snntorch "
                              "network takes mode='step' (init_hidden=True) or 'loop'.")
        if mode == "auto":
            mode = "step" if all(getattr(m, "init_hidden", False) for _, m in neurons) else "loop"
        if sj_neurons:
            _ensure_eval_sj(model)
        self._steps_given = num_steps is not None
        if num_steps is None:
            num_steps = _model_steps(model, sj_neurons)
        if num_steps is None and (mode in ("step", "multistep") or encoding == "poisson"):
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
        self.is_neuron = isinstance(self.module, _neuron_classes())
        if readout == "membrane" and not self.is_neuron:
            raise ConfigError(f"readout='membrane' needs a spiking layer; {self.layer_name!r} is a "
                              f"{type(self.module).__name__}. Spiking layers: {', '.join(n for n, _ in neurons)}.")
        # a SpikingJelly layer in multi-step mode outputs [T, n, ...] (time first); anything else one step [n, ...]
        self._time_major = sj.step_mode(self.module) == "m"
        self.readout_kind, self.encoding, self.mode = readout, encoding, mode
        self.num_steps = None if num_steps is None else int(num_steps)
        self.seed = None if seed is None else int(seed)
        self.shortcut, self.stop_early = bool(shortcut), bool(stop_early)
        self.max_batch = None if max_batch is None else int(max_batch)
        self.readout = UnitReadout(self.layer_name, unit_list(unit), spatial)
        dev = resolve_device(device, model)
        if device is not None:
            model.to(dev)
        super().__init__(self.readout.names(self.layer_name), dev, input_shape)
        self.device = dev
        if not sj_neurons:
            ensure_eval(model, "SNNOracle")
        self._checked = False  # has a full forward call shown the target layer runs once per step?
        self._calls: int | None = None  # target calls per forward (multi-step / loop modes, first batch)
        self._gen = None
        if encoding == "poisson":
            self._gen = torch.Generator(device=dev)
            if self.seed is None:
                self._gen.seed()
            else:
                self._gen.manual_seed(self.seed)
        self.prefix = (stateless_prefix(model, stop_at=self.module)
                       if (mode == "step" and encoding == "constant" and self.shortcut) else 0)
        # multi-step SpikingJelly: the stateless modules before the first neuron (found on the first batch)
        self._broadcast = (bool(sj_neurons) and mode in ("loop", "multistep") and encoding == "constant"
                           and self.shortcut and any(sj.step_mode(m) == "m" for _, m in sj_neurons))
        self.prefix_modules: list[nn.Module] | None = None
        self.steps_seen: int | None = None  # time steps the target layer ran in the last batch
        if self.input_shape is not None:
            state = None if self._gen is None else self._gen.get_state()
            self(torch.zeros((1,) + self.input_shape))  # validates layer and units
            if state is not None:
                self._gen.set_state(state)

    @staticmethod
    def _sj_mode(model: nn.Module, neurons: list, mode: str) -> str:
        """Resolve / check ``mode`` against the step modes of a SpikingJelly network's neurons."""
        multi = [n for n, m in neurons if sj.step_mode(m) == "m"]
        single = [n for n, m in neurons if sj.step_mode(m) != "m"]
        if mode == "auto":
            if not multi:
                return "step"
            return "loop" if _model_steps(model, neurons) is not None else "multistep"
        if mode == "step" and multi:
            raise ConfigError(f"mode='step' steps a single-step network, but SpikingJelly neurons {_few(multi)} are "
                              "in multi-step mode ('m', input [T, N, ...]): use mode='multistep' (mango passes "
                              "[T, N, ...]) or mode='loop' (forward repeats the input over T itself), or call "
                              "functional.set_step_mode(net, 's').")
        if mode == "multistep" and not multi:
            raise ConfigError(f"mode='multistep' passes [T, N, ...] to a multi-step network, but SpikingJelly neurons "
                              f"{_few(single)} are in single-step mode ('s'): use mode='step', or call "
                              "functional.set_step_mode(net, 'm').")
        return mode

    # ------------------------------------------------------------------
    def _respond(self, x: torch.Tensor) -> torch.Tensor:
        if any(m.training for m in self.model.modules()):
            if self.framework == "spikingjelly":
                _ensure_eval_sj(self.model)
            else:
                ensure_eval(self.model, "SNNOracle")
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
        except ConfigError:
            raise
        except (RuntimeError, ValueError) as exc:  # SpikingJelly reports input shapes with ValueError
            if isinstance(exc, ValueError) and self.framework != "spikingjelly":
                raise
            raise self._model_error(exc, x) from exc

    def _model_error(self, exc: Exception, x: torch.Tensor) -> Exception:
        if self.framework != "spikingjelly" or isinstance(exc, MangoError):
            return super()._model_error(exc, x)
        fed = {"step": "[N, ...] at every step", "loop": "[N, ...] once (its forward handles time)",
               "multistep": f"[T={self.num_steps}, N, ...]"}[self.mode]
        return ConfigError(
            f"SNNOracle: the SpikingJelly network failed on what mode={self.mode!r} fed it ({fed}; stimuli of shape "
            f"{tuple(x.shape)}): {type(exc).__name__}: {str(exc).rstrip('.!')}. "
            "If the step mode does not match the input ('s' layers take [N, ...], 'm' layers [T, N, ...]): "
            "mode='multistep' passes [T, N, ...], mode='loop' passes [N, ...] to a forward that repeats it over T, "
            "mode='step' steps a single-step net. Otherwise make the generator produce the model's input shape.")

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(x, generator=self._gen)

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        acc: list = [None]
        steps = [0]
        calls = [0]
        n = x.shape[0]
        want_mem = self.readout_kind == "membrane"
        time_major = self._time_major
        # early stop only once a full step has shown the target runs once per forward call
        if self.mode == "step":
            stop = [self.stop_early and self._checked]
        else:
            stop = [self.stop_early and time_major and self._calls == 1]

        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                spk = output[0]
                mem = output[1] if len(output) > 1 else self._membrane(module)
            else:
                spk, mem = output, self._membrane(module) if self.is_neuron else None
            val = mem if want_mem else spk
            if not isinstance(val, torch.Tensor):
                raise ConfigError(f"cannot read the {'membrane' if want_mem else 'output'} of layer "
                                  f"{self.layer_name!r} (it returned {type(output).__name__}).")
            if self.framework == "spikingjelly":
                self._check_time_layout(val, n)
            if time_major:
                t = val.shape[0]
                r = self.readout(val.flatten(0, 1)).view(t, n, -1).sum(0)
            else:
                t = 1
                r = self.readout(val).double()
            acc[0] = r if acc[0] is None else acc[0] + r
            steps[0] += t
            calls[0] += 1
            if stop[0]:
                raise StopForward

        reset_snn(self.model)
        record_v = want_mem and time_major and not self.module.store_v_seq
        if record_v:
            self.module.store_v_seq = True
        handle = self.module.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                if self.mode == "step":
                    self._step_loop(x, steps, stop)
                else:
                    self._whole(x, stop)
        finally:
            handle.remove()
            if record_v:
                self.module.store_v_seq = False
            reset_snn(self.model)
        if steps[0] == 0:
            raise ConfigError(f"layer {self.layer_name!r} was not called during the forward pass of "
                              f"{type(self.model).__name__}; choose a layer the network uses.")
        if self.mode != "step" and self._calls is None:
            self._calls = calls[0]
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

    def _membrane(self, module: nn.Module):
        if sj.is_neuron(module):
            return module.v_seq if self._time_major else module.v
        return getattr(module, "mem", None)

    def _check_time_layout(self, val: torch.Tensor, n: int) -> None:
        """A SpikingJelly target's output must be [T, n, ...] ('m') or [n, ...] (one step)."""
        mode = sj.step_mode(self.module)
        if self._time_major:
            if val.dim() >= 2 and val.shape[1] == n and (self.mode != "multistep" or val.shape[0] == self.num_steps):
                return
            expect = f"[T, N={n}, ...]" + (f" with T={self.num_steps}" if self.mode == "multistep" else "")
        else:
            if val.dim() >= 1 and val.shape[0] == n:
                return
            expect = f"[N={n}, ...]"
        what = (f"is in {'multi' if mode == 'm' else 'single'}-step mode ('{mode}')" if mode else
                "has no step mode (a plain torch module inside a SpikingJelly network)")
        raise ConfigError(f"step mode does not match the input: layer {self.layer_name!r} {what} and should give "
                          f"{expect} for {n} stimuli, but gave shape {tuple(val.shape)} in mode={self.mode!r}. "
                          "'s' layers take [N, ...], 'm' layers [T, N, ...]: use SNNOracle(mode='multistep') for a "
                          "multi-step net that takes [T, N, ...], mode='loop' for one whose forward repeats the input "
                          "over T itself, mode='step' for single-step nets (functional.set_step_mode).")

    def _whole(self, x: torch.Tensor, stop: list) -> None:
        """Loop / multi-step modes: one forward call of the model per batch."""
        if self.mode == "multistep":
            if self.encoding == "poisson":
                inp = torch.stack([self._encode(x) for _ in range(self.num_steps)])
            else:
                inp = x.unsqueeze(0).expand((self.num_steps,) + tuple(x.shape))
        else:
            inp = x
            if self.encoding == "poisson":
                inp = torch.stack([self._encode(x) for _ in range(self.num_steps)])

        def run():
            try:
                self.model(inp)
            except StopForward:
                pass

        if not self._broadcast:
            return run()
        if self.prefix_modules is None:  # first batch: find the prefix by watching the call order
            self.prefix_modules = sj.call_order_prefix(self.model, run, _is_stateless)
            return
        with sj.broadcast_prefix(self.prefix_modules):
            run()

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
            except StopForward:
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
        d.update(model=type(self.model).__name__, framework=self.framework, layer=self.layer_name,
                 unit=list(self.readout.units),
                 spatial=self.readout.spatial if isinstance(self.readout.spatial, str) else list(self.readout.spatial),
                 num_steps=self.num_steps, readout=self.readout_kind, encoding=self.encoding, seed=self.seed,
                 mode=self.mode, constant_prefix=self.prefix)
        if self._broadcast:
            d["broadcast_prefix"] = None if self.prefix_modules is None else len(self.prefix_modules)
        return d


def _few(names: list[str], k: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" (+{len(names) - k} more)" if len(names) > k else "")


def _model_steps(model: nn.Module, sj_neurons) -> int | None:
    """The model's own number of time steps: ``model.num_steps`` (SpikingJelly: an int ``num_steps`` or ``T``)."""
    if not sj_neurons:
        return getattr(model, "num_steps", None)
    for attr in ("num_steps", "T"):
        v = getattr(model, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _ensure_eval_sj(model: nn.Module) -> None:
    """A SpikingJelly network must be in eval mode (error, not a silent switch)."""
    training = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
    if training:
        raise ConfigError(f"the SpikingJelly network is in training mode ({_few(training)}): batch norm would use "
                          "batch statistics and dropout draw masks, so a stimulus's response would depend on its "
                          "batch. Call net.eval() before building the SNNOracle.")
