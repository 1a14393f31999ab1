"""The ``mango`` command line: thin over the Python API.

``mango maximize`` runs one activation-maximization campaign; with no
arguments it maximizes an output neuron of the bundled spiking network over the
bundled VQ-VAE.  Other subcommands (``zoo``, ``report``, ``watch``, ``rig``, ``bench``, ``track``, ``export``, ``atlas``)
live beside this module in :mod:`mango.cli`; each exposes ``add_subparser``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys

import numpy as np
from pathlib import Path

from .._version import __version__
from ..zoo.build import (build_generator, build_model, build_unit_oracle, default_readout, spiking_framework,
                    wrap_oracle)
from ..errors import ConfigError, MangoError
from ..runs.loop import DEFAULT_OPTIMIZER
from ..runs.threads import choose_threads, use_threads
from .values import key_values
from .units import (check_population_options, is_population, model_units, parse_unit_spec, parse_units,
                    population_columns, population_names, rig_channels, unit_spec_text)

# subcommand name -> module exposing add_subparser(subparsers)
_SUBCOMMANDS = {
    "zoo": "mango.cli.zoo",
    "report": "mango.cli.report",
    "watch": "mango.cli.watch",
    "rig": "mango.cli.rig",
    "bench": "mango.cli.bench",
    "track": "mango.cli.track",
    "export": "mango.cli.export",
    "atlas": "mango.cli.atlas",
}

DEFAULT_MODEL = "zoo:snn-digits"
DEFAULT_GENERATOR = "zoo:vqvae-digits:embedding"
DEFAULT_BUDGET = 1000


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (the usage of ``mango maximize`` alone is 17 lines)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _whole(text: str) -> int:
    """argparse type of a count (--budget, --batch-size, ...): a whole number, also written 1e3 or 1000.0."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer()):
        raise argparse.ArgumentTypeError(f"takes a whole number (e.g. 1000 or 1e3), got {text!r}")
    return int(value)


def _params(items) -> dict:
    """``--param k=v`` options: values parsed as JSON when they parse (:func:`~mango.optimizers.registry.parse_value`)."""
    from ..optimizers.registry import parse_value

    return key_values(items, "--param", "sigma0=0.2", parse_value)


parse_params = _params  # public: other subcommands' --param (mango track)


def build_oracle(args, input_shape=None):
    """The oracle described by the CLI arguments (see :mod:`mango.zoo.build`).

    A model's oracle reads ``--unit`` (or the ``--among`` units); several
    ``--unit`` (a population campaign) are read in the order given, ``all`` is
    every unit of the layer (counted with a stimulus of ``input_shape``, which
    also checks the listed units against the layer before anything runs).
    """
    if args.oracle:
        if not args.oracle.startswith("rig://"):
            raise ConfigError(f"--oracle takes rig://HOST:PORT, got {args.oracle!r}.")
        from ..rig import RigOracle

        return RigOracle.from_uri(args.oracle, timeout=args.rig_timeout, retries=args.rig_retries)
    model = build_model(args.model, args.weights, device=args.device)
    framework = spiking_framework(model)
    kw = {}
    if framework:  # --readout / --num-steps only concern spiking networks
        kw = {"readout": args.readout or default_readout(framework), "num_steps": args.num_steps or None}
    among = getattr(args, "among", None)
    spec = parse_unit_spec(args.unit)
    if among:  # --among: the oracle reads all the compared units
        unit = parse_units(among)
    elif is_population(spec):
        unit = model_units(args, spec, model, input_shape, kw)
    elif isinstance(spec, str):
        raise ConfigError(f"--unit {spec!r}: a model's units are indices (e.g. --unit 3, --unit 0-9 or --unit all); "
                          "names are for the channels of a rig (--oracle rig://HOST:PORT).")
    else:
        unit, input_shape = spec, None  # one unit: built exactly as always
    oracle = build_unit_oracle(model, args.layer, unit, device=args.device, input_shape=input_shape, **kw)
    return wrap_oracle(oracle, noise=args.noise, seed=args.seed, repeats=args.repeats)


