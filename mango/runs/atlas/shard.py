"""What runs on a worker: one shard of an atlas, and one layer's natural-image reference.

Both take a plain dict of specs and paths (never a model or weights: the
worker builds the model and the generator itself from their specs, as
:mod:`mango.zoo.build` reads them), write their files into the atlas
directory, and return a small dict.  They are plain module-level functions so
that a Dask worker or a process pool can import them.

* :func:`run_shard` runs the shard's population campaign over every checkpoint
  with :func:`mango.track` (one run store per checkpoint in
  ``shards/ID/``; a store left by a killed worker is resumed, a finished one
  skipped), recording every unit of the layer, then writes
  ``shards/ID/shard.json``.
* :func:`run_layer` pools a layer's finished shards: each unit's best over
  every stimulus of the layer, its top-k distinct stimuli (PNGs under
  ``site/img/``) and its search curve, in ``layers/LAYER.json``.
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

__all__ = ["run_shard", "run_layer", "run_reference", "round_dir", "exchange_points", "unit_image_dir", "selectivity",
           "best_first", "site_path", "TOP_K", "TOP_NATURAL"]

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


def best_first(values, axis: int = 0) -> np.ndarray:
    """Indices that sort ``values`` best first along ``axis`` (stable; NaN and -inf last)."""
    v = np.asarray(values, dtype=float)
    return np.argsort(-np.where(np.isfinite(v), v, -np.inf), axis=axis, kind="stable")


def site_path(atlas_dir: str, path: str) -> str:
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


def round_dir(atlas_dir: str, shard_id: str, rnd: int) -> str:
    """A shard's directory for exchange round ``rnd``: ``shards/ID/rR`` (its run stores and ``shard.json``)."""
    return os.path.join(atlas_dir, "shards", shard_id, f"r{int(rnd)}")


def _round_doc(atlas_dir: str, shard_id: str, rnd: int) -> dict:
    with open(os.path.join(round_dir(atlas_dir, shard_id, rnd), "shard.json")) as f:
        return json.load(f)


def exchange_points(atlas_dir: str, peers: list, units: list, record: list, rnd: int) -> np.ndarray:
    """Each of ``units``' best point over every query of the ``peers`` shards' rounds before ``rnd``.

    The exchange between rounds: a shard's next round starts every one of its units from the stimulus that
    drove that unit hardest anywhere in its layer so far (the stores record every unit of the layer).
    """
    from ..store import RunStore

    best = {int(u): (-np.inf, None) for u in units}
    cols = {int(u): record.index(int(u)) for u in units}
    for sid in peers:
        for r in range(rnd):
            doc = _round_doc(atlas_dir, sid, r)
            for store in doc["stores"][-1:]:  # the last checkpoint's campaign (exchange: no checkpoints)
                with RunStore(os.path.join(atlas_dir, store), mode="r") as s:
                    q = s.read_queries()
                for u, c in cols.items():
                    v = np.where(np.isfinite(q["responses"][:, c]), q["responses"][:, c], -np.inf)
                    i = int(np.argmax(v))
                    if len(v) and v[i] > best[u][0]:
                        best[u] = (float(v[i]), q["points"][i])
    pts = [p for _, p in best.values() if p is not None]
    return np.stack(pts) if pts else None


def run_shard(task: dict) -> dict:
    """Run one round of one shard on this worker; returns ``{"id", "round", "status", "queries", "seconds"}``.

    The shard's campaign targets its own units, but its oracle reads (and its stores record) every unit of
    the layer in the atlas (``record``): the layer's units are pooled afterwards (:func:`run_layer`), and a
    round after the first starts each unit from its best point over the layer's earlier rounds
    (:func:`exchange_points`).

    ``task`` keys: ``atlas_dir``, ``shard`` (a :class:`~mango.runs.atlas.plan.Shard` as a dict), ``round``,
    ``peers`` (ids of the layer's shards of the same seed), ``record`` (the layer's units in the atlas),
    ``model``, ``generator``, ``readout``, ``num_steps``, ``optimizer``, ``optimizer_params``, ``budget``
    (this round's), ``batch_size``, ``checkpoints`` (paths or None), ``warm``, ``device``, ``threads``.
    """
    from ..track.campaign import track
    from ...zoo.build import build_generator

    t0 = time.perf_counter()
    atlas_dir, shard, rnd = task["atlas_dir"], task["shard"], int(task.get("round", 0))
    out = round_dir(atlas_dir, shard["id"], rnd)
    summary_path = os.path.join(out, "shard.json")
    head = {"id": shard["id"], "round": rnd}
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            done = json.load(f)
        return {**head, "status": "skipped", "queries": done["queries"], "seconds": 0.0}
    with _threads(task.get("threads")):
        generator = build_generator(task["generator"], device=task.get("device"))
        warm_from = None
        if rnd > 0:
            warm_from = exchange_points(atlas_dir, task["peers"], shard["units"], task["record"], rnd)
        res = track(task.get("checkpoints"), model=task["model"], generator=generator, layer=shard["layer"],
                    unit=list(shard["units"]), record=task.get("record"), readout=task.get("readout"),
                    num_steps=task.get("num_steps"), optimizer=task["optimizer"], budget=task["budget"],
                    batch_size=task.get("batch_size"), seed=shard["seed"] + 7919 * rnd, out=out,
                    warm=task.get("warm", True), warm_from=warm_from, device=task.get("device"), progress=False,
                    report=False, **(task.get("optimizer_params") or {}))
        if not res.complete:
            raise RuntimeError(f"shard {shard['id']} (round {rnd}) stopped before its budget "
                               f"({res[len(res) - 1].result.stop_reason})")
    queries = int(sum(r.result.n_queries for r in res))
    doc = {"format": "mango-atlas-shard-1", "id": shard["id"], "round": rnd, "layer": shard["layer"],
           "units": list(shard["units"]), "unit_names": res.unit_names, "seed": shard["seed"], "queries": queries,
           "warm_points": 0 if warm_from is None else int(len(warm_from)),
           "stores": [os.path.relpath(r.store, atlas_dir) for r in res],
           "wall_s": [float(r.result.wall_s) for r in res], "optimizer": task["optimizer"],
           "threads": [r.result.threads for r in res]}
    tmp = summary_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, default=str)
    os.replace(tmp, summary_path)
    return {**head, "status": "ran", "queries": queries, "seconds": time.perf_counter() - t0}


