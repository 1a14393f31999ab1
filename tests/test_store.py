"""Tests of mango.runs.store: recording, resume, damaged files, export."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mango
from mango.errors import ConfigError
from mango.spaces import Box, Codebook, Grid
from mango.runs.result import result_to_csv, result_to_dataframe, result_to_json
from mango.runs.resume import attach_store
from mango.runs.store import MAGIC, SCHEMA_VERSION, RunStore, StoreError, read_config, stimulus_hash

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402


class Crash(Exception):
    pass


class CrashAfter:
    """A callback that raises after the store committed batch ``k`` (a crash between batches)."""

    def __init__(self, k):
        self.k = k

    def on_batch(self, run, batch):
        if batch.index == self.k and not batch.replayed:
            raise Crash()


class CrashingObjective(_campaign.ImageSphere):
    """Raises (like a crash mid-measurement) when asked to evaluate batch number ``k``."""

    def __init__(self, k, exc=Crash):
        super().__init__()
        self.k, self.calls, self.exc = k, 0, exc

    def evaluate(self, points):
        self.calls += 1
        if self.calls == self.k + 1:
            raise self.exc()
        return super().evaluate(points)


def run(path, opt="cma", seed=0, budget=100, batch=10, resume=False, obj=None, callbacks=(), **kw):
    obj = obj or _campaign.ImageSphere()
    res = mango.maximize(obj, _campaign.SPACE, optimizer=opt, budget=budget, batch_size=batch, seed=seed,
                         progress=False, store=path, resume=resume, callbacks=callbacks, **kw)
    return res, obj


def same_history(a, b):
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.queries, b.queries)
    np.testing.assert_array_equal(a.batch, b.batch)
    if a.responses is not None or b.responses is not None:
        np.testing.assert_array_equal(a.responses, b.responses)


# -- recording and reading back ------------------------------------------------
def test_store_records_everything_and_rebuilds_result(tmp_path):
    p = tmp_path / "r.sqlite"
    res, obj = run(p, budget=95, batch=10)
    assert res.n_queries == 95
    with RunStore(p, mode="r") as s:
        assert s.status == "finished"
        assert s.n_queries() == 95 and s.n_points() == 95 and s.n_batches() == 10
        back = s.result()
        cfg = s.config
        q = s.read_queries()
        assert s.checkpoints()[0]["batch"] == 9  # final checkpoint
        assert s.unit_names == ["sphere", "ripple"]
    same_history(back, res)
    assert back.best_value == res.best_value and back.best_query == res.best_query
    np.testing.assert_array_equal(back.best_point, res.best_point)
    # stimuli stored as uint8: within 1/255 of the original
    assert np.max(np.abs(back.best_stimulus - res.best_stimulus)) <= 0.5 / 255 + 1e-6
    assert cfg["optimizer"] == "cma" and cfg["budget"] == 95 and cfg["batch_size"] == 10 and cfg["seed"] == 0
    assert cfg["objective"] == {"name": "image-sphere", "dim": 6}
    assert cfg["space"] == _campaign.SPACE.to_dict()
    assert cfg["versions"]["mango"] == mango.__version__ and "numpy" in cfg["versions"]
    assert read_config(p) == cfg
    assert all(len(h) == 32 for h in q["stimulus_hash"]) and q["has_stimulus"].all()
    assert len(set(q["stimulus_hash"])) == 95
    assert np.all(np.diff(q["t"]) >= 0)


def test_wal_mode_and_meta(tmp_path):
    p = tmp_path / "r.sqlite"
    run(p, budget=20)
    con = sqlite3.connect(p)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    assert meta["magic"] == MAGIC and int(meta["schema_version"]) == SCHEMA_VERSION


def test_discrete_spaces_roundtrip(tmp_path):
    for space, name in ((Codebook((3, 3), 7), "cb"), (Grid(Box(4, -1, 1), 9), "grid")):
        f = lambda x: -np.sum((np.asarray(x, float) - 2) ** 2, axis=1)  # noqa: E731
        p = tmp_path / f"{name}.sqlite"
        res = mango.maximize(f, space, optimizer="random", budget=40, batch_size=7, seed=3, progress=False, store=p)
        with RunStore(p, mode="r") as s:
            back = s.result()
        assert back.points.dtype == np.int64
        same_history(back, res)


def test_torch_stimuli_and_modes(tmp_path):
    class TorchObj:
        unit_names = ["u"]

        def __init__(self, size):
            self.size = size

        def evaluate(self, points):
            x = torch.as_tensor(points, dtype=torch.float32)
            img = torch.sigmoid(x.sum(1))[:, None, None, None].expand(-1, 3, self.size, self.size).contiguous()
            v = -(x ** 2).sum(1).numpy().astype(float)
            return v, {"responses": v[:, None], "stimuli": img}

    for mode, size, expect in (("all", 4, "all"), ("none", 4, "none"), ("best", 4, "best"),
                               ("auto", 4, "all"), ("auto", 70, "best")):
        p = tmp_path / f"{mode}{size}.sqlite"
        store = RunStore(p, stimuli=mode)
        res = mango.maximize(TorchObj(size), Box(3), optimizer="random", budget=30, batch_size=10, seed=1,
                             progress=False, store=store)
        store.close()
        with RunStore(p, mode="r") as s:
            q = s.read_queries()
        assert all(h is not None for h in q["stimulus_hash"])
        improved = np.r_[True, q["values"][1:] > np.maximum.accumulate(q["values"])[:-1]]
        if expect == "all":
            assert q["has_stimulus"].all()
        elif expect == "none":
            assert not q["has_stimulus"].any()
        else:
            np.testing.assert_array_equal(q["has_stimulus"], improved)
        assert res.n_queries == 30
    img = torch.rand(3, 4, 4)
    assert stimulus_hash(img) == stimulus_hash(img.numpy()) != stimulus_hash(img + 1e-3)


# -- refusing misuse -------------------------------------------------------------
def test_new_run_refuses_file_with_queries(tmp_path):
    p = tmp_path / "r.sqlite"
    run(p, budget=20)
    with pytest.raises(ConfigError, match="resume=True"):
        run(p, budget=20)


def test_resume_checks_config(tmp_path):
    p = tmp_path / "r.sqlite"
    with pytest.raises(Crash):
        run(p, budget=40, callbacks=[CrashAfter(1)])
    with pytest.raises(ConfigError) as ei:
        run(p, opt="ga", seed=5, budget=40, resume=True)
    msg = str(ei.value)
    assert "optimizer: stored 'cma' vs now 'ga'" in msg and "seed: stored 0 vs now 5" in msg
    with pytest.raises(ConfigError, match="batch_size"):
        run(p, budget=40, batch=7, resume=True)
    res, _ = run(p, budget=40, resume=True)  # the right settings work
    assert res.n_queries == 40


def test_resume_missing_file(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        run(tmp_path / "nope.sqlite", resume=True)
    with pytest.raises(ConfigError, match="store="):
        mango.maximize(lambda x: x.sum(1), Box(2), budget=5, progress=False, resume=True)


def test_resume_refuses_store_in_use(tmp_path):
    p = tmp_path / "r.sqlite"
    with pytest.raises(Crash):
        run(p, budget=40, callbacks=[CrashAfter(0)])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with RunStore(p) as s, s._transaction() as c:
            c.execute("UPDATE sessions SET status='running', pid=?", (sleeper.pid,))
        with pytest.raises(StoreError, match=f"in use by process {sleeper.pid}"):
            run(p, budget=40, resume=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    res, _ = run(p, budget=40, resume=True)  # dead process: resume allowed
    assert res.n_queries == 40


@pytest.mark.parametrize("kind", ["text", "foreign", "newer", "truncated", "corrupted", "directory", "zero",
                                  "badmagic"])
def test_damaged_or_foreign_files_give_clear_errors(tmp_path, kind):
    p = tmp_path / "x.sqlite"
    if kind == "text":
        p.write_text("query,value\n0,1.5\n")
        expect = "not an SQLite file"
    elif kind == "foreign":
        con = sqlite3.connect(p)
        con.execute("CREATE TABLE songs (title TEXT)")
        con.commit()
        con.close()
        expect = "another program"
    elif kind == "badmagic":
        con = sqlite3.connect(p)
        con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('magic', 'something-else')")
        con.commit()
        con.close()
        expect = "another program"
    elif kind == "newer":
        run(p, budget=20)
        con = sqlite3.connect(p)
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
        con.commit()
        con.close()
        expect = "newer mango"
    elif kind in ("truncated", "corrupted"):
        run(p, budget=300, batch=10)
        raw = p.read_bytes()
        assert len(raw) > 8 * 4096
        if kind == "truncated":
            p.write_bytes(raw[: len(raw) // 2])
        else:
            raw = bytearray(raw)
            raw[4096:4096 * 6] = os.urandom(4096 * 5)  # garbage over several pages after the header page
            p.write_bytes(bytes(raw))
        expect = "corrupted or truncated"
    elif kind == "directory":
        p.mkdir()
        expect = "directory"
    else:  # zero-byte file: fine to start a new run in, but holds no run to read
        p.write_bytes(b"")
        expect = "holds no"
    attempts = [lambda: RunStore(p, mode="r").result(), lambda: read_config(p)]
    if kind != "zero":
        attempts.append(lambda: run(p, budget=300, resume=True))
    for attempt in attempts:
        with pytest.raises(StoreError, match=expect) as ei:
            attempt()
        assert "Traceback" not in str(ei.value)
    if kind == "zero":  # a run killed while creating its file: a new run or a resume starts from scratch
        res, obj = run(p, budget=20, resume=True)
        assert res.n_queries == 20 and obj.evaluations == 20


def test_cli_style_error_has_no_sqlite_traceback(tmp_path):
    p = tmp_path / "x.sqlite"
    p.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    with pytest.raises(StoreError) as ei:
        RunStore(p, mode="r")
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


# -- resume semantics --------------------------------------------------------------
def test_resume_of_finished_run_queries_nothing(tmp_path):
    p = tmp_path / "r.sqlite"
    res, _ = run(p, budget=50)
    again, obj = run(p, budget=50, resume=True)
    assert obj.evaluations == 0
    same_history(again, res)
    assert again.best_value == res.best_value
    assert again.wall_s >= max(res.t)


def test_crash_inside_a_batch_then_resume(tmp_path):
    """An exception while a batch is measured: that batch was not recorded and is measured again."""
    p = tmp_path / "r.sqlite"
    ref, _ = run(None, opt="ga", budget=100, batch=10)
    with pytest.raises(Crash):
        run(p, opt="ga", budget=100, batch=10, obj=CrashingObjective(4))
    with RunStore(p, mode="r") as s:
        assert s.n_points() == 40 and s.status == "error"
        assert all(c["n_points"] == 40 for c in s.checkpoints()[:1])
    res, obj = run(p, opt="ga", budget=100, batch=10, resume=True)
    assert obj.evaluations == 60
    same_history(res, ref)


def test_keyboard_interrupt_marks_interrupted_and_resumes(tmp_path):
    p = tmp_path / "r.sqlite"
    ref, _ = run(None, opt="random", budget=60, batch=7)
    part, _ = run(p, opt="random", budget=60, batch=7, obj=CrashingObjective(3, KeyboardInterrupt))
    assert part.stop_reason == "interrupted" and part.n_queries == 21
    with RunStore(p, mode="r") as s:
        assert s.status == "interrupted" and s.sessions()[-1]["status"] == "interrupted"
        assert s.result().stop_reason == "interrupted"
    res, obj = run(p, opt="random", budget=60, batch=7, resume=True)
    assert obj.evaluations == 39
    same_history(res, ref)


def test_repeats_budget_and_resume(tmp_path):
    class Repeated(_campaign.ImageSphere):
        queries_per_point = 3

    p = tmp_path / "r.sqlite"
    ref = mango.maximize(Repeated(), _campaign.SPACE, optimizer="cma", budget=100, batch_size=4, seed=2,
                         progress=False)
    with pytest.raises(Crash):
        mango.maximize(Repeated(), _campaign.SPACE, optimizer="cma", budget=100, batch_size=4, seed=2,
                       progress=False, store=p, callbacks=[CrashAfter(3)])
    res = mango.maximize(Repeated(), _campaign.SPACE, optimizer="cma", budget=100, batch_size=4, seed=2,
                         progress=False, store=p, resume=True)
    same_history(res, ref)
    assert res.n_queries == ref.n_queries == 99
    with RunStore(p, mode="r") as s:
        q = s.read_queries()
        assert s.n_queries() == 99
    assert q["query"].tolist() == list(range(0, 99, 3))


def test_nonfinite_worst_resume(tmp_path):
    def f(x):
        v = -np.sum((x - 0.2) ** 2, axis=1)
        v[x[:, 0] > 0.6] = np.nan
        return v

    kw = dict(optimizer="cma", budget=120, batch_size=8, seed=4, progress=False, nonfinite="worst")
    with pytest.warns(RuntimeWarning):
        ref = mango.maximize(f, Box(3), **kw)
    assert np.isnan(ref.values).any()
    p = tmp_path / "r.sqlite"
    with pytest.warns(RuntimeWarning), pytest.raises(Crash):
        mango.maximize(f, Box(3), store=p, callbacks=[CrashAfter(6)], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = mango.maximize(f, Box(3), store=p, resume=True, **kw)
    same_history(res, ref)


def test_checkpoints_periodic_and_pruned(tmp_path):
    p = tmp_path / "r.sqlite"
    store = RunStore(p, checkpoint_every=3, keep_checkpoints=2)
    run(store, budget=100, batch=10)
    store.close()
    with RunStore(p, mode="r") as s:
        cks = s.checkpoints()
        assert [c["batch"] for c in cks] == [9, 8]  # every 3 batches (2, 5, 8) and the end (9), 2 kept
        state = s.checkpoint_state(cks[0]["id"])
    assert state["optimizer"] == "cma" and state["n_asked"] == 100


def test_resume_falls_back_when_checkpoints_unusable(tmp_path):
    p = tmp_path / "r.sqlite"
    ref, _ = run(None, opt="cma", budget=100, batch=10)
    with pytest.raises(Crash):
        run(p, opt="cma", budget=100, batch=10, callbacks=[CrashAfter(5)])
    with RunStore(p) as s, s._transaction() as c:
        c.execute("UPDATE checkpoints SET state = '{\"format\": \"nonsense\"}'")
    with pytest.warns(RuntimeWarning, match="could not be loaded"):
        res, obj = run(p, opt="cma", budget=100, batch=10, resume=True)
    assert obj.evaluations == 40
    same_history(res, ref)


def test_attach_store_argument_checks(tmp_path):
    with pytest.raises(ConfigError, match="path or a mango.runs.store.RunStore"):
        attach_store(123, None)
    with pytest.raises(ConfigError, match="stimuli must be"):
        RunStore(tmp_path / "a.sqlite", stimuli="some")
    with pytest.raises(ConfigError, match="checkpoint_every"):
        RunStore(tmp_path / "a.sqlite", checkpoint_every=0)


# -- export ------------------------------------------------------------------------
def test_export_dataframe_csv_json(tmp_path):
    import pandas as pd

    p = tmp_path / "r.sqlite"
    res, _ = run(p, budget=30, batch=10)
    with RunStore(p, mode="r") as s:
        df = s.to_dataframe()
        s.to_csv(tmp_path / "r.csv")
        text = s.to_json(tmp_path / "r.json")
    assert len(df) == 30
    assert list(df.columns[:6]) == ["query", "batch", "row", "t", "wall_time", "value"]
    assert {"x0", "x5", "r_sphere", "r_ripple", "stimulus_hash"} <= set(df.columns)
    np.testing.assert_array_equal(df["value"].to_numpy(), res.values)
    np.testing.assert_array_equal(df[[f"x{j}" for j in range(6)]].to_numpy(), res.points)
    np.testing.assert_array_equal(df["r_ripple"].to_numpy(), res.responses[:, 1])
    csv = pd.read_csv(tmp_path / "r.csv")
    np.testing.assert_allclose(csv["value"].to_numpy(), res.values, rtol=0, atol=0)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc == json.loads(text)
    assert doc["config"]["budget"] == 30 and doc["status"] == "finished" and len(doc["queries"]) == 30
    assert doc["queries"][7]["value"] == res.values[7]
    rdf = result_to_dataframe(res)
    assert len(rdf) == 30 and "r_sphere" in rdf.columns
    np.testing.assert_array_equal(rdf["x3"].to_numpy(), res.points[:, 3])
    result_to_csv(res, tmp_path / "res.csv")
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "res.csv")["r_sphere"].to_numpy(), res.responses[:, 0])
    hist = json.loads(result_to_json(res, tmp_path / "res.json"))["history"]
    assert hist["value"] == res.values.tolist() and (tmp_path / "res.json").exists()


# -- property: resume loses nothing --------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opt=st.sampled_from(["random", "cma", "ga"]), seed=st.integers(0, 1000), budget=st.integers(5, 90),
       batch=st.integers(1, 13), crash=st.integers(0, 12), inside=st.booleans(), every=st.integers(1, 4),
       twice=st.booleans())
def test_property_resume_loses_nothing(tmp_path_factory, opt, seed, budget, batch, crash, inside, every, twice):
    d = tmp_path_factory.mktemp("prop")
    p = d / "r.sqlite"
    ref, _ = run(None, opt=opt, seed=seed, budget=budget, batch=batch)
    n_batches = -(-budget // batch)
    crash = crash % n_batches
    obj = CrashingObjective(crash) if inside else _campaign.ImageSphere()
    store = RunStore(p, checkpoint_every=every)
    try:
        run(store, opt=opt, seed=seed, budget=budget, batch=batch, obj=obj,
            callbacks=[] if inside else [CrashAfter(crash)])
        crashed = False
    except Crash:
        crashed = True
    finally:
        store.close()
    assert crashed or (not inside and crash == n_batches - 1)  # the last batch's callback crash is after the loop
    with RunStore(p, mode="r") as s:
        before = s.n_points()
    if twice and before < budget:  # crash the resume too, one batch later
        obj2 = CrashingObjective(0) if inside else _campaign.ImageSphere()
        try:
            run(p, opt=opt, seed=seed, budget=budget, batch=batch, resume=True, obj=obj2,
                callbacks=[] if inside else [CrashAfter(crash + 1)])
        except Crash:
            pass
        with RunStore(p, mode="r") as s:
            before2 = s.n_points()
    else:
        before2 = before
    res, obj3 = run(p, opt=opt, seed=seed, budget=budget, batch=batch, resume=True)
    assert obj3.evaluations == budget - before2  # nothing recorded was evaluated again
    same_history(res, ref)
    with RunStore(p, mode="r") as s:
        q = s.read_queries()
        assert s.status == "finished"
    assert q["query"].tolist() == list(range(budget))


def test_every_batch_is_committed_before_the_next_ask(tmp_path):
    """While batch k is measured, another connection already sees batches 0..k-1 (the WAL allows live readers)."""
    p = tmp_path / "r.sqlite"
    seen = []

    class Spy(_campaign.ImageSphere):
        def evaluate(self, points):
            with RunStore(p, mode="r") as s:
                seen.append((s.n_points(), s.status))
            return super().evaluate(points)

    mango.maximize(Spy(), _campaign.SPACE, optimizer="ga", budget=60, batch_size=7, seed=0, progress=False, store=p)
    assert [n for n, _ in seen] == [0, 7, 14, 21, 28, 35, 42, 49, 56]
    assert all(st == "running" for _, st in seen)


_SLOW_WRITER = """
import sys, time
import numpy as np
import mango
def slow(x):
    time.sleep(float(sys.argv[2]))   # a slow rig: every batch takes a while
    return -(np.asarray(x) ** 2).sum(1)
