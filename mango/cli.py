"""The ``mango`` command line: thin over the Python API.

``mango maximize`` runs one activation-maximization campaign; with no
arguments it maximizes an output neuron of the bundled spiking network over the
bundled VQ-VAE.  Other subcommands (``zoo``, ``report``, ``rig``, ``bench``)
live beside the code they drive; each module exposes ``add_subparser``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from ._version import __version__
from .errors import ConfigError, MangoError

# subcommand name -> module exposing add_subparser(subparsers)
_SUBCOMMANDS = {
    "zoo": "mango.zoo.cli",
    "report": "mango.report",
    "rig": "mango.rig.cli",
    "bench": "mango.bench.cli",
}

DEFAULT_MODEL = "zoo:snn-digits"
DEFAULT_GENERATOR = "zoo:vqvae-digits:embedding"
DEFAULT_OPTIMIZER = "cma"
DEFAULT_BUDGET = 1000


def _parse_value(text: str):
    """``--param k=v`` values: JSON when it parses (numbers, true, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _params(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--param takes KEY=VALUE, got {item!r} (e.g. --param sigma0=0.2).")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def _load_factory(spec: str):
    """``path/to/file.py:factory`` -> the callable ``factory`` (the user's own code)."""
    if ":" not in spec:
        raise ConfigError(f"expected FILE.py:FACTORY, got {spec!r} (e.g. my_net.py:build).")
    path, name = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise ConfigError(f"no such file {path!r} (from {spec!r}).")
    mod_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise ConfigError(f"{path} defines no {name!r}; public names: {[n for n in dir(module) if not n.startswith('_')]}.")
    return getattr(module, name)


def build_model(spec: str, weights: str | None = None, device=None):
    """A torch model from ``zoo:NAME`` or ``FILE.py:FACTORY`` (+ ``--weights``)."""
    import torch

    if spec.startswith("zoo:"):
        from . import zoo

        if weights:
            raise ConfigError("--weights is for your own models; zoo models ship their weights.")
        return zoo.load(spec[4:], device=device)
    model = _load_factory(spec)()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module.")
    if weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - reported with the fix
            raise ConfigError(f"could not load weights {weights!r} with weights_only=True: {exc}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
    return model.to(device) if device else model


def _spiking_framework(model) -> str | None:
    """``"snntorch"`` / ``"spikingjelly"`` for a spiking network (it gets an SNNOracle), else None."""
    from .oracles import spiking_layers
    from .oracles import spikingjelly as sj

    layers = spiking_layers(model)
    if not layers:
        return None
    return "spikingjelly" if any(sj.is_neuron(m) for _, m in layers) else "snntorch"


def build_oracle(args):
    """The oracle described by the CLI arguments."""
    if args.oracle:
        if not args.oracle.startswith("rig://"):
            raise ConfigError(f"--oracle takes rig://HOST:PORT, got {args.oracle!r}.")
        from .rig import RigOracle

        return RigOracle.from_uri(args.oracle, timeout=args.rig_timeout, retries=args.rig_retries)
    from . import oracles

    model = build_model(args.model, args.weights, device=args.device)
    unit = args.unit
    framework = _spiking_framework(model)
    if framework:
        # default readout: snntorch's membrane (before the reset its spike triggers) keeps rising with the drive;
        # SpikingJelly's .v is after the reset, so it drops when a neuron starts firing: the spike rate there
        kw = {"readout": args.readout or ("rate" if framework == "spikingjelly" else "membrane")}
        if args.num_steps:
            kw["num_steps"] = args.num_steps
        oracle = oracles.SNNOracle(model, layer=args.layer, unit=unit, device=args.device, **kw)
    else:
        oracle = oracles.TorchOracle(model, layer=args.layer, unit=unit, device=args.device)
    if args.noise:
        oracle = oracles.Noisy(oracle, kind=args.noise, seed=args.seed)
    if args.repeats and args.repeats > 1:
        oracle = oracles.Repeat(oracle, times=args.repeats)
    return oracle


def build_generator(spec: str, device=None):
    """``zoo:vqvae-digits[:codes|:embedding]``, ``zoo:gan-digits[:grid]``, ``grating``, ``gabor``."""
    from . import generators

    if spec in ("grating", "gabor"):
        return generators.ParametricGenerator(kind=spec, device=device)
    if spec.startswith("zoo:"):
        from . import zoo

        name, _, view = spec[4:].partition(":")
        kw = {}
        if name.startswith("vqvae"):
            kw["view"] = view or "codes"
        elif view == "grid":
            kw["levels"] = 64
        elif view:
            raise ConfigError(f"unknown view {view!r} for {name}; GAN views: grid.")
        return zoo.load_generator(name, device=device, **kw)
    raise ConfigError(
        f"unknown generator {spec!r}; use zoo:vqvae-digits, zoo:vqvae-digits:embedding, zoo:gan-digits, "
        "zoo:gan-digits:grid, grating or gabor."
    )


def _add_maximize(sub):
    p = sub.add_parser(
        "maximize", help="find the stimulus that drives a neuron hardest",
        description="Maximize one unit's response. With no arguments: the membrane potential of output neuron 3 "
                    f"of the bundled spiking network ({DEFAULT_MODEL}) over the bundled VQ-VAE's embedding space, CMA-ES, "
                    f"{DEFAULT_BUDGET} queries.",
    )
    g = p.add_argument_group("target")
    g.add_argument("--model", default=DEFAULT_MODEL, help="zoo:NAME or FILE.py:FACTORY (default %(default)s)")
    g.add_argument("--weights", help="state_dict file for FILE.py:FACTORY models (loaded with weights_only=True)")
    g.add_argument("--layer", default="output", help="dotted module name, or 'output' (default)")
    g.add_argument("--unit", type=int, default=3, help="unit index in the layer (default %(default)s)")
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
    g.add_argument("--repeats", type=int, default=1, help="present each stimulus this many times (counts in the budget)")
    g.add_argument("--objective", help="a test function instead of a neuron: sphere, rastrigin, codebook")
    g.add_argument("--dim", type=int, default=10, help="dimension for --objective (default %(default)s)")
    s = p.add_argument_group("search")
    s.add_argument("--generator", default=DEFAULT_GENERATOR, help="(default %(default)s)")
    s.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, help="see `mango maximize --list-optimizers`")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="optimizer parameter (repeatable)")
    s.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="queries (default %(default)s)")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--list-optimizers", action="store_true", help="print optimizer names and exit")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="mango-out", help="output directory (default %(default)s)")
    o.add_argument("--store", help="record every query in this SQLite run store")
    o.add_argument("--resume", metavar="RUN.sqlite", help="continue a killed run recorded with --store")
    o.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--top-k", type=int, default=8, help="best distinct stimuli in best.png (default %(default)s)")
    p.set_defaults(func=cmd_maximize)


