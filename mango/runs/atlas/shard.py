"""What runs on a worker: one shard of an atlas, and one layer's natural-image reference.

Both take a plain dict of specs and paths (never a model or weights: the
worker builds the model and the generator itself from their specs, as
:mod:`mango.zoo.build` reads them), write their files into the atlas
directory, and return a small dict.  They are plain module-level functions so
that a Dask worker or a process pool can import them.

* :func:`run_shard` runs the shard's population campaign over every checkpoint
  with :func:`mango.track` (one run store per checkpoint in
  ``shards/ID/``; a store left by a killed worker is resumed, a finished one
  skipped), then writes the shard's summary ``shards/ID/shard.json`` and its
  units' images (top-k distinct stimuli) under ``site/img/``.
* :func:`run_reference` pushes the natural images through the network once per
  checkpoint, reading every unit of the layer, and writes
  ``references/LAYER-cK.npz`` (the responses) and each unit's top natural
  images under ``site/img/``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .plan import slug

__all__ = ["run_shard", "run_reference", "unit_image_dir", "selectivity", "TOP_K", "TOP_NATURAL"]

TOP_K = 6  # distinct best stimuli kept per unit and checkpoint
TOP_NATURAL = 3  # natural images kept per unit and checkpoint


def unit_image_dir(atlas_dir: str, layer: str, unit: int) -> str:
    """Where the site's images of one unit live: ``site/img/LAYER/uINDEX``."""
    return os.path.join(atlas_dir, "site", "img", slug(layer), f"u{int(unit)}")


