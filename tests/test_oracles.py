"""Tests of mango.oracles on small real networks built here (a CNN and snntorch SNNs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn as nn
import torch.nn.functional as F

from mango.errors import ConfigError, ObjectiveError, UnknownNameError
from mango.oracles import CallableOracle, Noisy, Repeat, SNNOracle, TorchOracle, reset_snn, stateless_prefix

torch.set_num_threads(1)


# ---------------------------------------------------------------- networks
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def make_cnn():
    torch.manual_seed(0)
    return SmallCNN().eval()


def make_step_snn(beta=0.8):
    """Stateful single-step conv SNN (init_hidden=True), an nn.Sequential."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(8, 8, 3), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 6), snn.Leaky(beta=beta, init_hidden=True, output=True),
    )
    with torch.no_grad():  # strong enough weights that neurons spike
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
        net[7].weight.mul_(2.0)
        net[7].bias.add_(0.3)
    return net.eval()


class LoopSNN(nn.Module):
    """Explicit-state conv SNN whose forward() runs the time loop (like the zoo model)."""

    def __init__(self, num_steps=12, beta=0.8):
        super().__init__()
        torch.manual_seed(2)
        self.num_steps = num_steps
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc = nn.Linear(8 * 7 * 7, 6)
        self.lif2 = snn.Leaky(beta=beta)
        with torch.no_grad():
            self.conv1.weight.mul_(3.0)
            self.fc.weight.mul_(3.0)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(F.max_pool2d(self.conv1(x), 2), mem1)
            spk2, mem2 = self.lif2(self.fc(spk1.flatten(1)), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def images(n, seed=0, shape=(1, 16, 16)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n,) + shape, generator=g)


def naive_step_loop(net, x, num_steps, layer_index):
    """Hand-written snntorch time loop over a Sequential: spikes and membranes of net[layer_index]."""
    spk_sum, mem_sum = 0, 0
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, snn.SpikingNeuron):
                m.reset_mem()
        for _ in range(num_steps):
            h = x
            for i, m in enumerate(net):
                h = m(h)
                if i == layer_index:
                    spk = h[0] if isinstance(h, tuple) else h
                    spk_sum = spk_sum + spk.double()
                    mem_sum = mem_sum + m.mem.double()
    return spk_sum, mem_sum


# ---------------------------------------------------------------- TorchOracle
def test_torch_hook_equals_manual_forward():
    net, x = make_cnn(), images(7)
    with torch.no_grad():
        conv2 = net.features[3](net.features[2](net.features[1](net.features[0](x))))
        logits = net(x)
    o = TorchOracle(net, layer="features.3", unit=[0, 5, 7])
    r = o(x)
    assert r.shape == (7, 3) and r.dtype == np.float64
    np.testing.assert_allclose(r, conv2[:, [0, 5, 7]].mean((2, 3)).double().numpy(), rtol=0, atol=1e-6)
    rc = TorchOracle(net, layer="features.3", unit=2, spatial="center")(x)
    np.testing.assert_allclose(rc[:, 0], conv2[:, 2, 4, 4].numpy(), atol=1e-6)
    ryx = TorchOracle(net, layer="features.3", unit=2, spatial=(1, 6))(x)
    np.testing.assert_allclose(ryx[:, 0], conv2[:, 2, 1, 6].numpy(), atol=1e-6)
    out = TorchOracle(net, layer="output", unit=3)(x)
    np.testing.assert_allclose(out[:, 0], logits[:, 3].numpy(), atol=1e-6)
    p = TorchOracle(net, layer="output", unit=[1, 3], softmax=True)(x)
    np.testing.assert_allclose(p, torch.softmax(logits, 1)[:, [1, 3]].numpy(), atol=1e-6)
    lin = TorchOracle(net, layer="fc", unit=4)(x.numpy())  # numpy stimuli accepted
    np.testing.assert_allclose(lin[:, 0], logits[:, 4].numpy(), atol=1e-6)
    assert o.unit_names == ["features.3:0", "features.3:5", "features.3:7"] and o.n_units == 3
    json.dumps(o.describe())


