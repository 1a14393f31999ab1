"""One builder: model, generator and oracle specs -> objects.

Used by the command line (:mod:`mango.cli`), the benchmark problems
(:mod:`mango.bench.problems`) and the simulated rig
(:mod:`mango.rig.simulator`), so that a spec means the same thing everywhere.

Specs
-----
* model: ``zoo:NAME`` (a zoo network, weights included) or
  ``FILE.py:FACTORY`` (your own ``torch.nn.Module`` factory, plus optional
  weights) -- :func:`build_model`.
* generator: ``zoo:vqvae-digits[:codes|:embedding]``,
  ``zoo:gan-digits[:grid|:LEVELS]`` (and the colour zoo's
  ``zoo:vqvae-color[:codes|:embedding]``, ``zoo:gan-color[:grid|:LEVELS]``),
  ``grating`` or ``gabor`` --
  :func:`build_generator`.
* oracle: a network's unit; spiking networks (snnTorch / SpikingJelly layers)
  get an :class:`~mango.oracles.SNNOracle`, others a
  :class:`~mango.oracles.TorchOracle` -- :func:`build_unit_oracle`;
  response noise and repeated presentations -- :func:`wrap_oracle`.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from pathlib import Path

from ..errors import ConfigError

__all__ = ["load_factory", "user_code_error", "build_model", "spiking_framework", "default_readout",
           "build_unit_oracle", "layer_units", "wrap_oracle", "build_generator", "GENERATOR_SPECS"]

_MANGO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the mango package (this is mango/zoo/build.py)

GENERATOR_SPECS = ("zoo:vqvae-digits", "zoo:vqvae-digits:embedding", "zoo:gan-digits", "zoo:gan-digits:grid",
                   "zoo:vqvae-color", "zoo:vqvae-color:embedding", "zoo:gan-color", "zoo:gan-color:grid",
                   "grating", "gabor")


def load_factory(spec: str):
    """``path/to/file.py:factory`` -> the callable ``factory`` (the user's own code)."""
    if ":" not in spec:
        raise ConfigError(f"expected FILE.py:FACTORY, got {spec!r} (e.g. my_net.py:build).")
    path, name = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise ConfigError(f"no such file {path!r} (from {spec!r}).")
    mod_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: reported with its own line
        raise user_code_error(spec, f"importing {path}", exc) from exc
    if not hasattr(module, name):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(f"{path} defines no {name!r}; public names: {public}.")
    return getattr(module, name)


def user_code_error(spec: str, what: str, exc: BaseException) -> ConfigError:
    """One line for an exception raised by the user's own code: the spec, what raised, the exception and the
    user's own frame (file:line) where it was raised -- not the traceback through mango."""
    path = os.path.abspath(spec.rsplit(":", 1)[0])
    where = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if os.path.abspath(f.filename) == path]
        outside = [f for f in frames if not os.path.abspath(f.filename).startswith(_MANGO_DIR + os.sep)
                   and "site-packages" not in f.filename and "<frozen" not in f.filename]
        frame = (own or outside or frames or [None])[-1]
        if frame is not None:
            where = f"{frame.filename}:{frame.lineno}, in {frame.name}"
    text = " ".join(str(exc).split()) if not isinstance(exc, SyntaxError) else exc.msg
    return ConfigError(f"{spec}: {what} raised {type(exc).__name__}" + (f": {text}" if text else "")
                       + (f" ({where})" if where else "") + "; fix it there.")


def build_model(spec: str, weights: str | None = None, device=None):
    """A torch model from ``zoo:NAME`` or ``FILE.py:FACTORY`` (+ ``weights``, a state-dict file).

    With a zoo name, ``weights`` replaces the shipped weights, e.g. a training
    checkpoint (``python -m mango.zoo.train NAME --checkpoints DIR``).
    """
    import torch

    if spec.startswith("zoo:"):
        from .. import zoo

        model = zoo.load(spec[4:], device=device)
        if weights:
            _load_weights(model, weights)
        return model
    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code: reported with its own line
        raise user_code_error(spec, f"{spec.rsplit(':', 1)[1]}()", exc) from exc
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module.")
    if weights:
        _load_weights(model, weights)
    return model.to(device) if device else model