def selectivity(responses) -> float | None:
    """Lifetime sparseness (Vinje & Gallant 2000) of a unit's responses to the natural images, in [0, 1].

    ``(1 - mean(r)^2 / mean(r^2)) / (1 - 1/n)`` over responses shifted to be
    non-negative: 0 when the unit answers every image alike, 1 when it answers
    one image only.  None when the unit never responds.
    """
    r = np.asarray(responses, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None
    r = r - min(0.0, float(r.min()))
    m2 = float(np.mean(r ** 2))
    if m2 <= 0:
        return None
    return float(np.clip((1.0 - float(np.mean(r)) ** 2 / m2) / (1.0 - 1.0 / r.size), 0.0, 1.0))


def _save_png(path: str, image: np.ndarray) -> None:
    from ..report.plots import pyplot

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    img = np.asarray(image, dtype=float)
    kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if img.ndim == 2 else {}
    pyplot().imsave(tmp, img, **kw)
    os.replace(tmp, path)


def _rel(atlas_dir: str, path: str) -> str:
    """A path under ``site/`` as the site links it (relative, forward slashes)."""
    return os.path.relpath(path, os.path.join(atlas_dir, "site")).replace(os.sep, "/")


def _curve_steps(curve: np.ndarray) -> list:
    """A best-so-far curve (one value per query) as its steps ``[[queries, value], ...]`` (1-based counts)."""
    out, last = [], None
    for i, v in enumerate(np.asarray(curve, dtype=float)):
        if np.isfinite(v) and (last is None or v > last):
            out.append([i + 1, float(v)])
            last = float(v)
    if out and out[-1][0] != len(curve):
        out.append([int(len(curve)), out[-1][1]])
    return out


def _threads(n):
    from ..threads import choose_threads, use_threads

    return use_threads(choose_threads(n, flag="threads="))


def run_shard(task: dict) -> dict:
    """Run one shard on this worker and write its summary; returns ``{"id", "status", "queries", "seconds"}``.

    ``task`` keys: ``atlas_dir``, ``shard`` (a :class:`~mango.runs.atlas.plan.Shard` as a dict), ``model``,
    ``generator``, ``readout``, ``num_steps``, ``optimizer``, ``optimizer_params``, ``budget``,
    ``batch_size``, ``checkpoints`` (paths or None), ``warm``, ``device``, ``threads``.
    """
    from ..track.campaign import track
    from ...zoo.build import build_generator

    t0 = time.perf_counter()
    atlas_dir, shard = task["atlas_dir"], task["shard"]
    out = os.path.join(atlas_dir, "shards", shard["id"])
    summary_path = os.path.join(out, "shard.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            done = json.load(f)
        return {"id": shard["id"], "status": "skipped", "queries": done["queries"], "seconds": 0.0}
    with _threads(task.get("threads")):
        generator = build_generator(task["generator"], device=task.get("device"))
        res = track(task.get("checkpoints"), model=task["model"], generator=generator, layer=shard["layer"],
                    unit=list(shard["units"]), readout=task.get("readout"), num_steps=task.get("num_steps"),
                    optimizer=task["optimizer"], budget=task["budget"], batch_size=task.get("batch_size"),
                    seed=shard["seed"], out=out, warm=task.get("warm", True), device=task.get("device"),
                    progress=False, report=False, **(task.get("optimizer_params") or {}))
        if not res.complete:
            raise RuntimeError(f"shard {shard['id']} stopped before its budget ({res[len(res) - 1].result.stop_reason})")
        units = _unit_summaries(atlas_dir, shard, res, generator)
    queries = int(sum(r.result.n_queries for r in res))
    doc = {"format": "mango-atlas-shard-1", "id": shard["id"], "layer": shard["layer"], "units": units,
           "seed": shard["seed"], "queries": queries, "stores": [os.path.relpath(r.store, atlas_dir) for r in res],
           "wall_s": [float(r.result.wall_s) for r in res], "optimizer": task["optimizer"],
           "threads": [r.result.threads for r in res]}
    tmp = summary_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, default=str)
    os.replace(tmp, summary_path)
    return {"id": shard["id"], "status": "ran", "queries": queries, "seconds": time.perf_counter() - t0}


def _unit_summaries(atlas_dir: str, shard: dict, res, generator) -> list[dict]:
    """Per unit of the shard: each checkpoint's best value, top-k distinct stimuli (written as PNGs) and curve."""
    from ..report.plots import pick_distinct, to_images

    out = [{"index": int(u), "checkpoints": []} for u in shard["units"]]
    for k, run in enumerate(res):
        r = run.result
        for j, unit in enumerate(r.units()):
            entry = {"name": unit.name, "best_value": unit.best_value, "n_queries": int(r.n_queries),
                     "curve": _curve_steps(unit.curve), "top_pngs": [], "top_values": []}
            v = r.unit_values[:, j] if r.unit_values is not None and len(r.unit_values) else np.zeros(0)
            rows = pick_distinct(np.argsort(-np.where(np.isfinite(v), v, -np.inf), kind="stable"), v,
                                 lambda i: np.asarray(r.points[i]).tobytes(), TOP_K * 3)
            if rows:
                images = to_images(generator(np.stack([np.asarray(r.points[i]) for i in rows])))
                keep = pick_distinct(range(len(rows)), v[rows], lambda i: i, TOP_K, image=lambda i: images[i])
                d = unit_image_dir(atlas_dir, shard["layer"], shard["units"][j])
                for n, i in enumerate(keep):
                    path = os.path.join(d, f"c{k}-top{n}.png")
                    _save_png(path, images[i])
                    entry["top_pngs"].append(_rel(atlas_dir, path))
                    entry["top_values"].append(float(v[rows[i]]))
            out[j]["name"] = unit.name
            out[j]["checkpoints"].append(entry)
    return out


def run_reference(task: dict) -> dict:
    """One layer's responses to the natural images, per checkpoint; returns ``{"layer", "files", "seconds"}``.

    ``task`` keys: ``atlas_dir``, ``layer``, ``units``, ``model``, ``readout``, ``num_steps``, ``checkpoints``,
    ``reference`` (``"auto"``: the zoo's images for a zoo model; a directory of images or a ``.npy``; ``None``:
    none), ``input_shape``, ``device``, ``threads``.
    """
    from ..natural.reference import all_responses, load_images, zoo_images
    from ..report.plots import to_images
    from ...zoo.build import build_model, build_unit_oracle, spiking_framework

    t0 = time.perf_counter()
    atlas_dir, layer, units = task["atlas_dir"], task["layer"], [int(u) for u in task["units"]]
    spec, ref = task["model"], task.get("reference", "auto")
    shape = tuple(task["input_shape"])
    if ref is None or (ref == "auto" and not spec.startswith("zoo:")):
        return {"layer": layer, "files": [], "seconds": 0.0, "source": None}
    images, source = zoo_images(spec) if ref == "auto" else load_images(ref, shape)
    if tuple(images.shape[1:]) != shape:
        return {"layer": layer, "files": [], "seconds": 0.0, "source": None}
    files = []
    with _threads(task.get("threads")):
        for k, ckpt in enumerate(task.get("checkpoints") or [None]):
            path = os.path.join(atlas_dir, "references", f"{slug(layer)}-c{k}.npz")
            if not os.path.isfile(path):
                model = build_model(spec, ckpt, device=task.get("device"))
                kw = {"readout": task.get("readout"), "num_steps": task.get("num_steps")} if spiking_framework(
                    model) else {}
                oracle = build_unit_oracle(model, layer, units, device=task.get("device"), input_shape=shape, **kw)
                resp = all_responses(oracle, images)[:, :len(units)]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = path + ".tmp.npz"
                np.savez_compressed(tmp, responses=resp.astype(np.float32), units=np.asarray(units),
                                    source=np.asarray(source))
                os.replace(tmp, path)
            with np.load(path) as z:
                resp = z["responses"]
            top = np.argsort(-np.where(np.isfinite(resp), resp, -np.inf), axis=0, kind="stable")[:TOP_NATURAL]
            pics = to_images(images[np.unique(top.reshape(-1))])
            where = {int(i): n for n, i in enumerate(np.unique(top.reshape(-1)))}
            for j, u in enumerate(units):
                for n in range(top.shape[0]):
                    png = os.path.join(unit_image_dir(atlas_dir, layer, u), f"c{k}-nat{n}.png")
                    if not os.path.isfile(png):
                        _save_png(png, pics[where[int(top[n, j])]])
            files.append(os.path.relpath(path, atlas_dir))
    return {"layer": layer, "files": files, "seconds": time.perf_counter() - t0, "source": source}
