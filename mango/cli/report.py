"""``mango report``: the command line of :mod:`mango.runs.report.html` (the main CLI calls :func:`add_subparser`)."""

from __future__ import annotations

from ..errors import MangoError
from ..runs.outdir import check_out_dir
from ..runs.report.html import make_report

__all__ = ["add_subparser"]


def add_subparser(subparsers) -> None:
    """Add ``mango report RUN.sqlite [more runs] --out DIR [--top-k K]`` to an argparse subparsers object."""
    p = subparsers.add_parser("report", help="figures and a self-contained HTML page from run stores",
                              description="Write convergence curves, top stimuli, an evolution GIF, a comparison "
                                          "of several runs and a self-contained index.html from run stores.")
    p.add_argument("runs", nargs="+", help="run store files (.sqlite) written by `mango maximize --store`")
    p.add_argument("--out", default="mango-report", help="output directory (default: mango-report)")
    p.add_argument("--top-k", type=int, default=16, help="distinct best stimuli to show (default: 16)")
    p.add_argument("--title", default=None, help="page title")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    import sys

    try:
        check_out_dir(args.out, "--out")
        path = make_report(args.runs, args.out, top_k=args.top_k, title=args.title)
    except MangoError as exc:
        print(f"mango report: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
