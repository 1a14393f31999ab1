"""Crash-safe run store: the SQLite file format of one run, written and read.

A :class:`RunStore` is a single SQLite file (stdlib :mod:`sqlite3`, WAL journal,
``synchronous=FULL`` by default) that holds

* the run's **config** (space, optimizer name and parameters, seed, budget,
  batch size, the objective's ``describe()``, package versions, CLI arguments),
* every **query** (one row per evaluated point: query index, batch id, point,
  value, every unit's response, a hash of the stimulus and -- optionally -- the
  stimulus itself as compact ``uint8`` bytes, timestamps, and the stimulus's
  onset and offset when the rig reported them),
* optimizer **checkpoints** (``optimizer.state_dict()`` serialized with
  :mod:`mango.runs.serial`, never pickle), written every few batches / seconds and
  at the end; a state's arrays of points that the store already holds as
  queries (the history an optimizer keeps, once per unit in a population
  campaign) are stored as the queries' numbers, and its copies of the run's
  search space as a mark, and read back bit for bit, so a checkpoint grows by
  a few bytes per query, not by a point per query,
* **sessions** (each start or resume: pid, host, status),
* **pending** batches: asked of the optimizer and not yet recorded, each written
  before it is shown (:meth:`RunStore.write_pending`) and removed with its
  record; one left by a session that ended is asked again by the resume, and
  its record says so (``batches()``' ``reasked``).

A batch's queries are written in one transaction (:meth:`RunStore.write_batch`),
which the loop commits before it asks the optimizer again (a pipelined loop: before it asks for the batch
after the next), so a crash, Ctrl-C, SIGKILL or power cut loses at most the batches in flight, which the
resume asks again.  One
process at a time writes a store (:meth:`RunStore.claim`); readers (reports,
export, ``mango watch``) open it with ``mode="r"`` (SQLite read-only, WAL) and
never block the writer.

Recording a run from the loop and resuming it (``maximize(..., store=path,
resume=True)``) is :mod:`mango.runs.resume`; this module only knows the file.

Files that are not mango run stores (not SQLite, another program's database,
truncated or corrupted, or written by a newer mango) are refused with a
:class:`StoreError` that says what is wrong.

Exports: :meth:`RunStore.to_dataframe`, :meth:`RunStore.to_csv`,
:meth:`RunStore.to_json`, :meth:`RunStore.result` (an in-memory
:class:`~mango.runs.result.Result` has its own in :mod:`mango.runs.result`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import socket
import sqlite3
import time
from typing import Any, Iterator

import numpy as np

from . import serial
from .._version import __version__
from ..errors import ConfigError
from .result import Result, plain_cell, response_columns
from ..spaces import space_from_dict

__all__ = ["RunStore", "StoreError", "read_config", "check_new_store", "iter_stores", "stimulus_hash", "as_stored",
           "SCHEMA_VERSION", "MAGIC"]

MAGIC = "mango-runstore"
SCHEMA_VERSION = 3  # 2: queries.onset and queries.offset; 3: batches.reasked and the pending table (an older store
#                     gains them when a run claims it)
_SQLITE_HEADER = b"SQLite format 3\x00"
_AUTO_STIMULUS_LIMIT = 64 * 64 * 3  # elements per stimulus stored with stimuli="auto"
_HISTORY_ROWS = "__history_rows__"  # a checkpoint's array of points stored as the numbers of the queries holding them
_HISTORY_ROW = "__history_row__"  # ... one point (a 1-D array), as the number of a query holding it
_RUN_SPACE = "__run_space__"  # a checkpoint's copy of the run's search space (its config holds it)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, status TEXT NOT NULL,
    pid INTEGER, host TEXT, resumed INTEGER NOT NULL, n_queries_start INTEGER NOT NULL,
    n_queries_end INTEGER);
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY, query_start INTEGER NOT NULL, queries INTEGER NOT NULL,
    n_points INTEGER NOT NULL, t_end REAL NOT NULL, optimizer_s REAL NOT NULL, objective_s REAL NOT NULL,
    wall_time REAL NOT NULL, session INTEGER, reasked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pending (
    batch INTEGER PRIMARY KEY, query_start INTEGER NOT NULL, n_points INTEGER NOT NULL, points BLOB NOT NULL,
    session INTEGER, first_session INTEGER, asked REAL NOT NULL, reasked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS queries (
    query INTEGER PRIMARY KEY, batch INTEGER NOT NULL, row INTEGER NOT NULL, point BLOB NOT NULL,
    value REAL, responses BLOB, stimulus_hash TEXT, stimulus BLOB, stimulus_shape TEXT,
    t REAL NOT NULL, wall_time REAL NOT NULL, onset REAL, offset REAL);
CREATE INDEX IF NOT EXISTS queries_batch ON queries (batch);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT, batch INTEGER NOT NULL, n_queries INTEGER NOT NULL,
    n_points INTEGER NOT NULL, state TEXT NOT NULL, wall_time REAL NOT NULL);
"""


class StoreError(ConfigError):
    """A run store file cannot be used: missing, not SQLite, foreign, corrupted, newer, or in use."""


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _to_json(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True, sort_keys=True)


