"""Recording a run into its store and resuming it: the loop callback behind ``maximize(store=, resume=)``.

:func:`attach_store` gives :func:`mango.maximize` a :class:`StoreCallback`
that writes every evaluated batch into a :class:`~mango.runs.store.RunStore` and
commits it before the optimizer is asked again, so a crash, Ctrl-C, SIGKILL or
power cut loses at most the batch that was being measured.

Resuming (``maximize(..., store=path, resume=True)``) checks that the run's
settings match the recorded ones, restores the optimizer from the newest usable
checkpoint, replays the batches recorded after it, puts the whole recorded
history back into the run, and continues with the remaining budget: nothing is
queried twice and the budget holds.  For deterministic objectives and
optimizers the resumed run ends with exactly the history of an uninterrupted
one.  A pipelined run (the next batch asked while the last is shown) is
replayed in its own order of asks and tells; the batches it had in flight
(the store's pending table) are shown again and recorded as re-asked.

This module drives a :class:`~mango.runs.loop.Run` and its optimizer through their
public methods only; the file format is :mod:`mango.runs.store`'s.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import time
import warnings

import numpy as np

from .._version import __version__
from ..errors import ConfigError
from .store import RunStore, StoreError, as_stored

__all__ = ["StoreCallback", "attach_store", "recorded_config"]

# keys of the config that must match for a resume (the budget may be raised: the run is extended)
_RESUME_KEYS = ("space", "optimizer", "optimizer_params", "seed", "batch_size", "nonfinite",
                "queries_per_point", "warm_start", "targets", "pipeline", "pipeline_lag")
_RESUME_DEFAULTS = {"pipeline": False}  # what a store recorded before the key existed


def _stored(stored: dict, key: str):
    """A recorded setting, or what a store written before the key existed meant by its absence."""
    if key == "pipeline_lag" and key not in stored:  # before the lag, a pipelined run told whole batches
        return stored.get("batch_size") if stored.get("pipeline") else None
    return stored.get(key, _RESUME_DEFAULTS.get(key))


def _versions() -> dict:
    """Versions of mango, Python and the libraries a run used (kept in its config)."""
    out = {"mango": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}
    for mod in ("torch", "scipy", "cma", "nevergrad", "teneva", "snntorch"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


class StoreCallback:
    """The loop callback that writes a run into a :class:`~mango.runs.store.RunStore` (see :func:`attach_store`).

    ``on_start`` claims the store (and, resuming, restores the run from it),
    ``on_batch`` writes each evaluated batch -- with an optimizer checkpoint
    every few batches or seconds -- and ``on_end`` writes a last checkpoint and
    the session's status and summary.  ``own``: the callback opened the store
    and closes it at the end.
    """

    def __init__(self, store: RunStore, run, resume: bool = False, own: bool = False):
        self.store = store
        self.run = run
        self.resume = resume
        self.own = own
        self.session: int | None = None
        self._best: float | None = None
        self._unit_best = np.full(len(run.targets or ()), -np.inf)  # a population campaign's, for stimuli="best"
        self._last_ckpt_batch = -1
        self._last_ckpt_time = time.monotonic()
        self._batches_since = 0
        self._point_dtype = np.dtype(run.space.dtype)

    # config written to the store
    def _config(self) -> dict:
        run = self.run
        cfg = dict(run.config)
        cfg["queries_per_point"] = run.queries_per_point
        cfg["unit_names"] = list(run.unit_names)
        cfg.setdefault("versions", _versions())
        return as_stored(cfg)

    def on_start(self, run) -> None:
        try:
            self._start(run)
        except BaseException:
            if self.own:  # the loop does not call on_end when on_start fails
                self.store.close()
            raise

    def _start(self, run) -> None:
        store = self.store
        if not self.resume:
            self.session = store.claim(False, 0, self._config(), run.unit_names, self._point_dtype.str)
            return
        store.refuse_if_held()  # before comparing configs: "in use" is the error that matters
        stored = store.config
        if stored is None:
            config = self._config()
        else:
            self._check_matches(stored)
            config = {**stored, "versions_resumed": _versions()} if "versions" in stored else stored
            # the budget (raised to extend the run) and the caller's metadata (e.g. where the CLI writes) as now
            live = self._config()
            config = {**config, "budget": live["budget"],
                      "metadata": {**(stored.get("metadata") or {}), **(live.get("metadata") or {})}}
        self.session = store.claim(True, store.n_queries(), config, run.unit_names, self._point_dtype.str)
        try:
            if store.n_points() > 0:
                self._restore(run)
        except BaseException:
            store.end_session(self.session, "error", store.n_queries(), None)
            self.session = None
            raise

    def _check_matches(self, stored: dict) -> None:
        live = self._config()
        diffs = [f"{k}: stored {_stored(stored, k)!r} vs now {live.get(k)!r}"
                 for k in _RESUME_KEYS if _stored(stored, k) != live.get(k)]
        if stored.get("budget") is not None and live["budget"] < stored["budget"]:
            diffs.append(f"budget: stored {stored['budget']} vs now {live['budget']} (a resume may raise the "
                         "budget to extend the run, not lower it)")
        if diffs:
            raise ConfigError(
                f"cannot resume {self.store.path!r}: the run differs from the recorded one in "
                + "; ".join(diffs) + ". Resume with the original settings, or start a new run with another path.")
        if stored.get("objective") != live.get("objective"):
            warnings.warn(f"resuming {self.store.path!r} with a different objective description "
                          f"(stored {stored.get('objective')!r}, now {live.get('objective')!r}).",
                          RuntimeWarning, stacklevel=4)

    def _restore(self, run) -> None:
        """Bring ``run`` and its optimizer to the recorded state: the newest usable checkpoint, then a replay."""
        store = self.store
        batches = store.batches()
        expected = 0
        for i, b in enumerate(batches):
            if b["batch"] != i or b["query_start"] != expected:
                raise StoreError(f"{store.path!r} is inconsistent: batch {b['batch']} starts at query "
                                 f"{b['query_start']}, expected batch {i} at query {expected}.")
            expected = b["query_start"] + b["queries"]
        # a pipelined run replays under the budget it was asked under (a raised one extends it afterwards)
        run.replay_budget = int((store.config or {}).get("budget") or run.budget)
        pending = {p["batch"]: p for p in store.pending()}
        # the newest checkpoint that loads and matches the recorded history
        n_points_upto = np.cumsum([b["n_points"] for b in batches])
        ckpt_batch = -1
        for ck in store.checkpoints():
            if ck["batch"] >= len(batches) or ck["n_points"] != int(n_points_upto[ck["batch"]]):
                continue
            try:
                state = store.checkpoint_state(ck["id"])
                if run.pipeline and "n_asked" not in state:
                    continue  # cannot tell whether it holds the batch that was in flight: replay instead
                ahead = self._ahead_of(run, ck, int(state.get("n_asked", ck["n_points"])) - ck["n_points"],
                                       batches, pending)
                if ahead is None:
                    continue  # taken with points asked that neither the history nor the pending table holds
                run.optimizer.load_state_dict(state)
                run.set_ahead(ahead)
            except Exception as exc:  # noqa: BLE001 - fall back to an older checkpoint / full replay
                warnings.warn(f"checkpoint {ck['id']} of {store.path!r} could not be loaded ({exc}); "
                              "using an older one.", RuntimeWarning, stacklevel=3)
                continue
            told = getattr(run.optimizer, "n_told", None)
            if told is not None and told != ck["n_points"]:
                continue
            ckpt_batch = ck["batch"]
            break
        if ckpt_batch < 0:  # no checkpoint could be used: replay everything from the seed
            run.optimizer.reset()
            run.set_ahead([])
        for b in batches:
            resp = b["responses"]
            if b["batch"] <= ckpt_batch:
                run.restore_batch(b["batch"], b["points"], b["values"], b["query_start"], b["queries"],
                                  responses=resp, optimizer_s=b["optimizer_s"], objective_s=b["objective_s"],
                                  t_end=b["t_end"])
            else:
                run.replay_batch(b["points"], b["values"], responses=resp, query_start=b["query_start"],
                                 t_end=b["t_end"], optimizer_s=b["optimizer_s"], objective_s=b["objective_s"])
        if batches:
            run.set_elapsed(batches[-1]["t_end"])
        if run.best_query is not None:
            run.best_stimulus = store.stimulus(run.best_query)
        for j, q in enumerate(run.unit_best_queries):
            if q >= 0:
                run.unit_best_stimuli[j] = store.stimulus(int(q))
        self._unit_best = run.unit_best_values.copy()
        self._best = run.best_value
        self._last_ckpt_batch = ckpt_batch
        for asked in run.ahead:  # asked again (a pipelined run's next batch): pending in this session now
            self.on_ask(run, asked)

    @staticmethod
    def _ahead_of(run, ck: dict, n_ahead: int, batches: list, pending: dict):
        """The batches a checkpoint's optimizer had asked beyond the history (a pipelined loop asks the next one
        before telling the last), as ``(index, points, query_start)``; None when they cannot be found."""
        if n_ahead == 0:
            return []
        nxt = ck["batch"] + 1
        if n_ahead < 0 or not run.pipeline:
            return None
        if nxt < len(batches):
            pts, qs = batches[nxt]["points"], batches[nxt]["query_start"]
        elif nxt in pending:
            pts, qs = pending[nxt]["points"], pending[nxt]["query_start"]
        else:
            return None
        if len(pts) != n_ahead:
            return None
        return [(nxt, np.asarray(pts).astype(run.space.dtype), int(qs))]

    def on_ask(self, run, asked) -> None:
        """Record a batch as pending before it is shown (see :meth:`RunStore.write_pending`)."""
        if self.session is None:
            return
        asked.reasked = self.store.write_pending(asked.index, asked.query_start, asked.points, self.session)

    def on_batch(self, run, batch) -> None:
        if getattr(batch, "replayed", False):
            return
        self._batches_since += 1
        ckpt = None
        if (self._batches_since >= self.store.checkpoint_every
                or time.monotonic() - self._last_ckpt_time >= self.store.checkpoint_seconds):
            ckpt = run.optimizer.state_dict()
        keep = None
        if batch.unit_values is not None:  # keep the stimuli that improved any unit's best
            uv = np.where(np.isfinite(batch.unit_values), batch.unit_values, -np.inf)
            best_before = np.maximum.accumulate(np.vstack([self._unit_best[None], uv]), axis=0)[:-1]
            keep = (uv > best_before).any(axis=1)
            self._unit_best = np.maximum(self._unit_best, uv.max(axis=0))
        self.store.write_batch(batch, run.queries_per_point, self._point_dtype, self.session, self.store.stimuli,
                               self._best, checkpoint=ckpt, oracle_stats=_oracle_stats(run.objective), keep=keep)
        finite = np.asarray(batch.values, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            m = float(finite.max())
            self._best = m if self._best is None else max(self._best, m)
        if ckpt is not None:
            self._mark_checkpoint(batch.index)

    def _mark_checkpoint(self, batch_index: int) -> None:
        self._batches_since = 0
        self._last_ckpt_time = time.monotonic()
        self._last_ckpt_batch = batch_index

    def on_end(self, run) -> None:
        if self.session is None:  # on_start failed
            if self.own:
                self.store.close()
            return
        exc = sys.exc_info()[1]
        if run.stop_reason == "interrupted" or isinstance(exc, KeyboardInterrupt):
            status = "interrupted"
        elif run.remaining < run.queries_per_point and exc is None and run.stop_reason != "error":
            status = "finished"
        else:
            status = "error"
        try:
            last = run.n_batches - 1
            if last >= 0 and last != self._last_ckpt_batch:
                state = run.optimizer.state_dict()
                # after an error inside a batch the optimizer may hold asked-but-unrecorded points:
                # such a state would not match the recorded history, so it is not stored
                if int(state.get("n_asked", run.n_points)) == run.n_points:
                    self.store.write_checkpoint(state, last, run.n_queries)
                    self._mark_checkpoint(last)
            summary = as_stored({k: v for k, v in run.result().to_dict().items() if k not in ("config", "space")})
            summary["stop_reason"] = run.stop_reason if status == "finished" else status
            self.store.end_session(self.session, status, run.n_queries, summary)
        finally:
            if self.own:
                self.store.close()


def _oracle_stats(objective) -> dict | None:
    """The fault counters of the oracle behind ``objective`` (through wrappers), if it keeps them (RigOracle.stats)."""
    obj = objective
    for _ in range(8):
        if obj is None:
            return None
        stats = getattr(obj, "stats", None)
        if isinstance(stats, dict) and "retries" in stats:
            return {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        obj = getattr(obj, "oracle", None)
    return None


def recorded_config(store) -> dict:
    """The config recorded in ``store`` (a path or a :class:`RunStore`), or ``{}`` when it records none (a missing
    or unreadable file is left to :func:`attach_store` to report)."""
    try:
        if isinstance(store, RunStore):
            cfg = store.config
        elif isinstance(store, (str, os.PathLike)) and os.path.exists(store):
            with RunStore(store, mode="r") as s:
                cfg = s.config
        else:
            return {}
    except StoreError:  # an empty or damaged file: the resume itself says what is wrong
        return {}
    return dict(cfg or {})


def attach_store(store, run, resume: bool = False, **store_options) -> StoreCallback:
    """The loop callback that records ``run`` into ``store`` (a path or a :class:`RunStore`).

    New run (``resume=False``): refuses a file that already holds queries.
    ``resume=True``: checks the recorded config matches the run's (space,
    optimizer and parameters, seed, batch size; the budget may be raised, which
    extends the run), restores the optimizer
    from the newest usable checkpoint, replays the batches recorded after it and
    puts the whole history back into ``run``; the loop then spends only
    ``run.remaining`` queries.  ``store_options`` go to :class:`RunStore` when a
    path is given.
    """
    if isinstance(store, RunStore):
        if store_options:
            raise ConfigError("store options apply when store= is a path; configure the RunStore you passed instead.")
        return StoreCallback(store, run, resume=resume, own=False)
    if not isinstance(store, (str, os.PathLike)):
        raise ConfigError(f"store= must be a path or a mango.runs.store.RunStore, got {type(store).__name__}.")
    if resume and not os.path.exists(store):
        raise StoreError(f"cannot resume: no run store at {os.fspath(store)!r}. Check the path, or start a new "
                         "run with store= (without resume).")
    return StoreCallback(RunStore(store, **store_options), run, resume=resume, own=True)
