"""Population campaigns: several units, one shared budget (maximize(unit=[...]); mango.optimizers.population)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mango
from mango.errors import ConfigError, ObjectiveError
from mango.optimizers import Optimizer
from mango.optimizers.population import Population, target_seed
from mango.oracles import CallableOracle, Repeat
from mango.spaces import Box, Codebook
from mango.runs.store import RunStore

SPACE = Box(5, -1.0, 1.0)
CENTRES = np.random.default_rng(0).uniform(-0.8, 0.8, (4, 5))


def responses(x):
    """Four units, each a sphere around its own centre (unit i peaks at CENTRES[i])."""
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    return np.stack([-((x - c) ** 2).sum(axis=1) for c in CENTRES], axis=1)


def oracle():
    return CallableOracle(responses, unit_names=["a", "b", "c", "d"])


class Replay(Optimizer):
    """Asks given points in order (to run a single-unit campaign over the queries of another run)."""

    name = "replay"
    native = ("box",)

    def __init__(self, space, points):
        self._given = np.asarray(points)
        super().__init__(space)

    def _setup(self):
        self._i = 0

    def _ask(self, n):
        out = self._given[self._i:self._i + n]
        self._i += n
        return out

    def _tell(self, points, values):
        pass


@pytest.mark.parametrize("opt", ["cma", "ga", "random", "surrogate"])
def test_per_unit_results_equal_single_unit_records_over_the_same_queries(opt):
    res = mango.maximize(oracle(), space=SPACE, unit="all", optimizer=opt, budget=120, batch_size=10, seed=1,
                         progress=False)
    assert res.is_population and res.n_queries == 120 and res.target_names == ["a", "b", "c", "d"]
    np.testing.assert_allclose(res.unit_values, responses(res.points), rtol=1e-5, atol=1e-5)  # float32 stimuli
    np.testing.assert_allclose(res.values, res.unit_values.mean(axis=1))
    for j, u in enumerate(res.units()):
        single = mango.maximize(oracle(), space=SPACE, unit=j, optimizer=Replay(SPACE, res.points), budget=120,
                                batch_size=10, progress=False)
        assert u.best_value == single.best_value and u.best_query == single.best_query
        np.testing.assert_array_equal(u.best_point, single.best_point)
        np.testing.assert_array_equal(u.curve, single.best_so_far())
        np.testing.assert_array_equal(res.best_so_far(unit=u.name), single.best_so_far())


def test_every_unit_is_served_and_searched():
    """Round robin: each unit gets a quarter of 40 batches, and each unit's best beats a random search's."""
    for seed in range(3):
        res = mango.maximize(oracle(), space=SPACE, unit="all", optimizer="cma", budget=400, batch_size=10,
                             seed=seed, progress=False)
        rnd = mango.maximize(oracle(), space=SPACE, unit="all", optimizer="random", budget=400, seed=seed,
                             progress=False)
        best = np.array([u.best_value for u in res.units()])
        assert (best > -0.3).all(), best
        assert np.median(best) > np.median([u.best_value for u in rnd.units()])


def test_observed_points_feed_the_surrogates_model():
    """Every unit's surrogate is fit on every query (its own and the ones served to the others)."""
    opt = Population(SPACE, 4, "surrogate", seed=0, batch_size=10, allocation="round-robin")
    for _ in range(8):
        pts = opt.ask(10)
        opt.tell(pts, responses(pts))
    for inner in opt.inner:  # 8 batches of 10: every started unit's optimizer knows all 80 points
        assert inner.state_dict()["points"].shape == (80, 5)
    told = [inner.n_told for inner in opt.inner]
    # unit j was served 2 batches (20 own points) and warm-started from the points shown before its first turn
    assert told == [20, 30, 40, 50], told


@settings(max_examples=25, deadline=None)
@given(budget=st.integers(1, 90), batch=st.integers(1, 17), k=st.integers(1, 4), repeats=st.integers(1, 3),
       opt=st.sampled_from(["random", "cma", "ga"]), allocation=st.sampled_from(["round-robin", "interleave"]))
def test_budget_is_shared_exactly_and_runs_are_deterministic(budget, batch, k, repeats, opt, allocation):
    orc = Repeat(oracle(), repeats) if repeats > 1 else oracle()
    if repeats > budget:
        with pytest.raises(ConfigError):
            mango.maximize(orc, space=SPACE, unit=list(range(k)), optimizer=opt, budget=budget, progress=False)
        return
    a = mango.maximize(orc, space=SPACE, unit=list(range(k)), optimizer=opt, budget=budget, batch_size=batch,
                       seed=3, progress=False, allocation=allocation)
    b = mango.maximize(orc, space=SPACE, unit=list(range(k)), optimizer=opt, budget=budget, batch_size=batch,
                       seed=3, progress=False, allocation=allocation)
    assert a.n_queries == budget - budget % repeats and a.n_queries <= budget
    assert len(a.points) * repeats == a.n_queries
    assert a.unit_values.shape == (len(a.points), k)
    np.testing.assert_array_equal(a.points, b.points)


