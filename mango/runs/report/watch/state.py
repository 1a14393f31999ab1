"""What ``mango watch`` knows of one run: its store, read incrementally and read-only.

A :class:`RunWatcher` keeps a store open with :class:`~mango.runs.store.RunStore`
``mode="r"`` (SQLite ``mode=ro``: no write, no write lock) and, at most every
``min_interval`` seconds however many pages ask, reads only the queries recorded
since its last read (:meth:`RunStore.read_queries` with ``after=``).  The history
is kept as a :class:`mango.runs.report.html.RunData`, so the dashboard uses the report's own
best-so-far and top-k distinct selection.  A store that is missing, corrupt or
from a newer mango is not an exception here but a message (:attr:`RunWatcher.error`),
retried at every refresh: a run that has not started yet appears when it does.
"""

from __future__ import annotations

import collections
import io
import math
import os
import sys
import threading
import time
from collections.abc import Mapping

import numpy as np

from ....errors import MangoError
from ..html import RunData, topk_distinct
from ...store import RunStore

__all__ = ["RunWatcher", "reference_value"]

RATE_WINDOW_S = 60.0  # queries per second are measured over the last minute of writes


class _StoredStimuli(Mapping):
    """``query -> stimulus`` for the queries whose stimulus the store holds, read on demand (a small cache).

    Stands in for :attr:`RunData.stimuli` (which a report fills eagerly) so that
    :func:`mango.runs.report.html.topk_distinct` selects among stored stimuli without loading them.
    """

    def __init__(self, watcher: "RunWatcher", cache_size: int = 256):
        self._watcher = watcher
        self._with: set[int] = set()
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_size = cache_size

    def add(self, queries) -> None:
        self._with.update(int(q) for q in queries)

    def __contains__(self, q) -> bool:
        return int(q) in self._with

    def __len__(self) -> int:
        return len(self._with)

    def __iter__(self):
        return iter(sorted(self._with))

    def __getitem__(self, q) -> np.ndarray:
        q = int(q)
        if q not in self._with:
            raise KeyError(q)
        if q in self._cache:
            self._cache.move_to_end(q)
            return self._cache[q]
        stim = self._watcher._read_stimulus(q)
        if stim is None:
            raise KeyError(q)
        self._cache[q] = stim
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return stim


def reference_value(config: dict) -> float | None:
    """The value to draw as a reference line, where the run records one.

    ``metadata={"reference": v}`` given to :func:`mango.maximize` (e.g. a neuron's
    maximum response over a natural image set), else an ``optimum`` / ``ref_max`` /
    ``reference`` number in the objective's description (test functions).
    """
    for src in ((config.get("metadata") or {}), (config.get("objective") or {})):
        if not isinstance(src, dict):
            continue
        for key in ("reference", "ref_max", "optimum"):
            v = src.get(key)
            if isinstance(v, dict):  # a natural-image reference (mango.runs.natural.reference): its max
                v = v.get("max")
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                return float(v)
    return None


def _finite_max(a) -> float | None:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else None


def _floats(a) -> list:
    """A float array as JSON numbers, non-finite values as null."""
    return [float(x) if math.isfinite(x) else None for x in np.asarray(a, dtype=float).tolist()]


