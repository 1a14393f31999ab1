"""The main job's ``result.json``: small and self-describing (schema: ``docs/result.schema.json``).

It says what was maximized in the user's words, what a value is and in which
units, how queries are counted (0-based), what wrote it and when
(``provenance``: mango's version and git commit, the package versions, the
thread counts, with the one mango chose for the run and why; see
:mod:`mango.runs.provenance` and :mod:`mango.runs.threads`), the seed, budget and search space
(once, summarized), and the best value raw and normalized by a natural-image
reference.  The best point itself goes to a sidecar ``best_point.npy``; the
full history is in ``curve.csv`` (and in the run store with ``--store``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import shlex

import numpy as np

from .provenance import provenance
from .words import space_text, value_units, value_what

__all__ = ["FORMAT", "result_record", "unit_records", "write_result", "write_units_csv"]

FORMAT = "mango-result/1"
INDEXING = "0-based: query 0 is the first stimulus shown, so best.query = k means the (k+1)-th query"


def _versions(prov: dict) -> dict:
    """The ``versions`` block of ``mango-result/1`` (mango, python, numpy, torch), read off ``prov``: the
    :func:`~mango.runs.provenance.provenance` block has them all, with the commit and the thread counts."""
    pkgs = prov["packages"]
    return {"mango": prov["mango"], "python": prov["python"], "numpy": pkgs["numpy"], "torch": pkgs["torch"]}


def _finite_or_none(v):
    return None if v is None or not np.isfinite(v) else float(v)


def result_record(result, target: dict, reference: dict | None = None, files: dict | None = None,
                  argv: list[str] | None = None, reference_note: str | None = None) -> dict:
    """The plain-data record written as result.json."""
    cfg = result.config or {}
    prov = provenance()
    chosen = getattr(result, "threads", None)
    if chosen:  # the run's count (torch's count is restored when the run ends)
        prov["threads"].update(torch=chosen["count"], chosen=dict(chosen))
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
        "versions": _versions(prov),
        "provenance": prov,
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
                   "batch_size": cfg.get("batch_size"), "seed": result.seed, "space": search_space,
                   "pipeline": bool(cfg.get("pipeline", False)), "pipeline_lag": cfg.get("pipeline_lag"),
                   "diagnostics": dict(getattr(result, "optimizer_diagnostics", None) or {})},
        "timing": {"wall_s": round(float(result.wall_s), 3), "optimizer_s": round(result.optimizer_s, 3),
                   "objective_s": round(result.objective_s, 3)},
        "files": dict(files or {}),
    }
    if reference is None and reference_note:
        rec["reference_note"] = reference_note
    return rec


def unit_records(result, unit_references: list | None = None) -> list[dict]:
    """A population campaign's units: name, response column, best value, normalized (by the unit's own
    reference, when it has one), query and reference maximum."""
    refs = list(unit_references or [])
    out = []
    for j, u in enumerate(result.units()):
        ref = refs[j] if j < len(refs) else None
        best = _finite_or_none(u.best_value)
        out.append({"name": u.name, "column": u.column, "best_value": best,
                    "normalized": None if (best is None or not ref) else float(best / ref["max"]),
                    "best_query": u.best_query, "reference_max": None if not ref else float(ref["max"])})
    return out


def _median_or_none(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def write_units_csv(path, units: list[dict]) -> None:
    """``units.csv``: one row per unit of a population campaign (the records of :func:`unit_records`)."""
    cols = ["name", "column", "best_value", "normalized", "best_query", "reference_max"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for u in units:
            w.writerow(["" if u[c] is None else (repr(u[c]) if isinstance(u[c], float) else u[c]) for c in cols])


def write_result(out_dir, result, target: dict, reference: dict | None = None, argv=None,
                 files: dict | None = None, reference_note: str | None = None,
                 unit_references: list | None = None, baseline=None) -> dict:
    """Write ``best_point.npy`` and ``result.json`` into ``out_dir``; return the record.

    A population campaign also gets ``units.csv`` and ``unit_best_points.npy``
    (``[K, dim]``, a row of NaN for a unit without a finite value), and the
    record its ``units`` (:func:`unit_records`, each normalized by its own
    ``unit_references`` entry) and ``population`` (the medians over units).

    ``baseline``: the unit's value for a blank (all-zero) stimulus (a list, one per unit, for a population
    campaign), recorded with whether the best found is below it (``baseline``; each unit's ``baseline`` and
    ``below_baseline``).
    """
    files = dict(files or {})
    if result.best_point is not None:
        np.save(os.path.join(out_dir, "best_point.npy"), np.asarray(result.best_point), allow_pickle=False)
        files["best_point"] = "best_point.npy"
    units = None
    if result.is_population:
        units = unit_records(result, unit_references)
        write_units_csv(os.path.join(out_dir, "units.csv"), units)
        files["units_csv"] = "units.csv"
        dim = np.asarray(result.points).shape[1] if np.asarray(result.points).ndim == 2 else 0
        pts = np.full((len(units), dim), np.nan)
        for j, u in enumerate(result.units()):
            if u.best_point is not None:
                pts[j] = np.asarray(u.best_point, dtype=float)
        np.save(os.path.join(out_dir, "unit_best_points.npy"), pts, allow_pickle=False)
        files["unit_best_points"] = "unit_best_points.npy"
    rec = result_record(result, target, reference, files, argv, reference_note)
    if baseline is not None and units is not None:
        for u, b in zip(units, baseline):
            u["baseline"] = float(b)
            u["below_baseline"] = u["best_value"] is not None and u["best_value"] < b
    elif baseline is not None:
        best = rec["best"]["value"]
        rec["baseline"] = {"stimulus": "a blank (all-zero) image", "value": float(baseline),
                           "best_below": best is not None and best < baseline}
    if units is not None:
        rec["units"] = units
        rec["population"] = {"n_units": len(units), "value": "the mean over the units of their values (best.value)",
                             "median_best_value": _median_or_none(u["best_value"] for u in units),
                             "median_normalized": _median_or_none(u["normalized"] for u in units)}
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    return rec
