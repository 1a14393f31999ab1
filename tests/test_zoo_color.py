"""Colour zoo (issue 31, first part): the CIFAR-size models load (weights_only), have the right
shapes, and the model card's held-out figures hold on the shipped held-out images."""

import json
import os

import numpy as np
import pytest
import torch

from mango import zoo
from mango.zoo.color import HELDOUT_PATH, heldout_color

COLOR = ["snn-color", "vqvae-color", "gan-color"]
#: stated bounds (the model card's figures with a little room; see mango/zoo/README.md)
MAX_MEDIAN_WINNER_RATE = 0.5
MAX_SATURATING_FRACTION = 0.05  # per output neuron: images with rate >= 0.95
VQVAE_MAX_MSE = 0.01            # per pixel, held-out images in [0, 1]


@pytest.fixture(scope="module")
def card():
    with open(os.path.join(os.path.dirname(zoo.__file__), "metrics.json")) as f:
        return json.load(f)["models"]


@pytest.fixture(scope="module")
def snn_counts():
    torch.manual_seed(0)
    net = zoo.load("snn-color", device="cpu")
    x, y = heldout_color("all")
    with torch.no_grad():  # all 1,000 images in one batch: the 64-step loop's overhead once
        spk, mem = net(x)
    counts = spk.sum(0)
    return counts / net.num_steps, (counts + 1e-3 * torch.tanh(mem.sum(0))).argmax(1), y