def test_torch_stops_after_target_and_removes_hooks():
    net, x = make_cnn(), images(3)
    calls = []
    net.fc.register_forward_hook(lambda m, i, o: calls.append(1))
    o = TorchOracle(net, layer="features.0", unit=0)
    o(x)  # the first call runs the whole network once, counting how often the target layer runs
    assert calls == [1]
    o(x)
    o(x)
    assert calls == [1]  # later calls stop right after the target: the linear layer never ran
    assert len(net.features[0]._forward_hooks) == 0
    TorchOracle(net, layer="features.0", unit=0, input_shape=(1, 16, 16))(x)  # dry run at construction
    assert calls == [1, 1]
    TorchOracle(net, layer="features.0", unit=0, stop_early=False)(x)
    assert calls == [1, 1, 1]


def test_torch_module_called_twice_reads_last_call():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.act = nn.Tanh()

        def forward(self, x):
            return self.act(self.lin(self.act(x)))

    torch.manual_seed(0)
    net, x = Shared().eval(), torch.randn(5, 4)
    o = TorchOracle(net, layer="act", unit=[0, 1, 2, 3])
    for _ in range(2):  # first call counts the calls, later ones stop early at the last call
        np.testing.assert_allclose(o(x), net(x).detach().numpy(), atol=1e-6)


def test_torch_errors():
    net = make_cnn()
    with pytest.raises(UnknownNameError, match="features.3"):
        TorchOracle(net, layer="feature.3")
    with pytest.raises(ConfigError, match=r"valid channels are 0\.\.7"):
        TorchOracle(net, layer="features.3", unit=8, input_shape=(1, 16, 16))
    with pytest.raises(ConfigError, match=r"0\.\.4"):
        TorchOracle(net, layer="output", unit=[0, 5])(images(2))
    o = TorchOracle(net, layer="features.3", unit=0, input_shape=(1, 16, 16))
    with pytest.raises(ConfigError, match=r"expects a batch of shape \(n, 1, 16, 16\)"):
        o(torch.zeros(2, 3, 16, 16))
    assert o(torch.zeros(1, 16, 16)).shape == (1, 1)  # one stimulus
    assert o(np.zeros((4, 256))).shape == (4, 1)  # flat pixel-space points
    with pytest.raises(ConfigError, match="spatial"):
        TorchOracle(net, layer="features.3", unit=0, spatial=(9, 0), input_shape=(1, 16, 16))
    with pytest.raises(ConfigError, match=r"stimuli of shape \(2, 3, 16, 16\).*input_shape="):
        TorchOracle(net, layer="output", unit=0)(torch.zeros(2, 3, 16, 16))


def test_torch_training_mode_warns_and_switches_to_eval():
    net = make_cnn().train()
    with pytest.warns(UserWarning, match="training mode"):
        o = TorchOracle(net, layer="output", unit=0)
    assert not net.training
    x = images(4)
    r1 = o(x)
    net.train()  # dropout-free net, but the oracle still switches back, with a warning
    with pytest.warns(UserWarning, match="eval"):
        r2 = o(x)
    assert not net.training
    np.testing.assert_array_equal(r1, r2)


def test_torch_max_batch_chunks_equal():
    net, x = make_cnn(), images(9)
    np.testing.assert_allclose(TorchOracle(net, "features.4", [1, 2], max_batch=4)(x),
                               TorchOracle(net, "features.4", [1, 2])(x), atol=1e-6)


