"""The optional reference peers of mango.optimizers.peers.protes: protes, protes-loop, ttopt (skipped when not installed)."""

from __future__ import annotations

import numpy as np
import pytest

import mango
from mango.errors import ConfigError
from mango.optimizers import available, make
from mango.spaces import Box, Codebook, Grid


def _dist(p):
    return -np.abs(np.asarray(p, float) - 4).sum(1)


def test_protes_loop_peer_is_seeded_and_quantizes():
    pytest.importorskip("protes")
    assert "protes-loop" in available(include_nevergrad=False)
    space = Codebook(5, 6)  # 6 codes: QTT pads to 8 and clips
    a = mango.maximize(_dist, space, optimizer="protes-loop", budget=60, seed=1, progress=False, k=10, k_top=1,
                       quantize=True)
    b = mango.maximize(_dist, space, optimizer="protes-loop", budget=60, seed=1, progress=False, k=10, k_top=1,
                       quantize=True)
    assert np.array_equal(a.points, b.points) and a.points.max() <= 5
    assert a.best_value > np.mean(_dist(space.sample(200, seed=0)))
    with pytest.raises(ConfigError, match="k_top"):
        mango.maximize(_dist, space, optimizer="protes-loop", budget=20, k=5, k_top=6, progress=False)


def test_a_package_loop_refuses_to_be_asked_past_one_generation():
    pytest.importorskip("protes")
    # protes proposes its next batch only after the last one's values: a clear error, not a hang
    with pytest.raises(ConfigError, match="batch_size=10"):
        mango.maximize(_dist, Codebook(5, 6), optimizer="protes-loop", budget=60, seed=1, progress=False,
                       batch_size=13, k=10)


def test_protes_internals_refuse_an_untested_version(monkeypatch):
    protes = pytest.importorskip("protes")
    from mango.optimizers.peers import protes as tt_peers

    assert callable(tt_peers.protes_internals().sample)
    monkeypatch.setattr(protes, "__version__", "9.0.0")
    with pytest.raises(ConfigError, match="protes 9.0.0 is another version.*protes-loop"):
        make("protes", Codebook(4, 3), seed=0)


def test_ttopt_peer_spends_exactly_its_budget_and_is_seeded():
    pytest.importorskip("ttopt")
    assert "ttopt" in available(include_nevergrad=False)
    space = Codebook(6, 8)
    runs = [mango.maximize(_dist, space, optimizer="ttopt", budget=500, seed=s, progress=False) for s in (1, 1, 2)]
    assert [r.n_queries for r in runs] == [500, 500, 500]
    assert np.array_equal(runs[0].points, runs[1].points) and not np.array_equal(runs[0].points, runs[2].points)
    assert runs[0].best_value > np.quantile(_dist(space.sample(500, seed=0)), 0.99)  # far above random points
    # any grid (unequal sizes), and a Box through its grid; the budget is cut inside a generation
    r = mango.maximize(_dist, Grid(Box(3, 0, 1), [4, 7, 5]), optimizer="ttopt", budget=37, seed=0, progress=False)
    assert r.n_queries == 37
    r = mango.maximize(lambda x: -np.sum((x - 0.3) ** 2, 1), Box(4, -1, 1), optimizer="ttopt", budget=24, seed=0,
                       progress=False)
    assert r.n_queries == 24 and np.isfinite(r.best_value)


def test_ttopt_peer_replays_exactly_and_checks_parameters():
    pytest.importorskip("ttopt")
    space = Codebook(5, 6)
    a = make("ttopt", space, seed=3, rank=2)
    x = a.ask(a.preferred_batch_size)
    a.tell(x, _dist(x))
    a.ask(2)
    b = make("ttopt", space, seed=3, rank=2)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.ask(3), b.ask(3))
    with pytest.raises(ConfigError, match="rank"):
        make("ttopt", space, rank=0)
    with pytest.raises(ConfigError, match="at least 2 dimensions"):
        make("ttopt", Codebook(1, 6))
    with pytest.raises(ConfigError, match="batch_size"):
        mango.maximize(_dist, space, optimizer="ttopt", budget=50, seed=0, batch_size=50, progress=False)
