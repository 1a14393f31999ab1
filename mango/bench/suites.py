"""Named suites: lists of :class:`~mango.bench.problems.Problem`.

* ``quick`` -- two cheap test-function problems (sphere on a 10-D Box,
  Rastrigin on a 6-D Grid of 16 levels) for CI and smoke tests; default
  optimizers random, ga, cma.
* ``functions`` -- sphere / rastrigin on a Box, a Grid-free codebook, with and
  without Gaussian noise.
* ``zoo`` -- units of the zoo SNN and CNN (output neurons and hidden units of
  several layers) over the zoo generators: VQ-VAE codes (Codebook) and its
  continuous embedding view, the GAN latent (Box, and a 64-level Grid) and
  gratings; noise none and Poisson.
* ``zoo-small`` -- five ``zoo`` problems (CNN output / hidden units and an SNN
  hidden unit; GAN latent, gratings, VQ-VAE codes; one with Poisson noise) for
  a run of well under an hour on two cores.  No SNN output neuron.
* ``lab-heldout`` -- six further zoo problems drawn by a seeded random choice
  of layer, unit and generator (seed :data:`HELDOUT_SEED`, fixed before any
  tuning), reported apart from ``lab`` so that tuning to it would show.
* ``lab`` -- seven ``zoo`` problems for lab-sized budgets (100-3,000 queries;
  benchmarks/RESULTS.md): the SNN's output neuron 3 read out by its membrane
  potential (as in the main job) over the VQ-VAE codes and over its continuous
  embedding view; an SNN hidden unit over the GAN latent; CNN units over the
  VQ-VAE embedding, the GAN's 64-level Grid and gratings; a CNN hidden unit
  with Poisson noise over the VQ-VAE embedding.

* ``spikes`` -- ten problems whose responses are spike counts or rates, as a
  lab records them and as the MANGO paper maximizes them: the colour zoo's SNN
  (``snn-color``, 3x32x32, T = 64) read out by the rate of output neurons and
  of a hidden linear unit, and by the spike count of the neuron at the centre
  of a convolutional channel, over the colour VQ-VAE's codes (8x8 of 512) and
  its 4,096-d embedding view and the colour GAN's 128-d latent; the digit
  SNN's convolutional channels by their mean count over the map; two with the count a Poisson draw from
  the rate times a window (``noise="poisson"``).  Values are multiples of 1/T,
  many stimuli give none, many tie.
* ``spikes-heldout`` -- six further spike problems drawn by a seeded random
  choice (seed :data:`SPIKES_HELDOUT_SEED`, declared with the suite before any
  tuning; :func:`draw_spikes_heldout`), reported apart.

* ``population`` -- two population problems (several units, one campaign
  each; every unit normalized by its own maximum over the training images,
  the headline ``normalized`` the median over the units): the SNN's ten
  output neurons (membrane readout) over the VQ-VAE embedding view, and the
  CNN's ten output units over the GAN latent.

Normalization is as everywhere: a unit's value over its maximum over the
natural images (the digit zoo's training digits; the colour zoo's shipped
held-out images, :func:`mango.runs.natural.reference.zoo_images`).

The SNN output neuron (``snn-out3``) is always read out by its membrane
potential: its spike rate saturates at 1 for most stimuli, so with a rate
readout every optimizer ties.  Hidden SNN units are read out by spike rate.

``get(name)`` returns the list; ``SUITES`` maps names to builders and
``DEFAULT_OPTIMIZERS`` to each suite's default optimizer list.
"""

from __future__ import annotations

from typing import Callable

from ..errors import UnknownNameError
from .problems import Problem

__all__ = ["get", "available", "SUITES", "DEFAULT_OPTIMIZERS", "PAPER_OPTIMIZERS"]

# every optimizer the issue names, with the protes package both in the QTT paper's settings (k=10, k_top=1,
# quantized) and in its defaults.  ``protes-loop`` is the package's own loop driven by ask/tell
# (mango.optimizers.peers.protes); it has the ``quantize`` option, which ``protes`` (the same module's step-by-step
# PROTES) does not.
PAPER_OPTIMIZERS = "random,ga,cma,ng:NGOpt,ng:Portfolio,tt,protes-loop[k=10;k_top=1;quantize=true],protes-loop"