def test_interleave_shares_every_batch_over_the_targets():
    """allocation="interleave": a batch of 10 over 4 units serves 3, 3, 2, 2 points, the larger shares
    rotating, and each unit's optimizer runs with batch size ceil(10 / 4) = 3."""
    opt = Population(SPACE, 4, "surrogate", seed=0, batch_size=10, allocation="interleave")
    assert [inner.batch_size for inner in opt.inner] == [3, 3, 3, 3]
    assert opt.shares(10) == [(0, 3), (1, 3), (2, 2), (3, 2)]
    counts = np.zeros(4, dtype=int)
    for _ in range(6):
        pts = opt.ask(10)
        opt.tell(pts, responses(pts))
    for j, inner in enumerate(opt.inner):
        assert inner.state_dict()["points"].shape == (60, 5)  # every unit's model saw every query
        counts[j] = inner.n_told
    assert counts.sum() == 60 and counts.max() - counts.min() <= 1, counts  # own points, evenly shared
    assert opt.shares(3) == [(opt.next_target(), 1), ((opt.next_target() + 1) % 4, 1),
                             ((opt.next_target() + 2) % 4, 1)]
    with pytest.raises(ConfigError, match="allocation must be one of"):
        Population(SPACE, 4, "cma", allocation="greedy")
    # "auto" (the default): interleave for optimizers that learn from observed points, else in turn
    assert opt.allocation == "interleave" == Population(SPACE, 4, "surrogate").allocation
    assert Population(SPACE, 4, "cma", batch_size=10).allocation == "round-robin"
    assert Population(SPACE, 4, "cma", batch_size=10).inner[0].batch_size == 10


@pytest.mark.parametrize("allocation", ["round-robin", "interleave"])
def test_state_round_trip_continues_identically(allocation):
    def drive(opt, batches):
        out = []
        for _ in range(batches):
            pts = opt.ask(7)
            opt.tell(pts, responses(pts)[:, :3])
            out.append(pts)
        return np.concatenate(out)

    ref = Population(SPACE, 3, "cma", seed=5, batch_size=7, allocation=allocation)
    drive(ref, 5)
    state = ref.state_dict()
    copy = Population(SPACE, 3, "cma", seed=5, batch_size=7, allocation=allocation)
    copy.load_state_dict(mango.runs.serial.loads(mango.runs.serial.dumps(state)))
    np.testing.assert_array_equal(drive(ref, 4), drive(copy, 4))
    with pytest.raises(ConfigError, match="3 targets, not 4"):
        Population(SPACE, 4, "cma", seed=5).load_state_dict(state)
    # the state carries the campaign's parameters: it continues with the allocation it was recorded with
    other = Population(SPACE, 3, "cma", seed=5, batch_size=7,
                       allocation="interleave" if allocation == "round-robin" else "round-robin")
    other.load_state_dict(state)
    assert other.allocation == allocation
    same = Population(SPACE, 3, "cma", seed=5, batch_size=7, allocation=allocation)
    same.load_state_dict(state)
    np.testing.assert_array_equal(drive(other, 2), drive(same, 2))


def test_inner_seeds_are_distinct_and_reproducible():
    seeds = [target_seed(7, j) for j in range(10)]
    assert len(set(seeds)) == 10 and seeds == [target_seed(7, j) for j in range(10)]
    assert target_seed(None, 3) is None


@pytest.mark.parametrize("opt", ["cma", "surrogate"])
def test_store_round_trip_and_resume(tmp_path, opt):
    """A campaign stopped at 40 queries and resumed (from a checkpoint: surrogate's inner states are stored
    without the data the campaign's history already holds) ends exactly as an uninterrupted one."""
    path = tmp_path / "pop.sqlite"
    full = mango.maximize(oracle(), space=SPACE, unit=["b", "d"], optimizer=opt, budget=100, batch_size=10,
                          seed=2, progress=False)
    class Stop(mango.runs.loop.Callback):
        def on_batch(self, run, batch):
            if run.n_queries >= 40:
                raise KeyboardInterrupt

    with RunStore(path, checkpoint_every=2) as store:
        part = mango.maximize(oracle(), space=SPACE, unit=["b", "d"], optimizer=opt, budget=100, batch_size=10,
                              seed=2, progress=False, store=store, callbacks=[Stop()])
    assert part.stop_reason == "interrupted" and part.n_queries == 40
    res = mango.maximize(oracle(), space=SPACE, unit=["b", "d"], optimizer=opt, budget=100, batch_size=10, seed=2,
                         progress=False, store=path, resume=True)
    np.testing.assert_array_equal(res.points, full.points)
    with RunStore(path, mode="r") as s:
        stored = s.result()
    assert stored.target_names == ["b", "d"] and stored.targets == [1, 3]
    for u, v in zip(stored.units(), full.units()):
        assert (u.name, u.best_value, u.best_query) == (v.name, v.best_value, v.best_query)
    with pytest.raises(ConfigError, match="targets"):
        mango.maximize(oracle(), space=SPACE, unit=["a", "d"], optimizer=opt, budget=120, batch_size=10, seed=2,
                       progress=False, store=path, resume=True)


