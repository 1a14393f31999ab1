"""Generators: shapes, ranges, seeds, VQ-VAE views and roundtrip, parametric tuning, errors."""

import json
import math

import numpy as np
import pytest
import torch

from mango.errors import ConfigError, SpaceError
from mango.generators import (Clamp01, Compose, GANGenerator, ModuleGenerator, Normalize,
                              ParametricGenerator, Resize, ToChannels, VQVAEGenerator)
from mango.spaces import Box, Codebook, Grid


@pytest.fixture(scope="module")
def vq():
    from mango import zoo

    return zoo.load_generator("vqvae-digits", device="cpu")


@pytest.fixture(scope="module")
def heldout():
    from mango.zoo.data import heldout_digits

    return heldout_digits()


# ----------------------------------------------------------------------------- parametric
def test_parametric_shapes_range_and_determinism():
    for kind in ("grating", "gabor"):
        g = ParametricGenerator(kind)
        assert g.param_names == ["orientation", "frequency", "phase", "contrast", "size", "x", "y"]
        pts = g.space.sample(16, seed=3)
        a, b = g(pts), g(g.space.sample(16, seed=3))
        assert a.shape == (16, 1, 28, 28) and a.dtype == torch.float32
        assert torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
        assert not a.requires_grad
        json.dumps(g.describe())


def test_parametric_orientation_tuning_peaks_at_preferred():
    g = ParametricGenerator("grating", fixed={"x": 0, "y": 0, "size": 0.8, "contrast": 1.0, "phase": 0.0,
                                              "frequency": 3.0})
    assert g.param_names == ["orientation"]
    # a model "neuron": energy of the response to a quadrature pair of oriented filters at 60 degrees
    pref = math.radians(60)
    gab = ParametricGenerator("gabor", background=0.5)
    f0 = gab(gab.point(orientation=pref, frequency=3.0, phase=0.0, contrast=1.0, size=0.25, x=0, y=0)) - 0.5
    f1 = gab(gab.point(orientation=pref, frequency=3.0, phase=math.pi / 2, contrast=1.0, size=0.25, x=0, y=0)) - 0.5
    thetas = np.linspace(0, math.pi, 36, endpoint=False)
    imgs = g(thetas[:, None]) - 0.5
    resp = ((imgs * f0).sum((1, 2, 3)) ** 2 + (imgs * f1).sum((1, 2, 3)) ** 2).numpy()
    best = thetas[int(np.argmax(resp))]
    assert abs(best - pref) <= math.radians(5.01)
    ortho = thetas[int(np.argmin(np.abs(thetas - (pref + math.pi / 2) % math.pi)))]
    assert resp.max() > 20 * resp[list(thetas).index(ortho)]


def test_grating_orientation_zero_is_vertical_bars():
    g = ParametricGenerator("grating", fixed={"size": 0.8, "x": 0, "y": 0, "contrast": 1.0})
    img = g(g.point(orientation=0.0, frequency=4.0, phase=0.3))[0, 0]
    centre = img[10:18, 4:24]
    assert centre.std(0).max() < 1e-4  # constant down each column
    assert centre.std(1).min() > 0.1   # varies along x


def test_gabor_size_and_position():
    g = ParametricGenerator("gabor", fixed={"contrast": 1.0, "frequency": 2.0, "orientation": 0.0, "phase": 0.0})
    small = g(g.point(size=0.05, x=0.0, y=0.0))[0, 0] - 0.5
    big = g(g.point(size=0.3, x=0.0, y=0.0))[0, 0] - 0.5
    assert small.abs()[:, :5].max() < 1e-3 < big.abs()[:, :5].max()
    right = g(g.point(size=0.08, x=0.3, y=0.0))[0, 0] - 0.5
    assert right.abs().sum(0).argmax() > 18


def test_parametric_colour_channels_and_background():
    g = ParametricGenerator("grating", channels=3, fixed={"red": 1.0, "green": 0.0, "blue": 0.0,
                                                          "contrast": 1.0, "size": 0.8, "x": 0, "y": 0})
    img = g(g.point(orientation=0.5, frequency=3.0, phase=0.0))[0]
    assert img.shape == (3, 28, 28)
    assert img[0].std() > 0.1 and img[1].std() < 1e-6 and img[2].std() < 1e-6
    dark = ParametricGenerator("gabor", background=0.0, fixed={"size": 0.05, "x": 0, "y": 0})
    im = dark(dark.point(orientation=0, frequency=2, phase=0, contrast=1))[0, 0]
    assert im[0, 0] < 1e-3 and im.max() > 0.5