def _quick() -> list[Problem]:
    return [
        Problem.make("sphere-box10", "function", family="function", fn="sphere", dim=10),
        Problem.make("rastrigin-grid6x16", "function", family="function", fn="rastrigin", dim=6, levels=16),
    ]


def _functions() -> list[Problem]:
    out = []
    for fn, dim in (("sphere", 10), ("rastrigin", 10), ("codebook", 16)):
        for noise in ("none", "gaussian"):
            name = f"{fn}-{dim}" + ("" if noise == "none" else "-gauss")
            out.append(Problem.make(name, "function", noise=noise, family=f"function:{fn}", fn=fn, dim=dim))
    return out


_GENERATORS = {
    "vq": "vqvae-digits:codes",
    "vqemb": "vqvae-digits:embedding",
    "gan": "gan-digits",
    "gan64": "gan-digits:64",
    "grat": "grating",
    "cvq": "vqvae-color:codes",
    "cvqemb": "vqvae-color:embedding",
    "cgan": "gan-color",
}

# (model, layer, unit[, SNN readout]) targets: output neurons and hidden units from several layers
_TARGETS = {
    "snn-out3": ("snn-digits", "output", 3, "membrane"),  # output neuron of digit 3, membrane readout
    "snn-l1u5": ("snn-digits", "lif1", 5),        # hidden: channel 5 of the first spiking layer
    "snn-l2u7": ("snn-digits", "lif2", 7),        # hidden: channel 7 of the second spiking layer
    "cnn-out7": ("cnn-digits", "output", 7),      # output logit of digit 7
    "cnn-r2u4": ("cnn-digits", "features.relu2", 4),    # hidden: conv2 channel 4 after ReLU
    "cnn-fc1u9": ("cnn-digits", "classifier.relu4", 9),  # hidden: fc1 unit 9 after ReLU
}


# spike targets: (model, layer, unit, readout[, spatial]); a conv channel's neuron at the centre of its map by count
_SPIKE_TARGETS = {
    "snnc-out3": ("snn-color", "output", 3, "rate"),       # colour SNN output neuron 3 (the paper's readout)
    "snnc-out7": ("snn-color", "output", 7, "rate"),
    "snnc-l3u9": ("snn-color", "lif3", 9, "rate"),          # hidden linear layer, unit 9
    "snnc-l2u9c": ("snn-color", "lif2", 9, "count", "center"),   # conv2 channel 9, the centre neuron
    "snnc-l1u5c": ("snn-color", "lif1", 5, "count", "center"),   # conv1 channel 5: silent to most stimuli
    # the digit SNN (T = 20): a channel's centre neuron fires on every step for many stimuli (every optimizer
    # reaches its training-image maximum within 100 queries), so its channels are read by their mean count
    "snn-l2u7cnt": ("snn-digits", "lif2", 7, "count"),
    "snn-l1u5cnt": ("snn-digits", "lif1", 5, "count"),
}


assert not set(_TARGETS) & set(_SPIKE_TARGETS), "a spike target would change a zoo/lab problem"


def _zoo_problem(target: str, gen: str, noise: str = "none") -> Problem:
    model, layer, unit, *rest = {**_TARGETS, **_SPIKE_TARGETS}[target]
    name = f"{target}@{gen}" + ("" if noise == "none" else f"+{noise}")
    kw = {"readout": rest[0]} if rest else {}
    if len(rest) > 1:
        kw["spatial"] = rest[1]
    return Problem.make(name, "zoo", noise=noise, family=f"{model}:{gen}", model=model, layer=layer,
                        unit=unit, generator=_GENERATORS[gen], **kw)


def _zoo() -> list[Problem]:
    out = []
    for target in _TARGETS:
        for gen in _GENERATORS:
            out.append(_zoo_problem(target, gen))
        out.append(_zoo_problem(target, "vq", "poisson"))
    return out


# (target, generator[, noise]) of the hand-picked zoo suites
_ZOO_SMALL = (("cnn-out7", "gan"), ("snn-l2u7", "gan"), ("cnn-out7", "grat"), ("cnn-out7", "vq"),
              ("cnn-fc1u9", "vq", "poisson"))
