"""mango.zoo.build: one builder for the command line, the benchmark and the simulated rig."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mango.zoo import build
from mango.errors import ConfigError


def _cli_args(**kw):
    base = dict(oracle=None, model="zoo:cnn-digits", weights=None, layer="output", unit=7, device="cpu",
                readout=None, num_steps=None, noise=None, seed=0, repeats=None, rig_timeout=None, rig_retries=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_and_bench_build_the_same_oracle_and_generator():
    from mango.bench.problems import _zoo_generator, zoo_oracle
    from mango.cli.maximize import build_oracle

    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    cli = build_oracle(_cli_args())
    bench = zoo_oracle("cnn-digits", "output", 7, "cpu")
    assert type(cli) is type(bench)
    np.testing.assert_array_equal(cli(x), bench(x))
    # the bench's generator spec is the CLI's without "zoo:"
    g_cli = build.build_generator("zoo:vqvae-digits:embedding", device="cpu")
    g_bench = _zoo_generator("vqvae-digits:embedding", "cpu")
    assert type(g_cli) is type(g_bench) and g_cli.space.dim == g_bench.space.dim
    pts = g_cli.space.sample(3, seed=1)
    np.testing.assert_array_equal(np.asarray(g_cli(pts)), np.asarray(g_bench(pts)))


def test_spiking_networks_get_an_snn_oracle_with_the_cli_default_readout():
    from mango.cli.maximize import build_oracle

    oracle = build_oracle(_cli_args(model="zoo:snn-digits", unit=3))
    assert type(oracle).__name__ == "SNNOracle"
    assert oracle.readout_kind == "membrane"  # snnTorch's CLI default
    assert build.default_readout("spikingjelly") == "rate"
    # a CNN ignores --readout on the command line (it only concerns spiking networks) ...
    assert type(build_oracle(_cli_args(readout="rate"))).__name__ == "TorchOracle"
    # ... but asking the builder for a readout on a CNN is an error
    with pytest.raises(ConfigError, match="spiking networks only"):
        build.build_unit_oracle(build.build_model("zoo:cnn-digits", device="cpu"), "output", 0, readout="rate")


def test_noise_and_repeats_wrap_the_oracle():
    from mango.cli.maximize import build_oracle

    oracle = build_oracle(_cli_args(noise="gaussian", seed=3, repeats=2))
    assert type(oracle).__name__ == "Repeat" and type(oracle.oracle).__name__ == "Noisy"
    assert oracle.oracle.seed == 3 and oracle.queries_per_stimulus == 2


@pytest.mark.parametrize("spec, match", [
    ("vqvae", "unknown generator 'vqvae'; use zoo:vqvae-digits"),
    ("zoo:gan-digits:wide", "unknown view 'wide' for gan-digits; GAN views: grid"),
    ("zoo:nonesuch", "nonesuch"),
])
def test_bad_generator_specs_are_refused_clearly(spec, match):
    with pytest.raises(ConfigError, match=match):
        build.build_generator(spec, device="cpu")


def test_gan_levels_view():
    assert build.build_generator("zoo:gan-digits:grid", device="cpu").space.kind == "grid"
    assert build.build_generator("zoo:gan-digits:16", device="cpu").space.kind == "grid"
    assert build.build_generator("zoo:gan-digits", device="cpu").space.kind == "box"


def test_bad_model_specs_are_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="expected FILE.py:FACTORY"):
        build.build_model("mynet")
    with pytest.raises(ConfigError, match="no such file"):
        build.build_model(str(tmp_path / "absent.py") + ":make")
    f = tmp_path / "net.py"
    f.write_text("def make():\n    return 3\n")
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        build.build_model(f"{f}:make")
    with pytest.raises(ConfigError, match="defines no 'other'"):
        build.build_model(f"{f}:other")
    with pytest.raises(ConfigError, match="could not load weights"):
        build.build_model("zoo:cnn-digits", weights=str(tmp_path / "absent.pt"))
    import torch

    from mango import zoo

    torch.save({"nope": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="do not fit CNNDigits"):
        build.build_model("zoo:cnn-digits", weights=str(tmp_path / "other.pt"))
    # a zoo model with replaced weights (e.g. a training checkpoint)
    state = {k: torch.zeros_like(v) for k, v in zoo.load("cnn-digits").state_dict().items()}
    torch.save(state, tmp_path / "zeros.pt")
    model = build.build_model("zoo:cnn-digits", weights=str(tmp_path / "zeros.pt"))
    assert all(float(v.abs().sum()) == 0 for v in model.state_dict().values())
    with pytest.raises(ConfigError, match="not a network that can be probed"):
        build.build_unit_oracle(object(), "output", 0)


def test_bench_noise_is_the_oracles_noise_model_with_the_same_stream():
    """The bench's Poisson / Gaussian noise is ResponseNoise and draws exactly what its old formulas drew."""
    from mango.bench.problems import Built, NoisyObjective
    from mango.oracles import ResponseNoise

    def clean(x):
        return np.asarray(x, dtype=float)[:, 0]

    built = Built(clean, space=None, ref_low=-1.5, ref_max=7.3)
    x = np.random.default_rng(5).uniform(-2, 9, size=(50, 1))
    pois = NoisyObjective(built, "poisson", seed=11, peak=20.0)
    assert isinstance(pois.model, ResponseNoise)
    rng = np.random.default_rng(11)
    want = rng.poisson(20.0 * np.maximum(x[:, 0], 0.0) / 7.3) / 20.0 * 7.3  # the bench's formula
    np.testing.assert_array_equal(pois.evaluate(x)[0], want)
    gauss = NoisyObjective(built, "gaussian", seed=4, sigma=0.1)
    want = x[:, 0] + np.random.default_rng(4).normal(0.0, 0.1 * (7.3 + 1.5), 50)
    np.testing.assert_array_equal(gauss.evaluate(x)[0], want)


def test_noisy_oracle_draws_from_response_noise():
    from mango.oracles import CallableOracle, Noisy, ResponseNoise

    oracle = CallableOracle(lambda s: np.abs(np.asarray(s).reshape(len(s), -1).sum(1)), input_shape=(2,))
    x = np.random.default_rng(0).random((30, 2))
    noisy = Noisy(oracle, "poisson", window=0.5, seed=2)
    np.testing.assert_array_equal(noisy(x), ResponseNoise("poisson", window=0.5, seed=2)(oracle(x)))
    with pytest.raises(ConfigError, match="unit"):
        ResponseNoise("poisson", unit=0.0)