def _add_maximize(sub):
    p = sub.add_parser(
        "maximize", help="find the stimulus that drives a neuron hardest",
        description="Maximize one unit's response. With no arguments: the membrane potential of output neuron 3 "
                    f"of the bundled spiking network ({DEFAULT_MODEL}) over the bundled VQ-VAE's embedding space, "
                    f"optimizer {DEFAULT_OPTIMIZER}, {DEFAULT_BUDGET} queries.",
    )
    g = p.add_argument_group("target")
    g.add_argument("--model", default=DEFAULT_MODEL, help="zoo:NAME or FILE.py:FACTORY (default %(default)s)")
    g.add_argument("--weights", help="state_dict file (loaded with weights_only=True) for a FILE.py:FACTORY model, "
                                     "or to replace a zoo model's weights, e.g. a training checkpoint")
    g.add_argument("--layer", default="output", help="dotted module name, or 'output' (default)")
    g.add_argument("--unit", default=3, metavar="UNIT|LIST|all",
                   help="unit index in the layer (default %(default)s), or a rig channel's name; several units "
                        "(0-9, 0,2,5, names, or all) make a population campaign: each unit maximized, one shared "
                        "--budget")
    g.add_argument("--among", metavar="UNITS",
                   help="read these units too (0-9, 0,2,5): every one's response is recorded; with --selectivity or "
                        "--direction the value compares them")
    g.add_argument("--selectivity", choices=["difference", "ratio"],
                   help="maximize --unit against the mean of the other --among units: their difference, or their "
                        "ratio (spike counts and rates only)")
    g.add_argument("--direction", metavar="W1,W2,...|FILE.npy",
                   help="maximize the weighted sum of the --among units' responses (one weight each)")
    g.add_argument("--num-steps", type=int, help="time steps for spiking networks (default: the model's)")
    g.add_argument("--readout", choices=["membrane", "rate", "count"], default=None,
                   help="spiking networks: mean membrane potential (default for snntorch: it does not saturate, "
                        "unlike the spike rate, which ties at 1.0 within a few hundred queries), spike rate "
                        "(default for SpikingJelly, whose membrane .v is read after the firing reset and so drops "
                        "when a neuron starts to fire) or count")
    g.add_argument("--oracle", help="rig://HOST:PORT: a lab rig (or simulator) instead of --model")
    g.add_argument("--rig-timeout", type=float, default=5.0, help="seconds per rig request (default %(default)s)")
    g.add_argument("--rig-retries", type=int, default=3)
    g.add_argument("--noise", choices=["poisson", "gaussian"], help="add response noise")
    g.add_argument("--repeats", type=_whole, default=1,
                   help="present each stimulus this many times (counts in the budget)")
    g.add_argument("--objective", help="a test function instead of a neuron: sphere, rastrigin, codebook")
    g.add_argument("--dim", type=int, default=10, help="dimension for --objective (default %(default)s)")
    s = p.add_argument_group("search")
    s.add_argument("--generator", default=DEFAULT_GENERATOR, help="(default %(default)s)")
    s.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, help="see `mango maximize --list-optimizers`")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="optimizer parameter (repeatable)")
    s.add_argument("--budget", type=_whole, default=DEFAULT_BUDGET,
                   help="queries (default %(default)s; 1e3 is read as 1000); with --resume, a larger budget "
                        "extends the run")
    s.add_argument("--batch-size", type=_whole)
    s.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=None,
                   help="propose the next batch while the oracle evaluates this one, so a rig never waits for "
                        "mango (default: on with --oracle rig://, off otherwise)")
    s.add_argument("--pipeline-lag", type=_whole, metavar="N",
                   help="with the pipeline on, ask the next batch when all but the last N points of a batch have "
                        "their values (default 10; the optimizer must propose a batch while the rig shows N "
                        "stimuli)")
    s.add_argument("--seed", type=_whole, default=0)
    s.add_argument("--warm-start", metavar="zoo|DIR|FILE.npy",
                   help="start from natural images: 'zoo' (the zoo's held-out digits), a folder of images, or an .npy "
                        "array of images or of latent points; they are shown first and count against the budget")
    s.add_argument("--warm-n", type=_whole, metavar="N",
                   help="how many images to screen (default: 20 zoo digits, else all)")
    s.add_argument("--list-optimizers", nargs="?", const="", default=None, metavar="PATTERN",
                   help="list the optimizers, grouped, one line each, and exit; PATTERN filters (a substring of "
                        "name, group or description, or a glob on the name such as 'ng:*DE')")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="mango-out",
                   help="output directory (default %(default)s; a resume writes to the run's own --out)")
    o.add_argument("--store", help="record every query in this SQLite run store")
    o.add_argument("--resume", metavar="RUN.sqlite",
                   help="continue a killed run recorded with --store, with its recorded settings; of those, only "
                        "--budget (raise it to extend the run), --device, --threads, --rig-timeout and --rig-retries "
                        "may be given, and output options (--out, --reference, --top-k, progress)")
    o.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    o.add_argument("--threads", type=_whole, metavar="N",
                   help="torch threads for mango's compute (default: $MANGO_THREADS, else $OMP_NUM_THREADS, else "
                        "the usable cores less one for the oracle or rig, at most 8); values depend on it, so "
                        "result.json records it")
    o.add_argument("--reference", default="auto", metavar="auto|none|DIR|FILE.npy",
                   help="natural images that give values a meaning: the unit's max and 99th percentile over them "
                        "(computed once, cached in $MANGO_CACHE/references or ~/.cache/mango/references); "
                        "auto (default) = the zoo's training images for zoo networks, none otherwise")
    o.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    o.add_argument("--quiet", "-q", action="store_true", help="print only errors and the final line")
    o.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                   help="when stderr is not a terminal: one progress line every SECONDS (default %(default)s)")
    o.add_argument("--top-k", type=_whole, default=8,
                   help="best distinct stimuli in best.png (default %(default)s)")
    o.add_argument("--debug", action="store_true", help="on an error, print the full traceback too")
    p.set_defaults(func=cmd_maximize)
    return p


