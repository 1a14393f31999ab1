"""Bring your own snntorch network and your own generator.

    python examples/byo_snntorch.py

A user-defined spiking network (stateful, ``init_hidden=True`` layers: mango steps it through time and
resets it before every batch) and a user-defined generator (a torch module mapping an 8-dimensional
latent to 16x16 blobs) plug into ``mango.maximize`` with no mango-specific code in either.
Untrained weights here; use your own trained ones.
"""

import snntorch as snn
import torch
from torch import nn

import mango
from mango.generators import ModuleGenerator
from mango.oracles import SNNOracle

torch.manual_seed(0)
beta = 0.9
net = nn.Sequential(  # one time step per call; mango feeds the same image every step
    nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
    nn.Flatten(), nn.Linear(8 * 8 * 8, 4), snn.Leaky(beta=beta, init_hidden=True, output=True),
).eval()


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
oracle = SNNOracle(net, layer="output", unit=2, num_steps=25, readout="membrane")
for opt in ("random", "cma"):
    res = mango.maximize(oracle, generator=gen, optimizer=opt, budget=400, seed=0, progress=False)
    print(f"{opt:>6}: best membrane {res.best_value:.4f} at query {res.best_query}")