def _load_weights(model, weights: str) -> None:
    """Load a state-dict file into ``model`` (never unpickled: ``weights_only=True``), with a clear error."""
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - reported with the fix
        raise ConfigError(f"could not load weights {weights!r} with weights_only=True: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"the weights in {weights!r} do not fit {type(model).__name__}: {first}") from None


def spiking_framework(model) -> str | None:
    """``"snntorch"`` / ``"spikingjelly"`` for a spiking network (it gets an SNNOracle), else None."""
    from ..oracles import spiking_layers
    from ..oracles import spikingjelly as sj

    layers = spiking_layers(model)
    if not layers:
        return None
    return "spikingjelly" if any(sj.is_neuron(m) for _, m in layers) else "snntorch"


def default_readout(framework: str) -> str:
    """The command line's readout for a spiking network of ``framework``.

    snnTorch's membrane (before the reset its spike triggers) keeps rising with
    the drive; SpikingJelly's ``.v`` is after the reset, so it drops when a
    neuron starts firing: the spike rate there.
    """
    return "rate" if framework == "spikingjelly" else "membrane"


def build_unit_oracle(model, layer, unit, *, device=None, readout: str | None = None, num_steps: int | None = None,
                      seed: int | None = None, input_shape=None, spatial=None):
    """The oracle reading unit ``unit`` of ``layer`` of torch network ``model``.

    A spiking network gets an :class:`~mango.oracles.SNNOracle` (``readout``,
    ``num_steps`` and ``seed`` are passed when given, else its defaults), any
    other network a :class:`~mango.oracles.TorchOracle`; ``readout`` and
    ``num_steps`` on a non-spiking network raise :class:`ConfigError`.  ``spatial`` (conv layers: ``"mean"``,
    ``"center"`` or ``(y, x)``; default ``"mean"``) picks how a channel's positions are read.
    """
    import torch

    from ..oracles import SNNOracle, TorchOracle

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{type(model).__name__} is not a network that can be probed; use a torch.nn.Module "
                          "(e.g. a zoo classifier such as snn-digits or cnn-digits).")
    kw: dict = {"layer": layer, "unit": unit, "device": device}
    if input_shape is not None:
        kw["input_shape"] = input_shape
    if spatial is not None:
        kw["spatial"] = tuple(spatial) if isinstance(spatial, list) else spatial
    if spiking_framework(model):
        for key, value in (("readout", readout), ("num_steps", num_steps), ("seed", seed)):
            if value is not None:
                kw[key] = value
        return SNNOracle(model, **kw)
    for key, value in (("readout", readout), ("num_steps", num_steps)):
        if value is not None:
            raise ConfigError(f"{key}={value!r} applies to spiking networks only; {type(model).__name__} has no "
                              "spiking layers.")
    return TorchOracle(model, **kw)


def layer_units(model, layer, *, input_shape, device=None, readout: str | None = None,
                num_steps: int | None = None) -> list[int]:
    """Every unit index of ``layer`` of ``model`` (``unit="all"``): its channels, or its flat units.

    Found from one forward pass of a zero stimulus of ``input_shape``.
    """
    if input_shape is None:
        raise ConfigError("all the units of a layer can only be counted when the stimulus shape is known; "
                          "list them instead (e.g. --unit 0-9).")
    oracle = build_unit_oracle(model, layer, 0, device=device, readout=readout, num_steps=num_steps,
                               input_shape=input_shape)
    shape = oracle.readout.checked_shape
    return list(range(int(shape[0]) if shape else 1))


def wrap_oracle(oracle, noise: str | None = None, seed: int | None = 0, repeats: int | None = None):
    """``oracle`` with response ``noise`` (``"poisson"`` / ``"gaussian"``, seeded; see
    :class:`~mango.oracles.Noisy`), then presented ``repeats`` times (:class:`~mango.oracles.Repeat`)."""
    from ..oracles import Noisy, Repeat

    if noise:
        oracle = Noisy(oracle, kind=noise, seed=seed)
    if repeats and repeats > 1:
        oracle = Repeat(oracle, times=repeats)
    return oracle


def build_generator(spec: str, device=None):
    """``zoo:vqvae-digits[:codes|:embedding]``, ``zoo:gan-digits[:grid|:LEVELS]``, ``grating``, ``gabor``;
    the colour zoo's ``zoo:vqvae-color[:codes|:embedding]`` (3x32x32, 8x8 x 512 codes, 4,096-d
    embedding view) and ``zoo:gan-color[:grid|:LEVELS]`` (128-d latent).

    ``:grid`` searches the GAN's latent Box as a Grid of 64 levels, ``:LEVELS``
    (a number) as a Grid of that many levels.
    """
    from .. import generators

    if spec in ("grating", "gabor"):
        return generators.ParametricGenerator(kind=spec, device=device)
    if spec.startswith("zoo:"):
        from .. import zoo

        name, _, view = spec[4:].partition(":")
        kw = {}
        if name.startswith("vqvae"):
            kw["view"] = view or "codes"
        elif view == "grid":
            kw["levels"] = 64
        elif view.isdigit() and int(view) > 1:
            kw["levels"] = int(view)
        elif view:
            raise ConfigError(f"unknown view {view!r} for {name}; GAN views: grid (64 levels) or a number of levels "
                              "(e.g. zoo:gan-digits:32).")
        return zoo.load_generator(name, device=device, **kw)
    raise ConfigError(f"unknown generator {spec!r}; use {', '.join(GENERATOR_SPECS[:-1])} or {GENERATOR_SPECS[-1]}.")
