"""SNNOracle on real SpikingJelly networks: mango's readouts against hand-written loops that call reset_net.

Three kinds of net, all built here from SpikingJelly layers: a single-step ``nn.Sequential`` (mango steps it),
the same net in multi-step mode (mango passes ``[T, N, ...]``), and a MANGO-style net whose ``forward``
repeats the image over ``T`` itself (with batch norm and a residual block).  Counts must be exact,
membranes allclose, for an output and a hidden LIF layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from mango.errors import ConfigError, UnknownNameError
from mango.oracles import SNNOracle, reset_snn, spiking_layers, stateless_prefix

torch.set_num_threads(1)

T = 12


def lif(**kw):
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, **kw)


def make_seq(step_mode="s", soft=False):
    """conv-bn-pool-LIF, conv-pool-LIF, flatten-linear-LIF: an nn.Sequential of SpikingJelly layers."""
    torch.manual_seed(1)
    kw = {"v_reset": None} if soft else {}
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3), layer.BatchNorm2d(8), layer.MaxPool2d(2), lif(**kw),
        layer.Conv2d(8, 8, 3), layer.MaxPool2d(2), lif(**kw),
        layer.Flatten(), layer.Linear(8 * 2 * 2, 6), lif(**kw),
    )
    with torch.no_grad():  # non-trivial batch-norm statistics and weights strong enough to spike
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(4.0)
        net[4].bias.uniform_(0.3, 1.2)
        net[8].bias.uniform_(0.5, 1.5)
    functional.set_step_mode(net, step_mode)
    return net.eval()


class Block(nn.Module):
    """A spiking residual block (conv-bn-LIF-conv-bn + identity, LIF), multi-step."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1, self.sn1 = layer.Conv2d(c, c, 3, padding=1, bias=False), layer.BatchNorm2d(c), lif()
        self.conv2, self.bn2, self.sn2 = layer.Conv2d(c, c, 3, padding=1, bias=False), layer.BatchNorm2d(c), lif()

    def forward(self, x):
        return self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))) + x)


class RepeatNet(nn.Module):
    """MANGO-style: forward takes [N, C, H, W] and repeats it over T itself (multi-step inside)."""

    def __init__(self, T=T):
        super().__init__()
        torch.manual_seed(3)
        self.T = T
        self.conv1 = layer.Conv2d(1, 8, 3, stride=2, padding=1, bias=False)
        self.bn1, self.sn1 = layer.BatchNorm2d(8), lif()
        self.layer1 = nn.Sequential(Block(8))
        self.pool = layer.AdaptiveAvgPool2d((2, 2))
        self.fc = layer.Linear(32, 5)
        self.sn_out = lif()
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(2.0)
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.bias.uniform_(0.2, 1.2)
            self.fc.weight.mul_(4.0)
            self.fc.bias.uniform_(0.5, 1.5)
        functional.set_step_mode(self, "m")

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.pool(self.layer1(self.sn1(self.bn1(self.conv1(x)))))
        return self.sn_out(self.fc(x.flatten(2)))


def images(n, seed=0, shape=(1, 16, 16)):
    return torch.rand((n,) + shape, generator=torch.Generator().manual_seed(seed))


def reduce(t, units):
    """[n, C, H, W] -> channel means [n, len(units)]; [n, F] -> [n, len(units)]."""
    t = t[:, units].double()
    return t if t.dim() == 2 else t.flatten(2).mean(2)


# ------------------------------------------------------------- hand-written loops (the references)
def single_step_loop(net, x, steps, index, units, encode=None):
    """reset_net, then step the single-step Sequential `steps` times: spike counts and summed .v of net[index]."""
    spk = mem = 0
    with torch.no_grad():
        functional.reset_net(net)
        for _ in range(steps):
            h = x if encode is None else encode(x)
            for i, m in enumerate(net):
                h = m(h)
                if i == index:
                    spk = spk + reduce(h, units)
                    mem = mem + reduce(m.v, units)
                    break
        functional.reset_net(net)
    return spk, mem


