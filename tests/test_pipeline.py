"""The pipelined loop: the next batch is asked while the objective evaluates the last one.

What must hold: the optimizer knows the pending points (``surrogate`` conditions its model on them), the budget is
exact, the same seed gives the same history, a generation-based optimizer asks ahead only within a generation, a
rig oracle gets the pipeline by default, and a run killed (SIGKILL) while batches are pending resumes to exactly
the history of an uninterrupted run, with the batch that was in flight recorded as re-asked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import mango
from mango.errors import ConfigError
from mango.optimizers import make
from mango.optimizers.random_search import RandomSearch
from mango.optimizers.surrogate import gp as gplib
from mango.rig import RigOracle, RigServer
from mango.spaces import Box
from mango.runs.store import RunStore

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402

CAMPAIGN = os.path.join(os.path.dirname(__file__), "_campaign.py")


def sphere(x):
    return -np.sum((np.asarray(x) - 0.3) ** 2, axis=1)


class Spy(RandomSearch):
    """Random search that logs its asks and tells, with the points outstanding at each ask."""

    name = "random"

    def _setup(self):
        super()._setup()
        self.events = []
        self.outstanding = 0

    def _ask(self, n):
        self.events.append(("a", n, self.outstanding))
        self.outstanding += n
        return super()._ask(n)

    def _tell(self, points, values):
        self.events.append(("t", len(points), self.outstanding))
        self.outstanding -= len(points)
        super()._tell(points, values)


def test_pipelined_loop_asks_the_next_batch_before_telling_the_last():
    opt = Spy(Box(3, -1, 1), seed=0)
    res = mango.maximize(sphere, opt.space, optimizer=opt, budget=35, batch_size=10, pipeline=True, progress=False)
    assert res.n_queries == 35 and len(res.points) == 35
    kinds = "".join(e[0] for e in opt.events)
    assert kinds == "aatatatt"  # a0 a1 t0 a2 t1 a3 t2 t3: one batch always in flight while the next is asked
    assert [e[1] for e in opt.events if e[0] == "a"] == [10, 10, 10, 5]  # the last batch: what the budget leaves
    assert [e[2] for e in opt.events if e[0] == "a"][1:] == [10, 10, 10]  # pending when asked
    assert res.config["pipeline"] is True


def test_a_batch_larger_than_the_lag_tells_its_head_before_the_next_ask():
    """Batches of 40, lag 10: each batch's first 30 values are told, then the next batch is asked knowing the last
    10 are pending, then they are told; the recorded history is whole batches, as the synchronous loop's."""
    opt = Spy(Box(3, -1, 1), seed=0)
    res = mango.maximize(sphere, opt.space, optimizer=opt, budget=100, batch_size=40, pipeline=True,
                         pipeline_lag=10, progress=False)
    assert [e[:2] for e in opt.events] == [("a", 40), ("t", 30), ("a", 40), ("t", 10), ("t", 30), ("a", 20),
                                           ("t", 10), ("t", 10), ("t", 10)]
    assert [e[2] for e in opt.events if e[0] == "a"] == [0, 10, 10]  # pending when asked: the tail only
    assert res.n_queries == 100 and list(np.bincount(res.batch)) == [40, 40, 20]
    np.testing.assert_array_equal(res.values, sphere(res.points))
    assert res.config["pipeline_lag"] == 10
    # the default lag is 10 points; a lag of at least the batch is the whole batch (asked before any value)
    assert mango.maximize(sphere, opt.space, budget=30, batch_size=20, pipeline=True, progress=False,
                          optimizer="random").config["pipeline_lag"] == 10
    whole = Spy(Box(3, -1, 1), seed=0)
    res = mango.maximize(sphere, whole.space, optimizer=whole, budget=80, batch_size=40, pipeline=True,
                         pipeline_lag=50, progress=False)
    assert "".join(e[0] for e in whole.events) == "aatt" and res.config["pipeline_lag"] == 40
    with pytest.raises(ConfigError, match="pipeline_lag"):
        mango.maximize(sphere, opt.space, budget=10, pipeline=True, pipeline_lag=0, progress=False)