_LAB = (("snn-out3", "vq"), ("snn-out3", "vqemb"), ("snn-l2u7", "gan"), ("cnn-out7", "vqemb"),
        ("cnn-r2u4", "gan64"), ("cnn-out7", "grat"), ("cnn-fc1u9", "vqemb", "poisson"))


def _zoo_small() -> list[Problem]:
    return [_zoo_problem(*spec) for spec in _ZOO_SMALL]


def _lab() -> list[Problem]:
    return [_zoo_problem(*spec) for spec in _LAB]


# layers of the zoo nets a held-out problem may target: (model, layer, number of units[, SNN readout])
_HELDOUT_LAYERS = (
    ("snn-digits", "lif1", 12), ("snn-digits", "lif2", 32), ("snn-digits", "output", 10, "membrane"),
    ("cnn-digits", "features.relu1", 16), ("cnn-digits", "features.relu2", 32), ("cnn-digits", "features.relu3", 64),
    ("cnn-digits", "classifier.relu4", 128), ("cnn-digits", "output", 10),
)
HELDOUT_SEED = 20261201  # declared with the suite, before any tuning of `surrogate`


def _lab_heldout() -> list[Problem]:
    """Six zoo problems drawn by a seeded random choice of layer, unit and generator (never a lab problem),
    one of them with Poisson noise: the problems nobody tuned on."""
    import numpy as np

    rng = np.random.default_rng(HELDOUT_SEED)
    lab = {p.name for p in _lab()}
    out: list[Problem] = []
    while len(out) < 6:
        model, layer, n_units, *readout = _HELDOUT_LAYERS[int(rng.integers(len(_HELDOUT_LAYERS)))]
        unit = int(rng.integers(n_units))
        gen = list(_GENERATORS)[int(rng.integers(len(_GENERATORS)))]
        noise = "poisson" if len(out) == 5 else "none"
        short = f"{model.split('-')[0]}-{layer.split('.')[-1]}u{unit}"
        name = f"{short}@{gen}" + ("" if noise == "none" else "+poisson")
        if name in lab or name in {p.name for p in out}:
            continue
        kw = {"readout": readout[0]} if readout else {}
        out.append(Problem.make(name, "zoo", noise=noise, family=f"{model}:{gen}", model=model, layer=layer,
                                unit=unit, generator=_GENERATORS[gen], **kw))
    return out


_SPIKES = (("snnc-out3", "cvqemb"), ("snnc-out3", "cvq"), ("snnc-out7", "cgan"), ("snnc-out7", "cvqemb", "poisson"),
           ("snnc-l3u9", "cvqemb"), ("snnc-l2u9c", "cvq"), ("snnc-l1u5c", "cvqemb"), ("snn-l2u7cnt", "vq"),
           ("snn-l1u5cnt", "gan"), ("snn-l2u7cnt", "vqemb", "poisson"))


def _spikes() -> list[Problem]:
    return [_zoo_problem(*spec) for spec in _SPIKES]


# layers a held-out spike problem may target: (model, layer, number of units, readout, spatial)
_SPIKES_HELDOUT_LAYERS = (
    ("snn-color", "lif1", 16, "count", "center"), ("snn-color", "lif2", 32, "count", "center"),
    ("snn-color", "lif3", 128, "rate", None), ("snn-color", "output", 10, "rate", None),
    ("snn-digits", "lif1", 12, "count", "center"), ("snn-digits", "lif2", 32, "count", "center"),
)
_SPIKES_HELDOUT_GENERATORS = {"snn-color": ("cvq", "cvqemb", "cgan"), "snn-digits": ("vq", "vqemb", "gan")}
SPIKES_HELDOUT_SEED = 20261207  # declared with the suite, before any tuning on `spikes`
#: the draw of :func:`draw_spikes_heldout` (checked against it by the tests): (model, layer, unit, readout, spatial,
#: generator, noise)
SPIKES_HELDOUT = (
    ("snn-color", "output", 5, "rate", None, "cvqemb", "none"),
    ("snn-color", "output", 2, "rate", None, "cvq", "none"),
    ("snn-color", "lif3", 116, "rate", None, "cvqemb", "none"),
    ("snn-color", "lif1", 6, "count", "center", "cgan", "none"),
    ("snn-color", "output", 9, "rate", None, "cgan", "none"),
    ("snn-color", "lif3", 18, "rate", None, "cvq", "poisson"),
)