_RESUME_KEYS = ("model", "weights", "layer", "unit", "num_steps", "readout", "oracle", "rig_timeout", "rig_retries",
                "noise", "repeats", "objective", "dim", "generator", "optimizer", "param", "budget", "batch_size",
                "seed", "device", "warm_start", "warm_n", "among", "selectivity", "direction", "threads", "pipeline",
                "pipeline_lag")
#: recorded settings a resume may change: where it runs, on how many threads and how patient it is with a rig
#: (the run stays the same), and the budget (raised: the run is extended)
_RESUME_MAY_CHANGE = ("budget", "device", "rig_timeout", "rig_retries", "threads")
#: output settings recorded with a run: its resume uses them again unless they are given
_OUTPUT_KEYS = ("out", "reference", "top_k")
#: files `mango maximize` writes into --out (checked before the run: none may be a directory)
_OUT_FILES = ("result.json", "best_point.npy", "curve.csv", "curve.png", "best.png", "units.csv",
              "unit_best_points.npy", "units.png", "unit_curves.png")
class _Unset(list):
    """Every option's default while finding which options were given (a list: ``--param`` appends to it)."""


def _given_options(argv) -> set | None:
    """The ``mango maximize`` options given on the command line ``argv`` (their dests), whatever their value;
    None when ``argv`` is not known (a Namespace built by hand)."""
    if not argv or "maximize" not in argv:
        return None
    parser = _add_maximize(_Parser(prog="mango").add_subparsers())
    parser.set_defaults(**{k: _Unset() for k in vars(parser.parse_args([]))})
    ns = parser.parse_args(argv[argv.index("maximize") + 1:])
    return {k for k, v in vars(ns).items() if not (isinstance(v, _Unset) and not v)}


def _flag_text(key: str, value) -> str:
    """A setting as it is typed: ``--optimizer cma``, ``--param sigma0=0.2``, ``no --noise``."""
    flag = "--" + key.replace("_", "-")
    if key == "pipeline":
        return {True: "--pipeline", False: "--no-pipeline"}.get(value, "no --pipeline (its default)")
    if value is None or value is False:
        return f"no {flag}"
    if key == "param":
        return " ".join(f"--param {p}" for p in value) or f"no {flag}"
    if key == "unit":
        return f"{flag} {unit_spec_text(value)}"
    return f"{flag} {value}"