mango.maximize(slow, mango.Box(3), optimizer="random", budget=int(sys.argv[3]), batch_size=5, seed=1,
               progress=False, store=sys.argv[1])
"""


@pytest.mark.parametrize("when", ["before_first_batch", "after_first_batch"])
def test_second_writer_on_live_store_is_refused(tmp_path, when):
    """Two processes, one store: the second writer (a fresh run, or a resume) gets a one-line error naming
    the holder and writes nothing; the store ends holding exactly the first run's queries."""
    p = tmp_path / "live.sqlite"
    first = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(p), "0.4", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.time() + 300  # a safety net only: the loop ends on an event
        while time.time() < deadline:  # wait until the first run has claimed the store
            if p.exists():
                try:
                    with RunStore(p, mode="r") as s:
                        if s.sessions() and (when == "before_first_batch" or s.n_points() > 0):
                            break
                except StoreError:
                    pass
            time.sleep(0.05)
        else:
            pytest.fail("the first writer never started")
        with RunStore(p, mode="r") as s:
            before = s.n_points()
        for resume in (False, True):
            with pytest.raises(StoreError) as ei:
                mango.maximize(lambda x: x.sum(1), Box(3), optimizer="random", budget=10, batch_size=5,
                               seed=2, progress=False, store=p, resume=resume)
            msg = str(ei.value)
            assert f"in use by process {first.pid} on host" in msg and "\n" not in msg
        with RunStore(p, mode="r") as s:  # nothing written by the refused writer
            assert len(s.sessions()) == 1 and s.n_points() >= before
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    with RunStore(p, mode="r") as s:
        q = s.read_queries()
        assert s.n_points() == 20 and s.status == "finished" and len(s.sessions()) == 1
        assert (s.batches()[0]["points"].shape == (5, 3))
    res = mango.maximize(lambda x: -(np.asarray(x) ** 2).sum(1), Box(3), optimizer="random", budget=20,
                         batch_size=5, seed=1, progress=False)
    np.testing.assert_allclose(q["values"], res.values)


