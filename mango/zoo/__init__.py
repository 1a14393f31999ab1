"""mango's model zoo: small trained models shipped inside the package (no downloads).

=================  ======  ==========================================================
name               kind    what
=================  ======  ==========================================================
``snn-digits``     snn     convolutional spiking net (snntorch), 10 output neurons
``sj-digits``      snn     convolutional spiking net (SpikingJelly, multi-step), 10 output neurons
``cnn-digits``     cnn     ordinary CNN, logits for 10 digits (also a stimulus judge)
``vqvae-digits``   vqvae   VQ-VAE, 7x7 positions x 128 codes (embedding dim 16)
``gan-digits``     gan     DCGAN generator, 32-d N(0, 1) latent
``snn-color``      snn     spiking net (snntorch, T = 64) for 3x32x32 colour images, 10 outputs
``vqvae-color``    vqvae   VQ-VAE for 3x32x32 colour, 8x8 positions x 512 codes (dim 64)
``gan-color``      gan     SN-GAN-style generator for 3x32x32 colour, 128-d N(0, 1) latent
=================  ======  ==========================================================

>>> from mango import zoo
>>> net = zoo.load("snn-digits")                   # nn.Module in eval mode
>>> gen = zoo.load_generator("vqvae-digits")       # a mango Generator (codes view)

Weights live in ``mango/zoo/weights/NAME.pt`` (plain state_dicts, loaded with
``torch.load(..., weights_only=True)``); metrics in ``mango/zoo/metrics.json``;
the model card is ``mango/zoo/README.md``; ``python -m mango.zoo.train NAME`` retrains
(``python -m mango.zoo.train_color NAME`` for the colour models).  The colour zoo's
held-out images ship as ``weights/heldout-color.pt`` (:func:`mango.zoo.color.heldout_color`).
"""

from __future__ import annotations

import json
import os

import torch

from ..errors import ConfigError, UnknownNameError

__all__ = ["list_models", "load", "load_generator", "weights_path", "model_names", "canonical_name", "MODELS"]

HERE = os.path.dirname(os.path.abspath(__file__))

#: name -> (class name in mango.zoo.models, kind, description, input/latent description)
MODELS: dict[str, dict] = {
    "snn-digits": {
        "cls": "SNNDigits", "kind": "snn",
        "description": "Convolutional spiking network (snntorch Leaky, 20 steps, constant-current input) "
                       "for 28x28 digits; forward(x) -> (spk_rec, mem_rec) [T, B, 10].",
        "input_shape": [1, 28, 28], "output": "spikes [T=20, B, 10]",
        "layers": ["lif1", "lif2", "lif3"],
    },
    "sj-digits": {
        "cls": "SJDigits", "kind": "snn", "requires": "spikingjelly",
        "description": "Convolutional spiking network (SpikingJelly LIF, multi-step, 10 steps; forward repeats "
                       "the image over T) for 28x28 digits; forward(x) -> output spikes [T, B, 10].",
        "input_shape": [1, 28, 28], "output": "spikes [T=10, B, 10]",
        "layers": ["lif1", "lif2", "lif3"],
    },
    "cnn-digits": {
        "cls": "CNNDigits", "kind": "cnn",
        "description": "Small CNN (3 conv + 2 fc) for 28x28 digits; logits [B, 10]; named layers "
                       "features.conv1..pool3, classifier.fc1, classifier.fc2.",
        "input_shape": [1, 28, 28], "output": "logits [B, 10]",
        "layers": ["features.conv1", "features.conv2", "features.conv3", "classifier.fc1", "classifier.fc2"],
    },
    "vqvae-digits": {
        "cls": "VQVAEDigits", "kind": "vqvae",
        "description": "VQ-VAE for 28x28 digits: 7x7 latent positions x 128 codes, embedding dim 16 (EMA codebook).",
        "input_shape": [1, 28, 28], "latent_shape": [7, 7], "codes": 128, "embedding_dim": 16,
    },
    "gan-digits": {
        "cls": "GANGenerator", "kind": "gan",
        "description": "DCGAN generator for 28x28 digits: z ~ N(0, 1) in 32 dimensions -> image in [0, 1].",
        "latent_dim": 32, "output_shape": [1, 28, 28],
    },
    # colour CIFAR-size zoo (classes in mango.zoo.color; trained by python -m mango.zoo.train_color)
    "snn-color": {
        "cls": "SNNColor", "module": "color",
        "retrain": "python -m mango.zoo.train_color snn-color", "kind": "snn",
        "description": "Convolutional spiking network (snntorch Leaky, 64 steps, constant-current input) for 3x32x32 "
                       "colour images (digits drawn in colour on photographs); two conv + two linear spiking "
                       "layers, trained with a firing-rate penalty (outputs do not saturate); "
                       "forward(x) -> (spk_rec, mem_rec) [T, B, 10].",
        "input_shape": [3, 32, 32], "output": "spikes [T=64, B, 10]",
        "layers": ["lif1", "lif2", "lif3", "lif4"],
    },
    "vqvae-color": {
        "cls": "VQVAEColor", "module": "color",
        "retrain": "python -m mango.zoo.train_color vqvae-color", "kind": "vqvae",
        "description": "VQ-VAE for 3x32x32 colour images: 8x8 latent positions x 512 codes, embedding dim 64 "
                       "(a 4,096-d embedding space; EMA codebook).",
        "input_shape": [3, 32, 32], "latent_shape": [8, 8], "codes": 512, "embedding_dim": 64,
    },
    "gan-color": {
        "cls": "SNGANGenerator", "module": "color",
        "retrain": "python -m mango.zoo.train_color gan-color", "kind": "gan",
        "description": "SN-GAN-style generator for 3x32x32 colour images: z ~ N(0, 1) in 128 dimensions -> image in "
                       "[0, 1] (discriminator with spectral norm; not shipped).",
        "latent_dim": 128, "output_shape": [3, 32, 32], "kwargs": {"width": 32},
    },
}