_RESUME_KEYS = ("model", "weights", "layer", "unit", "num_steps", "readout", "oracle", "rig_timeout", "rig_retries", "noise",
                "repeats", "objective", "dim", "generator", "optimizer", "param", "budget", "batch_size", "seed",
                "device")


def cmd_maximize(args) -> int:
    import mango
    from . import optimizers

    if args.list_optimizers:
        print("\n".join(optimizers.available()))
        return 0
    store = args.store
    resume = False
    if args.resume:
        from .store import read_config

        saved = (read_config(args.resume).get("metadata") or {}).get("cli_args")
        if not saved:
            raise ConfigError(f"{args.resume} was not recorded by `mango maximize --store`; resume it from Python.")
        for k in _RESUME_KEYS:
            if k in saved:
                setattr(args, k, saved[k])
        store, resume = args.resume, True
    for name in ("budget", "batch_size", "repeats"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}.")
    params = _params(args.param)
    generator = None
    if args.objective:
        from . import testfunctions

        fn, space = testfunctions.get(args.objective, args.dim)
        objective, kw = fn, {"space": space}
    else:
        objective = build_oracle(args)
        generator = build_generator(args.generator, device=args.device)
        kw = {"generator": generator}
    run_config = {k: getattr(args, k) for k in _RESUME_KEYS}
    result = mango.maximize(objective, optimizer=args.optimizer, budget=args.budget, batch_size=args.batch_size,
                            seed=args.seed, progress=False if args.no_progress else None, store=store,
                            resume=resume, metadata={"cli_args": run_config}, **kw, **params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = result.to_dict()
    d["cli_args"] = run_config
    (out / "result.json").write_text(json.dumps(d, indent=2, default=str))
    result.write_curve_csv(out / "curve.csv")
    from .plots import save_best_stimuli, save_curve

    save_curve(result, out / "curve.png")
    if generator is not None:
        save_best_stimuli(result, generator, out / "best.png", top_k=args.top_k)
    print(f"best value {result.best_value:.6g} at query {result.best_query} of {result.n_queries} "
          f"({result.stop_reason}); {result.wall_s:.1f} s; wrote {out}/result.json, curve.csv, curve.png"
          + (", best.png" if generator is not None else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MangoError as exc:
        print(f"mango: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print("mango: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
