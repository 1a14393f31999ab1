"""Warm start from screened images or points (mango.runs.natural.screening, mango.optimizers.warm)."""

import numpy as np
import pytest
import torch

from mango import spaces
from mango.errors import ConfigError
from mango.optimizers import make
from mango.optimizers.warm import WarmStart
from mango.runs.natural.screening import load_images, warm_points


def sphere(x, c=0.3):
    return -np.sum((np.asarray(x, float) - c) ** 2, axis=-1)


def drive(opt, budget, batch, f=sphere):
    pts_all, vals_all = [], []
    while sum(map(len, pts_all)) < budget:
        n = min(batch, budget - sum(map(len, pts_all)))
        p = opt.ask(n)
        v = f(p)
        opt.tell(p, v)
        pts_all.append(p)
        vals_all.append(v)
    return np.concatenate(pts_all), np.concatenate(vals_all)


@pytest.mark.parametrize("name", ["cma", "ga", "random", "tt", "ng:NGOpt"])
def test_warm_points_are_asked_first_and_counted(name):
    space = spaces.Box(6)
    warm = np.random.default_rng(1).uniform(-1, 1, (7, 6))
    opt = WarmStart(make(name, space, seed=0, budget=33, batch_size=5), warm)
    pts, _ = drive(opt, 40, 5)
    assert len(pts) == 40 and opt.n_told == 40
    np.testing.assert_array_equal(pts[:7], warm)
    assert opt.handed_over and opt.inner.n_told == 40


def test_cma_mean_starts_at_the_best_warm_point():
    space = spaces.Box(5)
    warm = np.full((3, 5), -0.9)
    warm[1] = 0.3  # the optimum of sphere(c=0.3)
    opt = WarmStart(make("cma", space, seed=0, sigma0=0.05), warm)
    drive(opt, 3, 3)
    first = opt.ask(6)
    assert np.abs(first - 0.3).max() < 0.5  # sampled around the best warm point, not the centre
    cold = make("cma", space, seed=0, sigma0=0.05).ask(6)
    assert np.abs(cold).max() < 0.5


def test_warm_start_helps_cma_on_a_shifted_sphere():
    space = spaces.Box(10)
    f = lambda x: sphere(x, 0.7)  # noqa: E731
    warm = np.clip(0.7 + np.random.default_rng(0).normal(0, 0.05, (10, 10)), -1, 1)
    warm_best = drive(WarmStart(make("cma", space, seed=0), warm), 60, 10, f)[1].max()
    cold_best = drive(make("cma", space, seed=0), 60, 10, f)[1].max()
    assert warm_best > cold_best


def test_state_round_trip_mid_warm_and_after():
    space = spaces.Box(4)
    warm = np.random.default_rng(2).uniform(-1, 1, (5, 4))
    for stop in (3, 5, 12):
        a = WarmStart(make("cma", space, seed=3), warm)
        drive(a, stop, 3)
        state = a.state_dict()
        b = WarmStart(make("cma", space, seed=3), warm)
        b.load_state_dict(state)
        assert b.n_told == a.n_told and b.best[1] == a.best[1]
        np.testing.assert_array_equal(drive(a, 15, 3)[0], drive(b, 15, 3)[0])
    with pytest.raises(ConfigError, match="other warm start points"):
        WarmStart(make("cma", space, seed=3), warm[:4]).load_state_dict(state)


def test_padding_fills_the_last_warm_batch_and_is_seeded():
    space = spaces.Box(3)
    warm = np.zeros((4, 3))
    p1 = WarmStart(make("cma", space, seed=0), warm).ask(6)
    p2 = WarmStart(make("cma", space, seed=0), warm).ask(6)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(p1[:4], warm)
    assert space.contains(p1[4:])


def test_codebook_warm_start():
    space = spaces.Codebook(8, 5)
    warm = np.random.default_rng(0).integers(0, 5, (6, 8))
    opt = WarmStart(make("tt", space, seed=0), warm)
    pts, _ = drive(opt, 30, 6, lambda x: -np.sum(x != 2, axis=1).astype(float))
    np.testing.assert_array_equal(pts[:6], warm)


def test_errors():
    space = spaces.Box(3)
    with pytest.raises(ConfigError):
        WarmStart(make("cma", space), np.zeros((0, 3)))
    with pytest.raises(Exception, match="warm start points"):
        WarmStart(make("cma", space), np.full((2, 3), 5.0))
    with pytest.raises(ConfigError, match="generator"):
        warm_points(np.zeros((3, 28, 28)), None, space)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        load_images(np.full((2, 8, 8), 3.0))
    with pytest.raises(ConfigError, match="neither"):
        load_images("/nonexistent/file.txt")


