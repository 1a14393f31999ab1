"""What ``mango maximize --list-optimizers`` prints: every usable optimizer, grouped, one line each.

mango's own optimizers carry a hand-written line.  nevergrad's (``ng:<Name>``)
are grouped and described from nevergrad's own registry entry: its kind
(differential evolution, (1+1)-ES, chaining, portfolio, ...) and the settings
that differ from that kind's defaults.  Methods that propose one point at a
time are marked; they run with batch size 1.  The grouping follows the kind of
nevergrad's entry first and the name second, so it is a guide, not a taxonomy.
"""

from __future__ import annotations

import fnmatch
import inspect
import re

from .registry import available

__all__ = ["GROUPS", "catalog", "format_catalog"]

GROUPS = (
    "mango's own",
    "portfolios and algorithm selection",
    "CMA-ES and evolution strategies",
    "differential evolution and particle swarms",
    "Bayesian optimization and surrogate models",
    "local and direct search",
    "chains, splits and rescalings",
    "discrete and combinatorial",
    "sampling and random search",
    "other",
)

_OWN = {
    "random": "uniform random search (the baseline)",
    "cma": "CMA-ES (pycma) in box coordinates scaled to the unit cube; the fast choice when queries are free",
    "ga": "XDream-style genetic algorithm (elitism, tournament selection, crossover, mutation)",
    "surrogate": ("model-based: a GP on the stimuli, trust region, batch Thompson sampling through the generator; "
                  "the default"),
    "inception": ("model-based for many units: one CNN ensemble on the images (or, with backbone=, a linear "
                  "readout per unit of a pretrained network's features), stimuli synthesized per unit"),
    "tt": "tensor-train sampling (PROTES-style, numpy); on a Box through a grid of levels",
    "protes": "the protes package's PROTES (jax), stepped one generation at a time, for comparison with tt",
    "protes-loop": "the protes package's own loop driven by ask/tell (quantize=true: its QTT setting)",
    "ttopt": "the ttopt package's TTOpt (TT cross with maximum volume) driven by ask/tell",
    "turbo": "BoTorch's TuRBO-1 (trust-region Bayesian optimization, the tutorial's settings)",
}


def _short(obj) -> str:
    if isinstance(obj, type):
        return obj.__name__
    return str(obj).strip()


def _config(entry) -> dict:
    """The settings of a nevergrad registry entry, through its public ``ConfiguredOptimizer.config()``
    (a copy; ``{}`` for an entry that is a plain optimizer class, which has no configuration)."""
    config = getattr(entry, "config", None)
    if isinstance(entry, type) or not callable(config):
        return {}
    return dict(config())


def _nondefault(entry) -> dict:
    cfg = _config(entry)
    try:
        sig = inspect.signature(type(entry).__init__)
    except (TypeError, ValueError):  # pragma: no cover
        return cfg
    out = {}
    for k, v in cfg.items():
        p = sig.parameters.get(k)
        if p is None or p.default is inspect.Parameter.empty:
            out[k] = v
            continue
        try:
            same = p.default == v
            same = bool(same)
        except Exception:  # noqa: BLE001 - arrays and such: show them
            same = False
        if not same:
            out[k] = v
    return out


def _fmt_cfg(cfg: dict, skip=()) -> str:
    items = []
    for k, v in cfg.items():
        if k in skip:
            continue
        if isinstance(v, (list, tuple)):
            v = "[" + ", ".join(_short(x) for x in v) + "]"
        elif isinstance(v, type) or not isinstance(v, (str, int, float, bool, type(None))):
            v = _short(v)
        items.append(f"{k}={v}")
    return ", ".join(items)