# ---------------------------------------------------------------- SNNOracle, step mode
@pytest.mark.parametrize("shortcut", [True, False])
@pytest.mark.parametrize("layer_index", [2, 5, 8])
def test_snn_step_rates_equal_hand_written_loop(shortcut, layer_index):
    net, x, T = make_step_snn(), images(6), 15
    spk, mem = naive_step_loop(net, x, T, layer_index)
    units = [1, 2, 5] if layer_index == 8 else [0, 1, 7]
    red = (lambda t: t[:, units]) if spk.dim() == 2 else (lambda t: t[:, units].mean((2, 3)))
    expected_rate = (red(spk) / T).numpy()
    assert expected_rate.max() > 0  # neurons do spike
    o = SNNOracle(net, layer=str(layer_index), unit=units, num_steps=T, shortcut=shortcut)
    assert o.mode == "step"
    assert o.prefix == (2 if shortcut else 0)
    np.testing.assert_allclose(o(x), expected_rate, rtol=0, atol=1e-6)
    cnt = SNNOracle(net, layer=str(layer_index), unit=units, num_steps=T, readout="count", shortcut=shortcut)(x)
    np.testing.assert_allclose(cnt, red(spk).numpy(), rtol=0, atol=1e-9)  # spike counts (spatial mean)
    memo = SNNOracle(net, layer=str(layer_index), unit=units, num_steps=T, readout="membrane",
                     shortcut=shortcut)(x)
    np.testing.assert_allclose(memo, (red(mem) / T).numpy(), rtol=1e-6, atol=1e-6)


def test_snn_shortcut_is_bitwise_equal_and_default_layer_is_last():
    net, x = make_step_snn(), images(5, seed=3)
    a = SNNOracle(net, unit=[0, 1, 2, 3, 4, 5], num_steps=20, readout="membrane", shortcut=True)
    b = SNNOracle(net, unit=[0, 1, 2, 3, 4, 5], num_steps=20, readout="membrane", shortcut=False)
    assert a.layer_name == "8" and a.prefix == 2 and b.prefix == 0
    np.testing.assert_array_equal(a(x), b(x))


def test_snn_step_stops_after_target_layer():
    net, x = make_step_snn(), images(3)
    calls = []
    h = net[7].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        o = SNNOracle(net, layer="5", unit=0, num_steps=6)
        o(x)
        assert len(calls) == 1  # only the first step of the first batch runs the whole net (a check)
        o(x)
        assert len(calls) == 1
        SNNOracle(net, layer="5", unit=0, num_steps=6, stop_early=False)(x)
        assert len(calls) == 7
    finally:
        h.remove()


def test_snn_state_never_leaks_between_batches():
    net, T = make_step_snn(), 10
    o = SNNOracle(net, layer="5", unit=list(range(8)), num_steps=T)
    x1, x2 = images(4, seed=1), images(4, seed=2)
    fresh2 = o(x2)
    o(x1)
    again2 = o(x2)
    np.testing.assert_array_equal(fresh2, again2)
    # someone leaves state behind (runs the net by hand without reset): the oracle still resets
    with torch.no_grad():
        net(x1 * 5)
    np.testing.assert_array_equal(o(x2), fresh2)
    # and each stimulus is independent of its batch mates; chunked batches give the same answer
    np.testing.assert_array_equal(o(x2[:2]), fresh2[:2])
    chunked = SNNOracle(net, layer="5", unit=list(range(8)), num_steps=T, max_batch=3)
    np.testing.assert_array_equal(chunked(x2), fresh2)
    assert o(x2[:0]).shape == (0, 8)