class RunWatcher:
    """One run store followed live (read-only).  Thread-safe: every access to the store holds a lock."""

    def __init__(self, path: str | os.PathLike, index: int = 0, min_interval: float = 0.5, top_k: int = 8,
                 log=None):
        self.path = os.fspath(path)
        self.index = int(index)
        self.min_interval = float(min_interval)
        self.top_k = int(top_k)
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.error: str | None = None
        self.generation = 0  # changes whenever the history is read again from scratch
        self._store: RunStore | None = None
        self._run: RunData | None = None
        self._batch = np.zeros(0, dtype=np.int64)
        self._wall = np.zeros(0, dtype=float)
        self._qpp = 1
        self._live = False
        self._oracle_stats: dict | None = None
        self._inode: int | None = None
        self._derived_cache: tuple | None = None
        self._png: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()  # stimuli never change
        self._lock = threading.RLock()
        self._last_refresh = -math.inf
        self._logged: str | None = None

    # -- reading ----------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Read what the writer committed since the last refresh (at most every ``min_interval`` s)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last_refresh < self.min_interval:
                return
            self._last_refresh = now
            try:
                self._refresh()
                self._set_error(None)
            except MangoError as exc:
                self._drop_store()
                self._set_error(str(exc))
            except Exception as exc:  # noqa: BLE001 - the dashboard reports, it never dies of one store
                self._drop_store()
                self._set_error(f"cannot read {self.path!r}: {type(exc).__name__}: {exc}")

    def _set_error(self, msg: str | None) -> None:
        self.error = msg
        if msg != self._logged:
            if msg is not None:
                self.log(f"mango watch: {self.path}: {msg}")
            elif self._logged is not None:
                self.log(f"mango watch: {self.path}: readable again")
            self._logged = msg

    def _drop_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _refresh(self) -> None:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            raise _Waiting(f"no run store at {self.path!r} (yet): waiting for a run to create it.") from None
        if self._store is not None and inode != self._inode:  # another file at this path now: another run
            self._drop_store()
            self._run = None
        if self._store is None:
            self._store = RunStore(self.path, mode="r")
            self._inode = inode
        s = self._store
        cfg = s.config
        if cfg is None:
            raise _Waiting(f"{self.path!r} holds no run yet: waiting for the run to start writing.")
        n_queries = s.n_queries()
        if self._run is None:
            self._start(s, cfg)
        run = self._run
        run.config = cfg  # a resume adds to it (versions_resumed); the history goes on
        after = int(run.queries[-1]) if len(run.queries) else None
        # batches and their queries are committed together: no new batch, no new rows to read
        q = s.read_queries(after=after) if n_queries > run.n_queries else None
        if q is not None and len(q["query"]):
            run.queries = np.concatenate([run.queries, q["query"]])
            run.values = np.concatenate([run.values, q["values"]])
            run.points = q["points"] if len(run.points) == 0 else np.concatenate([run.points, q["points"]])
            if q["responses"] is not None and (run.responses is not None or len(run.hashes) == 0):
                run.responses = q["responses"] if run.responses is None else np.concatenate(
                    [run.responses, q["responses"]])
            else:
                run.responses = None
            run.hashes = run.hashes + list(q["stimulus_hash"])
            run.has_stimulus = np.concatenate([run.has_stimulus, q["has_stimulus"]])
            run.stimuli.add(q["query"][q["has_stimulus"]])
            self._batch = np.concatenate([self._batch, q["batch"]])
            self._wall = np.concatenate([self._wall, q["wall_time"]])
        run.status = s.status
        run.sessions = s.sessions()
        run.summary = s.summary
        run.unit_names = s.unit_names
        self._oracle_stats = s.oracle_stats  # rig faults and retries, where the run logs them
        last = int(run.queries[-1]) + self._qpp if len(run.queries) else 0
        run.n_queries = max(n_queries, last)
        self._live = run.status == "running" and bool(s.holders())

    def _start(self, s: RunStore, cfg: dict) -> None:
        """(Re)read the run from its first query: a new store, or another run written at the same path."""
        self.generation += 1
        self._qpp = int(cfg.get("queries_per_point") or 1)
        label = f"{cfg.get('optimizer')} seed={cfg.get('seed')} ({os.path.basename(self.path)})"
        q = s.read_queries(after=10**18)  # no rows: the empty arrays with the run's point shape
        self._run = RunData(path=self.path, label=label, config=cfg, status=s.status,
                            budget=int(cfg.get("budget", 0)), n_queries=0, queries=q["query"], values=q["values"],
                            points=q["points"], responses=None, unit_names=s.unit_names, hashes=[],
                            has_stimulus=q["has_stimulus"], sessions=[], summary=None,
                            stimuli=_StoredStimuli(self))
        self._batch = np.zeros(0, dtype=np.int64)
        self._wall = np.zeros(0, dtype=float)

    def _read_stimulus(self, query: int) -> np.ndarray | None:
        with self._lock:
            if self._store is None:
                return None
            try:
                return self._store.stimulus(query)
            except MangoError:
                return None

    def close(self) -> None:
        with self._lock:
            self._drop_store()

    # -- what the page shows ----------------------------------------------------------
    def stimulus_png(self, generation: int, query: int, size: int = 112) -> bytes | None:
        """One stored stimulus as a PNG (scaled up by an integer factor), or None."""
        from PIL import Image

        key = (generation, query, size)
        with self._lock:
            run = self._run
            if run is None or generation != self.generation or query not in run.stimuli:
                return None
            if key in self._png:
                return self._png[key]
            try:
                stim = run.stimuli[query]
            except KeyError:
                return None
        arr = np.rint(np.clip(stim, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(arr.transpose(1, 2, 0) if arr.shape[0] == 3 else arr[0])
        scale = max(1, size // max(img.size))
        img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        with self._lock:
            self._png[key] = data
            if len(self._png) > 512:
                self._png.popitem(last=False)
        return data

    def state(self, since_generation: int | None = None, since: int = 0) -> dict:
        """The run's state as plain JSON: stats, top stimuli, the latest batch, and the history from row ``since``
        on (all of it when ``since_generation`` is not the current generation)."""
        with self._lock:
            out = {"index": self.index, "path": self.path, "file": os.path.basename(self.path),
                   "error": self.error, "generation": self.generation}
            run = self._run
            if run is None:
                return out
            n = len(run.queries)
            since = int(since) if since_generation == self.generation and 0 <= int(since) <= n else 0
            derived = self._derived()
            units = self._unit_labels()
            out.update({
                "label": run.label, "status": run.status, "live": self._live,
                "optimizer": run.config.get("optimizer"), "seed": run.config.get("seed"),
                "budget": run.budget, "n_queries": run.n_queries, "n_points": n,
                "queries_per_point": self._qpp,
                "best_value": derived["best_value"], "best_query": derived["best_query"],
                "nonfinite": derived["nonfinite"], "sessions": len(run.sessions),
                "resumed_at": [int(x["n_queries_start"]) for x in run.sessions[1:]],
                "reference": reference_value(run.config),
                "units": units,
                "stored_stimuli": derived["stored_stimuli"],
                **self._rates(),
                "rig": self._oracle_stats,
                "top": derived["top"],
                "latest": self._latest(),
                "since": since,
                "q": run.queries[since:].tolist(),
                "v": _floats(run.values[since:]),
            })
            if run.responses is not None and run.responses.shape[1] > 1:
                out["r"] = [_floats(run.responses[since:, j]) for j in range(run.responses.shape[1])]
                out["unit_best"] = derived["unit_best"]
            return out

    def _derived(self) -> dict:
        """What depends on the whole history only (best, top-k, ...): computed again only when rows were added."""
        run = self._run
        key = (self.generation, len(run.queries))
        if self._derived_cache is not None and self._derived_cache[0] == key:
            return self._derived_cache[1]
        best = run.best_index
        d = {"best_value": None if best is None else float(run.values[best]),
             "best_query": None if best is None else int(run.queries[best]),
             "nonfinite": int((~np.isfinite(run.values)).sum()), "stored_stimuli": int(run.has_stimulus.sum()),
             "top": [self._item(i) for i in topk_distinct(run, self.top_k)],
             "unit_best": None if run.responses is None else [_finite_max(run.responses[:, j])
                                                              for j in range(run.responses.shape[1])]}
        self._derived_cache = (key, d)
        return d

    def _unit_labels(self) -> list[str]:
        run = self._run
        if run.responses is None:
            return list(run.unit_names)
        names = list(run.unit_names)
        return names if len(names) == run.responses.shape[1] else [str(j) for j in range(run.responses.shape[1])]

    def _item(self, i: int) -> dict:
        run = self._run
        q = int(run.queries[i])
        v = float(run.values[i])
        return {"query": q, "value": v if math.isfinite(v) else None, "image": q in run.stimuli}

    def _latest(self, limit: int = 16) -> dict:
        run = self._run
        if not len(self._batch):
            return {"batch": None, "items": []}
        last = int(self._batch[-1])
        rows = np.flatnonzero(self._batch == last)[:limit]
        return {"batch": last, "n": int((self._batch == last).sum()), "items": [self._item(int(i)) for i in rows]}

    def _rates(self) -> dict:
        """Queries per second over the last minute of writes, the time since the last write, and the ETA."""
        run = self._run
        now = time.time()
        out = {"rate": None, "eta_s": None, "last_write_s": None}
        if not len(self._wall):
            return out
        out["last_write_s"] = max(0.0, now - float(self._wall[-1]))
        recent = self._wall >= self._wall[-1] - RATE_WINDOW_S
        first = int(np.argmax(recent))
        if first > 0:
            first -= 1  # measure from the last write before the window
        dt = float(self._wall[-1] - self._wall[first])
        dq = int(run.queries[-1] - run.queries[first])
        if dt > 0 and dq > 0:
            out["rate"] = dq / dt
            remaining = max(0, run.budget - run.n_queries)
            if self._live and remaining:
                out["eta_s"] = remaining / out["rate"]
            elif not remaining:
                out["eta_s"] = 0.0
        return out


class _Waiting(MangoError):
    """Not an error of the store: the run is not there yet."""