def as_stored(obj):
    """``obj`` as the store reads it back (a JSON round trip: numpy values to Python, tuples to lists, ...),
    so a live config compares equal to a stored one."""
    return json.loads(_to_json(obj))


def _stimulus_arrays(stimuli) -> np.ndarray | None:
    """Stimuli (torch tensor or array) as a float32 numpy array on the CPU, or None."""
    if stimuli is None:
        return None
    if hasattr(stimuli, "detach"):
        stimuli = stimuli.detach().to("cpu").float().numpy()
    arr = np.asarray(stimuli)
    if arr.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(arr, dtype=np.float32)


def stimulus_hash(stimulus) -> str:
    """A short content hash of one stimulus (shape and float32 values)."""
    arr = _stimulus_arrays(stimulus)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:32]


def _quantize(stim: np.ndarray) -> tuple[bytes, str] | None:
    """One stimulus as ``uint8`` bytes (values clamped to [0, 1]) and its ``C,H,W`` shape; None if not an image."""
    if stim.ndim == 2:
        stim = stim[None]
    if stim.ndim != 3:
        return None
    q = np.rint(np.clip(np.nan_to_num(stim, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return q.tobytes(), ",".join(str(s) for s in q.shape)


def _dequantize(blob: bytes | None, shape: str | None) -> np.ndarray | None:
    if blob is None or not shape:
        return None
    dims = tuple(int(s) for s in shape.split(","))
    return np.frombuffer(blob, dtype=np.uint8).reshape(dims).astype(np.float32) / 255.0


class RunStore:
    """One run's SQLite file.

    Parameters
    ----------
    path : the ``.sqlite`` file.
    mode : ``"a"`` (default) opens or creates it for writing; ``"r"`` opens an
        existing store for reading only (reports, export, ``mango watch``) and
        refuses a missing file.  ``"r"`` opens the file with SQLite's read-only
        URI (``mode=ro``): any write fails, no write lock is ever taken, and a
        run being written meanwhile is not slowed down.
    stimuli : what to keep of each stimulus besides its hash: ``"all"``,
        ``"best"`` (only stimuli that improved the best value: enough for
        reports), ``"none"``, or ``"auto"`` (default: ``"all"`` when a stimulus
        has at most 64*64*3 values, else ``"best"``).  Stimuli are stored as
        ``uint8`` after clamping to [0, 1].
    checkpoint_every : write an optimizer checkpoint every this many batches
        (and at the end) ...
    checkpoint_seconds : ... or when this many seconds passed since the last one.
    keep_checkpoints : how many recent checkpoints to keep (``None``: all);
        the default keeps the newest and one to fall back on (a resume that
        can use neither replays the run from its seed).  Each holds the
        optimizer's state, so older ones are redundant.
    synchronous : SQLite ``synchronous`` level: ``"FULL"`` (default) survives
        power cuts; ``"NORMAL"`` survives process crashes and is faster.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "a", *, stimuli: str = "auto",
                 checkpoint_every: int = 10, checkpoint_seconds: float = 60.0, keep_checkpoints: int | None = 2,
                 synchronous: str = "FULL"):
        if mode not in ("a", "r"):
            raise ConfigError(f"RunStore mode must be 'a' (read/write) or 'r' (read only), got {mode!r}.")
        if stimuli not in ("auto", "all", "best", "none"):
            raise ConfigError(f"stimuli must be 'auto', 'all', 'best' or 'none', got {stimuli!r}.")
        if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}.")
        if keep_checkpoints is not None and (int(keep_checkpoints) != keep_checkpoints or keep_checkpoints < 1):
            raise ConfigError(f"keep_checkpoints must be None or an integer >= 1, got {keep_checkpoints!r}.")
        if str(synchronous).upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"synchronous must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}.")
        self.path = os.fspath(path)
        self.mode = mode
        self.stimuli = stimuli
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.keep_checkpoints = None if keep_checkpoints is None else int(keep_checkpoints)
        self.synchronous = str(synchronous).upper()
        self._conn: sqlite3.Connection | None = None
        self._rows_of: dict[bytes, int] | None = None  # digest of a point's bytes -> a query holding it
        self._timed = True  # the queries table has the onset and offset columns (schema >= 2)
        self._schema = SCHEMA_VERSION  # of the file as opened (an older one is migrated when a run claims it)
        self._open()

    # -- opening and validation ---------------------------------------------
    def _open(self) -> None:
        exists = os.path.exists(self.path)
        if os.path.isdir(self.path):
            raise StoreError(f"{self.path!r} is a directory; give the path of a run file such as run.sqlite.")
        if not exists and self.mode == "r":
            raise StoreError(f"no run store at {self.path!r}; check the path (runs are written by "
                             "maximize(..., store=PATH) or `mango maximize --store PATH`).")
        if not exists:
            _check_creatable(self.path)
        if exists and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                head = f.read(100)
            if not head.startswith(_SQLITE_HEADER):
                raise StoreError(f"{self.path!r} is not a mango run store (not an SQLite file at all); "
                                 "check the path (a new run needs a fresh file).")
            if len(head) < 100:
                raise StoreError(f"{self.path!r} is truncated ({os.path.getsize(self.path)} bytes, shorter "
                                 "than an SQLite header); the file is damaged beyond repair: start a new run.")
        try:
            if self.mode == "r":
                # truly read-only (SQLite URI mode=ro): this connection can take no write lock and never
                # checkpoints the WAL, so a reader (report, export, `mango watch`) cannot disturb a live writer
                uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None,
                                             check_same_thread=False)
            else:
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                if self.mode == "r":
                    raise StoreError(f"{self.path!r} holds no mango run (an empty SQLite file: a run killed while "
                                     "creating it, or another program's empty database); start the run again.")
                self._create()
            else:
                self._check(tables)
            self._timed = "onset" in {r[1] for r in self._conn.execute("PRAGMA table_info(queries)")}
            has_pending = "reasked" in {r[1] for r in self._conn.execute("PRAGMA table_info(batches)")}
            self._schema = 3 if has_pending else 2 if self._timed else 1
            if self.mode == "a":
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StoreError(self._damaged(exc)) from None
        except StoreError:
            self._close_quietly()
            raise

    def _damaged(self, exc) -> str:
        return (f"{self.path!r} is corrupted or truncated and cannot be read as a mango run store "
                f"(SQLite says: {exc}). The file may have been cut short by a copy or a full disk; "
                "start a new run, or try to recover rows with the sqlite3 shell's `.recover` command.")

    def _create(self) -> None:
        with self._transaction() as c:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("magic", MAGIC), ("schema_version", str(SCHEMA_VERSION)), ("created", repr(time.time())),
                ("mango_version", __version__)])

    def _migrate(self, c) -> None:
        """Bring an older store to this schema in transaction ``c``: schema 1 gains the queries' onset and offset
        columns (empty for the old rows), schema 2 the batches' ``reasked`` column (0 for the old rows) and the
        pending table.  Done by :meth:`claim`, once no other process writes the store."""
        if self._schema < 2:
            c.execute("ALTER TABLE queries ADD COLUMN onset REAL")
            c.execute("ALTER TABLE queries ADD COLUMN offset REAL")
        if self._schema < 3:
            c.execute("ALTER TABLE batches ADD COLUMN reasked INTEGER NOT NULL DEFAULT 0")
            for stmt in _SCHEMA.strip().split(";"):
                if "TABLE IF NOT EXISTS pending" in stmt:
                    c.execute(stmt)
        c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _check(self, tables: set) -> None:
        if "meta" not in tables:
            raise StoreError(f"{self.path!r} is an SQLite database of another program (tables: "
                             f"{', '.join(sorted(tables)[:8])}), not a mango run store; give another path.")
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("magic") != MAGIC:
            raise StoreError(f"{self.path!r} is an SQLite database of another program (no mango magic in its "
                             "meta table), not a mango run store; give another path.")
        try:
            version = int(meta.get("schema_version", "-1"))
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path!r} was written by a newer mango (run store schema {version}, this "
                             f"mango {__version__} reads up to {SCHEMA_VERSION}, written by mango "
                             f"{meta.get('mango_version', '?')}); upgrade: pip install -U mango-am.")
        if version < 1:
            raise StoreError(f"{self.path!r} has an invalid run store schema version {meta.get('schema_version')!r}.")
        missing = {"run", "sessions", "batches", "queries", "checkpoints"} - tables
        if missing:
            raise StoreError(f"{self.path!r} is a damaged mango run store (missing tables: "
                             f"{', '.join(sorted(missing))}); start a new run.")
        rows = self._conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            problems = "; ".join(r[0] for r in rows[:3])
            raise StoreError(self._damaged(problems))

    def _close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: takes the write lock at once), committed when the block
        ends and rolled back when it raises."""
        if self.mode == "r":
            raise StoreError(f"{self.path!r} was opened read-only (mode='r').")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        conn.execute("COMMIT")

    def _query(self, sql: str, args=()) -> list:
        if self._conn is None:
            raise StoreError(f"the run store {self.path!r} is closed.")
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._damaged(exc)) from None

    def close(self) -> None:
        """Close the file (the WAL is checkpointed into the main file)."""
        self._close_quietly()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self.path!r}, mode={self.mode!r})"

    # -- run-level key/values -------------------------------------------------
    def _get(self, key: str, default=None):
        rows = self._query("SELECT value FROM run WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def _set(self, conn, key: str, value) -> None:
        conn.execute("INSERT OR REPLACE INTO run VALUES (?, ?)", (key, _to_json(value)))

    @property
    def config(self) -> dict | None:
        """The stored run config (``None`` before a run started writing)."""
        return self._get("config")

    @property
    def status(self) -> str:
        """``"new"``, ``"running"`` (or killed while running), ``"finished"``, ``"interrupted"`` or ``"error"``."""
        return self._get("status", "new")

    @property
    def summary(self) -> dict | None:
        """The result summary written at the end of the last session."""
        return self._get("summary")

    @property
    def unit_names(self) -> list[str]:
        return list(self._get("unit_names", []) or [])

    @property
    def oracle_stats(self) -> dict | None:
        """The oracle's fault counters after the last recorded batch, for oracles that keep them (a lab rig:
        requests, timeouts, retries, reconnects, ...); None otherwise."""
        return self._get("oracle_stats")

    def n_points(self) -> int:
        """Number of evaluated points recorded."""
        return int(self._query("SELECT COUNT(*) FROM queries")[0][0])

    def n_queries(self) -> int:
        """Queries spent so far (repeats included)."""
        rows = self._query("SELECT MAX(query_start + queries) FROM batches")
        return int(rows[0][0] or 0)

    def n_batches(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM batches")[0][0])

    def sessions(self) -> list[dict]:
        """Every start / resume of the run, oldest first."""
        keys = ("id", "started", "ended", "status", "pid", "host", "resumed", "n_queries_start", "n_queries_end")
        return [dict(zip(keys, r)) for r in self._query(f"SELECT {', '.join(keys)} FROM sessions ORDER BY id")]

    # -- writing (used by the loop callback) ------------------------------------
    def holders(self) -> list[dict]:
        """Sessions recorded as running whose process may still be alive (on this host: checked; elsewhere: assumed).

        A session left ``running`` by a process that died (SIGKILL, power cut) is
        not a holder: its run can be resumed.
        """
        host = socket.gethostname()
        return [s for s in self.sessions()
                if s["status"] == "running" and not (s["host"] == host and s["pid"] == os.getpid())
                and (s["host"] != host or s["pid"] is None or _pid_alive(int(s["pid"])))]

    def refuse_if_held(self) -> None:
        """Raise a one-line :class:`StoreError` naming the process (host, pid) that holds the store."""
        held = self.holders()
        if held:
            h = held[-1]
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"]))
            raise StoreError(
                f"the run store {self.path!r} is in use by process {h['pid']} on host {h['host']} (writing since "
                f"{since}); nothing was written. Give this run another path, or wait for that one to end "
                "and resume it.")

    def claim(self, resumed: bool, n_queries: int, config: dict | None = None, unit_names=(),
              point_dtype: str = "float64") -> int:
        """Become the run's only writer: one transaction checks that no live process holds the
        store, and (for a new run) that it holds no queries, then writes ``config`` (when given)
        and opens a session.  Returns the session id.

        Two processes that claim at once are serialized by SQLite's write lock, so exactly one
        wins; the other gets a :class:`StoreError` naming the holder and nothing is written.
        """
        try:
            with self._transaction() as c:
                self.refuse_if_held()
                if not resumed and self.n_points() > 0:
                    raise ConfigError(
                        f"the run store {self.path!r} already holds {self.n_points()} recorded queries of a run; "
                        "continue it with resume=True (`mango maximize --resume PATH`), or give another path.")
                if self._schema < SCHEMA_VERSION:
                    self._migrate(c)
                if config is not None:
                    self._set(c, "config", config)
                    self._set(c, "unit_names", list(unit_names))
                    self._set(c, "point_dtype", str(np.dtype(point_dtype)))
                cur = c.execute(
                    "INSERT INTO sessions (started, status, pid, host, resumed, n_queries_start) VALUES (?,?,?,?,?,?)",
                    (time.time(), "running", os.getpid(), socket.gethostname(), int(resumed), int(n_queries)))
                self._set(c, "status", "running")
            self._timed, self._schema = True, SCHEMA_VERSION
            return int(cur.lastrowid)
        except sqlite3.OperationalError as exc:  # the write lock was not granted within busy_timeout
            raise StoreError(f"the run store {self.path!r} is locked by another process ({exc}); "
                             "give this run another path.") from None

    def end_session(self, session: int, status: str, n_queries: int, summary: dict | None) -> None:
        with self._transaction() as c:
            c.execute("UPDATE sessions SET ended = ?, status = ?, n_queries_end = ? WHERE id = ?",
                      (time.time(), status, int(n_queries), session))
            self._set(c, "status", status)
            if summary is not None:
                self._set(c, "summary", summary)

    def write_batch(self, batch, qpp: int, point_dtype, session: int | None, stimuli_mode: str,
                    best_before: float | None, checkpoint: dict | None = None,
                    oracle_stats: dict | None = None, keep=None) -> None:
        """Write one evaluated batch (and optionally a checkpoint, and the oracle's fault counters) in one
        transaction, committed on return.

        With ``stimuli="best"`` the stimuli kept are those that beat ``best_before``,
        and the rows where ``keep`` (a boolean mask, e.g. a population campaign's
        per-unit improvements) is true."""
        now = time.time()
        points = np.asarray(batch.points)
        values = np.asarray(batch.values, dtype=float).reshape(-1)
        responses = None if batch.responses is None else np.asarray(batch.responses, dtype=float)
        stims = _stimulus_arrays(batch.stimuli)
        if stims is not None and len(stims) != len(points):
            stims = None
        onset, offset = _batch_times(batch, len(points))
        mode = stimuli_mode
        if mode == "auto" and stims is not None:
            mode = "all" if stims[0].size <= _AUTO_STIMULUS_LIMIT else "best"
        rows = []
        best = best_before
        for i in range(len(points)):
            v = float(values[i])
            improved = np.isfinite(v) and (best is None or v > best)
            if improved:
                best = v
            improved = improved or (keep is not None and bool(keep[i]))
            h = blob = shape = None
            if stims is not None:
                h = stimulus_hash(stims[i])
                if mode == "all" or (mode == "best" and improved):
                    q = _quantize(stims[i])
                    if q is not None:
                        blob, shape = q
            resp = None if responses is None else np.ascontiguousarray(responses[i], dtype=np.float64).tobytes()
            rows.append((int(batch.query_start + qpp * i), int(batch.index), i,
                         np.ascontiguousarray(points[i], dtype=point_dtype).tobytes(),
                         None if np.isnan(v) else v, resp, h, blob, shape, float(batch.t_end), now, onset[i],
                         offset[i]))
        try:
            self._insert_batch(batch, points, rows, now, session, checkpoint, oracle_stats)
        except sqlite3.IntegrityError:
            raise StoreError(f"batch {int(batch.index)} is already recorded in {self.path!r}: another process "
                             "wrote into this run; this batch was not written (the store keeps the first "
                             "writer's queries).") from None

    def _insert_batch(self, batch, points, rows, now, session, checkpoint, oracle_stats=None) -> None:
        try:
            self._insert_rows(batch, points, rows, now, session, checkpoint, oracle_stats)
        except BaseException:
            self._rows_of = None  # it may hold rows that were rolled back: rebuilt from the file when next needed
            raise

    def _insert_rows(self, batch, points, rows, now, session, checkpoint, oracle_stats) -> None:
        with self._transaction() as c:
            c.execute("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (int(batch.index), int(batch.query_start), int(batch.queries), len(points), float(batch.t_end),
                       float(batch.optimizer_s), float(batch.objective_s), now, session,
                       int(bool(getattr(batch, "reasked", False)))))
            c.execute("DELETE FROM pending WHERE batch <= ?", (int(batch.index),))
            c.executemany("INSERT INTO queries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            if self._rows_of is not None:
                for r in rows:
                    self._rows_of.setdefault(_digest(r[3]), r[0])
            if checkpoint is not None:
                self._write_checkpoint(c, checkpoint, int(batch.index),
                                       int(batch.query_start + batch.queries))
            if oracle_stats is not None:
                self._set(c, "oracle_stats", oracle_stats)

    def _write_checkpoint(self, c, state: dict, batch: int, n_queries: int) -> None:
        n_points = c.execute("SELECT COUNT(*) FROM queries WHERE batch <= ?", (batch,)).fetchone()[0]
        if self._rows_of is None:  # this session's first checkpoint: index the points recorded so far
            self._rows_of = {}
            for q, point in c.execute("SELECT query, point FROM queries ORDER BY query"):
                self._rows_of.setdefault(_digest(point), int(q))
        space = (self.config or {}).get("space")
        state = _history_by_reference(state, self._rows_of, self._point_dtype(),
                                      None if space is None else json.dumps(space, sort_keys=True))
        c.execute("INSERT INTO checkpoints (batch, n_queries, n_points, state, wall_time) VALUES (?,?,?,?,?)",
                  (batch, n_queries, int(n_points), serial.dumps(state), time.time()))
        if self.keep_checkpoints is not None:
            c.execute("DELETE FROM checkpoints WHERE id NOT IN "
                      "(SELECT id FROM checkpoints ORDER BY id DESC LIMIT ?)", (self.keep_checkpoints,))

    def write_pending(self, batch: int, query_start: int, points, session: int | None) -> bool:
        """Record a batch asked of the optimizer before it is shown (committed on return); True when an earlier
        session asked the same points as this batch and ended before recording it: the batch is *re-asked*, and
        its record will say so (``batches()``' ``reasked``).  A batch is pending until :meth:`write_batch`."""
        raw = np.ascontiguousarray(points, dtype=self._point_dtype())
        blob = raw.tobytes()
        with self._transaction() as c:
            old = c.execute("SELECT points, session, first_session FROM pending WHERE batch = ?",
                            (int(batch),)).fetchone()
            reasked = old is not None and old[0] == blob and old[1] != session
            first = old[2] if reasked else session
            c.execute("INSERT OR REPLACE INTO pending VALUES (?,?,?,?,?,?,?,?)",
                      (int(batch), int(query_start), len(raw), blob, session, first, time.time(), int(reasked)))
        return bool(reasked)

    def pending(self) -> list[dict]:
        """Batches asked and not recorded (a run that ended while they were in flight), in order: ``batch``,
        ``query_start``, ``points``, ``session`` (the last that asked it), ``first_session`` and ``reasked``."""
        if self._schema < 3:
            return []
        keys = ("batch", "query_start", "n_points", "points", "session", "first_session", "asked", "reasked")
        dtype = self._point_dtype()
        out = []
        for r in self._query(f"SELECT {', '.join(keys)} FROM pending ORDER BY batch"):
            d = dict(zip(keys, r))
            d["points"] = np.frombuffer(d["points"], dtype=dtype).reshape(d["n_points"], -1)
            d["reasked"] = bool(d["reasked"])
            out.append(d)
        return out

    def write_checkpoint(self, state: dict, batch: int, n_queries: int) -> None:
        """Store an optimizer ``state_dict()`` taken after ``batch`` was told.

        Arrays of points the store holds as queries are stored as their query numbers (see the module doc);
        :meth:`checkpoint_state` puts the points back."""
        try:
            with self._transaction() as c:
                self._write_checkpoint(c, state, batch, n_queries)
        except BaseException:
            self._rows_of = None  # rebuilt from the file at the next checkpoint
            raise

    # -- reading ----------------------------------------------------------------
    def checkpoints(self) -> list[dict]:
        """Stored checkpoints, newest first, without their state (``batch``, ``n_queries``, ``id``)."""
        keys = ("id", "batch", "n_queries", "n_points", "wall_time")
        return [dict(zip(keys, r)) for r in
                self._query(f"SELECT {', '.join(keys)} FROM checkpoints ORDER BY id DESC")]

    def checkpoint_state(self, checkpoint_id: int) -> dict:
        rows = self._query("SELECT state FROM checkpoints WHERE id = ?", (checkpoint_id,))
        if not rows:
            raise StoreError(f"no checkpoint {checkpoint_id} in {self.path!r}.")
        try:
            state = serial.loads(rows[0][0])
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"checkpoint {checkpoint_id} in {self.path!r} cannot be decoded ({exc}).") from None
        return _history_by_value(state, self._points_of, (self.config or {}).get("space"))

    def _points_of(self, queries: np.ndarray) -> np.ndarray:
        """The recorded points of ``queries`` (query numbers), in that order; a missing one raises StoreError."""
        want = sorted({int(q) for q in queries})
        found: dict[int, bytes] = {}
        for i in range(0, len(want), 500):
            part = want[i:i + 500]
            found.update(self._query(f"SELECT query, point FROM queries WHERE query IN ({','.join('?' * len(part))})",
                                     part))
        missing = [q for q in want if q not in found]
        if missing:
            raise StoreError(f"{self.path!r} has no query {missing[0]}, which a checkpoint refers to.")
        dtype = self._point_dtype()
        return np.stack([np.frombuffer(found[int(q)], dtype=dtype) for q in queries])

    def _point_dtype(self):
        return np.dtype(self._get("point_dtype", "float64"))

    def batches(self) -> list[dict]:
        """Every recorded batch, in order, with its ``points``, ``values`` and ``responses`` arrays."""
        keys = ("batch", "query_start", "queries", "n_points", "t_end", "optimizer_s", "objective_s", "wall_time",
                "session", "reasked")
        cols = ", ".join(keys) if self._schema >= 3 else ", ".join(keys[:-1]) + ", 0"
        meta = [dict(zip(keys, r)) for r in self._query(f"SELECT {cols} FROM batches ORDER BY batch")]
        for b in meta:
            b["reasked"] = bool(b["reasked"])
        q = self.read_queries()
        out = []
        pos = 0
        for b in meta:
            n = b["n_points"]
            sl = slice(pos, pos + n)
            if n and not np.all(q["batch"][sl] == b["batch"]):
                raise StoreError(f"{self.path!r} is inconsistent: batch {b['batch']} does not own its queries.")
            b["points"] = q["points"][sl]
            b["values"] = q["values"][sl]
            b["responses"] = None if q["responses"] is None else q["responses"][sl]
            b["queries_index"] = q["query"][sl]
            out.append(b)
            pos += n
        if pos != len(q["query"]):
            raise StoreError(f"{self.path!r} is inconsistent: {len(q['query']) - pos} queries belong to no batch.")
        return out

    def read_queries(self, after: int | None = None) -> dict:
        """All queries as arrays: ``query``, ``batch``, ``row``, ``points`` [n, dim], ``values``, ``responses``
        [n, units] or None, ``stimulus_hash`` (list), ``t``, ``wall_time``, ``has_stimulus`` (bool array),
        ``onset`` and ``offset`` (the rig's times of each stimulus, seconds since the Unix epoch; NaN where
        the rig reported none).

        ``after``: only the queries with a larger query index (a live reader's increment)."""
        where, args = ("", ()) if after is None else (" WHERE query > ?", (int(after),))
        times = "onset, offset" if self._timed else "NULL, NULL"  # a schema-1 store opened read-only
        rows = self._query("SELECT query, batch, row, point, value, responses, stimulus_hash, t, wall_time, "
                           f"stimulus IS NOT NULL, {times} FROM queries{where} ORDER BY query", args)
        dtype = self._point_dtype()
        cfg = self.config or {}
        dim = (cfg.get("space") or {}).get("dim")
        if rows:
            points = np.stack([np.frombuffer(r[3], dtype=dtype) for r in rows])
        else:
            d = _space_dim(cfg.get("space")) if cfg.get("space") else 0
            points = np.zeros((0, d or dim or 0), dtype)
        resp = None
        if rows and all(r[5] is not None for r in rows):
            resp = np.stack([np.frombuffer(r[5], dtype=np.float64) for r in rows])
        return {
            "query": np.array([r[0] for r in rows], dtype=np.int64),
            "batch": np.array([r[1] for r in rows], dtype=np.int64),
            "row": np.array([r[2] for r in rows], dtype=np.int64),
            "points": points,
            "values": np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=float),
            "responses": resp,
            "stimulus_hash": [r[6] for r in rows],
            "t": np.array([r[7] for r in rows], dtype=float),
            "wall_time": np.array([r[8] for r in rows], dtype=float),
            "has_stimulus": np.array([bool(r[9]) for r in rows], dtype=bool),
            "onset": np.array([np.nan if r[10] is None else r[10] for r in rows], dtype=float),
            "offset": np.array([np.nan if r[11] is None else r[11] for r in rows], dtype=float),
        }

    def stimulus(self, query: int) -> np.ndarray | None:
        """The stored stimulus of ``query`` as float32 ``[C, H, W]`` in [0, 1], or None if not stored."""
        rows = self._query("SELECT stimulus, stimulus_shape FROM queries WHERE query = ?", (int(query),))
        return _dequantize(*rows[0]) if rows else None

    def read_stimuli(self, queries) -> dict[int, np.ndarray]:
        """Stored stimuli of several queries (those without a stored stimulus are left out)."""
        out = {}
        for q in queries:
            s = self.stimulus(int(q))
            if s is not None:
                out[int(q)] = s
        return out

    def result(self):
        """The run as a :class:`mango.runs.result.Result`, rebuilt from the file alone."""
        cfg = self.config
        if cfg is None:
            raise StoreError(f"{self.path!r} holds no run yet (no config written).")
        space = space_from_dict(cfg["space"])
        q = self.read_queries()
        bt = self._query("SELECT optimizer_s, objective_s, t_end FROM batches ORDER BY batch")
        values = q["values"]
        finite = np.isfinite(values)
        best_i = int(np.flatnonzero(finite)[np.argmax(values[finite])]) if finite.any() else None
        summary = self.summary or {}
        status = self.status
        stop = {"finished": summary.get("stop_reason", "budget"), "interrupted": "interrupted",
                "error": "error"}.get(status, status)
        best_query = None if best_i is None else int(q["query"][best_i])
        res = Result(
            best_point=None if best_i is None else q["points"][best_i].astype(space.dtype),
            best_value=None if best_i is None else float(values[best_i]),
            best_query=best_query, n_queries=self.n_queries(), budget=int(cfg["budget"]),
            optimizer=str(cfg.get("optimizer")), seed=cfg.get("seed"), space=space,
            points=q["points"].astype(space.dtype), values=values, queries=q["query"], batch=q["batch"], t=q["t"],
            responses=q["responses"], unit_names=self.unit_names,
            batch_optimizer_s=np.array([r[0] for r in bt], dtype=float),
            batch_objective_s=np.array([r[1] for r in bt], dtype=float),
            wall_s=float(max([r[2] for r in bt], default=0.0)), stop_reason=stop,
            best_stimulus=None if best_query is None else self.stimulus(best_query), config=cfg,
            **self._population(cfg, q),
        )
        if res.is_population:  # each unit's best stimulus, where the store kept it
            res.unit_best_stimuli = [None if u.best_query is None else self.stimulus(u.best_query) for u in res.units()]
        return res

    def _population(self, cfg: dict, q: dict) -> dict:
        """A population campaign's per-unit fields of its :class:`Result` (nothing for a single-unit run)."""
        targets = cfg.get("targets")
        if targets is None:
            return {}
        resp = q["responses"]
        names = self.unit_names
        return {"targets": list(targets),
                "unit_values": np.zeros((0, len(targets))) if resp is None else np.asarray(resp)[:, targets],
                "target_names": [names[c] if c < len(names) else str(c) for c in targets]}

    # -- export -----------------------------------------------------------------
    def to_dataframe(self):
        """One row per evaluated point: ``query, batch, row, t, wall_time, value, x0.., r_<unit>.., stimulus_hash``,
        then ``onset, offset`` (seconds since the Unix epoch) when the rig reported presentation times."""
        import pandas as pd

        q = self.read_queries()
        cols: dict[str, Any] = {"query": q["query"], "batch": q["batch"], "row": q["row"], "t": q["t"],
                                "wall_time": q["wall_time"], "value": q["values"]}
        for j in range(q["points"].shape[1]):
            cols[f"x{j}"] = q["points"][:, j]
        cols.update(response_columns(q["responses"], self.unit_names))
        cols["stimulus_hash"] = q["stimulus_hash"]
        if np.isfinite(q["onset"]).any():
            cols.update(onset=q["onset"], offset=q["offset"])
        return pd.DataFrame(cols)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dataframe` as CSV."""
        self.to_dataframe().to_csv(path, index=False)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The whole run as JSON: config, status, summary, sessions and one record per query."""
        df = self.to_dataframe()
        doc = {"format": "mango-run-json-1", "config": self.config, "status": self.status,
               "summary": self.summary, "sessions": self.sessions(), "unit_names": self.unit_names,
               "queries": [{k: plain_cell(v) for k, v in row.items()} for row in df.to_dict(orient="records")]}
        text = json.dumps(doc, indent=1, default=_json_default)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text


def _batch_times(batch, n: int) -> tuple[list, list]:
    """Each point's onset and offset (floats, or None where the rig reported no times) from ``batch.times``."""
    times = getattr(batch, "times", None)
    if times is None or len(times[0]) != n:
        return [None] * n, [None] * n
    onset, offset = ([None if not np.isfinite(t) else float(t) for t in np.asarray(times[k], dtype=float)]
                     for k in (0, 1))
    return onset, offset


def _space_dim(space_dict) -> int:
    """The dimension of a stored space (0 if it cannot be rebuilt): the shape of an empty history."""
    try:
        return space_from_dict(space_dict).dim
    except Exception:  # noqa: BLE001 - only used for an empty history's shape
        return 0


def _digest(point_bytes: bytes) -> bytes:
    return hashlib.blake2b(point_bytes, digest_size=16).digest()


def _history_by_reference(state, rows_of: dict, dtype: np.dtype, space_json: str | None = None):
    """``state`` with what the store holds already stored by reference: each array of points (the store's point
    dtype; 2-D, or one point) whose every row is a recorded query's point becomes ``{"__history_rows__": query
    numbers}`` (``{"__history_row__": query}``), and each copy of the run's search space (``space_json``, the
    config's, as JSON) ``{"__run_space__": 1}``.  Arrays with a point the store does not hold are kept."""
    if isinstance(state, dict):
        if space_json is not None and "kind" in state:
            try:
                same = json.dumps(serial.to_plain(state), sort_keys=True) == space_json
            except TypeError:
                same = False
            if same:
                return {_RUN_SPACE: 1}
        return {k: _history_by_reference(v, rows_of, dtype, space_json) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_history_by_reference(v, rows_of, dtype, space_json) for v in state]
    if isinstance(state, np.ndarray) and state.dtype == dtype and state.ndim in (1, 2) and state.size:
        arr = np.ascontiguousarray(state)
        rows = [rows_of.get(_digest(r.tobytes())) for r in (arr if arr.ndim == 2 else arr[None])]
        if all(r is not None for r in rows):
            if arr.ndim == 1:
                return {_HISTORY_ROW: int(rows[0])}
            return {_HISTORY_ROWS: np.asarray(rows, dtype=np.int32 if max(rows) < 2 ** 31 else np.int64)}
    return state


def _history_by_value(state, points_of, space=None):
    """Inverse of :func:`_history_by_reference`: the recorded points (``points_of(queries)``) and the run's
    search space (``space``, from the config) put back."""
    if isinstance(state, dict):
        if set(state) == {_HISTORY_ROWS}:
            return points_of(np.asarray(state[_HISTORY_ROWS]).reshape(-1))
        if set(state) == {_HISTORY_ROW}:
            return points_of(np.asarray([state[_HISTORY_ROW]]))[0]
        if set(state) == {_RUN_SPACE}:
            if space is None:
                raise StoreError("a checkpoint refers to the run's search space, but the store has no config.")
            return json.loads(json.dumps(space))  # a copy
        return {k: _history_by_value(v, points_of, space) for k, v in state.items()}
    if isinstance(state, list):
        return [_history_by_value(v, points_of, space) for v in state]
    return state


def _check_creatable(path: str) -> None:
    """A new store's folder exists and can be written (SQLite would only say "unable to open database file")."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreError(f"cannot create the run store {path!r}: the folder {folder!r} does not exist; create it "
                         f"(mkdir -p {folder}) or give a path in an existing folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the run store {path!r}: the folder {folder!r} is not writable; give a "
                         "path in a folder you can write to.")


def check_new_store(path: str | os.PathLike, flag: str = "--store") -> None:
    """Check, before a run starts, that ``path`` can take a new run: its folder exists and is writable, and the
    file, if it exists, is an empty or new mango run store (one that holds queries is refused: resume it)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise StoreError(f"{flag} {path} is a directory; give the path of a run file such as {path}/run.sqlite.")
    if not os.path.exists(path):
        _check_creatable(path)
        return
    if os.path.getsize(path) == 0:
        return
    with RunStore(path, mode="r") as s:
        s.refuse_if_held()  # a live writer is what matters: "in use by process ..."
        n = s.n_points()
    if n:
        raise StoreError(f"{flag} {path} already holds {n} recorded queries of a run; continue it with "
                         f"--resume {path}, or give a new {flag} path.")


def read_config(path: str | os.PathLike) -> dict:
    """The config stored in a run file (what ``mango maximize --resume`` needs to rebuild the run)."""
    with RunStore(path, mode="r") as s:
        cfg = s.config
    if cfg is None:
        raise StoreError(f"{os.fspath(path)!r} holds no run config yet (the run was killed before it started); "
                         "start it again with --store.")
    return cfg


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # a zombie (killed, not yet reaped) is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def iter_stores(stores) -> Iterator[RunStore]:
    """Open paths (read-only) or pass RunStores through."""
    if isinstance(stores, (str, os.PathLike, RunStore)):
        stores = [stores]
    for s in stores:
        yield s if isinstance(s, RunStore) else RunStore(s, mode="r")