def test_snn_poisson_encoding_seeded():
    net, x = make_step_snn(), images(4)
    a = SNNOracle(net, layer="8", unit=[0, 1, 2], num_steps=20, encoding="poisson", seed=7)
    b = SNNOracle(net, layer="8", unit=[0, 1, 2], num_steps=20, encoding="poisson", seed=7)
    c = SNNOracle(net, layer="5", unit=list(range(8)), num_steps=20, encoding="poisson", seed=8)
    ra, rb = a(x), b(x)
    np.testing.assert_array_equal(ra, rb)
    assert a.prefix == 0  # no constant prefix under stochastic input
    # same construction, stream continues: the second call draws new spikes
    r5a, r5b = c(x), c(x)
    assert not np.array_equal(r5a, r5b)
    # hand-written loop with the same generator
    g = torch.Generator().manual_seed(8)
    reset_snn(net)
    acc = 0
    with torch.no_grad():
        for _ in range(20):
            h = torch.bernoulli(x, generator=g)
            for i, m in enumerate(net):
                h = m(h)
                if i == 5:
                    acc = acc + h[:, :8].double().mean((2, 3))
                    break
    np.testing.assert_allclose(r5a, (acc / 20).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        a(x * 3)


# ---------------------------------------------------------------- SNNOracle, loop mode
def test_snn_loop_mode_equals_model_output():
    net, x = LoopSNN(num_steps=12).eval(), images(6, shape=(1, 16, 16))
    with torch.no_grad():
        spk, mem = net(x)
    o = SNNOracle(net, layer="lif2", unit=[0, 2, 4])
    assert o.mode == "loop" and o.num_steps == 12
    r = o(x)
    assert o.steps_seen == 12
    assert spk.sum() > 0
    np.testing.assert_allclose(r, spk.mean(0)[:, [0, 2, 4]].numpy(), atol=1e-6)
    m = SNNOracle(net, layer="output", unit=[1], readout="membrane")(x)
    np.testing.assert_allclose(m[:, 0], mem.mean(0)[:, 1].numpy(), atol=1e-6)
    with pytest.warns(UserWarning, match="model decides the number of steps"):
        SNNOracle(net, layer="lif2", num_steps=30)(x)
    # hidden layer, counts, consecutive batches independent
    c = SNNOracle(net, layer="lif1", unit=[0, 7], readout="count")
    c1 = c(x)
    c(images(3, seed=9))
    np.testing.assert_array_equal(c(x), c1)


def test_snn_wrong_mode_and_errors():
    net = make_step_snn()
    with pytest.raises(ConfigError, match="num_steps"):
        SNNOracle(net, layer="8")
    with pytest.raises(UnknownNameError, match="Valid layer names: 0, 1, 2"):
        SNNOracle(net, layer="9", num_steps=5)
    with pytest.raises(UnknownNameError, match="Did you mean 'lif2'"):
        SNNOracle(LoopSNN(), layer="lif_2")
    with pytest.raises(ConfigError, match=r"0\.\.5"):
        SNNOracle(net, layer="8", unit=6, num_steps=5, input_shape=(1, 16, 16))
    with pytest.raises(ConfigError, match="membrane"):
        SNNOracle(net, layer="0", readout="membrane", num_steps=5)
    with pytest.raises(UnknownNameError, match="rate"):
        SNNOracle(net, layer="8", readout="rates", num_steps=5)
    with pytest.raises(ConfigError, match="no snntorch"):
        SNNOracle(make_cnn(), num_steps=5)
    with pytest.raises(ConfigError, match="mode='loop'"):
        SNNOracle(LoopSNN(num_steps=4).eval(), layer="lif2", mode="step", num_steps=3)(images(2))
    with pytest.raises(ConfigError, match=r"stimuli of shape \(2, 3, 16, 16\)"):
        SNNOracle(net, layer="8", num_steps=3)(torch.zeros(2, 3, 16, 16))
    o = SNNOracle(net, layer="8", num_steps=3, input_shape=(1, 16, 16))
    with pytest.raises(ConfigError, match=r"\(n, 1, 16, 16\)"):
        o(torch.zeros(2, 16, 16, 1))
    net.train()
    with pytest.warns(UserWarning, match="training mode"):
        SNNOracle(net, layer="8", num_steps=3)
    assert not net.training


def test_stateless_prefix_detection():
    net = make_step_snn()
    assert stateless_prefix(net) == 2
    assert stateless_prefix(net, stop_at=net[1]) == 1
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), snn.Leaky(0.5, init_hidden=True))
    assert stateless_prefix(bn.train()) == 1 and stateless_prefix(bn.eval()) == 2
    assert stateless_prefix(LoopSNN()) == 0


