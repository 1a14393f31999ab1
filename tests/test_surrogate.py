"""Tests of the model-based optimizer ``surrogate`` and the optimizer protocol's ``needs``/``connect``."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest
import torch

import mango
from mango.errors import ConfigError
from mango.generators import GANGenerator, ModuleGenerator, ParametricGenerator
from mango.oracles import CallableOracle
from mango.optimizers import make
from mango.optimizers.surrogate import gp as gplib
from mango.optimizers.surrogate.acquisition import sample_paths
from mango.optimizers.surrogate.features import Features
from mango.spaces import Box, Codebook, Grid

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402
import test_store_faults as faults  # noqa: E402


def shifted_sphere(x):
    return -np.sum((np.asarray(x, float) - 0.37) ** 2, axis=1)


# -- the model ---------------------------------------------------------------------------------------

def test_gp_predictions_correlate_with_a_known_function():
    rng = np.random.default_rng(0)
    X = rng.random((300, 6))
    f = lambda x: np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1]) * x[:, 2] - (x[:, 3] - 0.5) ** 2  # noqa: E731
    model = gplib.fit(torch.as_tensor(X), torch.as_tensor(f(X)))
    Xt = rng.random((500, 6))
    mu, var = model.predict(torch.as_tensor(Xt))
    r = np.corrcoef(mu.numpy(), f(Xt))[0, 1]
    assert r > 0.95, r
    assert (var > 0).all()
    # the posterior paths agree with the posterior: their mean over many draws is the mean
    paths = sample_paths(model, 256, torch.Generator().manual_seed(0))
    draws = paths(torch.as_tensor(Xt[:50])).detach()
    np.testing.assert_allclose(draws.mean(1).numpy(), mu[:50].numpy(), atol=4 * float(var.max().sqrt()) / 16 + 0.02)
    # diagonal(j) is path j at point j
    d = paths.diagonal(torch.as_tensor(Xt[:256])).detach()
    full = paths(torch.as_tensor(Xt[:256])).detach()
    np.testing.assert_allclose(d.numpy(), np.diagonal(full.numpy()), rtol=1e-9, atol=1e-9)


def test_tempered_paths_scale_their_deviation_from_the_posterior_mean():
    rng = np.random.default_rng(2)
    X = torch.as_tensor(rng.random((40, 4)))
    model = gplib.fit(X, torch.sin(3 * X[:, 0]) + X[:, 1])
    Xt = torch.as_tensor(rng.random((25, 4)))
    mu = model.predict(Xt)[0][:, None]
    full = sample_paths(model, 5, torch.Generator().manual_seed(3))(Xt)
    half = sample_paths(model, 5, torch.Generator().manual_seed(3), temper=0.5)(Xt)
    mean = sample_paths(model, 5, torch.Generator().manual_seed(3), temper=0.0)(Xt)
    assert float((full - mu).abs().max()) > 1e-3  # the draws do deviate
    np.testing.assert_allclose((half - mu).numpy(), 0.5 * (full - mu).numpy(), atol=1e-9)
    np.testing.assert_allclose(mean.numpy(), mu.expand_as(mean).numpy(), atol=1e-9)
    with pytest.raises(ConfigError, match="temper must be a number >= 0"):
        make("surrogate", Box(3, 0, 1), temper=-0.5)


def test_surrogate_model_of_the_optimizer_tracks_the_objective():
    """After a few hundred queries the optimizer's own GP predicts held-out points well."""
    res = mango.maximize(shifted_sphere, Box(6, -1, 1), optimizer="surrogate", budget=200, seed=0, progress=False)
    X = (res.points - -1.0) / 2.0
    model = gplib.fit(torch.as_tensor(X), torch.as_tensor(res.values))
    Xt = np.random.default_rng(1).random((300, 6)) * 2 - 1
    mu, _ = model.predict(torch.as_tensor((Xt + 1) / 2))
    assert np.corrcoef(mu.numpy(), shifted_sphere(Xt))[0, 1] > 0.9


def test_warm_refit_finds_the_noise_a_small_sample_hid():
    """A refit warm-started from a fit that saw little noise still finds a noisy function's noise level
    (from the warm values alone it stayed where a short lengthscale explains the noise as wiggles)."""
    rng = np.random.default_rng(3)
    X = rng.random((200, 8))
    f = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    y = f + 0.6 * rng.standard_normal(200)  # noise variance ~ 2.5x the signal's
    first = gplib.fit(torch.as_tensor(X[:12]), torch.as_tensor(y[:12]))
    tiny = [first.log_ls - 2.0, first.log_sf2, np.log(1e-2), first.mean0]  # the corner a warm fit can stay in
    model = gplib.fit(torch.as_tensor(X), torch.as_tensor(y), init=[float(v) for v in tiny], steps=10)
    assert np.exp(model.log_sn2) > 0.3, model.hypers  # standardized units: most of the variance is noise
    mu, _ = model.predict(torch.as_tensor(X))
    assert np.corrcoef(mu.numpy(), f)[0, 1] > 0.8