def test_split_batches_keep_stimuli_responses_and_times_in_order(tmp_path):
    """A rig with batches of 25 and lag 10 gets two requests a batch (15 + 10 stimuli); the store holds each batch
    whole, with its stimuli, responses and the rig's onset and offset times in query order."""
    requests = []

    def present(stimuli):
        start = sum(requests)
        requests.append(len(stimuli))
        onset = 1.7e9 + 0.015 * (start + np.arange(len(stimuli)))
        return stimuli.reshape(len(stimuli), -1).mean(1), {"onset_s": onset, "offset_s": onset + 0.010}

    srv = RigServer(present, "tcp://127.0.0.1:0").start()
    try:
        with RigOracle(srv.endpoint, timeout=5.0) as rig:
            res = mango.maximize(rig, space=Box(2, 0, 1), optimizer="random", budget=60, batch_size=25, seed=0,
                                 progress=False, store=tmp_path / "r.sqlite", pipeline_lag=10)
    finally:
        srv.stop()
    assert requests == [15, 10, 15, 10, 10]  # the last batch (10 points) is no larger than the lag: one request
    np.testing.assert_allclose(res.values, res.points.mean(1), rtol=1e-6)
    with RunStore(tmp_path / "r.sqlite", mode="r") as s:
        assert [b["n_points"] for b in s.batches()] == [25, 25, 10] and s.pending() == []
        q = s.read_queries()
        np.testing.assert_array_equal(q["query"], np.arange(60))
        np.testing.assert_allclose(q["onset"], 1.7e9 + 0.015 * np.arange(60), rtol=0, atol=1e-6)
        np.testing.assert_allclose(q["offset"] - q["onset"], 0.010, atol=1e-6)
        np.testing.assert_allclose(s.batches()[1]["responses"][:, 0], res.points[25:50].mean(1), rtol=1e-6)
    # image stimuli and two response units, in process: each part's stimuli land at their own queries
    res, _ = _campaign.run(tmp_path / "img.sqlite", "random", 0, 60, 25, pipeline=True, pipeline_lag=10)
    with RunStore(tmp_path / "img.sqlite", mode="r") as s:
        for q in (3, 20, 37, 59):
            x = res.points[q].astype(float)
            want = np.clip(0.5 + 0.5 * x[None, :, None] * x[None, None, :], 0.0, 1.0)
            np.testing.assert_allclose(s.stimulus(q), want, rtol=0, atol=1 / 255)  # kept as 8-bit images
        np.testing.assert_allclose(s.batches()[1]["responses"][:, 1], np.cos(3.0 * res.points[25:50]).sum(1),
                                   rtol=1e-5)


def test_synchronous_loop_is_unchanged():
    opt = Spy(Box(3, -1, 1), seed=0)
    mango.maximize(sphere, opt.space, optimizer=opt, budget=35, batch_size=10, pipeline=False, progress=False)
    assert "".join(e[0] for e in opt.events) == "atatatat"
    assert all(e[2] == 0 for e in opt.events if e[0] == "a")


@pytest.mark.parametrize("optimizer", ["surrogate", "cma", "ga", "ng:NGOpt"])
def test_pipelined_budget_exact_and_seeded(optimizer):
    kw = dict(space=Box(4, -1, 1), optimizer=optimizer, budget=67, batch_size=10, seed=3, progress=False,
              pipeline=True)
    a = mango.maximize(sphere, **kw)
    b = mango.maximize(sphere, **kw)
    assert a.n_queries == 67 and len(a.points) == 67
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.values, b.values)
    assert list(np.unique(a.batch)) == list(range(7))


def test_surrogate_conditions_on_pending_points(monkeypatch):
    seen = []
    real = gplib.fantasize

    def spy(model, Xp):
        seen.append(len(Xp))
        return real(model, Xp)

    monkeypatch.setattr(gplib, "fantasize", spy)
    mango.maximize(sphere, space=Box(4, -1, 1), optimizer="surrogate", budget=60, batch_size=10, seed=0,
                   pipeline=True, progress=False)
    assert seen and all(n == 10 for n in seen)  # every model batch knew the 10 points in flight
    seen.clear()
    mango.maximize(sphere, space=Box(4, -1, 1), optimizer="surrogate", budget=60, batch_size=10, seed=0,
                   pipeline=False, progress=False)
    assert seen == []


