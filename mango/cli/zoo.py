"""``mango zoo ...`` subcommands (the main CLI calls :func:`add_subparser`)."""

from __future__ import annotations

import json
import os
import textwrap

__all__ = ["add_subparser", "run_zoo", "format_table", "model_card"]


def format_table(models: list[dict]) -> str:
    """Human-readable table of :func:`mango.zoo.list_models` output."""
    rows = [("name", "kind", "size", "metric", "description")]
    for m in models:
        met = m.get("metrics") or {}
        if "heldout_accuracy" in met:
            key = f"held-out accuracy {met['heldout_accuracy']:.1%}"
            if "rates_heldout_all" in met:  # the colour SNN: its output rates do not saturate
                key += f", median winning rate {met['rates_heldout_all']['median_winner_rate']:.2f}"
        elif "heldout_mse" in met:
            key = f"held-out MSE {met['heldout_mse']:.4f}/pixel"
        elif "cnn_confident_fraction_0.9" in met:
            key = f"{met['cnn_confident_fraction_0.9']:.0%} of samples judged a digit (CNN conf > 0.9)"
        elif "sample_per_image_std_mean" in met:
            key = (f"per-image pixel std {met['sample_per_image_std_mean']:.3f} "
                   f"(real {met['real_per_image_std_mean']:.3f})")
        else:
            key = "-"
        size = f"{m['file_bytes'] / 1e6:.2f} MB" if m.get("file_bytes") else "missing"
        rows.append((m["name"], m["kind"], size, key, m["description"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:  # descriptions whole, wrapped under their column
        head = "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  "
        wrapped = textwrap.wrap(r[4], width=max(40, 150 - len(head))) or [""]
        lines.append(head + wrapped[0])
        lines += [" " * len(head) + w for w in wrapped[1:]]
    return "\n".join(lines) + "\n\nmango zoo info NAME: the model's full model card entry."


def model_card(name: str) -> str:
    """The full model card entry of zoo model ``name``: its row of mango/zoo/README.md's table, its section,
    and the recorded metrics and training command."""
    from ..zoo import HERE, canonical_name, list_models

    n = canonical_name(name)
    info = next(m for m in list_models() if m["name"] == n)
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        card = f.read().splitlines()
    at = next((i for i, ln in enumerate(card) if ln.startswith(f"| `{n}` |")), None)
    row = card[at] if at is not None else None
    # the header of the row's own table (the colour zoo's table has other columns than the digit zoo's)
    header = next((ln for ln in reversed(card[:at]) if ln.startswith("| name |")), None) if row else None
    out = [f"{n} ({info['kind']}): {info['description']}", ""]
    if header and row:
        keys = [c.strip() for c in header.strip("|").split("|")]
        vals = [c.strip().replace("**", "").replace("`", "") for c in row.strip("|").split("|")]
        out += [f"{k}: {v}" for k, v in zip(keys, vals) if k != "name"] + [""]
    sec, on = [], False
    for ln in card:
        if ln.startswith("#"):
            if on:
                break
            on = ln.strip() == f"### `{n}`"
            continue
        if on:
            sec.append(ln)
    if sec:
        text = " ".join(x.strip() for x in sec if x.strip()).replace("`", "").replace("**", "")
        out += textwrap.wrap(text, width=100) + [""]
    for k in ("layers", "input_shape", "output", "latent_shape", "codes", "embedding_dim", "latent_dim",
              "output_shape"):
        if k in info:
            out.append(f"{k}: {info[k]}")
    size = f"{info['file_bytes'] / 1e6:.2f} MB" if info.get("file_bytes") else "missing"
    out.append(f"weights: {info['file']} ({size})")
    if info.get("metrics"):
        out.append("metrics: " + ", ".join(f"{k} {v}" for k, v in info["metrics"].items()))
    took = f" ({info['train_seconds']:.0f} s)" if info.get("train_seconds") else ""
    out.append(f"retrain: {info['command']}{took}")
    out.append("model card: mango/zoo/README.md")
    return "\n".join(out)


def run_zoo(args) -> int:
    from ..zoo import list_models

    if args.zoo_command in (None, "list"):
        models = list_models()
        print(json.dumps(models, indent=1) if getattr(args, "json", False) else format_table(models))
        return 0
    if args.zoo_command == "info":
        print(model_card(args.name))
        return 0
    raise SystemExit(f"unknown zoo command {args.zoo_command!r}; try 'mango zoo list'.")  # pragma: no cover


def add_subparser(subparsers) -> None:
    """Add ``zoo`` (with ``list [--json]``) to an argparse subparsers object; sets ``func``."""
    p = subparsers.add_parser("zoo", help="bundled trained models", description="mango's bundled model zoo")
    sub = p.add_subparsers(dest="zoo_command")
    lp = sub.add_parser("list", help="list the zoo models with sizes and metrics")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ip = sub.add_parser("info", help="the full model card entry of one model")
    ip.add_argument("name", help="a zoo model name (see mango zoo list)")
    ip.set_defaults(func=run_zoo)
    p.set_defaults(func=run_zoo, zoo_command=None)
    lp.set_defaults(func=run_zoo)
