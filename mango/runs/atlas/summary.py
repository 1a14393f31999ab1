"""An atlas directory read back: every unit's result, normalized by its natural images, per layer and checkpoint.

:func:`collect` reads the manifest, each layer's pooled results
(``layers/LAYER.json``: a unit's best over every stimulus shown for its layer,
all seeds) and its reference responses, and returns the site's summary (the
dict :func:`mango.runs.atlas.site.write_site` takes).  A layer not pooled yet
shows its units without values, so a site written mid-way is still a true
picture.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .plan import read_manifest, slug
from .shard import TOP_NATURAL, best_first, selectivity, site_path, unit_image_dir

__all__ = ["collect", "layer_table"]


def _references(atlas_dir: str, layer: str, n_ckpt: int) -> list:
    """Per checkpoint: ``(units, responses [n_images, n_units])`` or None when the layer has no reference."""
    out = []
    for k in range(n_ckpt):
        path = os.path.join(atlas_dir, "references", f"{slug(layer)}-c{k}.npz")
        if not os.path.isfile(path):
            out.append(None)
            continue
        with np.load(path) as z:
            out.append(([int(u) for u in z["units"]], np.asarray(z["responses"], dtype=float)))
    return out


def _finite(x):
    return x is not None and np.isfinite(x)


def collect(atlas_dir: str | os.PathLike) -> dict:
    """The site summary of the atlas in ``atlas_dir`` (see :func:`mango.runs.atlas.site.write_site`)."""
    atlas_dir = os.fspath(atlas_dir)
    man = read_manifest(atlas_dir)
    if man is None:
        from ...errors import ConfigError

        raise ConfigError(f"{atlas_dir!r} holds no atlas (no atlas.json); run mango atlas first.")
    s = man["settings"]
    labels = man["checkpoint_labels"]
    layers = []
    for layer, units in s["layers"].items():
        refs = _references(atlas_dir, layer, len(labels))
        pooled = {}
        path = os.path.join(atlas_dir, "layers", f"{slug(layer)}.json")
        if os.path.isfile(path):
            with open(path) as f:
                pooled = {int(u["index"]): u for u in json.load(f)["units"]}
        owner = {int(u): sh["id"] for sh in man["shards"] if sh["layer"] == layer for u in sh["units"]}
        out_units = []
        for u in units:
            u = int(u)
            got = pooled.get(u)
            entries = []
            for k in range(len(labels)):
                ref = refs[k]
                col = None if ref is None else ref[0].index(u)
                resp = None if ref is None else ref[1][:, col]
                nat_max = None if resp is None or not np.isfinite(resp).any() else float(np.nanmax(resp))
                nat_order = [] if resp is None else list(best_first(resp)[:TOP_NATURAL])
                d = unit_image_dir(atlas_dir, layer, u)
                nat_pngs = [site_path(atlas_dir, os.path.join(d, f"c{k}-nat{n}.png")) for n in range(len(nat_order))
                            if os.path.isfile(os.path.join(d, f"c{k}-nat{n}.png"))]
                best = got["checkpoints"][k] if got is not None and k < len(got["checkpoints"]) else None
                value = None if best is None else best["best_value"]
                norm = value / nat_max if _finite(value) and nat_max is not None and nat_max > 0 else None
                entries.append({
                    "best_value": value, "normalized": norm,
                    "n_queries": 0 if best is None else best["n_queries"],
                    "best_png": (best["top_pngs"][0] if best and best["top_pngs"] else None),
                    "top_pngs": [] if best is None else best["top_pngs"],
                    "top_values": [] if best is None else best["top_values"],
                    "curve": [] if best is None else best["curve"],
                    "natural_max": nat_max, "natural_pngs": nat_pngs,
                    "natural_values": [float(resp[i]) for i in nat_order][:len(nat_pngs)],
                    "selectivity": None if resp is None else selectivity(resp)})
            name = (got or {}).get("name") or f"{layer}:{u}"
            out_units.append({"index": u, "name": name, "shard": owner.get(u), "checkpoints": entries})
        layers.append({"name": layer, "n_units": len(units), "units": out_units,
                       "summary": [layer_table(out_units, k, man, layer) for k in range(len(labels))]})
    from ..provenance import describe as provenance_text

    return {"title": f"atlas of {s['model']}", "description": describe(s, man),
            "provenance": provenance_text(man.get("provenance")), "checkpoints": labels, "layers": layers}


def layer_table(units: list, k: int, man: dict, layer: str) -> dict:
    """A layer's summary row at checkpoint ``k``: median normalized value, fraction above the best natural image."""
    norm = [u["checkpoints"][k]["normalized"] for u in units]
    norm = np.array([np.nan if n is None else n for n in norm], dtype=float)
    done = [u for u in units if u["checkpoints"][k]["best_value"] is not None]
    fin = np.isfinite(norm)
    queries = sum(sh["budget"] for sh in man["shards"] if sh["layer"] == layer)
    return {"median_normalized": float(np.median(norm[fin])) if fin.any() else None,
            "frac_above_natural": float(np.mean(norm[fin] > 1.0)) if fin.any() else None,
            "n_units_done": len(done), "queries": int(queries)}


def describe(s: dict, man: dict) -> str:
    """One paragraph of the atlas's settings."""
    layers = ", ".join(f"{name} ({len(u)} units)" for name, u in s["layers"].items())
    budget = (f"{s['budget_per_unit']} queries per unit" if s.get("budget_per_unit") is not None else
              f"{s['shard_budget']} queries per shard, shared by its units")
    ck = man["checkpoint_labels"]
    return (f"Every unit of {layers} of {s['model']}"
            + (f" ({s['readout']} readout)" if s.get("readout") else "")
            + f", maximized over {s['generator']} with {s['optimizer']}: {budget}, population campaigns of at most "
            f"{max(s['shard_sizes'].values())} units ({len(man['shards'])} shards"
            + (f", {s['rounds']} exchange rounds in split layers" if s.get("rounds", 1) > 1 else "")
            + f"), seeds {s['seeds']}"
            + (f"; {len(ck)} checkpoints ({', '.join(ck)}), each campaign warm-started from the previous one"
               if len(ck) > 1 else "") + ". Normalized value: the unit's best value over its maximum over the "
            "natural images; selectivity: lifetime sparseness of its responses to those images.")
