import json
import signal

import numpy as np
import pytest

import mango
from mango.errors import ConfigError, ObjectiveError
from mango.spaces import Box, Codebook
from mango.oracles.testfunctions import shifted_sphere


def test_result_fields_and_history():
    r = mango.maximize(shifted_sphere(), Box(5, -1, 1), optimizer="cma", budget=95, batch_size=10, progress=False)
    assert r.n_queries == 95 and len(r.values) == 95
    assert r.batch.tolist() == [i // 10 for i in range(95)]  # last batch truncated to 5
    assert r.values[r.best_query] == r.best_value and np.array_equal(r.points[r.best_query], r.best_point)
    curve = r.best_so_far()
    assert curve.shape == (95,) and np.all(np.diff(curve) >= 0) and curve[-1] == r.best_value
    assert r.wall_s >= r.optimizer_s + r.objective_s - 1e-6
    assert np.all(np.diff(r.t) >= 0)
    d = json.loads(r.to_json())
    for key in ("best_value", "best_query", "n_queries", "budget", "optimizer", "seed", "space", "wall_s"):
        assert key in d


def test_errors_for_bad_arguments():
    f = shifted_sphere()
    with pytest.raises(ConfigError, match="budget must be >= 1"):
        mango.maximize(f, Box(2), budget=0)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        mango.maximize(f, Box(2), batch_size=0)
    with pytest.raises(ConfigError, match="needs space="):
        mango.maximize(f)
    with pytest.raises(ConfigError, match="nonfinite"):
        mango.maximize(f, Box(2), nonfinite="ignore")


def test_wrong_number_of_values_keeps_partial_result():
    calls = []

    def f(x):
        calls.append(len(x))
        return np.zeros(len(x) if len(calls) < 3 else 1)

    with pytest.raises(ObjectiveError, match="returned 1 values for a batch of 4") as e:
        mango.maximize(f, Box(2), optimizer="random", budget=40, batch_size=4, progress=False)
    assert e.value.partial_result.n_queries == 8


def test_nan_raises_with_partial_result_or_counts_as_worst():
    def f(x):
        v = -np.sum(x ** 2, axis=1)
        v[x[:, 0] > 0.5] = np.nan
        return v

    with pytest.raises(ObjectiveError, match="non-finite") as e:
        mango.maximize(f, Box(2), optimizer="random", budget=200, batch_size=5, progress=False, seed=3)
    part = e.value.partial_result
    assert part.n_queries % 5 == 0 and part.n_queries < 200 and np.all(np.isfinite(part.values))
    with pytest.warns(RuntimeWarning, match="worst value"):
        r = mango.maximize(f, Box(2), optimizer="cma", budget=200, progress=False, nonfinite="worst")
    assert r.n_queries == 200 and np.isfinite(r.best_value)


def test_keyboard_interrupt_returns_partial_result():
    n = []

    def f(x):
        n.append(1)
        if len(n) == 4:
            raise KeyboardInterrupt
        return -np.sum(x ** 2, axis=1)

    r = mango.maximize(f, Box(3), optimizer="ga", budget=500, batch_size=10, progress=False)
    assert r.interrupted and r.n_queries == 30


def test_callbacks_see_every_batch_before_next_ask():
    events = []

    class CB(mango.Callback):
        def on_start(self, run):
            events.append("start")

        def on_batch(self, run, batch):
            events.append(("batch", batch.index, run.optimizer.n_told))

        def on_end(self, run):
            events.append("end")

    mango.maximize(shifted_sphere(), Box(3), optimizer="random", budget=25, batch_size=10, callbacks=[CB()],
                   progress=False)
    assert events == ["start", ("batch", 0, 10), ("batch", 1, 20), ("batch", 2, 25), "end"]


def test_repeats_count_in_budget():
    class Rep:
        queries_per_point = 3

        def __call__(self, x):
            return -np.sum(x ** 2, axis=1)

    r = mango.maximize(Rep(), Box(2), optimizer="random", budget=100, batch_size=7, progress=False)
    assert r.n_queries == 99 and len(r.values) == 33  # never a query more than the budget
    assert r.queries.tolist() == list(range(0, 99, 3))
    with pytest.raises(ConfigError, match="costs 3 queries"):
        mango.maximize(Rep(), Box(2), budget=2, progress=False)


def test_optimizer_instance_and_space_mismatch():
    opt = mango.optimizers.make("random", Box(3), seed=0)
    r = mango.maximize(shifted_sphere(), Box(3), optimizer=opt, budget=10, progress=False)
    assert r.n_queries == 10
    with pytest.raises(ConfigError, match="optimizer searches"):
        mango.maximize(shifted_sphere(), Box(4), optimizer=mango.optimizers.make("random", Box(3)), budget=5)


def test_codebook_with_ga_runs():
    r = mango.maximize(lambda p: p.sum(1).astype(float), Codebook((4, 4), 8), optimizer="ga", budget=300,
                       progress=False)
    assert r.points.dtype == np.int64 and r.best_value > 16 * 7 * 0.6