def test_registry_sizes_and_weights_only():
    info = {m["name"]: m for m in zoo.list_models()}
    for name in COLOR:
        assert info[name]["available"] and info[name]["metrics"], name
        state = torch.load(zoo.weights_path(name), map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
        m = zoo.load("zoo:" + name, device="cpu")
        assert not m.training and m.zoo_name == name
    held = torch.load(HELDOUT_PATH, map_location="cpu", weights_only=True)
    assert held["images"].dtype == torch.uint8 and held["images"].shape == (1000, 3, 32, 32)
    assert held["labels"].shape == (1000,) and int((held["labels"] >= 0).sum()) == 500
    assert torch.bincount(held["labels"][held["labels"] >= 0], minlength=10).tolist() == [50] * 10
    weights = os.path.dirname(HELDOUT_PATH)
    total = sum(os.path.getsize(os.path.join(weights, f)) for f in os.listdir(weights))
    assert total < 20e6


def test_snn_shapes_and_layers():
    net = zoo.load("snn-color", device="cpu")
    assert net.num_steps >= 64 and net.layer_names == ("lif1", "lif2", "lif3", "lif4")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        spk, mem = net(x)
        rec = net.record(x)
    assert spk.shape == mem.shape == (64, 2, 10)
    assert set(torch.unique(spk).tolist()) <= {0.0, 1.0}
    assert rec["lif1"].shape == (64, 2, 16, 16, 16) and rec["lif2"].shape == (64, 2, 32, 8, 8)
    assert rec["lif3"].shape == (64, 2, 128) and torch.equal(rec["lif4"], spk)


def test_snn_rates_do_not_saturate_on_heldout_images(snn_counts, card):
    rates, preds, y = snn_counts
    dig = y >= 0
    for sel in (dig, ~dig, torch.ones_like(dig)):
        r = rates[sel]
        assert float(r.max(1).values.median()) <= MAX_MEDIAN_WINNER_RATE
        assert float((r >= 0.95).float().mean(0).max()) <= MAX_SATURATING_FRACTION
    m = card["snn-color"]["metrics"]
    acc = float((preds[dig] == y[dig]).float().mean())
    assert acc == pytest.approx(m["heldout_accuracy"], abs=0.01)
    assert float(rates[dig].max(1).values.median()) == pytest.approx(
        m["rates_heldout_digits"]["median_winner_rate"], abs=0.02)


def test_vqvae_reconstructs_heldout_images(card):
    net = zoo.load("vqvae-color", device="cpu")
    assert net.latent_shape == (8, 8) and tuple(net.codebook.shape) == (512, 64)
    x, _ = heldout_color("all")
    with torch.no_grad():
        z = net.encode(x[:4])
        assert z.shape == (4, 64, 8, 8)
        recon, _, codes = net(x)
    assert recon.shape == x.shape and codes.shape == (1000, 8, 8)
    mse = float(torch.nn.functional.mse_loss(recon, x))
    assert mse <= VQVAE_MAX_MSE
    assert mse == pytest.approx(card["vqvae-color"]["metrics"]["heldout_mse"], rel=0.02)
    gen = zoo.load_generator("vqvae-color", device="cpu")
    assert tuple(gen.space.shape) == (8, 8) and gen.num_codes == 512
    emb = zoo.load_generator("vqvae-color", view="embedding", device="cpu")
    assert emb.space.dim == 4096
    imgs = gen(gen.encode(x[:3]))
    assert tuple(imgs.shape) == (3, 3, 32, 32)
    # the decoder runs channels-last (faster on CPU); its images are those of the default layout, contiguous
    with torch.no_grad():
        z = net.codes_to_latent(codes[:16])
        fast = net.decode(z)
        plain = torch.sigmoid(net.decoder(z))
    assert fast.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_gan_makes_finite_images_in_unit_range():
    net = zoo.load("gan-color", device="cpu")
    assert net.latent_dim == 128
    with torch.no_grad():
        imgs = net(torch.randn(64, 128, generator=torch.Generator().manual_seed(0)))
    assert imgs.shape == (64, 3, 32, 32) and torch.isfinite(imgs).all()
    assert float(imgs.min()) >= 0 and float(imgs.max()) <= 1
    assert float(imgs.flatten(1).std(1).mean()) > 0.02  # not a constant image
    gen = zoo.load_generator("gan-color", device="cpu")
    assert gen.latent_dim == 128
    out = gen(torch.zeros(2, 128).numpy())
    assert tuple(out.shape) == (2, 3, 32, 32)


def test_build_specs_and_reference_images_of_the_colour_zoo():
    from mango.zoo import build
    from mango.errors import ConfigError, UnknownNameError
    from mango.runs.natural.reference import zoo_images

    assert {"zoo:vqvae-color", "zoo:vqvae-color:embedding", "zoo:gan-color", "zoo:gan-color:grid"} <= set(
        build.GENERATOR_SPECS)
    codes = build.build_generator("zoo:vqvae-color", device="cpu")
    assert codes.space.kind == "codebook" and tuple(codes.output_shape) == (3, 32, 32)
    emb = build.build_generator("zoo:vqvae-color:embedding", device="cpu")
    assert emb.space.kind == "box" and emb.space.dim == 8 * 8 * 64
    assert build.build_generator("zoo:gan-color", device="cpu").space.dim == 128
    assert build.build_generator("zoo:gan-color:16", device="cpu").space.kind == "grid"
    with pytest.raises(ConfigError, match="not a generative model"):
        build.build_generator("zoo:snn-color", device="cpu")
    model = build.build_model("zoo:snn-color", device="cpu")
    assert build.spiking_framework(model) == "snntorch"
    oracle = build.build_unit_oracle(model, "output", 3, device="cpu", readout="rate")
    r = np.asarray(oracle(heldout_color("digits", n=4)[0]))
    assert r.shape in ((4,), (4, 1)) and np.all((0 <= r) & (r <= 1))
    # natural reference images of a colour model: the shipped colour held-out set
    x, source = zoo_images("zoo:snn-color")
    assert tuple(x.shape) == (1000, 3, 32, 32) and "colour" in source
    assert torch.equal(x, heldout_color("all")[0])
    with pytest.raises(UnknownNameError):
        zoo_images("zoo:snn-colour")


def test_cli_maximizes_a_colour_neuron_and_refuses_mismatched_generators(tmp_path, capsys):
    from mango.cli import main

    base = ["maximize", "--model", "zoo:snn-color", "--unit", "3", "--budget", "16", "--batch-size", "8",
            "--device", "cpu", "--quiet"]
    assert main(base + ["--generator", "zoo:vqvae-digits", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "[1, 28, 28]" in err and "[3, 32, 32]" in err and "zoo:vqvae-color" in err
    out = tmp_path / "ok"
    assert main(base + ["--generator", "zoo:gan-color", "--optimizer", "cma", "--reference", "none",
                        "--out", str(out)]) == 0
    d = json.loads((out / "result.json").read_text())
    assert d["queries"]["used"] == 16 and (out / "best.png").exists()
    assert d["target"]["unit"] == 3 and "SNNColor" in d["value"]["what"]


def test_simulated_rig_feeds_the_colour_snn_colour_images():
    from mango.rig.simulator import build_oracle

    oracle = build_oracle("zoo:snn-color", unit=3, noise="none", device="cpu")
    r = np.asarray(oracle(heldout_color("digits", n=3)[0]))
    assert r.shape[0] == 3 and np.all(np.isfinite(r)) and np.all(r >= 0)