def test_points_pass_through_and_images_load(tmp_path):
    space = spaces.Box(3)
    pts = np.zeros((4, 3))
    np.testing.assert_array_equal(warm_points(pts, None, space), pts)
    imgs = np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    np.save(tmp_path / "imgs.npy", imgs)
    got = load_images(tmp_path / "imgs.npy")
    assert got.shape == (5, 1, 8, 8)
    assert torch.allclose(got[:, 0], torch.as_tensor(imgs))
    from matplotlib import image as mpimg

    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(3):
        mpimg.imsave(folder / f"{i}.png", imgs[i], cmap="gray", vmin=0, vmax=1)
    got = load_images(folder)
    assert got.shape[0] == 3 and got.shape[2:] == (8, 8) and 0 <= got.min() and got.max() <= 1
    assert len(load_images(tmp_path / "imgs.npy", n=2, seed=0)) == 2
    np.save(tmp_path / "pts.npy", np.full((3, 3), 0.5))  # an .npy of latent points (e.g. an earlier run's best)
    np.testing.assert_array_equal(warm_points(str(tmp_path / "pts.npy"), None, space), np.full((3, 3), 0.5))


def test_zoo_digits_encode_with_the_vqvae():
    from mango import zoo

    gen = zoo.load_generator("vqvae-digits", view="embedding")
    space = gen.space
    pts = warm_points("zoo", gen, space, n=10)
    assert pts.shape == (10, space.dim) and space.contains(pts)
    codes = zoo.load_generator("vqvae-digits", view="codes")
    c = warm_points("zoo", codes, codes.space, n=10)
    # the two views encode the same images to the same latent
    np.testing.assert_allclose(codes.codes_to_embedding(c), pts, atol=1e-6)


def test_differentiable_generator_is_inverted():
    from mango.generators import ParametricGenerator

    gen = ParametricGenerator("grating", size=(16, 16))
    space = gen.space
    truth = space.sample(2, seed=0)
    images = gen(truth).detach()
    pts = warm_points(images.clamp(0, 1), gen, space, seed=0)
    err_inv = ((gen(pts) - images) ** 2).mean().item()
    err_rand = ((gen(space.sample(2, seed=5)) - images) ** 2).mean().item()
    assert err_inv < 0.5 * err_rand


def _zoo_target():
    from mango import zoo
    from mango.oracles import TorchOracle

    gen = zoo.load_generator("vqvae-digits", view="embedding")
    oracle = TorchOracle(zoo.load("cnn-digits"), layer="output", unit=7)
    return oracle, gen


def test_maximize_warm_start_from_zoo_digits_counts_the_screen():
    import mango

    oracle, gen = _zoo_target()
    res = mango.maximize(oracle, generator=gen, optimizer="cma", budget=40, warm_start="zoo", warm_n=10,
                         progress=False)
    assert res.n_queries == 40
    warm = warm_points("zoo", gen, gen.space, n=10)
    np.testing.assert_array_equal(res.points[:10], warm)
    assert res.config["warm_start"]["n"] == 10
    with pytest.raises(ConfigError, match="budget"):
        mango.maximize(oracle, generator=gen, budget=10, warm_start="zoo", warm_n=10, progress=False)


def test_warm_started_run_resumes_identically(tmp_path):
    import mango
    from mango.runs.loop import Callback

    oracle, gen = _zoo_target()
    kw = dict(generator=gen, optimizer="cma", budget=60, batch_size=8, warm_start="zoo", warm_n=12, progress=False)
    full = mango.maximize(oracle, **kw)

    class Stop(Callback):
        def __init__(self, at):
            self.at = at

        def on_batch(self, run, batch):
            if batch.index == self.at:
                raise KeyboardInterrupt

    for at in (0, 3):  # inside the warm screen, and after the hand-over
        path = tmp_path / f"run{at}.sqlite"
        part = mango.maximize(oracle, store=path, callbacks=[Stop(at)], **kw)
        assert part.stop_reason == "interrupted"
        resumed = mango.maximize(oracle, store=path, resume=True, **kw)
        np.testing.assert_array_equal(resumed.points, full.points)
        np.testing.assert_array_equal(resumed.values, full.values)
    with pytest.raises(ConfigError, match="warm_start"):
        mango.maximize(oracle, store=tmp_path / "run3.sqlite", resume=True, **{**kw, "warm_n": 11})
