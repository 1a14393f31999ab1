"""The main job's ``result.json``: small and self-describing (schema: ``docs/result.schema.json``).

It says what was maximized in the user's words, what a value is and in which
units, how queries are counted (0-based), which mango and torch wrote it and
when, the seed, budget and search space (once, summarized), and the best value
raw and normalized by a natural-image reference.  The best point itself goes
to a sidecar ``best_point.npy``; the full history is in ``curve.csv`` (and in
the run store with ``--store``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys

import numpy as np

from ._version import __version__
from .words import space_text, value_units, value_what

__all__ = ["FORMAT", "result_record", "write_result"]

FORMAT = "mango-result/1"
INDEXING = "0-based: query 0 is the first stimulus shown, so best.query = k means the (k+1)-th query"


def _versions() -> dict:
    out = {"mango": __version__, "python": platform.python_version(), "numpy": np.__version__}
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:  # pragma: no cover
            torch = None
    out["torch"] = getattr(torch, "__version__", None)
    return out


def _finite_or_none(v):
    return None if v is None or not np.isfinite(v) else float(v)


def result_record(result, target: dict, reference: dict | None = None, files: dict | None = None,
                  argv: list[str] | None = None, reference_note: str | None = None) -> dict:
    """The plain-data record written as result.json."""
    cfg = result.config or {}
    objective = cfg.get("objective")
    best = _finite_or_none(result.best_value)
    space = result.space.to_dict()
    search_space = {"kind": space["kind"], "text": space_text(space)}
    if space["kind"] == "box":
        search_space["dim"] = space["dim"]
    elif space["kind"] == "grid":
        search_space["dim"] = space["box"]["dim"]
    else:
        search_space["positions"], search_space["codes"] = space["positions"], space["codes"]
    value = {"what": target.get("value_what") or value_what(objective),
             "units": target.get("value_units") or value_units(objective), "goal": "maximized"}
    target = {k: v for k, v in target.items() if k not in ("value_what", "value_units")}
    rec = {
        "format": FORMAT,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": _versions(),
        "command": "mango " + " ".join(shlex.quote(a) for a in (argv or [])),
        "target": target,
        "value": value,
        "best": {
            "value": best,
            "normalized": None if (best is None or not reference) else float(best / reference["max"]),
            "query": result.best_query,
            "point_file": (files or {}).get("best_point"),
        },
        "reference": reference,
        "queries": {"used": int(result.n_queries), "budget": int(result.budget), "indexing": INDEXING,
                    "stop_reason": result.stop_reason},
        "search": {"optimizer": result.optimizer, "optimizer_params": cfg.get("optimizer_params") or {},
                   "batch_size": cfg.get("batch_size"), "seed": result.seed, "space": search_space},
        "timing": {"wall_s": round(float(result.wall_s), 3), "optimizer_s": round(result.optimizer_s, 3),
                   "objective_s": round(result.objective_s, 3)},
        "files": dict(files or {}),
    }
    if reference is None and reference_note:
        rec["reference_note"] = reference_note
    return rec


def write_result(out_dir, result, target: dict, reference: dict | None = None, argv=None,
                 files: dict | None = None, reference_note: str | None = None) -> dict:
    """Write ``best_point.npy`` and ``result.json`` into ``out_dir``; return the record."""
    files = dict(files or {})
    if result.best_point is not None:
        np.save(os.path.join(out_dir, "best_point.npy"), np.asarray(result.best_point), allow_pickle=False)
        files["best_point"] = "best_point.npy"
    rec = result_record(result, target, reference, files, argv, reference_note)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    return rec