_KILLED = """
import sys, numpy as np, mango
sys.path.insert(0, {tests!r})
import test_population as t
class Slow(mango.runs.loop.Callback):
    def on_batch(self, run, batch):
        import time; time.sleep(0.05)
print("READY", flush=True)
mango.maximize(t.oracle(), space=t.SPACE, unit="all", optimizer="ga", budget=400, batch_size=10, seed=4,
               progress=False, store={path!r}, resume={resume}, callbacks=[Slow()])
"""


def test_population_resume_after_sigkill_loses_nothing(tmp_path):
    path = str(tmp_path / "killed.sqlite")
    tests = os.path.dirname(__file__)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED.format(tests=tests, path=path, resume=False)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    deadline = time.monotonic() + 60
    n = 0
    while n < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with RunStore(path, mode="r") as s:
                n = s.n_queries()
        except Exception:  # noqa: BLE001 - the file may not exist yet
            n = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunStore(path, mode="r") as s:
        before = s.read_queries()
    assert 0 < len(before["query"]) < 400
    subprocess.run([sys.executable, "-c", _KILLED.format(tests=tests, path=path, resume=True)], check=True,
                   capture_output=True)
    full = mango.maximize(oracle(), space=SPACE, unit="all", optimizer="ga", budget=400, batch_size=10, seed=4,
                          progress=False)
    with RunStore(path, mode="r") as s:
        after = s.result()
    np.testing.assert_array_equal(after.points[:len(before["query"])], before["points"])  # nothing lost
    np.testing.assert_array_equal(after.points, full.points)  # and the run goes on as if never killed
    assert [u.best_value for u in after.units()] == [u.best_value for u in full.units()]


def test_clear_errors():
    with pytest.raises(ConfigError, match=r"unit 7 is out of range.*valid 0\.\.3"):
        mango.maximize(oracle(), space=SPACE, unit=[0, 7], budget=10, progress=False)
    with pytest.raises(ConfigError, match="more than once"):
        mango.maximize(oracle(), space=SPACE, unit=[1, 1], budget=10, progress=False)
    with pytest.raises(ConfigError, match="empty"):
        mango.maximize(oracle(), space=SPACE, unit=[], budget=10, progress=False)
    with pytest.raises(mango.errors.UnknownNameError):
        mango.maximize(oracle(), space=SPACE, unit=["a", "zz"], budget=10, progress=False)
    with pytest.raises(ConfigError, match="serves 1 target"):
        mango.maximize(oracle(), space=SPACE, unit=[0, 1], optimizer=mango.optimizers.make("cma", SPACE),
                       budget=10, progress=False)
    with pytest.raises(ConfigError, match=r"shape \(3, 2\).*3 targets"):
        Population(SPACE, 3, "random").tell(SPACE.sample(3, seed=0), np.zeros((3, 2)))
    # an oracle that records fewer units than its names claim (a rig losing a channel)
    short = CallableOracle(lambda x: responses(x)[:, :2], unit_names=["a", "b", "c", "d"])
    with pytest.raises((ObjectiveError, ConfigError), match="2"):
        mango.maximize(short, space=SPACE, unit="all", budget=10, progress=False)


def test_codebook_population_and_single_unit_list():
    cb = Codebook(6, 5)

    def resp(idx):
        idx = np.asarray(idx)
        return np.stack([(idx == 1).sum(1), (idx == 3).sum(1)], axis=1).astype(float)

    res = mango.maximize(CallableOracle(resp, unit_names=["ones", "threes"]), space=cb, unit="all",
                         optimizer="ga", budget=600, seed=0, progress=False)
    assert [u.best_value for u in res.units()] == [6.0, 6.0]
    one = mango.maximize(CallableOracle(resp, unit_names=["ones", "threes"]), space=cb, unit=[1],
                         optimizer="ga", budget=30, seed=0, progress=False)
    assert one.is_population and [u.name for u in one.units()] == ["threes"]