def test_parametric_errors():
    with pytest.raises(ConfigError, match="kind"):
        ParametricGenerator("plaid")
    with pytest.raises(ConfigError, match="channels"):
        ParametricGenerator(channels=2)
    with pytest.raises(ConfigError, match="unknown parameter 'colour'"):
        ParametricGenerator(fixed={"colour": 1})
    with pytest.raises(ConfigError, match="low < high"):
        ParametricGenerator(ranges={"frequency": (4, 1)})
    with pytest.raises(ConfigError, match="at least one free"):
        ParametricGenerator(fixed={n: 0.1 for n in ["orientation", "frequency", "phase", "contrast", "size", "x", "y"]})
    g = ParametricGenerator()
    with pytest.raises(SpaceError):
        g(np.full((1, 7), 99.0))
    with pytest.raises(ConfigError, match="not a free parameter"):
        g.point(colour=1)


# ----------------------------------------------------------------------------- module / transforms
def _decoder(dim=4):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(dim, 28 * 28), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 28, 28)))


def test_module_generator_box_grid_codebook():
    g = ModuleGenerator(_decoder(), Box(4, -1, 1))
    assert g.output_shape == (1, 28, 28)
    x = g(g.space.sample(5, seed=0))
    assert x.shape == (5, 1, 28, 28) and not x.requires_grad
    grid = Grid(Box(4, -1, 1), 5)
    gg = ModuleGenerator(_decoder(), grid)
    # grid index 2 of 5 levels over [-1, 1] is 0.0
    assert torch.allclose(gg(np.full((1, 4), 2)), g(np.zeros((1, 4))))
    seen = {}

    def lookup(codes):
        seen["dtype"] = codes.dtype
        return codes.float().reshape(-1, 1, 2, 2) / 3

    cg = ModuleGenerator(lookup, Codebook((2, 2), 4))
    out = cg(np.array([[0, 1, 2, 3]]))
    assert seen["dtype"] == torch.long and torch.allclose(out.flatten(), torch.tensor([0, 1 / 3, 2 / 3, 1.0]))


def test_module_generator_errors():
    with pytest.raises(ConfigError, match="callable"):
        ModuleGenerator(42, Box(2))
    with pytest.raises(ConfigError, match="mango Space"):
        ModuleGenerator(_decoder(), (4,))
    with pytest.raises(ConfigError, match=r"\[n, C, H, W\]"):
        ModuleGenerator(torch.nn.Linear(4, 784), Box(4))
    with pytest.raises(ConfigError, match="NaN"):
        ModuleGenerator(lambda z: torch.full((len(z), 1, 2, 2), float("nan")), Box(2))
    with pytest.raises(ConfigError, match="torch tensor"):
        ModuleGenerator(lambda z: np.zeros((len(z), 1, 2, 2)), Box(2))
    g = ModuleGenerator(_decoder(), Box(4, -1, 1))
    with pytest.raises(SpaceError):
        g(np.zeros((2, 5)))


def test_transforms():
    x = torch.rand(2, 1, 28, 28)
    n = Normalize(0.5, 0.25)
    assert torch.allclose(n(x), (x - 0.5) / 0.25)
    t = Compose([Resize(32), ToChannels(3), Normalize([0.1, 0.2, 0.3], [1, 2, 3])])
    y = t(x)
    assert y.shape == (2, 3, 32, 32)
    assert torch.allclose(y[:, 1] * 2 + 0.2, y[:, 0] * 1 + 0.1, atol=1e-6)
    assert Clamp01()(torch.tensor([-1.0, 0.5, 2.0])).tolist() == [0.0, 0.5, 1.0]
    json.dumps(t.describe())
    with pytest.raises(ConfigError, match="std must be > 0"):
        Normalize(0, 0)
    with pytest.raises(ConfigError, match="3 channels"):
        Normalize([0, 0], [1, 1])(torch.rand(1, 3, 4, 4))
    g = ModuleGenerator(_decoder(), Box(4, -1, 1), transform=Normalize(0.5, 0.5))
    raw = ModuleGenerator(_decoder(), Box(4, -1, 1))
    p = raw.space.sample(3, seed=1)
    assert torch.allclose(g(p), raw(p) * 2 - 1, atol=1e-6)
    assert g.describe()["transform"]["type"] == "Normalize"


# ----------------------------------------------------------------------------- GAN
def test_gan_generator_box_and_grid():
    from mango import zoo

    g = zoo.load_generator("gan-digits", device="cpu")
    assert isinstance(g, GANGenerator)
    assert g.space == Box(32, -4, 4) and g.output_shape == (1, 28, 28)
    x = g(g.space.sample(8, seed=0))
    assert x.shape == (8, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, g(g.space.sample(8, seed=0)))
    gg = zoo.load_generator("gan-digits", device="cpu", levels=64)
    assert isinstance(gg.space, Grid) and gg.space.levels == 64
    idx = gg.space.sample(3, seed=2)
    assert torch.allclose(gg(idx), g(gg.space.values(idx)), atol=1e-6)
    assert np.allclose(gg.latent(np.zeros((1, 32), dtype=int)), -4.0)
    with pytest.raises(SpaceError):
        g(np.full((1, 32), 5.0))
    json.dumps(gg.describe())