# ---------------------------------------------------------------- callable and wrappers
def test_callable_oracle():
    o = CallableOracle(lambda s: s.flatten(1).mean(1), input_shape=(1, 4, 4))
    r = o(torch.ones(3, 1, 4, 4) * 2)
    np.testing.assert_array_equal(r, np.full((3, 1), 2.0))
    assert o.unit_names == ["unit0"]
    on = CallableOracle(lambda s: np.stack([s.sum((1, 2, 3)), -s.sum((1, 2, 3))], 1), unit_names=["a", "b"],
                        input="numpy")
    assert on(np.ones((2, 1, 2, 2))).tolist() == [[4, -4], [4, -4]]

    def bad(s):
        out = np.zeros(len(s))
        out[1] = np.nan
        return out

    with pytest.raises(ObjectiveError, match=r"stimuli \[1\]"):
        CallableOracle(bad)(torch.zeros(3, 2))
    assert np.isnan(CallableOracle(bad, nonfinite="pass")(torch.zeros(3, 2))[1, 0])
    with pytest.raises(ObjectiveError, match=r"\[3, n_units\]"):
        CallableOracle(lambda s: np.zeros((2, 1)))(torch.zeros(3, 2))
    with pytest.raises(ObjectiveError, match="declares 2"):
        CallableOracle(lambda s: np.zeros((3, 1)), n_units=2)(torch.zeros(3, 2))
    with pytest.raises(ConfigError):
        CallableOracle(3)


def test_noisy_reproducible_mean_and_variance():
    rates = np.array([[2.0, 10.0, 0.5]])
    base = CallableOracle(lambda s: np.repeat(rates, len(s), axis=0), n_units=3)
    x = torch.zeros(4000, 1)
    g1, g2, g3 = (Noisy(base, "gaussian", scale=0.5, seed=s) for s in (1, 1, 2))
    a = g1(x)
    np.testing.assert_array_equal(a, g2(x))
    assert not np.array_equal(a, g3(x))
    np.testing.assert_allclose(a.mean(0), rates[0], atol=0.05)
    np.testing.assert_allclose(a.var(0), 0.25, rtol=0.1)
    p = Noisy(base, "poisson", window=4.0, seed=3)
    pr = p(x)
    np.testing.assert_array_equal(pr, Noisy(base, "poisson", window=4.0, seed=3)(x))
    np.testing.assert_allclose(pr.mean(0), rates[0], rtol=0.05)
    np.testing.assert_allclose(pr.var(0), rates[0] / 4.0, rtol=0.12)
    assert np.all(pr * 4 == np.round(pr * 4))  # counts / window
    k = Noisy(base, "poisson", window=4.0, counts=True, seed=3)(x)
    np.testing.assert_array_equal(k, pr * 4)
    neg = CallableOracle(lambda s: -np.ones((len(s), 1)))
    with pytest.raises(ObjectiveError, match="non-negative"):
        Noisy(neg, "poisson")(x[:2])
    assert Noisy(neg, "poisson", clip_negative=True)(x[:2]).tolist() == [[0.0], [0.0]]
    with pytest.raises(ConfigError, match="window"):
        Noisy(base, "poisson", scale=2.0)
    with pytest.raises(UnknownNameError):
        Noisy(base, "uniform")
    json.dumps(p.describe())