def _same_setting(key: str, a, b) -> bool:
    if key == "param":
        return _params(a) == _params(b)
    if key == "unit":
        a, b = parse_unit_spec(a), parse_unit_spec(b)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _resume_settings(args, parser_defaults: dict) -> None:
    """Take the settings recorded in ``args.resume`` for every option not given; refuse, in one line, given
    options that conflict with them (a resume continues the recorded run as it was)."""
    from ..runs.store import read_config

    path = args.resume
    saved = (read_config(path).get("metadata") or {}).get("cli_args")
    if not saved:
        raise ConfigError(f"{path} was not recorded by `mango maximize --store`; resume it from Python.")
    if args.store and os.path.abspath(args.store) != os.path.abspath(path):
        raise ConfigError(f"--store {args.store} and --resume {path} name different files; a resume records into "
                          f"the run it continues: drop --store (or give a new --store without --resume for a new "
                          "run).")
    given = args.given if args.given is not None else {
        k for k in _RESUME_KEYS + _OUTPUT_KEYS if getattr(args, k) != parser_defaults.get(k)}
    conflicts = []
    for k in _RESUME_KEYS + _OUTPUT_KEYS:
        recorded = saved.get(k, parser_defaults.get(k))
        if k not in given:
            if k in saved:
                setattr(args, k, saved[k])
            continue
        if k == "budget" and args.budget < recorded:
            raise ConfigError(f"--budget {args.budget} is below the budget of the run recorded in {path} "
                              f"({recorded}); a resume can only raise it (to extend the run): drop --budget, or "
                              f"give --budget {recorded} or more.")
        if k in _RESUME_KEYS and k not in _RESUME_MAY_CHANGE and not _same_setting(k, getattr(args, k), recorded):
            conflicts.append((k, getattr(args, k), recorded))
    if conflicts:
        now = ", ".join(_flag_text(k, v) for k, v, _ in conflicts)
        then = ", ".join(_flag_text(k, r) for k, _, r in conflicts)
        flags = ", ".join("--" + k.replace("_", "-") for k, _, _ in conflicts)
        raise ConfigError(f"cannot resume {path} with {now}: the run was recorded with {then}. A resume continues "
                          f"the recorded run as it was: drop {flags}, or start a new run with a new --store "
                          f"(e.g. --store {_new_store_name(path)}).")


def _new_store_name(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-2{ext or '.sqlite'}"


def _check_numbers(args) -> None:
    """Every number of the command line in its range, before anything is built (one line each)."""
    for name in ("budget", "batch_size", "repeats", "warm_n", "top_k", "dim", "num_steps", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}.")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}.")
    if not args.progress_every > 0:
        raise ConfigError(f"--progress-every must be > 0 seconds, got {args.progress_every}.")
    if not args.rig_timeout > 0:
        raise ConfigError(f"--rig-timeout must be > 0 seconds, got {args.rig_timeout}.")
    if args.rig_retries < 0:
        raise ConfigError(f"--rig-retries must be >= 0, got {args.rig_retries}.")


def _check_optimizer(args, space, params: dict, population: bool) -> None:
    """Build the optimizer once on the run's space, so that an unknown name or a parameter out of its range or
    of the wrong type is refused before the network is loaded and before any query."""
    from ..optimizers import make
    from ..optimizers.population import campaign_optimizer

    kw = {"seed": args.seed, "budget": args.budget, "batch_size": args.batch_size or 10}
    if population:  # two targets stand for the campaign's units: the parameters are checked the same way
        campaign_optimizer(args.optimizer, space, 2, **kw, **params)
    else:
        make(args.optimizer, space, **kw, **params)


class _Column:
    """One response column as the value (named, so a cached reference knows which column it was)."""

    def __init__(self, col: int):
        self.col = int(col)
        self.__name__ = f"column({self.col})"

    def __call__(self, responses):
        return responses[:, self.col]


def unit_objective(args, oracle):
    """What ``--unit`` / ``--among`` / ``--selectivity`` / ``--direction`` maximize: the ``unit=`` of maximize.

    ``None`` keeps the oracle's own unit (no ``--among``).  With ``--among``, a
    model's oracle reads exactly those units (columns in that order) and a rig's
    columns are its channels, so the listed indices are its columns.
    """
    from ..runs.objective import Direction, Selectivity

    spec = parse_unit_spec(args.unit)
    if is_population(spec):
        return population_columns(args, oracle, spec)
    if not args.among:
        if args.selectivity or args.direction:
            raise ConfigError("--selectivity and --direction compare units: list them with --among (e.g. --among 0-9).")
        if args.oracle and isinstance(spec, str):
            return rig_channels(args, oracle, [spec])[0]  # one rig channel, by name
        return None
    among = parse_units(args.among)
    cols = among if args.oracle else list(range(len(among)))
    n_units = getattr(oracle, "n_units", len(cols))
    if args.oracle and max(cols) >= n_units:
        raise ConfigError(f"--among {args.among} names channel {max(cols)}, but the rig returns {n_units} "
                          f"channel(s) (0..{n_units - 1}).")
    if args.direction:
        if args.selectivity:
            raise ConfigError("give either --selectivity or --direction, not both.")
        text = args.direction
        try:
            w = np.load(text, allow_pickle=False) if text.endswith(".npy") else [float(x) for x in text.split(",")]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--direction takes comma-separated weights or an .npy file, got {text!r}: "
                              f"{exc}") from None
        w = np.asarray(w, dtype=float).reshape(-1)
        if len(w) != len(among):
            raise ConfigError(f"--direction has {len(w)} weights but --among lists {len(among)} units; give one each.")
        full = np.zeros(n_units)
        full[cols] = w
        return Direction(full)
    if spec not in among:
        raise ConfigError(f"--unit {args.unit} is not among the units of --among {args.among}; include it.")
    col = cols[among.index(spec)]
    if args.selectivity:
        return Selectivity(col, mode=args.selectivity, others=[c for c in cols if c != col])
    return col