# -- quality -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [6, 20])
def test_reaches_the_optimum_neighbourhood_in_fewer_queries_than_cma(dim):
    space = Box(dim, -1, 1)
    target = -0.01 * dim  # within 0.1 of the optimum per coordinate, on average

    def queries_to_target(name):
        res = mango.maximize(shifted_sphere, space, optimizer=name, budget=400, seed=0, progress=False)
        hit = np.flatnonzero(res.values >= target)
        return int(res.queries[hit[0]]) + 1 if len(hit) else 10 ** 6

    q_sur, q_cma = queries_to_target("surrogate"), queries_to_target("cma")
    assert q_sur < 400 and q_sur * 2 <= q_cma, (q_sur, q_cma)


def test_codebook_through_an_image_generator_beats_random():
    """Codes are categories; through a generator the GP works on the images they make."""
    torch.manual_seed(0)
    space = Codebook(8, 6)
    palette = torch.rand(6, 16)

    def decode(codes):  # a fixed random 'decoder': each position paints its code's pattern
        return palette[codes].reshape(len(codes), 1, 8, 16)

    gen = ModuleGenerator(decode, space)
    w = torch.randn(1, 8, 16)

    class Oracle:
        unit_names = ["u"]
        queries_per_stimulus = 1
        n_units = 1

        def __call__(self, x):
            return ((x - 0.5) * w).sum((1, 2, 3)).numpy()[:, None]

    best = {}
    for name in ("surrogate", "random"):
        best[name] = mango.maximize(Oracle(), generator=gen, optimizer=name, budget=150, seed=0,
                                    progress=False).best_value
    assert best["surrogate"] > best["random"] + 0.5 * abs(best["random"]), best


# -- the protocol: needs / connect ------------------------------------------------------------------------

class _Recorder:
    """A generator-free oracle of images: the mean brightness of the centre."""

    unit_names = ["centre"]
    queries_per_stimulus = 1
    n_units = 1

    def __call__(self, x):
        return x[:, :, 10:18, 10:18].mean((1, 2, 3)).cpu().numpy()[:, None]


def test_maximize_connects_the_generator(monkeypatch):
    gen = ParametricGenerator("grating", size=(28, 28))
    seen = {}
    from mango.optimizers.surrogate.optimizer import SurrogateOptimizer

    orig = SurrogateOptimizer._connect

    def spy(self, generator=None):
        seen["generator"] = generator
        return orig(self, generator=generator)

    monkeypatch.setattr(SurrogateOptimizer, "_connect", spy)
    res = mango.maximize(_Recorder(), generator=gen, optimizer="surrogate", budget=30, seed=0, progress=False)
    assert seen["generator"] is gen and res.n_queries == 30
    # a plain function: the loop connects None (the optimizer models the points themselves)
    mango.maximize(shifted_sphere, Box(3), optimizer="surrogate", budget=20, seed=0, progress=False)
    assert seen["generator"] is None


def test_connect_refuses_undeclared_resources():
    opt = make("cma", Box(3), seed=0)
    with pytest.raises(ConfigError, match="does not take"):
        opt.connect(generator=None)
    opt = make("surrogate", Box(3), seed=0)
    with pytest.raises(ConfigError, match="does not take"):
        opt.connect(stimuli=[])


def test_forced_gradient_on_a_non_differentiable_generator_is_a_clear_error():
    space = Codebook(4, 5)
    gen = ModuleGenerator(lambda c: c.float().reshape(len(c), 1, 2, 2) / 5.0, space)
    assert not gen.differentiable
    with pytest.raises(ConfigError, match="acquisition='gradient' cannot be used here.*Codebook"):
        mango.maximize(_Recorder2(), generator=gen, optimizer="surrogate", budget=20, seed=0, progress=False,
                       acquisition="gradient")
    grid_gen = GANGenerator(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Unflatten(1, (1, 4, 4))),
                            latent_dim=4, levels=8)
    assert grid_gen.differentiable  # a Grid's Box values are decoded: the gradient exists
    opaque = ModuleGenerator(lambda z: torch.as_tensor(np.sin(z.detach().cpu().numpy())).float().reshape(
        len(z), 1, 2, 2), Box(4))  # goes through numpy: the graph is broken
    assert not opaque.differentiable
    with pytest.raises(ConfigError, match="acquisition='gradient' cannot be used here.*not differentiable"):
        mango.maximize(_Recorder2(), generator=opaque, optimizer="surrogate", budget=20, seed=0, progress=False,
                       acquisition="gradient")
    with pytest.raises(ConfigError, match="not differentiable.*gradients cannot pass"):
        opaque.decode(torch.zeros(2, 4))
    # 'auto' searches it without gradients
    res = mango.maximize(_Recorder2(), generator=opaque, optimizer="surrogate", budget=30, seed=0, progress=False)
    assert res.n_queries == 30


