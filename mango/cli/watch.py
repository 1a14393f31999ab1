"""``mango watch``: the command line of :mod:`mango.runs.report.watch` (the main CLI calls :func:`add_subparser`)."""

from __future__ import annotations

import os
import sys
import threading

from ..runs.report.watch.server import make_server

__all__ = ["add_subparser"]


def add_subparser(subparsers) -> None:
    """Add ``mango watch STORE [STORE ...] [--port P] [--host H]``."""
    p = subparsers.add_parser(
        "watch", help="a live dashboard of runs in the browser (read-only; works on finished runs too)",
        description="Serve a local web page that follows run stores live while runs write them: best-so-far "
                    "curves and every response, best and latest stimuli, queries/budget, queries per second, ETA, "
                    "rig faults, per-unit responses, several runs side by side and compared. Stores are opened "
                    "read-only (SQLite mode=ro): watching never slows or blocks the run.")
    p.add_argument("stores", nargs="+", metavar="STORE", help=(
        "run store files (.sqlite; they may not exist yet), or an atlas directory (mango atlas --out): its shards' "
        "stores, and its site under /atlas/"))
    p.add_argument("--port", type=int, default=8765, help="TCP port (default %(default)s; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only). Anything else exposes the runs "
                        "to the network without authentication")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between page updates (default %(default)s)")
    p.add_argument("--top-k", type=int, default=8, help="best distinct stimuli shown per run (default %(default)s)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    p.set_defaults(func=_cmd_watch)


def _cmd_watch(args) -> int:
    if args.interval <= 0 or args.top_k < 1:
        print("mango watch: error: --interval must be > 0 and --top-k >= 1.", file=sys.stderr)
        return 2
    from ..runs.atlas.plan import atlas_stores

    stores, site = [], None
    for path in args.stores:
        found = atlas_stores(path)  # an atlas directory: its shards' stores (None: a store file)
        if found is None:
            stores.append(path)
        else:
            stores += found
            site = site or os.path.join(path, "site")
    try:
        server = make_server(stores, host=args.host, port=args.port, interval=args.interval,
                             top_k=args.top_k, verbose=args.verbose, site_dir=site)
    except OSError as exc:
        print(f"mango watch: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not server.check_host:
        print(f"mango watch: warning: listening on {args.host}, beyond this machine's loopback: anyone who can "
              f"reach it on port {server.server_address[1]} sees these runs (no authentication). Use the default "
              "--host 127.0.0.1 and an SSH tunnel to watch from another machine.", file=sys.stderr, flush=True)
    print(f"mango watch: {len(server.watchers)} run store(s) at {server.url} (Ctrl-C to stop)"
          + (f"; the atlas site at {server.url}atlas/index.html" if site else ""), flush=True)
    if args.open:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("mango watch: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