def test_fantasies_keep_the_mean_and_shrink_the_variance_at_pending_points():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 3, generator=g, dtype=torch.float64)
    y = torch.sin(3 * X).sum(1)
    model = gplib.fit(X, y)
    Xp = torch.rand(4, 3, generator=g, dtype=torch.float64)
    Xs = torch.rand(50, 3, generator=g, dtype=torch.float64)
    fant = gplib.fantasize(model, Xp)
    mu0, var0 = model.predict(Xs)
    mu1, var1 = fant.predict(Xs)
    torch.testing.assert_close(mu1, mu0, rtol=0, atol=1e-4)  # exact in exact arithmetic; the kernel is ill-conditioned
    assert bool((var1 <= var0 + 1e-9).all())
    _, vp = fant.predict(Xp)
    _, vp0 = model.predict(Xp)
    assert bool((vp < 0.5 * vp0).all()) or bool((vp0 < 1e-6).all())
    assert gplib.fantasize(model, Xp[:0]) is model


def test_surrogate_pending_batches_differ_and_survive_its_state():
    space = Box(4, -1, 1)
    opt = make("surrogate", space, seed=0, batch_size=5)
    x = opt.ask(10)
    opt.tell(x, sphere(x))
    first = opt.ask(5)
    state = opt.state_dict()
    second = opt.ask(5)  # asked with `first` pending
    assert not any(np.allclose(p, q) for p in second for q in first)
    again = make("surrogate", space, seed=0, batch_size=5)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.ask(5), second)  # the pending points are part of the state


def test_generation_optimizer_asks_ahead_only_within_a_generation():
    opt = make("ga", Box(4, -1, 1), seed=0, popsize=20)
    assert opt.can_ask_ahead(10)
    opt.ask(10)
    assert opt.can_ask_ahead(10) and not opt.can_ask_ahead(11)
    x = opt.ask(10)
    assert not opt.can_ask_ahead(1)  # the generation is out; the next one waits for its values
    opt.tell(x, sphere(x))
    assert not opt.can_ask_ahead(1)  # half of it is still pending


def test_rig_oracle_is_pipelined_by_default(tmp_path):
    def present(stimuli):
        return stimuli.reshape(len(stimuli), -1).mean(1)

    srv = RigServer(present, "tcp://127.0.0.1:0").start()
    try:
        with RigOracle(srv.endpoint, timeout=5.0) as rig:
            res = mango.maximize(rig, space=Box(2, 0, 1), optimizer="random", budget=12, batch_size=4, seed=0,
                                 progress=False, store=tmp_path / "r.sqlite")
            off = mango.maximize(rig, space=Box(2, 0, 1), optimizer="random", budget=4, batch_size=4, seed=0,
                                 progress=False, pipeline=False)
    finally:
        srv.stop()
    assert res.config["pipeline"] is True and off.config["pipeline"] is False
    assert res.n_queries == 12
    np.testing.assert_allclose(res.values, res.points.mean(1), rtol=1e-6)
    with RunStore(tmp_path / "r.sqlite", mode="r") as s:
        assert s.pending() == [] and len(s.batches()) == 3
    assert mango.maximize(sphere, space=Box(2, 0, 1), budget=4, optimizer="random", progress=False).config[
        "pipeline"] is False


def test_pipeline_must_match_on_resume(tmp_path):
    p = tmp_path / "r.sqlite"
    mango.maximize(sphere, space=Box(2, -1, 1), optimizer="random", budget=4, batch_size=2, seed=0, progress=False,
                   store=p, pipeline=True)
    with pytest.raises(ConfigError, match="pipeline: stored True vs now False"):
        mango.maximize(sphere, space=Box(2, -1, 1), optimizer="random", budget=8, batch_size=2, seed=0,
                       progress=False, store=p, resume=True, pipeline=False)
    with pytest.raises(ConfigError, match="pipeline must be True, False or None"):
        mango.maximize(sphere, space=Box(2, -1, 1), budget=4, progress=False, pipeline="yes")
    q = tmp_path / "lag.sqlite"
    kw = dict(space=Box(2, -1, 1), optimizer="random", batch_size=20, seed=0, progress=False, store=q, pipeline=True)
    mango.maximize(sphere, budget=40, pipeline_lag=5, **kw)
    with pytest.raises(ConfigError, match="pipeline_lag: stored 5 vs now 10"):
        mango.maximize(sphere, budget=60, resume=True, pipeline_lag=10, **kw)
    assert mango.maximize(sphere, budget=60, resume=True, **kw).config["pipeline_lag"] == 5  # the recorded one