def _unwrap(oracle):
    """The oracle inside Noisy / Repeat wrappers (the reference is measured without noise or repeats)."""
    from ..oracles.base import OracleWrapper

    while isinstance(oracle, OracleWrapper):
        oracle = oracle.oracle
    return oracle


def _target(args, oracle) -> dict:
    """What is maximized, in the user's words (the options as given, plus what they resolved to)."""
    if args.objective:
        return {"objective": args.objective, "dim": args.dim,
                "description": f"the {args.objective} test function in {args.dim} dimensions (optimum 0)",
                "value_what": f"value of the {args.objective} test function", "value_units": "none (a test function)"}
    core = _unwrap(oracle)
    names = population_names(args, oracle)
    which = f"unit {args.unit}" if names is None else f"each of units {unit_spec_text(args.unit)}"
    if args.oracle:
        which = which if names is None else f"each of channels {unit_spec_text(args.unit)}"
        t = {"oracle": args.oracle, "unit": args.unit, "generator": args.generator,
             "description": f"response of {which} recorded by the rig at {args.oracle}"}
    else:
        layer = getattr(core, "layer_name", None) or getattr(core, "layer", args.layer)
        t = {"model": args.model, "layer": args.layer, "unit": args.unit, "generator": args.generator}
        if layer != args.layer:
            t["layer_resolved"] = layer
        where = f"layer {args.layer!r}" + (f" (= {layer})" if layer != args.layer else "")
        if hasattr(core, "readout_kind"):
            from ..runs.words import readout_text

            t["readout"] = core.readout_kind
            t["num_steps"] = core.num_steps
            what = readout_text(core.readout_kind)
            t["description"] = (f"{what} of {which} of {where} of {args.model}, over {core.num_steps} "
                                f"time steps per stimulus")
        else:
            t["description"] = f"activation of {which} of {where} of {args.model}"
    if names is not None:
        del t["unit"]
        t["units"] = names
        t["description"] += (f"; a population campaign: each of the {len(names)} units maximized on its own, "
                             f"sharing one budget of {args.budget} queries")
    if args.among:
        t["among"] = args.among
        if args.selectivity:
            t["selectivity"] = args.selectivity
            t["description"] += (f"; maximized: its selectivity ({args.selectivity}) against the other units of "
                                 f"{args.among}")
        elif args.direction:
            t["direction"] = args.direction
            t["description"] = (f"the weighted sum ({args.direction}) of the responses of units {args.among}"
                                + (f" recorded by the rig at {args.oracle}" if args.oracle else f" of {args.model}"))
    if args.noise:
        t["noise"] = args.noise
    if args.repeats and args.repeats > 1:
        t["repeats"] = args.repeats
    return t


def _reference_images(args, generator) -> tuple:
    """``(images, source, None)`` that give values a meaning, or ``(None, None, note)`` saying why none."""
    spec = args.reference
    if spec == "none":
        return None, None, "no reference (--reference none)"
    if args.objective:
        if spec != "auto":
            raise ConfigError("--reference applies to neurons, not to --objective test functions.")
        return None, None, "no reference: a test function (its optimum is 0)"
    if args.oracle:
        if spec != "auto":
            raise ConfigError("--reference is not measured on a rig: it would show every reference image to the "
                              "animal. Record the responses to your natural images separately.")
        return None, None, "no reference: a rig (mango does not spend recording time on reference images)"
    from ..runs.natural import reference as refmod

    shape = tuple(getattr(generator, "output_shape", ()) or ())
    if spec == "auto":
        if not args.model.startswith("zoo:"):
            return None, None, "no reference: your own model; pass --reference DIR|FILE.npy with natural images"
        images, source = refmod.zoo_images(args.model)
        if shape and tuple(images.shape[1:]) != shape:
            return None, None, (f"no reference: the stimuli are {list(shape)}, the zoo's images "
                                f"{list(images.shape[1:])}; pass --reference DIR|FILE.npy")
    else:
        if not shape:
            raise ConfigError("--reference needs a generator with a known output shape.")
        images, source = refmod.load_images(spec, shape)
    if not args.quiet and hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
        print("mango: reference: the unit's responses to natural images (computed once, then cached) ...",
              file=sys.stderr, flush=True)
    return images, source, None


