"""``mango atlas``: the command line of :func:`mango.runs.atlas.atlas` (the main CLI calls :func:`add_subparser`).

::

    mango atlas --layer output --layer lif2 --budget-per-unit 100 --out atlas-snn          # a process pool
    mango atlas --layer output --layer lif2 --budget-per-unit 100 --dask local --workers 2 --out atlas-snn
    mango atlas --layer output --checkpoints ckpts/ --budget-per-unit 100 --out atlas-training
    mango atlas --site-only --out atlas-snn                                               # rewrite the site
"""

from __future__ import annotations

import sys

from ..errors import ConfigError
from ..runs.atlas import atlas
from .maximize import parse_params, parse_units
from .track import add_options, units_arg

__all__ = ["add_subparser", "cmd_atlas"]

_HELP = "every unit of one or more layers, sharded over a Dask cluster, browsable as a static site"
_DESCRIPTION = ("Map every unit of the given layers: the units are cut into shards (population campaigns of at most "
                "--shard-size units), run on a Dask cluster (--dask local|ADDRESS) or a local process pool, each "
                "shard with its own run store in the atlas directory; then a static site (OUT/site/index.html) shows "
                "every unit's best stimulus beside its best natural images. Rerun the same command to continue: "
                "finished shards are skipped, unfinished ones resume from their stores. Follow it live with "
                "`mango watch OUT`.")

_OPTIONS = (
    ("scope", "--model", {"default": "zoo:snn-digits", "help": "zoo:NAME or FILE.py:FACTORY (default %(default)s)"}),
    ("scope", "--layer", {"action": "append", "metavar": "LAYER",
                          "help": "a layer to map (repeatable; default: output)"}),
    ("scope", "--unit", {"default": "all", "metavar": "all|LIST",
                         "help": "units of every layer: 'all' (default) or a list (0-9, 0,2,5)"}),
    ("scope", "--readout", {"choices": ["membrane", "rate", "count"],
                            "help": "spiking networks (default: membrane for snnTorch, rate for SpikingJelly)"}),
    ("scope", "--num-steps", {"type": int, "help": "time steps for spiking networks (default: the model's)"}),
    ("scope", "--checkpoints", {"nargs": "+", "metavar": "FILE|DIR", "help": (
        "checkpoint files in training order, or a directory of NAME-epochEEE.pt files: every unit over training "
        "(default: the model's own weights)")}),
    ("scope", "--reference", {"default": "auto", "metavar": "auto|DIR|FILE.npy|none", "help": (
        "natural images that normalize values (default auto: a zoo model's own images)")}),
    ("search", "--generator", {"default": "zoo:vqvae-digits:embedding", "help": "(default %(default)s)"}),
    ("search", "--optimizer", {"default": "surrogate", "help": "see `mango maximize --list-optimizers`"}),
    ("search", "--param", {"action": "append", "metavar": "KEY=VALUE", "help": "optimizer parameter (repeatable)"}),
    ("search", "--budget-per-unit", {"type": int, "metavar": "N",
                                     "help": "each unit's share: a shard of K units runs K*N queries"}),
    ("search", "--shard-budget", {"type": int, "metavar": "N", "help": "one budget per shard, shared by its units"}),
    ("search", "--shard-size", {"type": int, "metavar": "K", "help": (
        "most units per shard (default: the fewest shards that keep every worker busy)")}),
    ("search", "--rounds", {"type": int, "metavar": "R", "help": (
        "exchange rounds: after each of R parts of its budget, every shard starts each unit from its best "
        "stimulus anywhere in the layer (default 2 when a layer is split, else 1)")}),
    ("search", "--batch-size", {"type": int}),
    ("search", "--seeds", {"default": "0", "metavar": "LIST", "help": "campaign seeds, e.g. 0 or 0-2 (default 0)"}),
    ("search", "--cold", {"action": "store_true", "help": "with --checkpoints: no warm start between them"}),
    ("run", "--dask", {"metavar": "local|ADDRESS", "help": (
        "a Dask cluster: 'local' (a LocalCluster of --workers processes) or a scheduler address (tcp://host:8786); "
        "default: a local process pool")}),
    ("run", "--workers", {"type": int, "default": 2, "help": "processes of the local pool or LocalCluster "
                                                              "(default %(default)s)"}),
    ("run", "--threads", {"type": int, "default": 1, "help": "torch threads per task (default %(default)s)"}),
    ("run", "--device", {"help": "torch device on the workers (default: cuda if available, else cpu)"}),
    ("run", "--out", {"default": "mango-atlas", "help": "the atlas directory (default %(default)s)"}),
    ("run", "--progress-every", {"type": float, "default": 10.0, "metavar": "SECONDS",
                                 "help": "seconds between overall progress lines (default %(default)s)"}),
    ("run", "--site-only", {"action": "store_true", "help": "only (re)write the site from what OUT holds"}),
)


def add_subparser(subparsers) -> None:
    """Add ``mango atlas`` to an argparse subparsers object."""
    p = subparsers.add_parser("atlas", help=_HELP, description=_DESCRIPTION)
    add_options(p, _OPTIONS)
    p.set_defaults(func=cmd_atlas)


def _units(text: str):
    """``--unit``: ``"all"`` or a list of indices (one index is a list of one)."""
    unit = units_arg(text)
    return [unit] if isinstance(unit, int) else unit


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in parse_units(str(text))]
    except ConfigError:
        raise ConfigError(f"--seeds takes a list of whole numbers (0, 0-2, 0,3); got {text!r}.") from None


def cmd_atlas(args) -> int:
    say = lambda line: print(f"mango {line}", flush=True)  # noqa: E731
    if args.site_only:
        from ..runs.atlas.site import write_site
        from ..runs.atlas.summary import collect

        import os

        say(f"atlas: site written: {write_site(collect(args.out), os.path.join(args.out, 'site'))}")
        return 0
    for name in ("budget_per_unit", "shard_budget", "shard_size", "rounds", "batch_size", "num_steps", "workers",
                 "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}.")
    if args.budget_per_unit is None and args.shard_budget is None:
        raise ConfigError("give --budget-per-unit N (each unit's share) or --shard-budget N (one budget per shard).")
    if not args.progress_every > 0:
        raise ConfigError(f"--progress-every must be > 0 seconds, got {args.progress_every}.")
    res = atlas(args.model, args.layer or ["output"], _units(args.unit), generator=args.generator,
                optimizer=args.optimizer, budget_per_unit=args.budget_per_unit, shard_budget=args.shard_budget,
                shard_size=args.shard_size, rounds=args.rounds, seeds=_seeds(args.seeds),
                checkpoints=args.checkpoints, out=args.out,
                dask=args.dask, workers=args.workers, readout=args.readout, num_steps=args.num_steps,
                reference=None if args.reference == "none" else args.reference, batch_size=args.batch_size,
                warm=not args.cold, device=args.device, threads=args.threads, log=say,
                log_every=args.progress_every, **parse_params(args.param))
    print(f"atlas: {res.queries:,} queries in {res.wall_s:.0f} s ({res.queries_per_s:.1f} queries/s); "
          f"open {res.site}", file=sys.stdout)
    return 0
