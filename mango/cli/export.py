"""``mango export``: the command line of :mod:`mango.runs.report.export` (the main CLI calls :func:`add_subparser`)."""

from __future__ import annotations

import argparse

from ..runs.report.export import INSTALL, to_nwb
from .values import key_values

__all__ = ["add_subparser"]


def add_subparser(subparsers) -> None:
    """Add ``mango export nwb STORE OUT.nwb [--overwrite]`` to an argparse subparsers object."""
    p = subparsers.add_parser("export", help="export a run store to other formats (nwb)",
                              description="Export a run store to a format other tools read.")
    sub = p.add_subparsers(dest="export_format", metavar="{nwb}")
    sub.required = True
    n = sub.add_parser("nwb", help="Neurodata Without Borders (pynwb; DANDI)",
                       description="Write the run as an NWB file: the stimuli shown, a presentations table with "
                                   "onset/offset, query, batch, iteration, responses and latent points, and the "
                                   f"campaign's configuration as notes. Needs pynwb: {INSTALL}.")
    n.add_argument("store", help="the run store (.sqlite) written by `mango maximize --store`")
    n.add_argument("out", help="the NWB file to write, e.g. run.nwb")
    n.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    n.add_argument("--subject", action="append", metavar="KEY=VALUE", help="the recorded subject, one field each "
                   "(repeat): subject_id=m01 species='Mus musculus' sex=F age=P90D (DANDI asks for these)")
    n.add_argument("--field", action="append", metavar="KEY=VALUE", help="an NWBFile field (repeat), e.g. "
                   "experimenter='Doe, Jane' lab=... institution=... session_description=...")
    n.set_defaults(func=_cmd_nwb)


def _cmd_nwb(args: argparse.Namespace) -> int:
    fields = key_values(args.field, "--field", "subject_id=m01")
    if args.subject:
        fields["subject"] = key_values(args.subject, "--subject", "subject_id=m01")
    print(to_nwb(args.store, args.out, overwrite=args.overwrite, **fields))
    return 0
