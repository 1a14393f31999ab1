"""``mango track``: the command line of :func:`mango.runs.track.campaign.track` (the main CLI calls :func:`add_subparser`).

::

    mango track --checkpoints ckpts/ --unit all --budget 1000 --out track-out
    mango track --checkpoints ckpts/ --cold --out track-cold          # no warm start, for comparison
    mango track --unit 3 --warm-from day1/000-model.sqlite --out day2  # the same neuron, another day
"""

from __future__ import annotations

import sys

from .maximize import parse_params, parse_units
from ..errors import ConfigError
from ..runs.track.campaign import track

__all__ = ["add_subparser", "add_options", "cmd_track", "units_arg"]

_HELP = "the same units over training checkpoints, each campaign warm-started from the last"
_DESCRIPTION = ("Run one campaign per checkpoint on the same units (a population campaign for several), each "
                "warm-started from the previous checkpoint's best point per unit, and write a report of the units' "
                "best stimuli and values across checkpoints (index.html, track.md). Rerun the same command to "
                "continue: finished checkpoints are skipped, an unfinished one is resumed.")

# (group, flag, argparse keywords): the options of `mango track`
_OPTIONS = (
    ("target", "--checkpoints", {"nargs": "+", "metavar": "FILE|DIR", "help": (
        "checkpoint files in training order, or one directory of NAME-epochEEE.pt files (python -m mango.zoo.train "
        "NAME --checkpoints DIR); default: the model's own weights, one campaign")}),
    ("target", "--model", {"default": "zoo:snn-digits", "help": "zoo:NAME or FILE.py:FACTORY (default %(default)s)"}),
    ("target", "--layer", {"default": "output", "help": "dotted module name, or 'output' (default)"}),
    ("target", "--unit", {"default": "all", "metavar": "0-9|all|LIST",
                          "help": "units: an index, a list (0-9, 0,2,5) or 'all' (default: all units of the layer)"}),
    ("target", "--readout", {"choices": ["membrane", "rate", "count"],
                             "help": "spiking networks (default: membrane for snnTorch, rate for SpikingJelly)"}),
    ("target", "--num-steps", {"type": int, "help": "time steps for spiking networks (default: the model's)"}),
    ("search", "--generator", {"default": "zoo:vqvae-digits:embedding", "help": "(default %(default)s)"}),
    ("search", "--optimizer", {"default": "cma", "help": "see `mango maximize --list-optimizers`"}),
    ("search", "--param", {"action": "append", "metavar": "KEY=VALUE", "help": "optimizer parameter (repeatable)"}),
    ("search", "--budget", {"type": int, "default": 1000, "help": "queries per checkpoint (default %(default)s)"}),
    ("search", "--batch-size", {"type": int}),
    ("search", "--seed", {"type": int, "default": 0}),
    ("search", "--cold", {"action": "store_true", "help": "no warm start between checkpoints (for comparison)"}),
    ("search", "--warm-from", {"metavar": "STORE", "help": (
        "an earlier run's store: the first campaign starts from its best point per unit (the same neuron recorded "
        "on another day)")}),
    ("output", "--out", {"default": "mango-track", "help": "output directory (default %(default)s)"}),
    ("output", "--device", {"help": "torch device (default: cuda if available, else cpu)"}),
    ("output", "--no-progress", {"action": "store_true", "help": "no progress bar or progress lines"}),
    ("output", "--progress-every", {"type": float, "default": 10.0, "metavar": "SECONDS", "help": (
        "when stderr is not a terminal: one progress line every SECONDS (default %(default)s)")}),
)


def add_options(parser, options) -> None:
    """Add an options table ``(group, flag, argparse keywords)`` to ``parser``, groups in their first order."""
    groups: dict = {}
    for group, flag, kw in options:
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        groups[group].add_argument(flag, **kw)


def add_subparser(subparsers) -> None:
    """Add ``mango track`` to an argparse subparsers object."""
    p = subparsers.add_parser("track", help=_HELP, description=_DESCRIPTION)
    add_options(p, _OPTIONS)
    p.set_defaults(func=cmd_track)


def units_arg(text: str):
    """``--unit`` text: ``"all"``, an index (``"3"``) or a list (``"0-9"``, ``"0,2,5"``)."""
    text = str(text).strip()
    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    try:
        return parse_units(text)
    except ConfigError:
        raise ConfigError(f"--unit takes a unit index (3), a list (0-9, 0,2,5, 0-3,7) or 'all'; got {text!r}.") \
            from None


def cmd_track(args) -> int:
    for name in ("budget", "batch_size", "num_steps"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}.")
    if not args.progress_every > 0:
        raise ConfigError(f"--progress-every must be > 0 seconds, got {args.progress_every}.")
    callbacks, progress = [], False
    if not args.no_progress:
        if hasattr(sys.stderr, "isatty") and sys.stderr.isatty():
            progress = True  # a tqdm bar per campaign
        else:
            from ..runs.progress import LineProgress

            callbacks.append(LineProgress(args.progress_every))
    res = track(args.checkpoints, model=args.model, generator=args.generator, layer=args.layer,
                unit=units_arg(args.unit), readout=args.readout, num_steps=args.num_steps, optimizer=args.optimizer,
                budget=args.budget, batch_size=args.batch_size, seed=args.seed, out=args.out, warm=not args.cold,
                warm_from=args.warm_from, device=args.device, progress=progress, callbacks=callbacks,
                log=lambda line: print(f"mango track: {line}", flush=True), **parse_params(args.param))
    print(f"wrote {res.out}/index.html, track.md, track_grid.png, track_values.png" if res.report
          else f"wrote {res.out}")
    if not res.complete:
        print("mango track: not every checkpoint finished; rerun the same command to continue", file=sys.stderr)
        return 130
    return 0
