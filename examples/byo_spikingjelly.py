"""Bring your own SpikingJelly network (multi-step, repeating the image over T itself, as the MANGO
research code's spiking ResNet does).

    python examples/byo_spikingjelly.py

mango finds the LIF neurons (any ``neuron.BaseNode``), calls ``functional.reset_net`` before and after
every batch, reads the target layer's spikes ``[T, N, ...]`` and computes the stateless stem (conv + batch
norm) for one time step instead of T.  Untrained weights here; use your own trained ones.
"""

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

import mango
from mango.generators import ModuleGenerator
from mango.oracles import SNNOracle


class SmallSpikingNet(nn.Module):
    def __init__(self, T=16):
        super().__init__()
        self.T = T  # the model's own number of steps: SNNOracle picks mode="loop" and reads T from here

        def lif():
            return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)

        self.conv1, self.bn1, self.sn1 = layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8), lif()
        self.pool = layer.MaxPool2d(2)
        self.fc = layer.Linear(8 * 8 * 8, 4)
        self.sn2 = lif()
        functional.set_step_mode(self, "m")

    def forward(self, x):  # [N, 1, 16, 16] -> output spikes [T, N, 4]
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.sn2(self.fc(self.pool(self.sn1(self.bn1(self.conv1(x)))).flatten(2)))


torch.manual_seed(0)
net = SmallSpikingNet()
with torch.no_grad():
    net.conv1.weight.mul_(4.0)
    net.fc.weight.mul_(8.0)
net.eval()  # required: a SpikingJelly net in training mode is an error


class Blobs(nn.Module):
    """latent (x, y, sigma, contrast) x 2 blobs -> a 16x16 image in [0, 1]."""

    def forward(self, z):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
        img = 0
        for k in range(2):
            x, y, s, c = (z[:, 4 * k + i, None, None] for i in range(4))
            img = img + c * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.05 + 0.2 * s) ** 2))
        return img.clamp(0, 1)[:, None]


gen = ModuleGenerator(Blobs(), mango.Box(8, 0.0, 1.0))
for layer_name, unit in (("output", 2), ("sn1", 5)):  # the output neuron 2, a hidden LIF channel (mean over space)
    oracle = SNNOracle(net, layer=layer_name, unit=unit, readout="rate")
    for opt in ("random", "cma"):
        res = mango.maximize(oracle, generator=gen, optimizer=opt, budget=300, seed=0, progress=False)
        print(f"{oracle.layer_name}:{unit} ({oracle.mode} mode, T={oracle.steps_seen}) {opt:>6}: "
              f"best rate {res.best_value:.4f} at query {res.best_query}")