def model_names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(MODELS)


def canonical_name(name: str) -> str:
    """The zoo model name of ``name`` (``"zoo:"`` prefix dropped); a clear error if there is no such model."""
    if not isinstance(name, str):
        raise ConfigError(f"a zoo model name must be a string, got {type(name).__name__}.")
    n = name[4:] if name.startswith("zoo:") else name
    if n not in MODELS:
        raise UnknownNameError("zoo model", name, MODELS)
    return n


def weights_path(name: str) -> str:
    """Path of the shipped weights file of zoo model ``name``."""
    return os.path.join(HERE, "weights", f"{canonical_name(name)}.pt")


def _metrics() -> dict:
    path = os.path.join(HERE, "metrics.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f).get("models", {})


def list_models() -> list[dict]:
    """One dict per zoo model: name, kind, description, shapes, file size, metrics, training record."""
    rec = _metrics()
    out = []
    for name in model_names():
        info = {k: v for k, v in MODELS[name].items() if k not in ("cls", "module", "kwargs", "retrain")}
        path = os.path.join(HERE, "weights", f"{name}.pt")
        r = rec.get(name, {})
        info.update(
            name=name,
            file=os.path.relpath(path, os.path.dirname(HERE)),
            file_bytes=os.path.getsize(path) if os.path.isfile(path) else None,
            available=os.path.isfile(path),
            metrics=r.get("metrics", {}),
            train_seconds=r.get("train_seconds"),
            n_parameters=r.get("n_parameters"),
            command=r.get("command", MODELS[name].get("retrain", f"python -m mango.zoo.train {name}")),
        )
        out.append(info)
    return out


def load(name: str, device=None) -> torch.nn.Module:
    """Zoo model ``name`` (``"snn-digits"`` or ``"zoo:snn-digits"``) with its trained weights, in eval mode.

    ``device``: where to put it (default: CUDA when available, else the CPU).
    """
    from . import models
    from ..generators.devices import default_device

    n = canonical_name(name)
    path = weights_path(n)
    if not os.path.isfile(path):
        raise ConfigError(
            f"the weights of zoo model {n!r} are missing ({path}); reinstall mango or retrain them with "
            f"{MODELS[n].get('retrain', f'python -m mango.zoo.train {n}')}"
        )
    if MODELS[n].get("requires") == "spikingjelly":
        import logging

        quiet = logging.getLogger("torch._library.triton")  # torch warns "Triton not available" on CPU-only installs
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            import spikingjelly.activation_based.neuron  # noqa: F401
            try:  # SpikingJelly 2 registers its LIF kernels (and torch warns) on the first forward: do it here, quietly
                import spikingjelly._ops.lif  # noqa: F401
            except Exception:  # noqa: BLE001 - a private module; other versions may not have it
                pass
        except ImportError as exc:
            raise ConfigError(
                f"zoo model {n!r} is a SpikingJelly network, and SpikingJelly is not installed ({exc}); install it "
                "without its heavy declared dependencies: pip install -e '.[spikingjelly]' && "
                "pip install --no-deps spikingjelly==2.0.0") from None
        finally:
            quiet.setLevel(level)
    module = models
    if MODELS[n].get("module"):  # e.g. the colour zoo's classes live in mango.zoo.color
        import importlib

        module = importlib.import_module(f"{__name__}.{MODELS[n]['module']}")
    model = getattr(module, MODELS[n]["cls"])(**MODELS[n].get("kwargs", {}))
    dev = default_device(device)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.zoo_name = n
    return model.to(dev).eval()


def load_generator(name: str, device=None, **kw):
    """A :class:`mango.generators.Generator` over generative zoo model ``name``.

    ``vqvae-digits`` -> :class:`~mango.generators.VQVAEGenerator` (``view=``, ``snap=`` ...);
    ``gan-digits`` -> :class:`~mango.generators.GANGenerator` (``low=``, ``high=``, ``levels=`` ...).
    """
    from ..generators import GANGenerator, VQVAEGenerator

    n = canonical_name(name)
    kind = MODELS[n]["kind"]
    if kind == "vqvae":
        return VQVAEGenerator(load(n, device), device=device, **kw)
    if kind == "gan":
        return GANGenerator(load(n, device), device=device, **kw)
    gens = [m for m in model_names() if MODELS[m]["kind"] in ("vqvae", "gan")]
    raise ConfigError(f"zoo model {n!r} is a {kind}, not a generative model; generators are {gens}.")
