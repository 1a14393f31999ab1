"""Benchmark problems: a target (test function or zoo neuron), a space, a noise level.

A :class:`Problem` is a small, hashable, picklable description (names and
parameters only).  The objective it describes is *built inside the worker*
that runs it (:func:`build`) and cached per process, so problems travel cheaply
to process pools and Dask workers.

Normalization
-------------
Every built problem carries a reference ``(ref_low, ref_max)`` and values are
reported normalized as ``(value - ref_low) / (ref_max - ref_low)``:

* zoo neurons: ``ref_low = 0`` and ``ref_max`` = the unit's maximum response
  over the zoo's training images (:func:`mango.zoo.data.load_digits`), so
  ``normalized = activation / max over training images`` (1.0 = as strong as
  the best natural image; AM usually goes beyond 1).
* several zoo units (``unit=[0, 1, 2]``: a **population** problem, run as one
  population campaign): each unit is normalized by its own maximum over the
  training images (``Built.unit_ref_max``); ``ref_max`` is their median.
* test functions (maximized, optimum 0): ``ref_max = 0`` (the known optimum)
  and ``ref_low`` = the mean value of 1,000 uniformly random points (seed 0),
  so 0 = random guessing and 1 = the optimum.

:mod:`mango.bench.metrics` also normalizes by the best value ever found on the
problem across all runs of a benchmark.

Noise
-----
``noise="none"``, ``"poisson"`` or ``"gaussian"``.  Poisson noise treats the
unit's activation as a firing rate: a response ``v`` is observed as
``N / peak * ref_max`` with ``N ~ Poisson(peak * max(v, 0) / ref_max)``, i.e.
an activation equal to the training-image maximum yields ``peak`` spikes on
average (``peak=20`` by default; parameter ``peak``).  Gaussian noise adds
``N(0, sigma^2 (ref_max - ref_low)^2)`` (``sigma=0.1`` by default).  Both are
:class:`mango.oracles.ResponseNoise`, the noise model of :class:`mango.oracles.Noisy`.  Noise is
seeded by the run seed.  Optimizers only ever see noisy values; the benchmark
scores a run by the *noiseless* value of its recommendation (the point with the
best observed value), which costs no queries and is what an experimenter would
want to know.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, UnknownNameError

__all__ = ["Problem", "Built", "build", "register_kind", "KINDS", "NOISES"]

NOISES = ("none", "poisson", "gaussian")


def _freeze(params: dict) -> tuple:
    out = []
    for k, v in sorted(params.items()):
        if isinstance(v, list):
            v = tuple(v)
        try:
            hash(v)
        except TypeError:
            raise ConfigError(f"problem parameter {k}={v!r} must be a number, string or tuple (hashable).")
        out.append((k, v))
    return tuple(out)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, described by names and parameters only.

    Parameters
    ----------
    name : unique name within a suite (used in tables and for seeding).
    kind : how to build it: ``"function"`` (a :mod:`mango.oracles.testfunctions`
        function) or ``"zoo"`` (a unit of a zoo network over a zoo generator);
        more kinds with :func:`register_kind`.
    params : the kind's parameters as sorted ``(key, value)`` pairs; use
        :meth:`Problem.make` to pass them as keywords.
    noise : ``"none"``, ``"poisson"`` or ``"gaussian"``.
    family : groups problems in plots (default: the kind).
    """

    name: str
    kind: str
    params: tuple = ()
    noise: str = "none"
    family: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "," in self.name:
            raise ConfigError(f"problem name must be a non-empty string without commas, got {self.name!r}.")
        if self.noise not in NOISES:
            raise UnknownNameError("noise", self.noise, NOISES)
        if self.kind not in KINDS:
            raise UnknownNameError("problem kind", self.kind, KINDS)
        if isinstance(self.params, dict):
            object.__setattr__(self, "params", _freeze(self.params))

    @classmethod
    def make(cls, name: str, kind: str, noise: str = "none", family: str = "", **params) -> "Problem":
        """``Problem.make("sphere-10", "function", fn="sphere", dim=10)``."""
        return cls(name, kind, _freeze(params), noise, family or kind)

    @property
    def kw(self) -> dict:
        return dict(self.params)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": self.kw, "noise": self.noise,
                "family": self.family or self.kind}


@dataclass
class Built:
    """A problem built in a worker.

    ``clean(points) -> values`` is the noiseless objective; ``space`` the
    search space; ``ref_low``/``ref_max`` the normalization reference;
    ``responses_info`` whether ``clean`` is an object with ``evaluate``.
    """

    clean: Any
    space: Any
    ref_low: float
    ref_max: float
    info: dict = field(default_factory=dict)
    #: a population problem's references, one per unit (its max over the training images); None for one unit
    unit_ref_max: list | None = None

    @property
    def is_population(self) -> bool:
        return self.unit_ref_max is not None

    def normalize(self, v):
        from ..runs.natural.reference import normalize

        return normalize(v, self.ref_max, self.ref_low)

    def normalize_units(self, v):
        """A population problem's values ``[..., K]`` each normalized by its own unit's reference."""
        from ..runs.natural.reference import normalize

        return normalize(v, np.asarray(self.unit_ref_max, dtype=float), self.ref_low)