_KIND_TEXT = {
    "DifferentialEvolution": "differential evolution",
    "ConfPSO": "particle swarm optimization",
    "ParametrizedOnePlusOne": "(1+1) evolution strategy",
    "ParametrizedCMA": "CMA-ES",
    "EMNA": "estimation of multivariate normal algorithm",
    "EvolutionStrategy": "evolution strategy",
    "ParametrizedTBPSA": "test-based population-size adaptation (for noisy problems)",
    "SamplingSearch": "one-shot sampling",
    "RandomSearchMaker": "random search",
    "ParametrizedBO": "Bayesian optimization (Gaussian process, bayes_opt)",
    "BayesOptim": "Bayesian optimization (bayes_optim)",
    "NonObjectOptimizer": "direct/local search",
    "Pymoo": "pymoo algorithm",
    "NoisySplit": "split optimizer for noisy problems",
}


def _describe_ng(name: str, entry) -> str:
    kind = type(entry).__name__
    cfg = _nondefault(entry) if kind != "type" else {}
    conf = _config(entry)
    if isinstance(entry, type):
        doc = (entry.__doc__ or "").strip().splitlines()
        text = doc[0].strip().rstrip(".") if doc else f"nevergrad's {entry.__name__} ({entry.__mro__[1].__name__})"
    elif kind == "Chaining":
        text = "chain: " + " then ".join(_short(o) for o in conf.get("optimizers", []))
        cfg = {}
    elif kind == "ConfPortfolio":
        text = "portfolio of " + ", ".join(_short(o) for o in conf.get("optimizers", []))
        cfg = {k: v for k, v in cfg.items() if k != "optimizers"}
    elif kind == "ParametrizedMetaModel":
        inner = conf.get("multivariate_optimizer")
        text = f"surrogate model ({conf.get('algorithm')}) around {_short(inner) if inner else 'CMA-ES'}"
        cfg = {k: v for k, v in cfg.items() if k not in ("multivariate_optimizer", "algorithm")}
    elif kind == "MultipleSingleRuns":
        text = f"best of {conf.get('num_single_runs')} independent runs of " \
               f"{_short(conf.get('base_optimizer'))}"
        cfg = {}
    elif kind == "Rescaled":
        text = f"{_short(conf.get('base_optimizer'))} with a rescaled search region"
        cfg = {k: v for k, v in cfg.items() if k != "base_optimizer"}
    elif kind == "ConfSplitOptimizer":
        text = "splits the variables among several " + _short(conf.get("multivariate_optimizer"))
        cfg = {k: v for k, v in cfg.items() if k != "multivariate_optimizer"}
    elif kind == "NonObjectOptimizer":
        text = f"{conf.get('method')} (direct/local search)"
        cfg = {k: v for k, v in cfg.items() if k != "method"}
    elif kind == "SamplingSearch":
        c = conf
        text = ("one-shot sampling: " + ("scrambled " if c.get("scrambled") else "") + str(c.get("sampler"))
                + (" (Cauchy)" if c.get("cauchy") else ""))
        cfg = {k: v for k, v in cfg.items() if k not in ("sampler", "scrambled", "cauchy")}
    else:
        text = _KIND_TEXT.get(kind, kind)
    extra = _fmt_cfg(cfg)
    line = text + (f" ({extra})" if extra else "")
    if getattr(entry, "no_parallelization", False):
        line += "; one point at a time"
    return line if len(line) <= 150 else line[:147] + "..."