class _Recorder2:
    unit_names = ["u"]
    queries_per_stimulus = 1
    n_units = 1

    def __call__(self, x):
        return x.reshape(len(x), -1).sum(1).cpu().numpy()[:, None]


def test_decode_is_differentiable_and_equals_the_generator():
    gen = ParametricGenerator("gabor", size=(16, 16))
    pts = gen.space.sample(4, seed=0)
    z = torch.tensor(pts, dtype=torch.float32, requires_grad=True)
    img = gen.decode(z)
    torch.testing.assert_close(img.detach(), gen(pts))
    (g,) = torch.autograd.grad(img.sum(), [z])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    feats = Features(gen.space, gen)
    u = torch.as_tensor((pts - gen.space.low) / (gen.space.high - gen.space.low), dtype=torch.float32)
    torch.testing.assert_close(feats.from_unit(u), feats(pts), rtol=1e-5, atol=1e-5)


def test_gradient_refinement_leaves_no_gradient_on_the_generator():
    net = torch.nn.Sequential(torch.nn.Linear(5, 36), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 6, 6)))
    gen = GANGenerator(net, latent_dim=5)
    mango.maximize(_Recorder2(), generator=gen, optimizer="surrogate", budget=40, seed=0, progress=False)
    assert all(p.grad is None for p in net.parameters())


# -- a pretrained backbone's features as the GP's input ----------------------------------------------