def _values(objective, points) -> np.ndarray:
    from ..runs.objective import evaluate

    return evaluate(objective, points)[0]


class NoisyObjective:
    """The noiseless objective of a built problem plus seeded observation noise.

    The noise is :class:`mango.oracles.ResponseNoise` (mango's one noise
    model) on the objective's values, scaled by the problem's reference:
    Poisson with ``window=peak`` and ``unit=ref_max`` (a value equal to
    ``ref_max`` yields ``peak`` spikes on average; negative values count as 0),
    Gaussian with std ``sigma * (ref_max - ref_low)``.  A population problem's
    values ``[n, K]`` get the same noise with each unit's own reference as
    ``ref_max`` (a value equal to the unit's reference yields ``peak`` spikes).
    """

    def __init__(self, built: Built, noise: str, seed: int, peak: float = 20.0, sigma: float = 0.1):
        from ..oracles import ResponseNoise

        self.built = built
        self.noise = noise
        self.peak = float(peak)
        self.sigma = float(sigma)
        self.space = built.space
        # a population problem: noise on values divided by each unit's reference, then scaled back
        self.scale = None if built.unit_ref_max is None else np.asarray(built.unit_ref_max, dtype=float)
        ref_max, ref_low = (1.0, 0.0) if self.scale is not None else (built.ref_max, built.ref_low)
        if noise == "poisson":
            if not built.ref_max > 0:
                raise ConfigError(f"Poisson noise scales values by the reference maximum, which must be > 0 "
                                  f"(got {built.ref_max}); use noise='gaussian' for this problem.")
            self.model = ResponseNoise("poisson", window=self.peak, unit=ref_max, clip_negative=True, seed=seed)
        elif noise == "gaussian":
            self.model = ResponseNoise("gaussian", self.sigma * (ref_max - ref_low), seed=seed)
        else:
            self.model = None

    @property
    def targets(self):
        """A population problem's target columns (what :func:`mango.maximize` runs a population campaign on)."""
        return getattr(self.built.clean, "targets", None)

    @property
    def target_names(self) -> list[str]:
        return list(getattr(self.built.clean, "target_names", []) or [])

    @property
    def rng(self):
        """The noise's random generator (None without noise)."""
        return None if self.model is None else self.model.rng

    @property
    def generator(self):
        """The clean objective's generator (what an optimizer that ``needs`` it is given), or None."""
        return getattr(self.built.clean, "generator", None)

    def evaluate(self, points):
        from ..runs.objective import evaluate

        clean, info = evaluate(self.built.clean, points)
        if self.model is None:
            noisy = clean
        elif self.scale is not None:
            noisy = self.model(clean / self.scale) * self.scale
        else:
            noisy = self.model(clean)
        info = dict(info)
        info.pop("stimuli", None)  # keep results small
        return noisy.astype(float), info

    def describe(self) -> dict:
        return {"noise": self.noise, "peak": self.peak, "sigma": self.sigma}


# ---------------------------------------------------------------------------
# kinds

def _build_function(fn: str, dim: int = 10, levels: int | None = None, device=None) -> Built:
    """A :mod:`mango.oracles.testfunctions` function; ``levels`` searches its Box as a Grid."""
    from ..oracles import testfunctions

    f, space = testfunctions.get(fn, int(dim))
    if levels is not None:
        if space.kind != "box":
            raise ConfigError(f"levels= only applies to Box test functions; {fn!r} is on a {space.kind}.")
        grid = space.grid(int(levels))
        box_f = f

        def f(idx, _g=grid, _f=box_f):
            return _f(_g.values(idx))

        space = grid
    low = float(np.mean(f(space.sample(1000, seed=0))))
    return Built(f, space, ref_low=low, ref_max=0.0, info={"reference": "optimum 0; 0 = mean of random points"})


def _zoo_generator(generator: str, device):
    """``"vqvae-digits:codes"``, ``"vqvae-digits:embedding"``, ``"gan-digits"``,
    ``"gan-digits:64"`` (a Grid of 64 levels), ``"grating"``: :func:`mango.zoo.build.build_generator`'s
    specs without their ``zoo:`` prefix."""
    from ..zoo.build import build_generator

    return build_generator(generator if generator in ("grating", "gabor") else f"zoo:{generator}", device=device)


@functools.lru_cache(maxsize=8)
def zoo_reference_images(model: str = "snn-digits"):
    """The natural images a zoo unit is normalized by: the digit zoo's training digits, or for the colour zoo
    (``*-color``) its shipped held-out colour images (:func:`mango.runs.natural.reference.zoo_images`)."""
    if model.endswith("-color"):
        from ..runs.natural.reference import zoo_images

        return zoo_images(model)[0]
    from ..zoo.data import load_digits

    return load_digits().x_train