def test_repeat_reduces_and_counts_queries():
    seen = []

    def fn(s):
        seen.append(len(s))
        return s[:, :1].numpy() * 1.0

    base = CallableOracle(fn, n_units=1)
    noisy = Noisy(base, "gaussian", scale=1.0, seed=0)
    rep = Repeat(noisy, times=5)
    assert rep.queries_per_stimulus == 5 and Repeat(rep, 2).queries_per_stimulus == 10
    x = torch.arange(4.0)[:, None]
    r = rep(x)
    assert seen == [20] and r.shape == (4, 1)
    # mean of 5 noisy draws: the same as the manual computation with the same seed
    draws = np.random.default_rng(0).normal(0, 1, size=(20, 1)).reshape(5, 4, 1)
    np.testing.assert_allclose(r, x.numpy() + draws.mean(0), atol=1e-12)
    med = Repeat(Noisy(base, "gaussian", scale=1.0, seed=0), times=5, reduce="median")(x)
    np.testing.assert_allclose(med, x.numpy() + np.median(draws, 0), atol=1e-12)
    with pytest.raises(ConfigError):
        Repeat(base, times=0)
    with pytest.raises(ConfigError, match="wraps a mango Oracle"):
        Repeat(lambda s: s, times=2)


def test_repeat_counts_in_maximize_budget():
    mango = pytest.importorskip("mango")
    if not hasattr(mango, "maximize"):
        pytest.skip("mango.maximize not available yet")
    from mango.spaces import Box

    presented = []

    def fn(s):
        presented.append(len(s))
        return -(s ** 2).sum(1)

    oracle = Repeat(CallableOracle(fn, n_units=1), times=3)
    res = mango.maximize(oracle, space=Box(2, -1, 1), optimizer="random", budget=30, batch_size=2, seed=0)
    assert sum(presented) <= 30 and res.n_queries == sum(presented)
    assert sum(presented) % 3 == 0 and sum(presented) >= 24


def test_oracle_with_generator_in_maximize():
    mango = pytest.importorskip("mango")
    if not hasattr(mango, "maximize"):
        pytest.skip("mango.maximize not available yet")
    from mango.runs.objective import Objective
    from mango.spaces import Box

    net = make_cnn()
    oracle = TorchOracle(net, layer="output", unit=2, input_shape=(1, 16, 16))

    class Blob:
        space = Box(2, 0.0, 1.0)
        device = torch.device("cpu")

        def __call__(self, pts):
            pts = torch.as_tensor(np.asarray(pts), dtype=torch.float32)
            yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
            d = (yy[None] - pts[:, :1, None]) ** 2 + (xx[None] - pts[:, 1:, None]) ** 2
            return torch.exp(-d / 0.02)[:, None]

        def describe(self):
            return {"class": "Blob"}

    gen = Blob()
    res = mango.maximize(oracle, generator=gen, optimizer="random", budget=12, batch_size=4, seed=1)
    vals, info = Objective(oracle, gen).evaluate(res.best_point[None])
    assert res.n_queries == 12
    # float32 network: one stimulus alone and inside a batch of 4 may round differently (BLAS blocking)
    np.testing.assert_allclose(vals[0], res.best_value, rtol=1e-5, atol=1e-9)
    assert info["responses"].shape == (1, 1)


def test_zoo_architectures_named_layers():
    models = pytest.importorskip("mango.zoo.models")
    torch.manual_seed(0)
    cnn = models.CNNDigits().eval()
    x = images(4, shape=(1, 28, 28))
    with torch.no_grad():
        ref = cnn.features.conv2(cnn.features.pool1(cnn.features.relu1(cnn.features.conv1(x))))
    r = TorchOracle(cnn, layer="features.conv2", unit=5, input_shape=(1, 28, 28))(x)
    np.testing.assert_allclose(r[:, 0], ref[:, 5].mean((1, 2)).numpy(), atol=1e-6)
    snet = models.SNNDigits(num_steps=8).eval()
    with torch.no_grad():
        rec = snet.record(x)
    o = SNNOracle(snet, layer="lif2", unit=[0, 31], spatial="center", readout="count")
    assert o.mode == "loop"
    np.testing.assert_array_equal(o(x), rec["lif2"][:, :, [0, 31], 2, 2].sum(0).double().numpy())