def multi_step_run(net, x_seq_or_x, target, units):
    """reset_net, one multi-step forward with v_seq recorded at `target`: spike counts and summed v over T."""
    out = {}
    h = target.register_forward_hook(lambda m, i, o: out.update(spk=o))
    target.store_v_seq = True
    try:
        with torch.no_grad():
            functional.reset_net(net)
            net(x_seq_or_x)
            v_seq = target.v_seq
            functional.reset_net(net)
    finally:
        h.remove()
        target.store_v_seq = False
    steps = out["spk"].shape[0]
    spk = sum(reduce(out["spk"][t], units) for t in range(steps))
    mem = sum(reduce(v_seq[t], units) for t in range(steps))
    return spk, mem, steps


# ------------------------------------------------------------- single step
@pytest.mark.parametrize("index,units", [(9, [0, 2, 5]), (6, [0, 3, 7])])  # output LIF, hidden LIF
@pytest.mark.parametrize("shortcut", [True, False])
def test_single_step_equals_hand_written_loop(index, units, shortcut):
    net, x = make_seq("s"), images(6)
    spk, mem = single_step_loop(net, x, T, index, units)
    assert spk.max() > 0  # the layer does spike
    kw = dict(layer=str(index), unit=units, num_steps=T, shortcut=shortcut)
    cnt = SNNOracle(net, readout="count", **kw)
    assert cnt.framework == "spikingjelly" and cnt.mode == "step"
    assert cnt.prefix == (3 if shortcut else 0)  # conv, batch norm (eval), pool
    np.testing.assert_array_equal(cnt(x), spk.numpy())
    np.testing.assert_array_equal(SNNOracle(net, readout="rate", **kw)(x), (spk / T).numpy())
    np.testing.assert_allclose(SNNOracle(net, readout="membrane", **kw)(x), (mem / T).numpy(), rtol=1e-6, atol=1e-6)


def test_default_layer_is_last_neuron_and_reset_between_batches():
    net = make_seq("s")
    assert [n for n, _ in spiking_layers(net)] == ["3", "6", "9"]
    o = SNNOracle(net, unit=list(range(6)), num_steps=T, readout="count")
    assert o.layer_name == "9"
    x1, x2 = images(4, seed=1), images(4, seed=2)
    fresh = o(x2)
    o(x1)
    with torch.no_grad():  # someone leaves state behind
        net(x1 * 5)
    np.testing.assert_array_equal(o(x2), fresh)
    np.testing.assert_array_equal(o(x2[:2]), fresh[:2])
    chunked = SNNOracle(net, unit=list(range(6)), num_steps=T, readout="count", max_batch=3)
    np.testing.assert_array_equal(chunked(x2), fresh)
    assert isinstance(net[9].v, float)  # the oracle leaves the net reset


# ------------------------------------------------------------- multi-step, mango builds [T, N, ...]
@pytest.mark.parametrize("index,units", [(9, [0, 2, 5]), (6, [0, 3, 7])])
def test_multi_step_equals_hand_written_run(index, units):
    net, x = make_seq("m"), images(6)
    x_seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    spk, mem, steps = multi_step_run(net, x_seq, net[index], units)
    assert steps == T and spk.max() > 0
    kw = dict(layer=str(index), unit=units, num_steps=T)
    cnt = SNNOracle(net, readout="count", **kw)
    assert cnt.mode == "multistep"
    first, again = cnt(x), cnt(x)  # first batch: full forward + prefix found; then the broadcast prefix
    assert [type(m).__name__ for m in cnt.prefix_modules] == ["Conv2d", "BatchNorm2d", "MaxPool2d"]
    np.testing.assert_array_equal(first, spk.numpy())
    np.testing.assert_array_equal(again, spk.numpy())
    np.testing.assert_array_equal(SNNOracle(net, readout="count", shortcut=False, **kw)(x), spk.numpy())
    memo = SNNOracle(net, readout="membrane", **kw)
    for _ in range(2):
        np.testing.assert_allclose(memo(x), (mem / T).numpy(), rtol=1e-6, atol=1e-6)
    assert net[index].store_v_seq is False  # mango switched v_seq recording back off
    # the same net stepped in single-step mode gives the same counts and membranes
    single = make_seq("s")
    s_spk, s_mem = single_step_loop(single, x, T, index, units)
    np.testing.assert_array_equal(s_spk.numpy(), spk.numpy())
    np.testing.assert_allclose(s_mem.numpy(), mem.numpy(), rtol=1e-5, atol=1e-5)


