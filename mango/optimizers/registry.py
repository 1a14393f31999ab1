"""Optimizer registry: names -> optimizer classes, and :func:`make`.

Built-in names are imported lazily.  ``ng:<Name>`` resolves to any optimizer of
nevergrad's registry.  Optional peers (``protes``, ``protes-loop``, ``ttopt``: :mod:`mango.optimizers.peers.protes`;
``turbo``: :mod:`mango.optimizers.peers.botorch`) appear only when their packages are installed.
"""

from __future__ import annotations

import importlib
import json
from typing import Callable

from ..errors import ConfigError, MangoError, UnknownNameError
from ..spaces import Space

# name -> "module:Class" (lazy) or a class
_REGISTRY: dict[str, object] = {
    "random": "mango.optimizers.random_search:RandomSearch",
    "cma": "mango.optimizers.cmaes:CMAES",
    "ga": "mango.optimizers.ga:GeneticAlgorithm",
    "tt": "mango.optimizers.tt.optimizer:TTOptimizer",
    "surrogate": "mango.optimizers.surrogate:SurrogateOptimizer",
    "inception": "mango.optimizers.inception.optimizer:InceptionOptimizer",
}
# names whose availability depends on an optional package: name -> (module to import, "module:Class")
_OPTIONAL: dict[str, tuple[str, str]] = {
    "protes": ("protes", "mango.optimizers.peers.protes:ProtesOptimizer"),
    # the protes package's own loop driven by ask/tell (with the QTT `quantize` option)
    "protes-loop": ("protes", "mango.optimizers.peers.protes:ProtesLoopOptimizer"),
    "ttopt": ("ttopt", "mango.optimizers.peers.protes:TTOptOptimizer"),
    "turbo": ("botorch", "mango.optimizers.peers.botorch:TurboOptimizer"),
}


def parse_value(text: str):
    """An optimizer parameter's value given as text (``--param k=v``, ``cma[sigma0=0.2]``): JSON when it parses
    (numbers, true, null, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:  # json.JSONDecodeError
        return text


def register(name: str, target=None, *, requires: str | None = None):
    """Register an optimizer class under ``name`` (usable as a decorator).

    ``target`` is a class or a ``"module:Class"`` string; ``requires`` names a
    package that must be importable for the name to be available.  A name that
    is taken is refused (:class:`ConfigError`): nothing is silently replaced.
    """
    taken = name in _REGISTRY or name in _OPTIONAL or name.startswith("ng:")
    if taken:
        raise ConfigError(f"optimizer name {name!r} is already registered (or reserved: 'ng:' names are "
                          "nevergrad's); register yours under another name.")

    def deco(t):
        if requires:
            _OPTIONAL[name] = (requires, t)
        else:
            _REGISTRY[name] = t
        return t

    return deco(target) if target is not None else deco


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _resolve(target):
    if isinstance(target, str):
        mod, cls = target.split(":")
        return getattr(importlib.import_module(mod), cls)
    return target


def available(include_nevergrad: bool = True) -> list[str]:
    """Names accepted by :func:`make`: mango's own, installed peers, and ``ng:<Name>``."""
    names = sorted(_REGISTRY) + sorted(n for n, (req, _) in _OPTIONAL.items() if _importable(req))
    if include_nevergrad:
        from .nevergrad_opt import nevergrad_names

        names += [f"ng:{n}" for n in nevergrad_names()]
    return names


def get(name: str) -> tuple[type, dict]:
    """Class and fixed parameters for ``name``."""
    if not isinstance(name, str):
        raise ConfigError(f"optimizer name must be a string, got {type(name).__name__}.")
    if name.startswith("ng:"):
        from .nevergrad_opt import NevergradOptimizer, nevergrad_names

        method = name[3:]
        if method not in nevergrad_names(all_names=True):  # a left-off name: NevergradOptimizer says why
            raise _unknown(name)
        return NevergradOptimizer, {"method": method}
    if name in _REGISTRY:
        return _resolve(_REGISTRY[name]), {}
    if name in _OPTIONAL:
        req, target = _OPTIONAL[name]
        if not _importable(req):
            raise ConfigError(
                f"optimizer {name!r} needs the optional package {req!r}: pip install 'mango-am[peers]'."
            )
        return _resolve(target), {}
    raise _unknown(name)


def _unknown(name: str) -> UnknownNameError:
    own = available(include_nevergrad=False)
    ng = [n for n in available() if n.startswith("ng:")]
    return UnknownNameError("optimizer", name, own, also=ng,
                            note=f"Also 'ng:<Name>' for any of nevergrad's {len(ng)} optimizers, e.g. ng:NGOpt, "
                                 "ng:Portfolio, ng:DiagonalCMA, ng:TwoPointsDE, ng:OnePlusOne.")


def make(name: str, space: Space, seed: int | None = None, **params):
    """Create optimizer ``name`` on ``space``, adapting spaces where that makes sense.

    >>> from mango.spaces import Box
    >>> opt = make("cma", Box(5, -1, 1), seed=0)
    >>> opt.ask(3).shape
    (3, 5)

    ``budget=`` and ``batch_size=`` are hints some optimizers use.  A
    continuous optimizer on a Grid searches its Box; a discrete optimizer on a
    Box searches ``box.grid(levels)`` (``levels=64`` by default).  A Codebook
    is refused to continuous-only optimizers: its codes are categories.
    """
    from .adapters import OnBoxViaGrid, OnGridViaBox

    if not isinstance(space, Space):
        raise ConfigError(
            f"make() needs a mango Space (Box, Grid or Codebook) as second argument, got {type(space).__name__}."
        )
    cls, fixed = get(name)
    kw = {**fixed, **params}
    if space.kind in cls.native:
        return _built(name, params, lambda: cls(space, seed=seed, **kw))
    if space.kind == "grid" and "box" in cls.native:
        return _built(name, params, lambda: OnGridViaBox(space, cls, seed=seed, **kw))
    if space.kind == "box" and "grid" in cls.native:
        return _built(name, params, lambda: OnBoxViaGrid(space, cls, seed=seed, **kw))
    if space.kind == "codebook":
        raise ConfigError(
            f"optimizer {name!r} is continuous and cannot search a Codebook: codes are unordered categories, "
            "so rounding a continuous code number has no geometry. Use a discrete or categorical optimizer "
            "('random', 'tt', 'ga', or any 'ng:<Name>' through nevergrad's categorical Choice), or search the "
            "generator's continuous embedding space instead (e.g. VQVAEGenerator.embedding_space())."
        )
    raise ConfigError(f"optimizer {name!r} cannot search a {space.kind} space (native: {', '.join(cls.native)}).")


def _built(name: str, params: dict, build):
    """``build()``, with a parameter a library refuses (a ValueError or TypeError while the optimizer is set up,
    before anything is asked) reported as a :class:`ConfigError` naming the optimizer and its parameters."""
    try:
        return build()
    except MangoError:
        raise
    except (ValueError, TypeError) as exc:
        given = {k: v for k, v in params.items() if k not in ("budget", "batch_size")}
        raise ConfigError(f"optimizer {name!r} cannot be set up with parameters {given}: "
                          f"{' '.join(str(exc).split()) or type(exc).__name__}. Check their types and ranges "
                          "(`mango maximize --list-optimizers` names the optimizers).") from exc


Factory = Callable[..., object]