def draw_spikes_heldout(n: int = 6) -> list[tuple]:
    """The seeded draw behind ``spikes-heldout``: layer, unit and generator at random (seed
    :data:`SPIKES_HELDOUT_SEED`), never a ``spikes`` problem, the last one with Poisson noise; a unit silent to
    every natural image (its reference maximum 0, so it cannot be normalized) is drawn again.  Runs the networks
    on their natural images, so the suite keeps the result (:data:`SPIKES_HELDOUT`)."""
    import numpy as np

    from .problems import zoo_oracle, zoo_reference_images

    rng = np.random.default_rng(SPIKES_HELDOUT_SEED)
    taken = {p.name for p in _spikes()}
    out: list[tuple] = []
    while len(out) < n:
        model, layer, n_units, readout, spatial = _SPIKES_HELDOUT_LAYERS[int(rng.integers(len(_SPIKES_HELDOUT_LAYERS)))]
        unit = int(rng.integers(n_units))
        gens = _SPIKES_HELDOUT_GENERATORS[model]
        gen = gens[int(rng.integers(len(gens)))]
        noise = "poisson" if len(out) == n - 1 else "none"
        spec = (model, layer, unit, readout, spatial, gen, noise)
        if _heldout_name(spec) in taken | {_heldout_name(s) for s in out}:
            continue
        from ..runs.natural.reference import unit_responses

        oracle = zoo_oracle(model, layer, unit, None, readout, spatial)
        if not float(unit_responses(oracle, zoo_reference_images(model)).max()) > 0:
            continue
        out.append(spec)
    return out


def _heldout_name(spec: tuple) -> str:
    model, layer, unit, readout, spatial, gen, noise = spec
    short = ("snnc" if model == "snn-color" else "snn") + "-" + ("out" if layer == "output" else
                                                              layer.replace("lif", "l") + "u") + str(unit)
    return f"{short}{'c' if spatial == 'center' else ''}@{gen}" + ("" if noise == "none" else f"+{noise}")


def _spikes_heldout() -> list[Problem]:
    out = []
    for spec in SPIKES_HELDOUT:
        model, layer, unit, readout, spatial, gen, noise = spec
        kw = {"readout": readout, **({"spatial": spatial} if spatial else {})}
        out.append(Problem.make(_heldout_name(spec), "zoo", noise=noise, family=f"{model}:{gen}", model=model,
                                layer=layer, unit=unit, generator=_GENERATORS[gen], **kw))
    return out


def _population() -> list[Problem]:
    ten = list(range(10))
    return [
        Problem.make("snn-out0-9@vqemb", "zoo", family="snn-digits:vqemb", model="snn-digits", layer="output",
                     unit=ten, generator=_GENERATORS["vqemb"], readout="membrane"),
        Problem.make("cnn-out0-9@gan", "zoo", family="cnn-digits:gan", model="cnn-digits", layer="output", unit=ten,
                     generator=_GENERATORS["gan"]),
    ]


SUITES: dict[str, Callable[[], list[Problem]]] = {
    "quick": _quick, "functions": _functions, "zoo": _zoo, "zoo-small": _zoo_small, "lab": _lab,
    "lab-heldout": _lab_heldout, "population": _population, "spikes": _spikes, "spikes-heldout": _spikes_heldout,
}

DEFAULT_OPTIMIZERS = {
    "quick": "random,ga,cma",
    "functions": "random,ga,cma,ng:NGOpt",
    "zoo": PAPER_OPTIMIZERS,
    "zoo-small": PAPER_OPTIMIZERS,
    "lab": PAPER_OPTIMIZERS,
    "lab-heldout": PAPER_OPTIMIZERS,
    "population": "random,cma,surrogate",
    # turbo is run to 300 queries only (its cubic cost), in a run of its own: see benchmarks/RESULTS.md
    "spikes": PAPER_OPTIMIZERS + ",surrogate",
    "spikes-heldout": PAPER_OPTIMIZERS + ",surrogate",
}


def available() -> list[str]:
    """Names of the built-in suites."""
    return sorted(SUITES)


def get(name: str) -> list[Problem]:
    """The problems of suite ``name``."""
    if name not in SUITES:
        raise UnknownNameError("suite", name, SUITES)
    return SUITES[name]()