def _group_ng(name: str, entry) -> str:
    kind = type(entry).__name__
    if kind in ("Chaining", "ConfSplitOptimizer", "Rescaled", "NoisySplit"):
        return "chains, splits and rescalings"
    if kind in ("ConfPortfolio", "MultipleSingleRuns") or re.match(r"(NGO|Portfolio|Shiwa$|CM$|Wiz|NgIoh|NgDS|"
                                                                     r"MultiBFGS|Carola|BAR|Noisy.*Portfolio)", name):
        return "portfolios and algorithm selection"
    if kind in ("ParametrizedBO", "BayesOptim", "ParametrizedMetaModel") or re.search(
            r"(^|[a-z0-9])BO($|[A-Z0-9])|MetaModel|SMAC|^AX|pysot|HyperOpt|Optuna", name):
        return "Bayesian optimization and surrogate models"
    if kind in ("Chaining", "ConfSplitOptimizer", "Rescaled", "NoisySplit") or name.startswith("Chain"):
        return "chains, splits and rescalings"
    if kind in ("DifferentialEvolution", "ConfPSO") or re.search(r"DE($|[A-Z0-9_])|PSO", name):
        return "differential evolution and particle swarms"
    if kind == "ParametrizedOnePlusOne" and re.search(r"Discrete|Lengler|Doerr|Portfolio|Recombining|Lognormal|"
                                                      r"Binary|Crossover|Sparse|Tabu", name):
        return "discrete and combinatorial"
    if re.search(r"Discrete|Binary", name):
        return "discrete and combinatorial"
    if kind in ("ParametrizedCMA", "EMNA", "EvolutionStrategy", "ParametrizedTBPSA", "ParametrizedOnePlusOne") \
            or re.search(r"CMA|ES$|ES[A-Z0-9]|TBPSA|EMNA|OnePlusOne", name):
        return "CMA-ES and evolution strategies"
    if kind in ("NonObjectOptimizer", "Pymoo") or re.search(r"Powell|Cobyla|SQP|BFGS|NelderMead|SPSA|NLOPT|"
                                                            r"BOBYQA|^DS|Cauchy|Newuoa|GradientDescent", name):
        return "local and direct search"
    if kind in ("SamplingSearch", "RandomSearchMaker") or re.search(r"Search|Sampling|Halton|Hammersley|LHS|"
                                                                     r"Recentering|Zero", name):
        return "sampling and random search"
    return "other"


def catalog() -> list[tuple[str, str, str]]:
    """``(group, name, one-line description)`` of every name :func:`mango.optimizers.available` lists."""
    rows = []
    reg = None
    for name in available():
        if name.startswith("ng:"):
            if reg is None:
                import nevergrad as ng

                from .nevergrad_opt import registry_keys

                reg, keys = ng.optimizers.registry, registry_keys()
            entry = reg[keys[name[3:]]]
            rows.append((_group_ng(name[3:], entry), name, _describe_ng(name[3:], entry)))
        else:
            rows.append(("mango's own", name, _OWN.get(name, "")))
    order = {g: i for i, g in enumerate(GROUPS)}
    rows.sort(key=lambda r: (order.get(r[0], len(GROUPS)), r[1] if r[0] != "mango's own" else
                             list(_OWN).index(r[1]) if r[1] in _OWN else 99))
    return rows


def _matches(pattern: str, row) -> bool:
    pat = pattern.lower()
    text = [row[1].lower(), row[1][3:].lower() if row[1].startswith("ng:") else row[1].lower()]
    if any(c in pat for c in "*?["):
        return any(fnmatch.fnmatchcase(t, pat) for t in text)
    return any(pat in t for t in text + [row[0].lower(), row[2].lower()])


def format_catalog(pattern: str | None = None) -> str:
    """The listing: group headings, then ``  name  description`` lines; ``pattern`` filters
    (a substring of the name, group or description, case-insensitive; or a glob on the name like ``'ng:*DE'``)."""
    rows = catalog()
    if pattern:
        rows = [r for r in rows if _matches(pattern, r)]
    if not rows:
        return f"no optimizer matches {pattern!r}; `mango maximize --list-optimizers` lists them all."
    width = min(max(len(r[1]) for r in rows), 30)
    out, group = [], None
    for g, name, desc in rows:
        if g != group:
            n = sum(1 for r in rows if r[0] == g)
            out.append(("" if group is None else "\n") + f"{g} ({n}):")
            group = g
        out.append(f"  {name.ljust(width)}  {desc}".rstrip())
    from .nevergrad_opt import missing_packages, left_off

    off = left_off()
    tail = f"\n{len(rows)} optimizer(s)" + (f" matching {pattern!r}" if pattern else "")
    if off and not pattern:
        pkgs = sorted({m for n in off for m in missing_packages(n)})
        tail += (f"; {len(off)} of nevergrad's are not listed: they need optional packages that are not "
                 f"installed ({', '.join(pkgs)})")
    return "\n".join(out) + "\n" + tail + "."
