"""``inception``: one CNN ensemble for every target, synthesis through a differentiable generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mango
from mango.errors import ConfigError
from mango.generators import ModuleGenerator
from mango.optimizers import make
from mango.oracles import CallableOracle
from mango.spaces import Box, Codebook

SPACE = Box(12, -1.0, 1.0)


def _decoder() -> torch.nn.Module:
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 64)
    with torch.no_grad():
        lin.weight.mul_(3.0)  # images that vary over the whole space
    return torch.nn.Sequential(lin, torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 8, 8)))


GEN = ModuleGenerator(_decoder(), SPACE)
TEMPLATES = np.random.default_rng(1).normal(size=(3, 64))


def _responses(images) -> np.ndarray:
    x = np.asarray(images, dtype=float).reshape(len(images), -1)
    return np.tanh((x - 0.5) @ TEMPLATES.T / 8.0)  # three units, each a template match


ORACLE = CallableOracle(_responses, unit_names=["t0", "t1", "t2"])
FAST = {"epochs_first": 30, "epochs": 8, "steps": 30, "members": 2}


def test_population_campaign_beats_random_and_the_model_learns_every_unit():
    res = mango.maximize(ORACLE, generator=GEN, unit="all", optimizer="inception", budget=150, seed=0,
                         progress=False, **FAST)
    rnd = mango.maximize(ORACLE, generator=GEN, unit="all", optimizer="random", budget=150, seed=0, progress=False)
    mine = np.array([u.best_value for u in res.units()])
    theirs = np.array([u.best_value for u in rnd.units()])
    assert (mine > theirs).all(), (mine, theirs)
    # after the run the model predicts every unit on fresh points (rank correlation)
    opt = make("inception", SPACE, seed=0, n_targets=3, **FAST)
    opt.connect(generator=GEN)
    for _ in range(15):
        pts = opt.ask(10)
        opt.tell(pts, _responses(GEN(pts)))
    fresh = SPACE.sample(200, seed=5)
    pred = opt.predict(fresh)
    true = _responses(GEN(fresh))
    for j in range(3):
        rho = np.corrcoef(np.argsort(np.argsort(pred[:, j])), np.argsort(np.argsort(true[:, j])))[0, 1]
        assert rho > 0.6, (j, rho)  # an untrained model: about 0


def test_same_seed_same_history_and_exact_budget():
    runs = [mango.maximize(ORACLE, generator=GEN, unit=[0, 2], optimizer="inception", budget=57, batch_size=8,
                           seed=4, progress=False, **FAST) for _ in range(2)]
    assert runs[0].n_queries == 57
    np.testing.assert_array_equal(runs[0].points, runs[1].points)


def test_single_target_and_state_round_trip():
    def drive(opt, k):
        out = []
        for _ in range(k):
            pts = opt.ask(6)
            opt.tell(pts, _responses(GEN(pts))[:, 1])
            out.append(pts)
        return np.concatenate(out)

    a = make("inception", SPACE, seed=2, **FAST)
    a.connect(generator=GEN)
    drive(a, 6)
    b = make("inception", SPACE, seed=2, **FAST)
    b.connect(generator=GEN)
    b.load_state_dict(mango.runs.serial.loads(mango.runs.serial.dumps(a.state_dict())))
    np.testing.assert_array_equal(drive(a, 3), drive(b, 3))


def test_resume_continues_identically(tmp_path):
    kw = dict(generator=GEN, unit="all", optimizer="inception", budget=90, batch_size=10, seed=1, progress=False,
              **FAST)
    full = mango.maximize(ORACLE, **kw)

    class Stop(mango.runs.loop.Callback):
        def on_batch(self, run, batch):
            if run.n_queries >= 50:
                raise KeyboardInterrupt

    path = tmp_path / "inc.sqlite"
    mango.maximize(ORACLE, store=path, callbacks=[Stop()], **kw)
    res = mango.maximize(ORACLE, store=path, resume=True, **kw)
    np.testing.assert_array_equal(res.points, full.points)


def test_plain_function_of_the_points_runs():
    """Without a generator the model is an MLP on the coordinates (weak at small budgets; surrogate is better)."""
    res = mango.maximize(lambda x: -np.sum((x - 0.3) ** 2, axis=1), space=SPACE, optimizer="inception", budget=60,
                         seed=0, progress=False, **FAST)
    assert res.n_queries == 60 and np.isfinite(res.best_value)


def test_clear_errors():
    lookup = ModuleGenerator(torch.nn.Sequential(torch.nn.Embedding(4, 64), torch.nn.Flatten(),
                                                 torch.nn.Unflatten(1, (1, 8, 8))), Codebook(1, 4))
    with pytest.raises(ConfigError, match="cannot search a Codebook|not differentiable|codebook"):
        mango.maximize(ORACLE, generator=lookup, optimizer="inception", unit=0, budget=10, progress=False)
    with pytest.raises(ConfigError, match="n_targets"):
        make("inception", SPACE, n_targets=0)
    with pytest.raises(ConfigError, match="length"):
        make("inception", SPACE, length_init=2.0)


def test_grid_space_through_its_box():
    """On a Grid the synthesis runs on the Box values the generator decodes, then snaps to the nearest levels."""
    from mango.spaces import Grid

    grid = Grid(SPACE, levels=16)
    gen = ModuleGenerator(_decoder(), grid)
    res = mango.maximize(ORACLE, generator=gen, unit="all", optimizer="inception", budget=60, seed=0,
                         progress=False, **FAST)
    assert res.points.dtype.kind == "i" and res.points.min() >= 0 and res.points.max() <= 15
    assert len(np.unique(res.points[30:], axis=0)) > 20  # synthesized points, not one point repeated


BACKBONE = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 4))
'''


@pytest.fixture()
def backbone(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(BACKBONE)
    return f"{path}:build"


def test_backbone_readout_campaign_learns_and_resumes_exactly(backbone):
    kw = dict(backbone=backbone, backbone_layer="1", steps=30)  # the ReLU's output: 512 features
    res = mango.maximize(ORACLE, generator=GEN, unit="all", optimizer="inception", budget=120, seed=0,
                         progress=False, **kw)
    rnd = mango.maximize(ORACLE, generator=GEN, unit="all", optimizer="random", budget=120, seed=0, progress=False)
    assert (np.array([u.best_value for u in res.units()]) > np.array([u.best_value for u in rnd.units()])).all()

    def drive(opt, k):
        out = []
        for _ in range(k):
            pts = opt.ask(6)
            opt.tell(pts, _responses(GEN(pts)))
            out.append(pts)
        return np.concatenate(out)

    a = make("inception", SPACE, seed=3, n_targets=3, **kw)
    a.connect(generator=GEN)
    drive(a, 8)
    fresh = SPACE.sample(200, seed=5)
    pred, true = a.predict(fresh), _responses(GEN(fresh))
    for j in range(3):  # the readout of random conv features predicts every unit
        assert np.corrcoef(pred[:, j], true[:, j])[0, 1] > 0.6  # 48 points; an unfit readout: about 0
    b = make("inception", SPACE, seed=3, n_targets=3, **kw)
    b.connect(generator=GEN)
    b.load_state_dict(mango.runs.serial.loads(mango.runs.serial.dumps(a.state_dict())))
    np.testing.assert_array_equal(drive(a, 3), drive(b, 3))


def test_backbone_clear_errors(backbone):
    with pytest.raises(ConfigError, match="backbone_layer"):
        make("inception", SPACE, backbone=backbone)
    with pytest.raises(ConfigError, match="conv|layer"):
        make("inception", SPACE, backbone=backbone, backbone_layer="features.nope")
    with pytest.raises(ConfigError, match="needs a generator"):
        mango.maximize(lambda x: x[:, 0], space=SPACE, optimizer="inception", budget=30, progress=False,
                       backbone=backbone, backbone_layer="1")
    small = ModuleGenerator(torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Unflatten(1, (1, 4, 4))), SPACE)
    with pytest.raises(ConfigError, match="cannot take the generator's images"):
        mango.maximize(CallableOracle(lambda x: np.asarray(x).reshape(len(x), -1)[:, 0]), generator=small,
                       optimizer="inception", budget=30, progress=False, backbone=backbone, backbone_layer="3")