def run_layer(task: dict) -> dict:
    """Pool one layer's shards: each unit's best over every stimulus the atlas showed, its images and curve.

    Every shard of the layer recorded every unit, so a unit's best is taken over all the layer's queries
    (all shards, all seeds), as one population campaign over the whole layer would have it; its curve is
    the search of the shard that targeted it (the seed whose own search went furthest).  Writes
    ``layers/LAYER.json`` and the units' top-k distinct stimuli under ``site/img/``.

    ``task`` keys: ``atlas_dir``, ``layer``, ``units`` (the layer's units, the stores' columns in this
    order), ``shards`` (the layer's manifest entries), ``rounds``, ``generator``, ``n_checkpoints``,
    ``device``, ``threads``.
    """
    from ..report.plots import pick_distinct, to_images
    from ..store import RunStore
    from ...zoo.build import build_generator

    t0 = time.perf_counter()
    atlas_dir, layer, units = task["atlas_dir"], task["layer"], [int(u) for u in task["units"]]
    out_units = {u: {"index": u, "name": None, "checkpoints": []} for u in units}
    with _threads(task.get("threads")):
        generator = build_generator(task["generator"], device=task.get("device"))
        for k in range(int(task["n_checkpoints"])):
            pts, vals, owner, curves = [], [], [], {}
            for sh in task["shards"]:
                own = []  # this shard's responses over its rounds, in order: its units' search curves
                for rnd in range(int(task.get("rounds", 1))):
                    doc = _round_doc(atlas_dir, sh["id"], rnd)
                    with RunStore(os.path.join(atlas_dir, doc["stores"][k]), mode="r") as s:
                        q = s.read_queries()
                    if q["responses"] is None or q["responses"].shape[1] != len(units):
                        raise RuntimeError(f"shard {sh['id']}'s store does not record the layer's {len(units)} "
                                           "units")
                    pts.append(q["points"])
                    vals.append(q["responses"])
                    own.append(q["responses"])
                    owner += [sh["id"]] * len(q["points"])
                resp = np.concatenate(own)
                for u, name in zip(doc["units"], doc["unit_names"]):
                    c = units.index(int(u))
                    curve = np.fmax.accumulate(np.where(np.isfinite(resp[:, c]), resp[:, c], -np.inf))
                    old = curves.get(int(u))
                    if old is None or curve[-1] > old[0][-1]:
                        curves[int(u)] = (curve, sh["id"])
                    out_units[int(u)]["name"] = name
            P = np.concatenate(pts) if pts else np.zeros((0, 0))
            V = np.concatenate(vals) if vals else np.zeros((0, len(units)))
            for c, u in enumerate(units):
                v = V[:, c] if len(V) else np.zeros(0)
                rows = pick_distinct(best_first(v), v, lambda i: np.asarray(P[i]).tobytes(), TOP_K * 3)
                entry = {"best_value": float(v[rows[0]]) if rows else None, "n_queries": int(len(v)),
                         "best_in": owner[rows[0]] if rows else None, "top_pngs": [], "top_values": [],
                         "curve": [], "own_shard": None}
                if u in curves:
                    curve, sid = curves[u]
                    entry["curve"] = _curve_steps(np.where(np.isfinite(curve), curve, np.nan))
                    entry["own_shard"] = sid
                if rows:
                    images = to_images(generator(np.stack([np.asarray(P[i]) for i in rows])))
                    keep = pick_distinct(range(len(rows)), v[rows], lambda i: i, TOP_K, image=lambda i: images[i])
                    d = unit_image_dir(atlas_dir, layer, u)
                    for n, i in enumerate(keep):
                        path = os.path.join(d, f"c{k}-top{n}.png")
                        _save_png(path, images[i])
                        entry["top_pngs"].append(site_path(atlas_dir, path))
                        entry["top_values"].append(float(v[rows[i]]))
                out_units[u]["checkpoints"].append(entry)
    path = os.path.join(atlas_dir, "layers", f"{slug(layer)}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"format": "mango-atlas-layer-1", "layer": layer, "units": [out_units[u] for u in units]}, f)
    os.replace(tmp, path)
    return {"layer": layer, "seconds": time.perf_counter() - t0}


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
            top = best_first(resp, axis=0)[:TOP_NATURAL]
            pics = to_images(images[np.unique(top.reshape(-1))])
            where = {int(i): n for n, i in enumerate(np.unique(top.reshape(-1)))}
            for j, u in enumerate(units):
                for n in range(top.shape[0]):
                    png = os.path.join(unit_image_dir(atlas_dir, layer, u), f"c{k}-nat{n}.png")
                    if not os.path.isfile(png):
                        _save_png(png, pics[where[int(top[n, j])]])
            files.append(os.path.relpath(path, atlas_dir))
    return {"layer": layer, "files": files, "seconds": time.perf_counter() - t0, "source": source}