def test_multi_step_soft_reset_membrane_and_rate():
    net, x = make_seq("m", soft=True), images(5, seed=4)
    spk, mem, _ = multi_step_run(net, x.unsqueeze(0).repeat(T, 1, 1, 1, 1), net[9], [1, 4])
    np.testing.assert_array_equal(SNNOracle(net, layer="9", unit=[1, 4], num_steps=T)(x), (spk / T).numpy())
    np.testing.assert_allclose(SNNOracle(net, layer="9", unit=[1, 4], num_steps=T, readout="membrane")(x),
                               (mem / T).numpy(), rtol=1e-6, atol=1e-6)


def test_multi_step_stops_after_target_and_counts_time_major_layers():
    net, x = make_seq("m"), images(3)
    calls = []
    h = net[8].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        o = SNNOracle(net, layer="6", unit=0, num_steps=T)
        o(x)
        assert len(calls) == 1  # first batch: full pass (counts the target's calls, finds the prefix)
        o(x)
        o(x)
        assert len(calls) == 1  # then each pass ends after the target layer
    finally:
        h.remove()
    # a non-spiking multi-step layer: rate = mean of its output over the T steps
    lin = SNNOracle(net, layer="8", unit=[0, 1], num_steps=T)
    out = {}
    hh = net[8].register_forward_hook(lambda m, i, o: out.update(y=o))
    try:
        with torch.no_grad():
            functional.reset_net(net)
            net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
            functional.reset_net(net)
    finally:
        hh.remove()
    np.testing.assert_allclose(lin(x), out["y"][:, :, [0, 1]].double().mean(0).numpy(), atol=1e-6)