def zoo_oracle(model: str, layer: str, unit, device, readout: str | None = None, spatial=None):
    """The oracle of unit ``unit`` (an index, or a list of them) of ``layer`` of zoo network ``model``
    (:func:`mango.zoo.build.build_unit_oracle`; ``readout`` only for spiking networks, SNNOracle's default
    ``"rate"`` when not given; ``spatial`` for conv layers, ``"mean"`` when not given, ``"center"`` for the
    one neuron at the centre of a channel's map)."""
    from ..zoo.build import build_model, build_unit_oracle

    unit = [int(u) for u in unit] if isinstance(unit, (list, tuple)) else int(unit)
    return build_unit_oracle(build_model(f"zoo:{model}", device=device), layer, unit, device=device,
                             readout=readout, spatial=spatial)


def _build_zoo(model: str, generator: str, layer: str = "output", unit=0, readout: str | None = None,
               spatial=None, device=None) -> Built:
    """Unit ``unit`` of ``layer`` of zoo network ``model``, over a zoo generator (see :func:`_zoo_generator`).

    ``readout`` (spiking networks only): ``"rate"`` (SNNOracle's default when
    not given), ``"count"`` or ``"membrane"`` (mean membrane potential, as in
    the main job: an output neuron's spike rate saturates at 1).  Several
    units (``unit=(0, 1, 2)``) make a population problem (see the module doc)."""
    from ..runs.objective import Objective

    if isinstance(unit, (list, tuple)) and len(unit) > 1:
        return _build_zoo_population(model, generator, layer, list(unit), readout, device, spatial)
    if isinstance(unit, (list, tuple)):
        unit = unit[0]
    oracle = zoo_oracle(model, layer, unit, device, readout, spatial)
    gen = _zoo_generator(generator, device)
    from ..runs.natural.reference import unit_responses

    ref_max = float(unit_responses(oracle, zoo_reference_images(model)).max())
    if not ref_max > 0:
        raise ConfigError(f"unit {unit} of {model}:{layer} never responds above 0 to the training images "
                          f"(max {ref_max}); pick another unit.")
    objective = Objective(oracle, gen, unit=0)
    return Built(objective, gen.space, ref_low=0.0, ref_max=ref_max,
                 info={"reference": "max over training images", "ref_max": ref_max})


def _build_zoo_population(model: str, generator: str, layer: str, units: list, readout, device,
                          spatial=None) -> Built:
    """Units ``units`` of ``layer`` of zoo network ``model``: a population problem, each unit normalized by its
    own maximum over the training images."""
    from ..runs.objective import Objective
    from ..runs.natural.reference import all_responses

    oracle = zoo_oracle(model, layer, units, device, readout, spatial)
    gen = _zoo_generator(generator, device)
    ref = all_responses(oracle, zoo_reference_images(model)).max(axis=0)
    silent = [u for u, r in zip(units, ref) if not r > 0]
    if silent:
        raise ConfigError(f"units {silent} of {model}:{layer} never respond above 0 to the training images "
                          f"(max {[float(r) for r in ref if not r > 0]}); leave them out of the unit list.")
    objective = Objective(oracle, gen, unit=list(range(len(units))))
    return Built(objective, gen.space, ref_low=0.0, ref_max=float(np.median(ref)),
                 info={"reference": "each unit's max over training images", "ref_max": [float(r) for r in ref],
                       "units": oracle.unit_names},
                 unit_ref_max=[float(r) for r in ref])


KINDS: dict[str, Callable[..., Built]] = {"function": _build_function, "zoo": _build_zoo}


def register_kind(name: str, builder: Callable[..., Built]) -> None:
    """Add a problem kind: ``builder(**params, device=...) -> Built``."""
    KINDS[name] = builder


_NOISE_KEYS = ("peak", "sigma")


@functools.lru_cache(maxsize=32)
def _build_cached(kind: str, params: tuple, device: str | None) -> Built:
    return KINDS[kind](**{k: v for k, v in params if k not in _NOISE_KEYS}, device=device)


def build(problem: Problem, device=None) -> Built:
    """Build (once per process) the noiseless objective, space and reference of ``problem``."""
    if not isinstance(problem, Problem):
        raise ConfigError(f"build() needs a mango.bench.Problem, got {type(problem).__name__}.")
    try:
        return _build_cached(problem.kind, problem.params, None if device is None else str(device))
    except TypeError as exc:
        raise ConfigError(f"problem {problem.name!r} of kind {problem.kind!r} has bad parameters "
                          f"{problem.kw}: {exc}") from exc


def objective_for_run(problem: Problem, seed: int, device=None):
    """``(objective, built)``: the objective one run optimizes (noise seeded by ``seed``)."""
    built = build(problem, device)
    if problem.noise == "none":
        return built.clean, built
    kw = problem.kw
    return NoisyObjective(built, problem.noise, seed, peak=kw.get("peak", 20.0), sigma=kw.get("sigma", 0.1)), built