def _cache_words(ref) -> str:
    """Where a reference came from: the cache, or computed now (and where it was cached)."""
    where = ref.cache_file or "nowhere: the cache directory is not writable"
    return (f" (cached: {ref.cache_file})" if ref.seconds == 0.0 else
            f" (computed in {ref.seconds:.0f} s, cached in {where})")


def _reference(args, oracle, generator):
    """``(reference dict or None, note)`` for the run (see :mod:`mango.runs.natural.reference`)."""
    from ..runs.natural import reference as refmod

    images, source, note = _reference_images(args, generator)
    if images is None:
        return None, note
    ref = refmod.unit_reference(_unwrap(oracle), images, source, select=getattr(args, "_select", None))
    if not ref.max > 0:
        return None, (f"no reference: the unit's strongest response to {source} is {ref.max:.4g} (not above 0), "
                      "so values are not divided by it")
    args._reference_line = f"mango: reference: unit's max {ref.max:.4g} over {source}" + _cache_words(ref)
    return ref.to_dict(), None


def _unit_references(args, oracle, generator) -> tuple[list | None, str | None]:
    """A population campaign's references, one per unit (a model's oracle reads exactly its units), and a note.

    A unit whose strongest response to the images is not above 0 gets ``None`` (its values are not divided).
    """
    from ..runs.natural import reference as refmod

    images, source, note = _reference_images(args, generator)
    if images is None:
        return None, note
    core = _unwrap(oracle)
    refs = refmod.population_reference(core, images, source, range(core.n_units))
    out = [r.to_dict() if r.max > 0 else None for r in refs]
    maxes = [r.max for r in refs]
    bad = [n for n, r in zip(core.unit_names, out) if r is None]
    args._reference_line = (f"mango: reference: each unit's max over {source}: median {np.median(maxes):.4g} "
                            f"(min {min(maxes):.4g}, max {max(maxes):.4g})" + _cache_words(refs[0]))
    note = None if not bad else (f"units {', '.join(bad)} never respond above 0 to {source}: their values are "
                                 "not divided by a reference")
    return out, note


class _SayAtStart:
    """Prints a line once the run has started (after the run store, if any, accepted the run)."""

    def __init__(self, text: str):
        self.text = text

    def on_start(self, run) -> None:
        print(self.text, file=sys.stderr, flush=True)

    def on_batch(self, run, batch) -> None:
        pass

    def on_end(self, run) -> None:
        pass


def _maximize_defaults() -> dict:
    """Every ``mango maximize`` option's default."""
    return vars(_add_maximize(_Parser(prog="mango").add_subparsers()).parse_args([]))


def _baselines(args, oracle, generator, population: bool):
    """The unit's value for a blank (all-zero) stimulus -- what showing nothing gives: one number, or one per
    unit of a population campaign.  None for test functions and rigs (no recording time is spent on it)."""
    if args.objective or args.oracle or generator is None:
        return None
    shape = tuple(getattr(generator, "output_shape", ()) or ())
    if not shape:
        return None
    from ..runs.natural.reference import all_responses, unit_responses

    blank = np.zeros((1,) + shape, dtype=np.float32)
    core = _unwrap(oracle)
    if population:
        return [float(v) for v in all_responses(core, blank)[0, :core.n_units]]
    return float(unit_responses(core, blank, getattr(args, "_select", None))[0])


def cmd_maximize(args) -> int:
    if args.list_optimizers is not None:
        from ..optimizers.catalog import format_catalog

        print(format_catalog(args.list_optimizers or None))
        return 0
    store = args.store
    resume = False
    argv = list(getattr(args, "argv", None) or ["maximize"])
    if getattr(args, "given", None) is None:
        args.given = _given_options(getattr(args, "argv", None))
    defaults = _maximize_defaults()
    if args.resume:
        _resume_settings(args, defaults)
        store, resume = args.resume, True
    args.unit = parse_unit_spec(args.unit)
    population = is_population(args.unit)
    if population:
        check_population_options(args)
    _check_numbers(args)
    threads = choose_threads(args.threads, flag="--threads")
    with use_threads(threads):  # mango's compute from here on: the reference, the run, the figures
        return _maximize_run(args, store, resume, population, argv, threads)