def test_second_writer_cli_one_line_error(tmp_path):
    p = tmp_path / "live.sqlite"
    first = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(p), "0.5", "400"])  # 40 s unless killed
    try:
        import time
        deadline = time.time() + 300  # a safety net only: the loop ends on an event
        while time.time() < deadline:
            try:
                with RunStore(p, mode="r") as s:
                    if s.sessions():
                        break
            except StoreError:
                pass
            time.sleep(0.05)
        r = subprocess.run([sys.executable, "-m", "mango.cli", "maximize", "--model", "zoo:cnn-digits",
                            "--generator", "grating", "--budget", "8", "--store", str(p), "--out",
                            str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
        assert r.returncode != 0
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "Traceback" not in r.stderr, r.stderr
        assert first.poll() is None  # the first run was live all along
    finally:
        first.kill()
        first.wait()
    with RunStore(p, mode="r") as s:  # only the first run's session and batches
        assert len(s.sessions()) == 1 and s.sessions()[0]["pid"] == first.pid
        assert {b["session"] for b in s.batches()} <= {s.sessions()[0]["id"]}


def test_read_only_mode_cannot_write_and_takes_no_lock(tmp_path):
    p = tmp_path / "ro.sqlite"
    _campaign.run(p, "random", 0, 40, 10)
    reader = RunStore(p, mode="r")
    try:
        assert reader.n_queries() == 40
        # the connection itself is read-only (SQLite URI mode=ro), not only the Python API
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("INSERT INTO meta VALUES ('x', 'y')")
        with pytest.raises(StoreError, match="read-only"):
            reader.write_checkpoint({}, 0, 40)
        # even BEGIN IMMEDIATE takes no write lock on it: a writer gets its lock at once (timeout 0)
        # while the reader is inside that transaction and mid-read
        reader._conn.execute("BEGIN IMMEDIATE")
        cur = reader._conn.execute("SELECT query FROM queries")
        cur.fetchone()
        writer = sqlite3.connect(p, timeout=0.0, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO run VALUES ('probe', '1')")
        writer.execute("COMMIT")
        writer.close()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("INSERT INTO meta VALUES ('x', 'y')")
        cur.fetchall()
        reader._conn.execute("COMMIT")
        assert reader._get("probe") == 1
    finally:
        reader.close()


def test_read_queries_after(tmp_path):
    p = tmp_path / "inc.sqlite"
    _campaign.run(p, "random", 0, 50, 10)
    with RunStore(p, mode="r") as s:
        full = s.read_queries()
        tail = s.read_queries(after=29)
        assert tail["query"].tolist() == list(range(30, 50))
        np.testing.assert_array_equal(tail["points"], full["points"][30:])
        np.testing.assert_array_equal(tail["responses"], full["responses"][30:])
        assert len(s.read_queries(after=49)["query"]) == 0


def test_read_only_open_of_a_path_with_uri_characters(tmp_path):
    d = tmp_path / "a b#c?d%20e"
    d.mkdir()
    p = d / "run 1.sqlite"
    _campaign.run(p, "random", 0, 20, 10)
    with RunStore(p, mode="r") as s:
        assert s.n_queries() == 20


# -- readers never block the writer ----------------------------------------------------
def test_open_reader_does_not_block_the_writer(tmp_path):
    """A reader in the middle of a read (a cursor over the queries, not yet exhausted) holds its snapshot while the
    loop commits the next batches: the writer never waits for it (WAL), and a new read sees the new batches.
    Were the store in a rollback journal, the writer's COMMIT would need the reader gone and the run would fail
    with "database is locked" after the busy timeout."""
    p = tmp_path / "r.sqlite"
    uri = p.resolve().as_uri() + "?mode=ro"
    held: list = []  # (connection, cursor, points seen when the read began)
    seen = []

    class Reader(_campaign.ImageSphere):
        def evaluate(self, points):
            if held:  # the read begun before the last commit is still on its old snapshot
                conn, cur, n0 = held.pop()
                rest = cur.fetchall()
                assert 1 + len(rest) == n0
                conn.close()
            with RunStore(p, mode="r") as s:
                n = s.n_points()
                seen.append(n)
            if n:
                conn = sqlite3.connect(uri, uri=True, isolation_level=None)
                cur = conn.execute("SELECT query FROM queries ORDER BY query")
                cur.fetchone()  # mid-iteration: the read transaction stays open
                held.append((conn, cur, n))
            return super().evaluate(points)

    res = mango.maximize(Reader(), _campaign.SPACE, optimizer="random", budget=40, batch_size=5, seed=0,
                         progress=False, store=p)
    for conn, _, _ in held:
        conn.close()
    assert seen == list(range(0, 40, 5))  # each read saw every batch committed before it
    with RunStore(p, mode="r") as s:
        assert s.status == "finished" and s.n_points() == 40
        np.testing.assert_array_equal(s.read_queries()["values"], res.values)


def test_mango_report_on_a_live_store(tmp_path):
    """`mango report` on a store another process is writing: the report is written, the writer keeps going
    and ends with every query recorded."""
    p = tmp_path / "live.sqlite"
    hold = tmp_path / "hold"  # the writer waits past its first 10 points while this file exists: no race
    hold.write_text("")
    campaign = os.path.join(os.path.dirname(__file__), "_campaign.py")
    writer = subprocess.Popen([sys.executable, campaign, str(p), "random", "0", "150", "5", "0", "--hold", str(hold)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.time() + 300  # a safety net only: the loop ends on an event
        while time.time() < deadline:  # wait for a few recorded batches
            try:
                with RunStore(p, mode="r") as s:
                    if s.n_points() >= 10:
                        break
            except StoreError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the writer never recorded a batch")
        r = subprocess.run([sys.executable, "-m", "mango.cli", "report", str(p), "--out", str(tmp_path / "rep"),
                            "--top-k", "4"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("index.html") and (tmp_path / "rep" / "index.html").exists()
        page = (tmp_path / "rep" / "index.html").read_text()
        assert "running" in page  # the report shows the run as live
        assert writer.poll() is None, "the writer ended while held"
        with RunStore(p, mode="r") as s:
            assert s.status == "running"
        hold.unlink()  # release the writer: it goes on committing after the report read the store
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    with RunStore(p, mode="r") as s:
        assert s.status == "finished" and s.n_points() == 150 and len(s.sessions()) == 1
