"""``mango rig {serve,simulate,keys}``: the command line of the rig.

The main CLI calls :func:`add_subparser`; ``python -m mango.cli.rig ...``
runs the same commands on their own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from ..errors import ConfigError, MangoError

__all__ = ["add_subparser", "main"]


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,28,28, got {text!r}")


def _add_security(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-secret", metavar="FILE", help="enable CURVE: the server's .key_secret file "
                   "(from `mango rig keys`)")
    p.add_argument("--allow-clients", metavar="DIR", help="with CURVE, accept only clients whose public .key "
                   "files are in DIR (default: any client that knows the server's public key)")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add ``rig`` with ``serve``, ``simulate`` and ``keys`` to an argparse subparsers object."""
    rig = subparsers.add_parser("rig", help="closed-loop lab rig over ZeroMQ (serve, simulate, keys)",
                                description="Serve a lab rig, simulate one, or make CURVE keys. "
                                "Wire protocol: docs/rig_protocol.md.")
    sub = rig.add_subparsers(dest="rig_command", metavar="{serve,simulate,keys}")
    sub.required = True

    s = sub.add_parser("serve", help="serve the lab's present(stimuli) -> responses function")
    s.add_argument("--module", required=True, metavar="MODULE:FUNCTION",
                   help="the present function, e.g. my_rig:present (the current directory is importable)")
    s.add_argument("--address", default="tcp://127.0.0.1:5555",
                   help="ZeroMQ endpoint to bind (default tcp://127.0.0.1:5555: localhost only)")
    s.add_argument("--units", default=None, help="comma-separated unit names, one per response column "
                   "(default: one unit 'response')")
    s.add_argument("--input-shape", type=_csv_ints, default=None, help="shape of one stimulus, e.g. 1,28,28")
    s.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    _add_security(s)
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("simulate", help="a simulated rig (zoo SNN neuron, Poisson noise, latency, faults)")
    m.add_argument("--port", type=int, default=5555, help="TCP port (0: any free port; the endpoint is printed)")
    m.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    m.add_argument("--model", default="zoo:snn-digits", help="zoo:NAME or 'synthetic' (default zoo:snn-digits)")
    m.add_argument("--layer", default=None, help="layer of the zoo network (default its output)")
    m.add_argument("--unit", default="3", help="unit index or name (default 3, as `mango maximize`); several "
                   "(0-9, 0,2,5) or all: one channel per unit, a recorded population")
    m.add_argument("--noise", default="poisson", choices=["poisson", "none"])
    m.add_argument("--window", type=float, default=0.5, help="Poisson counting window in seconds (default 0.5)")
    m.add_argument("--latency-ms", type=float, default=5.0, help="presentation time per batch (default 5 ms)")
    m.add_argument("--on-ms", type=float, default=None, help="show the stimuli one by one, each this long, and "
                   "report each one's onset and offset (e.g. 150; default: no per-stimulus times)")
    m.add_argument("--off-ms", type=float, default=100.0, help="with --on-ms, the blank after each stimulus "
                   "(default 100 ms)")
    m.add_argument("--jitter-ms", type=float, default=0.0, help="with --on-ms, the standard deviation of each "
                   "on and off duration (default 0; drawn from --seed)")
    m.add_argument("--drop", type=float, default=0.0, help="probability of dropping a reply")
    m.add_argument("--delay-prob", type=float, default=0.0, help="probability of delaying a reply")
    m.add_argument("--delay-s", type=float, default=1.0, help="delay of a delayed reply in seconds")
    m.add_argument("--malformed-prob", type=float, default=0.0, help="probability of a malformed reply")
    m.add_argument("--restart-after", type=int, default=None, help="restart once at the N-th new request")
    m.add_argument("--restart-pause", type=float, default=0.5, help="seconds down during the restart")
    m.add_argument("--seed", type=int, default=0, help="seed of the noise and the faults")
    m.add_argument("--log", default=None, metavar="FILE", help="append one JSON line per presented batch")
    m.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    m.add_argument("--device", default=None, help="torch device of the simulated network (default CPU)")
    _add_security(m)
    m.set_defaults(func=cmd_simulate)

    k = sub.add_parser("keys", help="generate a CURVE key pair (NAME.key public, NAME.key_secret secret)")
    k.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    k.add_argument("--name", default="server", help="file name stem (default 'server'; use 'client' for a client)")
    k.set_defaults(func=cmd_keys)
    return rig


def _load_function(spec: str):
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise ConfigError(f"--module must be MODULE:FUNCTION such as my_rig:present, got {spec!r}.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {mod_name!r} for --module: {exc}. Run from the directory that "
                          "holds it, or install it.")
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{mod_name} has no function {fn_name!r}.")
    return fn


def _ready(endpoint: str) -> None:
    print(f"listening on {endpoint}", flush=True)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)


def cmd_serve(args) -> int:
    """``mango rig serve``."""
    from ..rig.server import serve

    _setup_logging()
    present = _load_function(args.module)
    units = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    server = serve(present, args.address, curve_secret_key=args.curve_secret, allowed_clients=args.allow_clients,
                   unit_names=units, input_shape=args.input_shape, timeout=args.timeout, ready=_ready)
    print(f"stopped: {server.stats}", flush=True)
    return 0


def cmd_simulate(args) -> int:
    """``mango rig simulate``."""
    from ..rig.simulator import Faults, Schedule, simulate

    _setup_logging()
    from .units import parse_unit_spec

    unit = None if args.unit is None else parse_unit_spec(args.unit)
    faults = Faults(drop=args.drop, delay_prob=args.delay_prob, delay_s=args.delay_s,
                    malformed_prob=args.malformed_prob, restart_after=args.restart_after,
                    restart_pause=args.restart_pause, seed=args.seed)
    if args.on_ms is None and args.jitter_ms:
        raise ConfigError("--jitter-ms needs --on-ms (the stimuli's on time, e.g. --on-ms 150).")
    schedule = None if args.on_ms is None else Schedule(args.on_ms, args.off_ms, args.jitter_ms, seed=args.seed)
    server = simulate(args.port, args.host, model=args.model, layer=args.layer, unit=unit, noise=args.noise,
                      window=args.window, latency_ms=args.latency_ms, schedule=schedule, faults=faults, seed=args.seed,
                      device=args.device, curve_secret_key=args.curve_secret, allowed_clients=args.allow_clients,
                      presentation_log=args.log, timeout=args.timeout, ready=_ready)
    print(f"stopped: {server.stats}; faults injected: {len(faults.events)}", flush=True)
    return 0


def cmd_keys(args) -> int:
    """``mango rig keys``."""
    from ..rig.server import write_keypair

    public, secret = write_keypair(args.out, args.name)
    print(f"public key: {public}\nsecret key: {secret}  (keep it on this machine only)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m mango.cli.rig rig ...`` (same commands as ``mango rig ...``)."""
    parser = argparse.ArgumentParser(prog="mango")
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    add_subparser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MangoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