def test_a_store_from_before_the_lag_resumes_with_whole_batches(tmp_path):
    """A pipelined run recorded before ``pipeline_lag`` existed told whole batches: its resume does the same."""
    import sqlite3
    import json

    p = tmp_path / "old.sqlite"
    kw = dict(space=Box(2, -1, 1), optimizer="random", batch_size=20, seed=0, progress=False, store=p, pipeline=True)
    mango.maximize(sphere, budget=40, pipeline_lag=20, **kw)
    with sqlite3.connect(p) as db:  # as an older mango wrote it: no pipeline_lag key
        (raw,) = db.execute("SELECT value FROM run WHERE key = 'config'").fetchone()
        cfg = json.loads(raw)
        del cfg["pipeline_lag"]
        db.execute("UPDATE run SET value = ? WHERE key = 'config'", (json.dumps(cfg),))
    res = mango.maximize(sphere, budget=60, resume=True, **kw)
    assert res.n_queries == 60 and res.config["pipeline_lag"] == 20


def _pending_batches(path) -> list[int]:
    try:
        with RunStore(path, mode="r") as s:
            return [p["batch"] for p in s.pending()]
    except Exception:  # noqa: BLE001 - not created yet
        return []


# surrogate asks batch 6 while batch 5 is shown; ga's generation of 20 points is batches 4 and 5, so its next one
# waits for their values: only batch 5 is pending.  With batches of 25 and a lag of 10, batch 2 is asked once
# batch 1's first 15 values are told, and batch 3 not before batch 2's first 15: the kill comes during batch 2's head
@pytest.mark.parametrize("optimizer, batch, lag, every, pending", [
    ("surrogate", 10, None, 2, [5, 6]), ("ga", 10, None, 3, [5]), ("surrogate", 25, 10, 2, [2])])
def test_sigkill_with_batches_pending_then_resume(tmp_path, optimizer, batch, lag, every, pending):
    """Killed while a batch is evaluated (and the next one asked): the resume shows the pending batches again
    (re-asked, said so in the store), asks nothing twice, spends exactly the budget, and ends with the
    uninterrupted run's history."""
    budget = 120
    ref, _ = _campaign.run(None, optimizer, 0, budget, batch, pipeline=True, pipeline_lag=lag)
    path, stalled = tmp_path / "run.sqlite", tmp_path / "stalled"
    proc = subprocess.Popen([sys.executable, CAMPAIGN, str(path), optimizer, "0", str(budget), str(batch), "0",
                             "--pipeline", "--stall", "50", str(stalled), "--checkpoint-every", str(every)]
                            + ([] if lag is None else ["--pipeline-lag", str(lag)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (stalled.exists() and _pending_batches(path) == pending):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the campaign never reached its stall"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with RunStore(path, mode="r") as s:
        assert s.n_queries() == 50 and s.n_batches() == 50 // batch
        before_ckpts = s.checkpoints()
    assert before_ckpts, "no checkpoint was written before the kill: the resume would not test one"
    res, obj = _campaign.run(path, optimizer, 0, budget, batch, resume=True, pipeline=True, checkpoint_every=every)
    assert res.config["pipeline_lag"] == (lag or batch)  # the recorded lag, though the resume did not name it
    assert res.n_queries == budget and obj.evaluations == budget - 50  # nothing recorded is asked again
    np.testing.assert_array_equal(res.points, ref.points)
    np.testing.assert_array_equal(res.values, ref.values)
    with RunStore(path, mode="r") as s:
        batches = s.batches()
        q = s.read_queries()
        assert s.pending() == []
    assert [b["batch"] for b in batches] == list(range(-(-budget // batch)))
    assert np.array_equal(q["query"], np.arange(budget))  # no query lost or duplicated
    assert [b["batch"] for b in batches if b["reasked"]] == pending  # asked by the killed session, asked again