# ------------------------------------------------------------- forward repeats over T itself (MANGO's ResNet)
@pytest.mark.parametrize("name,units", [("sn_out", [0, 1, 4]), ("layer1.0.sn1", [0, 1, 2])])
def test_repeat_net_loop_mode_equals_hand_written_run(name, units):
    net, x = RepeatNet().eval(), images(6, seed=5)
    target = dict(net.named_modules())[name]
    spk, mem, steps = multi_step_run(net, x, target, units)
    assert steps == T and spk.max() > 0
    cnt = SNNOracle(net, layer=name, unit=units, readout="count")
    assert cnt.mode == "loop" and cnt.num_steps == T  # the model's own T
    for _ in range(3):
        np.testing.assert_array_equal(cnt(x), spk.numpy())
    assert cnt.steps_seen == T
    assert [type(m).__name__ for m in cnt.prefix_modules] == ["Conv2d", "BatchNorm2d"]
    memo = SNNOracle(net, layer=name, unit=units, readout="membrane")
    for _ in range(2):
        np.testing.assert_allclose(memo(x), (mem / T).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(SNNOracle(net, layer=name, unit=units, readout="rate", shortcut=False)(x),
                                  (spk / T).numpy())


def test_repeat_net_spatial_center_and_output_default():
    net, x = RepeatNet().eval(), images(4, seed=6)
    o = SNNOracle(net, layer="sn1", unit=[2, 7], spatial="center", readout="count")
    out = {}
    h = net.sn1.register_forward_hook(lambda m, i, o: out.update(s=o))
    try:
        with torch.no_grad():
            functional.reset_net(net)
            net(x)
            functional.reset_net(net)
    finally:
        h.remove()
    np.testing.assert_array_equal(o(x), out["s"][:, :, [2, 7], 4, 4].sum(0).double().numpy())
    assert SNNOracle(net).layer_name == "sn_out"


# ------------------------------------------------------------- Poisson encoding
def test_poisson_step_and_multistep_equal_hand_written_with_same_generator():
    x = images(4, seed=7)
    net = make_seq("s")
    a = SNNOracle(net, layer="6", unit=[0, 1, 2], num_steps=T, encoding="poisson", seed=11, readout="count")
    assert a.prefix == 0
    g = torch.Generator().manual_seed(11)
    spk, _ = single_step_loop(net, x, T, 6, [0, 1, 2], encode=lambda v: torch.bernoulli(v, generator=g))
    np.testing.assert_array_equal(a(x), spk.numpy())
    assert not np.array_equal(a(x), spk.numpy()) or spk.sum() == 0  # the stream goes on
    mnet = make_seq("m")
    b = SNNOracle(mnet, layer="9", unit=[0, 5], num_steps=T, encoding="poisson", seed=11, readout="count")
    g = torch.Generator().manual_seed(11)
    x_seq = torch.stack([torch.bernoulli(x, generator=g) for _ in range(T)])
    spk, _, _ = multi_step_run(mnet, x_seq, mnet[9], [0, 5])
    np.testing.assert_array_equal(b(x), spk.numpy())
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        b(x * 3)


# ------------------------------------------------------------- errors
def test_errors_missing_layer_training_mode_step_mode():
    net = make_seq("s")
    with pytest.raises(UnknownNameError, match="Did you mean 'sn1'"):
        SNNOracle(RepeatNet().eval(), layer="sn_1")
    with pytest.raises(UnknownNameError, match="Valid layer names: 0, 1,"):
        SNNOracle(net, layer="10", num_steps=3)
    net.train()
    with pytest.raises(ConfigError, match=r"training mode.*net\.eval\(\)"):
        SNNOracle(net, num_steps=3)
    net.eval()
    o = SNNOracle(net, num_steps=3)
    net[1].train()  # switched back to training after construction
    with pytest.raises(ConfigError, match="training mode"):
        o(images(2))
    net.eval()
    with pytest.raises(ConfigError, match="multi-step mode"):
        SNNOracle(make_seq("m"), mode="step", num_steps=3)
    with pytest.raises(ConfigError, match="single-step mode"):
        SNNOracle(make_seq("s"), mode="multistep", num_steps=3)
    with pytest.raises(ConfigError, match="mode='multistep' is for SpikingJelly"):
        SNNOracle(nn.Sequential(nn.Conv2d(1, 2, 3), snn_leaky()).eval(), mode="multistep", num_steps=3)
    # a multi-step net fed [N, C, H, W] (mode='loop' although forward does not repeat): SpikingJelly's error, explained
    with pytest.raises(ConfigError, match=r"step mode.*mode='multistep'"):
        SNNOracle(make_seq("m"), mode="loop", num_steps=3)(images(2))
    # a repeating net fed [T, N, ...] by mango
    with pytest.raises(ConfigError, match="mode='loop'"):
        SNNOracle(RepeatNet().eval(), mode="multistep", num_steps=3)(images(2))
    # a flat multi-step net silently takes [N, F] as [T=N, F]: caught by the layout check
    flat = nn.Sequential(layer.Linear(4, 3), lif())
    functional.set_step_mode(flat, "m")
    with pytest.raises(ConfigError, match=r"step mode does not match the input.*\[T, N=2, \.\.\.\]"):
        SNNOracle(flat.eval(), mode="loop", num_steps=3)(torch.rand(2, 4))
    with pytest.raises(ConfigError, match="membrane"):
        SNNOracle(net, layer="0", readout="membrane", num_steps=3)


def snn_leaky():
    import snntorch as snn

    return snn.Leaky(beta=0.5, init_hidden=True)


def test_helpers_know_spikingjelly():
    net = make_seq("s")
    assert stateless_prefix(net) == 3 and stateless_prefix(net, stop_at=net[1]) == 1
    assert stateless_prefix(make_seq("m")) == 0  # multi-step layers are not stepped one step at a time
    with torch.no_grad():
        net(images(2))
    assert not isinstance(net[3].v, float)
    reset_snn(net)
    assert isinstance(net[3].v, float)
