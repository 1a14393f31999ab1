"""The population benchmarks' run records: one JSON file per run as written, packed into ``runs.jsonl.gz`` for git.

``population.py`` writes each run as ``<group>-<arm>-<optimizer>-s<seed>[-u<unit>].json``: its units' best
values and normalized values, every unit's best-so-far curve (one value per query) and every unit's best point.
Those raw files are too large for the repository (about 40 MB for the 2026-12 campaigns) and are not
tracked (``results/population/.gitignore``).  What the reports read is kept, per directory, in
``runs.jsonl.gz``: one line per run, ``{"file": <the run file's name>, ...}``, with

* the curves as steps (:func:`to_steps`: the queries at which a curve changes and its values there;
  expanded back exactly, as ``curves``, on reading);
* the best points only where a report reads them (:func:`keeps_points`).

Readers (:func:`records`, :func:`read`) see the raw files and the packed runs as one set, a raw file
replacing the packed run of the same name.  ``python benchmarks/population.py --pack --out DIR`` adds the
raw files of ``DIR`` to its ``runs.jsonl.gz``.
"""

from __future__ import annotations

import functools
import gzip
import json
import os

import numpy as np

PACK = "runs.jsonl.gz"


def keeps_points(rec: dict) -> bool:
    """Whether the pack keeps a run's best points: those of output-group population runs (``population.py``'s
    CNN check, ``population_handover.py``'s start points) and of single-unit ``surrogate`` runs of the output
    group (``population_gap.py``)."""
    if rec.get("group") != "output":
        return False
    return rec.get("unit") is None or (rec.get("arm") == "single" and rec.get("optimizer") == "surrogate")


def to_steps(curve) -> dict:
    """A per-query curve as ``{"n": length, "q": [indices where the value changes], "v": [the values there]}``."""
    c = np.asarray(curve, dtype=float)
    if c.size == 0:
        return {"n": 0, "q": [], "v": []}
    same = (c[1:] == c[:-1]) | (np.isnan(c[1:]) & np.isnan(c[:-1]))
    q = np.concatenate([[0], np.flatnonzero(~same) + 1])
    return {"n": int(c.size), "q": q.tolist(), "v": c[q].tolist()}


def from_steps(steps: dict) -> list:
    """The per-query curve of :func:`to_steps`' dict."""
    q = list(steps["q"]) + [steps["n"]]
    return np.repeat(np.asarray(steps["v"], dtype=float), np.diff(q)).tolist()


def compact(name: str, rec: dict) -> dict:
    """Run file ``name``'s record as a line of the pack."""
    out = {"file": name}
    out.update({k: v for k, v in rec.items() if k not in ("curves", "best_points")})
    out["curve_steps"] = [to_steps(c) for c in rec.get("curves", [])]
    if "best_points" in rec and keeps_points(rec):
        out["best_points"] = rec["best_points"]
    return out


def expand(line: dict) -> tuple[str, dict]:
    """``(file name, record)`` of a pack line: the record as its run file held it (without best points the
    pack did not keep)."""
    rec = {k: v for k, v in line.items() if k not in ("file", "curve_steps")}
    rec["curves"] = [from_steps(s) for s in line.get("curve_steps", [])]
    return line["file"], rec


def packed(out: str) -> dict:
    """``file name -> record`` of ``out``'s pack (empty when there is none; read once while it is unchanged,
    so the records are shared: do not modify them)."""
    path = os.path.join(out, PACK)
    if not os.path.exists(path):
        return {}
    st = os.stat(path)
    return _read_pack(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read_pack(path: str, mtime_ns: int, size: int) -> dict:
    with gzip.open(path, "rt") as f:
        return dict(expand(json.loads(line)) for line in f if line.strip())


def _raw_names(out: str) -> list[str]:
    return [n for n in os.listdir(out) if n.endswith(".json")] if os.path.isdir(out) else []


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def records(out: str, prefix: str):
    """The run records under ``out`` (raw files and packed runs) whose file names start with ``prefix``, in
    name order."""
    pack = packed(out)
    raw = set(_raw_names(out))
    for name in sorted(raw | set(pack)):
        if name.startswith(prefix):
            yield _load(os.path.join(out, name)) if name in raw else pack[name]


def read(out: str, name: str) -> dict | None:
    """Run file ``name`` under ``out``: the raw file, else the packed run, else ``None``."""
    path = os.path.join(out, name)
    return _load(path) if os.path.exists(path) else packed(out).get(name)


def exists(out: str, name: str) -> bool:
    """Whether run ``name`` is under ``out``, raw or packed."""
    return os.path.exists(os.path.join(out, name)) or name in packed(out)


def is_run(name: str) -> bool:
    """Whether ``name`` is a run file of ``population.py`` (not a summary, a gap or a hand-over file)."""
    return name.endswith(".json") and name.split("-", 1)[0] in ("output", "hidden")


def write_pack(out: str) -> tuple[str, int]:
    """Add ``out``'s raw run files to its pack (replacing packed runs of the same names); return the pack's
    path and its number of runs.  The file is deterministic (no time stamp), so an unchanged pack diffs clean."""
    lines = {name: compact(name, rec) for name, rec in packed(out).items()}
    for name in _raw_names(out):
        if is_run(name):
            lines[name] = compact(name, _load(os.path.join(out, name)))
    path = os.path.join(out, PACK)
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for name in sorted(lines):
            f.write((json.dumps(lines[name]) + "\n").encode())
    os.replace(tmp, path)
    return path, len(lines)