def _check_stimulus_shape(args, generator) -> None:
    """A zoo model fed by a generator whose images it cannot take (e.g. ``zoo:snn-color``, 3x32x32, with
    ``zoo:vqvae-digits``, 1x28x28): one clear line before anything is built or run."""
    if args.oracle or not args.model.startswith("zoo:"):
        return
    from .. import zoo

    want = zoo.MODELS[zoo.canonical_name(args.model)].get("input_shape")
    have = tuple(getattr(generator, "output_shape", ()) or ())
    if want and have and tuple(want) != have:
        fits = [f"zoo:{n}" for n in zoo.model_names()
                if list(zoo.MODELS[n].get("output_shape") or zoo.MODELS[n].get("input_shape") or []) == list(want)
                and zoo.MODELS[n]["kind"] in ("vqvae", "gan")]
        raise ConfigError(f"--generator {args.generator} makes {list(have)} images; {args.model} takes "
                          f"{list(want)}" + (f" (use e.g. --generator {' or '.join(fits)})" if fits else "") + ".")


def _maximize_run(args, store, resume: bool, population: bool, argv: list, threads) -> int:
    """``mango maximize`` once its options are checked, on ``threads`` (a :class:`~mango.runs.threads.ThreadChoice`)."""
    from ..runs.loop import maximize

    params = _params(args.param)
    # outputs first: nothing of a run is lost at its end because --out or --store cannot take it
    from ..runs.outdir import check_out_dir

    check_out_dir(args.out, "--out", _OUT_FILES)
    if store and not resume:
        from ..runs.store import check_new_store

        check_new_store(store, "--store")
    generator = None
    optimum = None
    if args.objective:
        from ..oracles import testfunctions

        fn, space = testfunctions.get(args.objective, args.dim)
        objective, kw = fn, {"space": space}
        optimum = float(getattr(fn, "optimum", 0.0))  # the known optimum: `mango watch` draws it
    else:
        generator = build_generator(args.generator, device=args.device)
        space = generator.space
        _check_stimulus_shape(args, generator)
    _check_optimizer(args, space, params, population)
    if generator is not None:
        shape = tuple(getattr(generator, "output_shape", ()) or ()) or None
        objective = build_oracle(args, input_shape=shape if population else None)
        kw = {"generator": generator}
        unit = unit_objective(args, objective)
        if unit is not None:
            kw["unit"] = unit
            if not population and not isinstance(unit, str):  # a rig channel's name: no reference anyway
                args._select = unit if callable(unit) else _Column(unit)
    target = _target(args, objective)
    unit_refs = None
    if population:
        reference, (unit_refs, ref_note) = None, _unit_references(args, objective, generator)
    else:
        reference, ref_note = _reference(args, objective, generator)
    baseline = _baselines(args, objective, generator, population)
    run_config = {k: getattr(args, k) for k in _RESUME_KEYS}
    run_config.update(out=os.path.abspath(args.out), reference=args.reference, top_k=args.top_k)
    metadata = {"cli_args": run_config, "target": {k: v for k, v in target.items() if not k.startswith("value_")}}
    if reference:
        metadata["reference"] = reference
    elif optimum is not None:
        metadata["reference"] = optimum
    if unit_refs:
        metadata["unit_references"] = unit_refs
    if baseline is not None:
        metadata["unit_baselines" if population else "baseline"] = baseline
    callbacks, progress = [], False
    if getattr(args, "_reference_line", None) and not args.quiet:
        callbacks.append(_SayAtStart(args._reference_line))
    if not (args.no_progress or args.quiet):
        if hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
            progress = True  # a tqdm bar
        else:
            from ..runs.progress import LineProgress

            callbacks.append(LineProgress(args.progress_every, reference_max=(reference or {}).get("max")))
    result = maximize(objective, optimizer=args.optimizer, budget=args.budget, batch_size=args.batch_size,
                            seed=args.seed, progress=progress, store=store, callbacks=callbacks,
                            resume=resume, metadata=metadata, warm_start=args.warm_start, warm_n=args.warm_n,
                            threads=threads, pipeline=args.pipeline, pipeline_lag=args.pipeline_lag, **kw,
                            **params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.write_curve_csv(out / "curve.csv")
    from ..runs.report.plots import save_best_stimuli, save_curve
    from ..runs.resultfile import write_result

    files = {"curve_csv": "curve.csv", "curve_png": "curve.png"}
    save_curve(result, out / "curve.png")
    if result.is_population:
        from ..runs.report.plots import save_unit_figures

        files.update(save_unit_figures(result, generator, out, unit_refs))
    elif generator is not None and result.best_value is not None:
        save_best_stimuli(result, generator, out / "best.png", top_k=args.top_k)
        files["best_png"] = "best.png"
    if store:
        files["store"] = os.path.abspath(store)
    rec = write_result(out, result, target, reference, argv=argv, files=files, reference_note=ref_note,
                       unit_references=unit_refs, baseline=baseline)
    if result.is_population:
        _print_population(rec, result, out, files, args.quiet)
    else:
        _print_single(rec, result, reference, out, files)
    if result.interrupted:
        print("mango: interrupted: the partial result above is saved"
              + (f"; continue with mango maximize --resume {store}" if store else ""), file=sys.stderr)
        return 130
    return 0


def _print_single(rec, result, reference, out, files) -> None:
    """One line: the best value (and normalized), where it was found, and what was written."""
    best = "no finite value" if result.best_value is None else f"best value {result.best_value:.6g}"
    norm = rec["best"]["normalized"]
    if norm is not None:
        best += f" = {norm:.3g} x the best natural image ({reference['max']:.4g})"
    what = "" if result.best_value is None else f" at query {result.best_query} (0-based)"
    base = rec.get("baseline")
    if base and base["best_below"]:
        what += (f", below the unit's response to a blank image ({base['value']:.4g}): no stimulus found drives "
                 "it above showing nothing")
    print(f"{best}{what}; {result.n_queries} of {result.budget} queries ({result.stop_reason}), "
          f"{result.wall_s:.1f} s; wrote {out}/result.json, best_point.npy, curve.csv, curve.png"
          + (", best.png" if "best_png" in files else ""))


def _print_population(rec, result, out, files, quiet: bool) -> None:
    """Each unit's best (unless --quiet), then one line: the median unit and what was written."""
    units = rec["units"]
    if not quiet:
        width = max(len(u["name"]) for u in units)
        for u in units:
            line = "no finite value" if u["best_value"] is None else f"best {u['best_value']:.5g}"
            if u["normalized"] is not None:
                line += f" = {u['normalized']:.3g} x its best natural image"
            if u["best_query"] is not None:
                line += f" at query {u['best_query']}"
            if u.get("below_baseline"):
                line += f", below its response to a blank image ({u['baseline']:.5g})"
            print(f"  unit {u['name']:<{width}}  {line}")
    pop = rec["population"]
    head = (f"population campaign of {len(units)} units: median best {pop['median_best_value']:.5g}"
            if pop["median_best_value"] is not None else f"population campaign of {len(units)} units: no finite value")
    if pop["median_normalized"] is not None:
        head += f" = {pop['median_normalized']:.3g} x each unit's best natural image (median over units)"
    below = [u["name"] for u in units if u.get("below_baseline")]
    if below:
        head += (f"; {len(below)} of {len(units)} units end below their response to a blank image "
                 f"({', '.join(below)})")
    files = rec["files"]
    written = ", ".join(["result.json", "curve.csv", "curve.png"] + [
        files[k] for k in ("units_csv", "unit_best_points", "units_png", "unit_curves_png") if k in files])
    print(f"{head}; {result.n_queries} of {result.budget} queries ({result.stop_reason}), {result.wall_s:.1f} s; "
          f"wrote {out}/{written}")


def _warning_line(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr (no source line, no path)."""
    print(f"mango: warning: {message}", file=file or sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mango", description="Gradient-free activation maximization for spiking and artificial neurons.")
    parser.add_argument("--version", action="version", version=f"mango {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_maximize(sub)
    for name, module in _SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
                continue  # subcommand not part of this installation
            raise
        mod.add_subparser(sub)
    return parser


def main(argv=None) -> int:
    import warnings

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    warnings.showwarning = _warning_line
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MangoError as exc:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        text = str(exc)
        if exc.__cause__ is not None and not getattr(args, "debug", True):  # an exception behind it: offer it
            text = text.rstrip(".") + " (rerun with --debug for the full traceback)."
        print(f"mango: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - outside the loop (which returns the partial result)
        print("mango: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
