"""``mango zoo ...`` subcommands (the main CLI calls :func:`add_subparser`)."""

from __future__ import annotations

import json

__all__ = ["add_subparser", "run_zoo", "format_table"]


def format_table(models: list[dict]) -> str:
    """Human-readable table of :func:`mango.zoo.list_models` output."""
    rows = [("name", "kind", "size", "metric", "description")]
    for m in models:
        met = m.get("metrics") or {}
        if "heldout_accuracy" in met:
            key = f"acc {met['heldout_accuracy']:.3f}"
        elif "heldout_mse" in met:
            key = f"mse {met['heldout_mse']:.4f}"
        elif "cnn_confident_fraction_0.9" in met:
            key = f"conf>.9 {met['cnn_confident_fraction_0.9']:.2f}"
        else:
            key = "-"
        size = f"{m['file_bytes'] / 1e6:.2f} MB" if m.get("file_bytes") else "missing"
        desc = m["description"]
        rows.append((m["name"], m["kind"], size, key, desc if len(desc) <= 70 else desc[:67] + "..."))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)


def run_zoo(args) -> int:
    from . import list_models

    if args.zoo_command in (None, "list"):
        models = list_models()
        print(json.dumps(models, indent=1) if getattr(args, "json", False) else format_table(models))
        return 0
    raise SystemExit(f"unknown zoo command {args.zoo_command!r}; try 'mango zoo list'.")  # pragma: no cover


def add_subparser(subparsers) -> None:
    """Add ``zoo`` (with ``list [--json]``) to an argparse subparsers object; sets ``func``."""
    p = subparsers.add_parser("zoo", help="bundled trained models", description="mango's bundled model zoo")
    sub = p.add_subparsers(dest="zoo_command")
    lp = sub.add_parser("list", help="list the zoo models with sizes and metrics")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_zoo, zoo_command=None)
    lp.set_defaults(func=run_zoo)