_BACKBONE = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
'''


def _six_by_six():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 36), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 6, 6)))
    return ModuleGenerator(net, Box(5, -1, 1))


def test_backbone_features_are_the_layer_and_differentiable(tmp_path):
    from mango.optimizers.inception.readout import Backbone

    (tmp_path / "net.py").write_text(_BACKBONE)
    gen = _six_by_six()
    bb = Backbone(f"{tmp_path / 'net.py'}:build", "1")
    feats = Features(gen.space, gen, backbone=bb)
    pts = gen.space.sample(7, seed=0)
    f = feats(pts)
    assert f.shape == (7, 4 * 36) and f.dtype == torch.float64
    torch.testing.assert_close(f, bb(gen(pts)).double())  # the ReLU's activations, not the pixels
    u = torch.as_tensor((pts - gen.space.low) / (gen.space.high - gen.space.low), dtype=torch.float32)
    u.requires_grad_(True)
    out = feats.from_unit(u)
    torch.testing.assert_close(out.detach(), f, rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad(out.sum(), [u])
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_surrogate_with_a_backbone_learns_resumes_exactly_and_errs_clearly(tmp_path):
    (tmp_path / "net.py").write_text(_BACKBONE)
    kw = dict(backbone=f"{tmp_path / 'net.py'}:build", backbone_layer="1")
    gen = _six_by_six()
    w = np.random.default_rng(0).standard_normal(36)

    def f(x):  # a fixed linear unit of the images
        return gen(np.asarray(x)).reshape(len(x), -1).numpy() @ w

    unit = CallableOracle(lambda images: images.reshape(len(images), -1).numpy() @ w)
    res = mango.maximize(unit, generator=gen, optimizer="surrogate", budget=60, seed=0, progress=False, **kw)
    rnd = mango.maximize(unit, generator=gen, optimizer="random", budget=60, seed=0, progress=False)
    assert res.best_value > rnd.best_value
    a = make("surrogate", gen.space, seed=2, batch_size=5, **kw)
    a.connect(generator=gen)
    for _ in range(4):
        x = a.ask(5)
        a.tell(x, f(x))
    b = make("surrogate", gen.space, seed=2, batch_size=5, **kw)
    b.connect(generator=gen)
    b.load_state_dict(mango.runs.serial.loads(mango.runs.serial.dumps(a.state_dict())))
    for _ in range(2):
        x, y = a.ask(5), b.ask(5)
        np.testing.assert_array_equal(x, y)
        a.tell(x, f(x))
        b.tell(y, f(y))
    with pytest.raises(ConfigError, match="need a generator"):
        mango.maximize(shifted_sphere, Box(3, -1, 1), optimizer="surrogate", budget=20, progress=False, **kw)
    with pytest.raises(ConfigError, match="backbone_layer"):
        mango.maximize(unit, generator=gen, optimizer="surrogate", budget=20, progress=False,
                       backbone=kw["backbone"])


# -- every space, determinism, state --------------------------------------------------------------------

@pytest.mark.parametrize("space", [Box(4, -2, 2), Grid(Box(3, 0, 1), 9), Codebook(5, 7)])
def test_same_seed_same_history_and_state_round_trip(space):
    f = (lambda x: -np.sum((np.asarray(x, float) - 1) ** 2, axis=1))
    a = mango.maximize(f, space, optimizer="surrogate", budget=60, batch_size=7, seed=3, progress=False)
    b = mango.maximize(f, space, optimizer="surrogate", budget=60, batch_size=7, seed=3, progress=False)
    np.testing.assert_array_equal(a.points, b.points)
    opt = make("surrogate", space, seed=5, batch_size=6)
    opt.connect(generator=None)
    for _ in range(4):
        x = opt.ask(6)
        opt.tell(x, f(x))
    state = mango.runs.serial.loads(mango.runs.serial.dumps(opt.state_dict()))
    twin = make("surrogate", space, seed=5, batch_size=6)
    twin.connect(generator=None)
    twin.load_state_dict(state)
    for _ in range(3):
        x, y = opt.ask(6), twin.ask(6)
        np.testing.assert_array_equal(x, y)
        opt.tell(x, f(x))
        twin.tell(y, f(y))
    assert opt.best[1] == twin.best[1]


def test_noisy_objective_and_repeats():
    rng = np.random.default_rng(0)

    def noisy(x):
        return shifted_sphere(x) + 0.05 * rng.standard_normal(len(x))

    res = mango.maximize(noisy, Box(5, -1, 1), optimizer="surrogate", budget=150, seed=0, progress=False)
    assert shifted_sphere(res.best_point[None])[0] > -0.15


def test_resume_after_sigkill_continues_identically(tmp_path):
    """A surrogate campaign killed at random moments in a fresh interpreter, resumed, equals an uninterrupted
    one (zero lost, zero duplicated, budget exact)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the campaign subprocesses: float sums depend on the thread count
    try:
        _kill_and_resume(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(tmp_path):
    rng = random.Random(11)
    ref = faults.reference("surrogate", 1)
    duration = None
    killed = 0
    for trial in range(2):
        path = tmp_path / f"s{trial}.sqlite"
        if duration is None:
            proc = faults.start(tmp_path / "calibrate.sqlite", "surrogate", 1)
            import time

            t = time.perf_counter()
            assert not faults.kill_after(proc, 300.0)
            duration = time.perf_counter() - t
        killed += faults.kill_after(faults.start(path, "surrogate", 1), rng.uniform(0.2, 0.9) * duration)
        before = faults.recorded(path)
        res, obj = _campaign.run(path, "surrogate", 1, faults.BUDGET, faults.BATCH, resume=os.path.exists(path))
        np.testing.assert_array_equal(res.points, ref.points)
        np.testing.assert_array_equal(res.values, ref.values)
        faults.check_complete(path, ref, obj.evaluations, before)
    assert killed >= 1


# -- the BoTorch TuRBO peer -----------------------------------------------------------------------------

def test_turbo_peer_is_registered_only_with_botorch_and_runs():
    from mango.optimizers import registry

    assert ("turbo" in registry.available(include_nevergrad=False)) == registry._importable("botorch")
    pytest.importorskip("botorch")
    space = Box(6, -1, 1)
    a = mango.maximize(shifted_sphere, space, optimizer="turbo", budget=60, seed=0, progress=False)
    b = mango.maximize(shifted_sphere, space, optimizer="turbo", budget=60, seed=0, progress=False)
    assert a.n_queries == 60
    np.testing.assert_array_equal(a.points, b.points)  # seeded: same history
    rand = mango.maximize(shifted_sphere, space, optimizer="random", budget=60, seed=0, progress=False)
    assert a.best_value > rand.best_value / 2
    g = mango.maximize(shifted_sphere, Grid(Box(3, -1, 1), 17), optimizer="turbo", budget=30, seed=0,
                       progress=False)  # a Grid through its Box
    assert g.n_queries == 30 and g.points.dtype.kind == "i"
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    mango.maximize(shifted_sphere, space, optimizer="turbo", budget=30, seed=0, progress=False)
    assert torch.rand(1) == x  # the global torch RNG is left alone