def test_gan_generator_needs_latent_dim():
    with pytest.raises(ConfigError, match="latent_dim"):
        GANGenerator(lambda z: z)


# ----------------------------------------------------------------------------- VQ-VAE
def test_vqvae_codes_view(vq):
    assert vq.space == Codebook((7, 7), 128)
    assert vq.output_shape == (1, 28, 28)
    x = vq(vq.space.sample(4, seed=0))
    assert x.shape == (4, 1, 28, 28) and 0 <= x.min() and x.max() <= 1 and not x.requires_grad
    json.dumps(vq.describe())


def test_vqvae_embedding_view_matches_codes_view(vq):
    emb = VQVAEGenerator(vq.model, view="embedding", device="cpu")
    box = emb.space
    assert isinstance(box, Box) and box.dim == 49 * 16 and box == vq.embedding_space()
    codes = vq.space.sample(6, seed=1)
    pts = vq.codes_to_embedding(codes)
    assert box.contains(pts)
    assert torch.allclose(emb(pts), vq(codes), atol=1e-5)
    assert np.array_equal(vq.embedding_to_codes(pts), codes)
    # snapping: a small perturbation decodes to the codes' image again
    snap = VQVAEGenerator(vq.model, view="embedding", snap=True, device="cpu")
    noisy = box.clip(pts + np.random.default_rng(0).normal(0, 1e-3, pts.shape))
    assert torch.allclose(snap(noisy), vq(codes), atol=1e-5)
    assert not torch.allclose(emb(box.sample(2, seed=0)), snap(box.sample(2, seed=0)))


def test_vqvae_encode_decode_roundtrip(vq, heldout):
    x, y = heldout
    x, y = x[::5], y[::5]
    codes = vq.encode(x)
    assert codes.shape == (len(x), 49) and codes.dtype == np.int64
    recon = vq(codes)
    mse = float(((recon - x) ** 2).mean())
    assert mse < 0.02, mse
    # far better than a different image's codes
    assert mse < 0.25 * float(((vq(np.roll(codes, 1, axis=0)) - x) ** 2).mean())
    from mango import zoo

    cnn = zoo.load("cnn-digits", device="cpu")
    with torch.no_grad():
        acc = float((cnn(recon).argmax(1) == y).float().mean())
    assert acc >= 0.9, acc
    e = vq.encode_embedding(x[:5])
    assert np.allclose(e, vq.codes_to_embedding(codes[:5]))
    raw = vq.encode_embedding(x[:5], quantized=False)
    assert vq.embedding_space().contains(raw)
    assert np.array_equal(vq.encode(x[:5].numpy()[:, 0]), codes[:5])  # numpy [n, H, W] accepted


def test_vqvae_errors(vq):
    with pytest.raises(ConfigError, match="view"):
        VQVAEGenerator(vq.model, view="pixels")
    with pytest.raises(ConfigError, match="codebook"):
        VQVAEGenerator(torch.nn.Linear(2, 2))
    with pytest.raises(SpaceError):
        vq(np.full((1, 49), 128))
    with pytest.raises(ConfigError, match=r"\[n, C, H, W\]"):
        vq.encode(torch.zeros(28, 28))


def test_generator_to_device_roundtrip(vq):
    g = VQVAEGenerator(vq.model, device="cpu")
    assert g.to("cpu") is g and str(g.device) == "cpu"
    if torch.cuda.is_available():  # pragma: no cover - only with a GPU
        g.to("cuda")
        assert g(g.space.sample(2, seed=0)).device.type == "cuda"
        g.to("cpu")


def test_a_zoo_name_is_refused_with_the_zoo_call_to_use():
    for cls, name in ((GANGenerator, "gan-digits"), (VQVAEGenerator, "vqvae-digits")):
        with pytest.raises(ConfigError, match=r"load_generator\('" + name):
            cls(name)


def test_to_moves_the_adopted_module_along():
    class Net(torch.nn.Module):
        latent_dim = 4

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 16)
            self.moved = []

        def forward(self, z):
            return torch.sigmoid(self.lin(z)).reshape(-1, 1, 4, 4)

        def to(self, *args, **kwargs):
            self.moved.append(str(args[0]))
            return super().to(*args, **kwargs)

    for make in (lambda net: ModuleGenerator(net, Box(4, -1, 1), device="cpu"),
                 lambda net: GANGenerator(net, device="cpu")):
        net = Net()
        g = make(net)
        assert net.moved == ["cpu"] and not net.training
        assert g.to("cpu") is g and net.moved == ["cpu", "cpu"]
