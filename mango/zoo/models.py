"""Architectures of the bundled zoo models (all for 1x28x28 digit images in [0, 1]).

* :class:`SNNDigits` — convolutional spiking network (snntorch Leaky neurons).
* :class:`SJDigits` — convolutional spiking network (SpikingJelly LIF neurons, multi-step).
* :class:`CNNDigits` — ordinary small CNN with named layers.
* :class:`VQVAEDigits` — VQ-VAE, 28x28 -> 7x7 positions x ``num_codes`` codes.
* :class:`GANGenerator` / :class:`GANDiscriminator` — DCGAN on a N(0, 1) latent.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LeakySNN", "SNNDigits", "SJDigits", "CNNDigits", "VQVAE", "VQVAEDigits", "VectorQuantizerEMA", "GANGenerator",
           "GANDiscriminator"]


class LeakySNN(nn.Module):
    """What the zoo's snntorch networks share: a subclass steps its layers in ``_run(x, record_all)`` (constant-
    current input, explicit state from zero) and returns the output layer's ``(spk_rec, mem_rec)``, or with
    ``record_all`` every layer's spike trains and the output membrane."""

    def _run(self, x: torch.Tensor, record_all: bool):  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        """``x`` ``[B, C, H, W]`` in [0,1] -> ``(spk_rec, mem_rec)`` of the output layer, each ``[T, B, 10]``."""
        return self._run(x, record_all=False)

    def record(self, x: torch.Tensor) -> dict:
        """Spike trains ``[T, B, ...]`` of every Leaky layer, keyed by layer name."""
        return self._run(x, record_all=True)[0]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class with the highest output spike count (ties: highest summed membrane)."""
        spk, mem = self.forward(x)
        score = spk.sum(0) + 1e-3 * torch.tanh(mem.sum(0))
        return score.argmax(1)


class SNNDigits(LeakySNN):
    """Convolutional spiking network for 28x28 digits (snntorch).

    ``conv1`` (1->12, 5x5) -> maxpool 2 -> ``lif1`` (Leaky) -> ``conv2`` (12->32, 5x5)
    -> maxpool 2 -> ``lif2`` (Leaky) -> ``fc`` (512->10) -> ``lif3`` (Leaky, output).

    Input coding: constant current — the image is fed at every one of
    ``num_steps`` time steps.  State is EXPLICIT (``init_hidden=False``): every
    call of :meth:`forward` starts from zero membrane potentials, so batches are
    independent and no reset is needed.  ``forward(x)`` returns
    ``(spk_rec, mem_rec)`` of the output layer stacked over time, each
    ``[T, B, 10]``; the class is the neuron with the most spikes.
    :meth:`record` returns the spike trains of every layer
    (``{"lif1": [T,B,12,12,12], "lif2": [T,B,32,4,4], "lif3": [T,B,10]}``).
    Forward hooks on ``lif1``/``lif2``/``lif3`` see ``(spk, mem)`` tuples.
    """

    num_steps: int = 20
    layer_names = ("lif1", "lif2", "lif3")

    def __init__(self, num_steps: int = 20, beta: float = 0.85, slope: float = 25.0):
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        sg = surrogate.fast_sigmoid(slope=slope)
        self.num_steps = int(num_steps)
        self.conv1 = nn.Conv2d(1, 12, 5)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=sg)
        self.conv2 = nn.Conv2d(12, 32, 5)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=sg)
        self.fc = nn.Linear(32 * 4 * 4, 10)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=sg)

    def _run(self, x: torch.Tensor, record_all: bool):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()
        # constant-current input: the first conv of a constant image is constant in time
        cur1 = F.max_pool2d(self.conv1(x), 2)
        spk1_rec, spk2_rec, spk3_rec, mem3_rec = [], [], [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.max_pool2d(self.conv2(spk1), 2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc(spk2.flatten(1))
            spk3, mem3 = self.lif3(cur3, mem3)
            spk3_rec.append(spk3)
            mem3_rec.append(mem3)
            if record_all:
                spk1_rec.append(spk1)
                spk2_rec.append(spk2)
        out = (torch.stack(spk3_rec), torch.stack(mem3_rec))
        if record_all:
            return {"lif1": torch.stack(spk1_rec), "lif2": torch.stack(spk2_rec), "lif3": out[0]}, out[1]
        return out


class SJDigits(nn.Module):
    """Convolutional spiking network for 28x28 digits (SpikingJelly, multi-step mode).

    ``conv1`` (1->16, 5x5) -> ``bn1`` -> ``pool1`` (max 2) -> ``lif1`` -> ``conv2`` (16->32, 5x5)
    -> ``bn2`` -> ``pool2`` -> ``lif2`` -> ``flatten`` -> ``fc`` (512->10) -> ``lif3`` (output).

    Every layer is a SpikingJelly ``activation_based`` module in multi-step mode
    (``step_mode='m'``: tensors ``[T, N, ...]``); the neurons are ``LIFNode``
    (tau = 2, threshold 1, soft reset ``v_reset=None`` as snntorch's default
    ``subtract``, ATan surrogate, ``detach_reset``).  Like the MANGO research
    code's spiking ResNet, :meth:`forward` takes images ``[N, 1, 28, 28]`` and
    repeats them over ``num_steps`` itself (constant-current input); it returns
    the output spikes ``[T, N, 10]``.  The neurons are stateful: call
    ``spikingjelly.activation_based.functional.reset_net(net)`` between
    batches (mango's :class:`~mango.oracles.SNNOracle` does).
    """

    num_steps: int = 10
    layer_names = ("lif1", "lif2", "lif3")

    def __init__(self, num_steps: int = 10, tau: float = 2.0):
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        def lif():
            return neuron.LIFNode(tau=tau, v_reset=None, surrogate_function=surrogate.ATan(), detach_reset=True)

        self.num_steps = int(num_steps)
        self.conv1 = layer.Conv2d(1, 16, 5)
        self.bn1 = layer.BatchNorm2d(16)
        self.pool1 = layer.MaxPool2d(2)
        self.lif1 = lif()
        self.conv2 = layer.Conv2d(16, 32, 5)
        self.bn2 = layer.BatchNorm2d(32)
        self.pool2 = layer.MaxPool2d(2)
        self.lif2 = lif()
        self.flatten = layer.Flatten()
        self.fc = layer.Linear(32 * 4 * 4, 10)
        self.lif3 = lif()
        functional.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, 1, 28, 28]`` in [0, 1] -> output spikes ``[T, N, 10]``."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = x.unsqueeze(0).repeat(self.num_steps, 1, 1, 1, 1)
        h = self.lif1(self.pool1(self.bn1(self.conv1(h))))
        h = self.lif2(self.pool2(self.bn2(self.conv2(h))))
        return self.lif3(self.fc(self.flatten(h)))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class with the most output spikes (ties: the highest summed membrane); resets the net."""
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        self.lif3.store_v_seq = True
        try:
            spk = self.forward(x)
            score = spk.sum(0) + 1e-3 * torch.tanh(self.lif3.v_seq.sum(0))
        finally:
            self.lif3.store_v_seq = False
            functional.reset_net(self)
        return score.argmax(1)


class CNNDigits(nn.Module):
    """Small ordinary CNN for 28x28 digits; returns logits ``[B, 10]``.

    Named layers (targets for forward hooks): ``features.conv1``, ``features.relu1``,
    ``features.pool1``, ``features.conv2``, ``features.relu2``, ``features.pool2``,
    ``features.conv3``, ``features.relu3``, ``features.pool3``, ``classifier.fc1``,
    ``classifier.relu4``, ``classifier.fc2`` (logits).
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3, padding=1)), ("relu3", nn.ReLU()), ("pool3", nn.MaxPool2d(2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()), ("dropout", nn.Dropout(0.3)),
            ("fc1", nn.Linear(64 * 3 * 3, 128)), ("relu4", nn.ReLU()),
            ("fc2", nn.Linear(128, 10)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))


class VectorQuantizerEMA(nn.Module):
    """Nearest-neighbour vector quantizer with an EMA-updated codebook.

    ``codebook`` buffer ``[K, D]``.  Training updates it by exponential moving
    averages and restarts dead codes on random encoder outputs.
    """

    def __init__(self, num_codes: int = 128, dim: int = 16, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.num_codes, self.dim, self.decay, self.eps = int(num_codes), int(dim), decay, eps
        self.register_buffer("codebook", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("usage", torch.ones(num_codes))  # fast EMA of per-batch use (dead-code test)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Code indices of vectors ``z [..., D]`` (nearest in Euclidean distance)."""
        flat = z.reshape(-1, self.dim)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(1)[None, :])
        return d.argmin(1).reshape(z.shape[:-1])

    def forward(self, z_e: torch.Tensor):
        """``z_e [B, D, h, w]`` -> ``(z_q straight-through, commitment loss, codes [B, h, w])``."""
        z = z_e.permute(0, 2, 3, 1).contiguous()
        codes = self.nearest(z)
        z_q = self.codebook[codes]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes.reshape(-1), self.num_codes).type_as(z)
                flat = z.reshape(-1, self.dim)
                self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
                n = self.ema_count.sum()
                count = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
                self.codebook.copy_(self.ema_sum / count[:, None])
                self.usage.mul_(0.9).add_((onehot.sum(0) > 0).type_as(z), alpha=0.1)
                dead = self.usage < 0.05
                if dead.any():  # restart dead codes on random encoder outputs
                    idx = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
                    self.codebook[dead] = flat[idx]
                    self.ema_sum[dead] = flat[idx]
                    self.ema_count[dead] = 1.0
                    self.usage[dead] = 1.0
        loss = F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, codes


class VQVAE(nn.Module):
    """What every zoo VQ-VAE does with its ``encoder``, ``quantizer`` (a :class:`VectorQuantizerEMA`) and
    ``decoder``, which a subclass builds; ``latent_shape`` is its grid of latent positions.
    :class:`mango.generators.VQVAEGenerator` wraps any of them."""

    latent_shape: tuple[int, int]

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors ``[K, D]``."""
        return self.quantizer.codebook

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def quantize(self, z_e: torch.Tensor) -> torch.Tensor:
        return self.quantizer.nearest(z_e.permute(0, 2, 3, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        codes = codes.long().reshape(codes.shape[0], *self.latent_shape)
        return self.codebook[codes].permute(0, 3, 1, 2).contiguous()

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode(self.codes_to_latent(codes))

    def forward(self, x: torch.Tensor):
        z_q, loss, codes = self.quantizer(self.encode(x))
        return self.decode(z_q), loss, codes


class VQVAEDigits(VQVAE):
    """VQ-VAE for 28x28 digits: 7x7 latent positions, each one of ``num_codes`` codes.

    ``encode(x) -> z_e [B, D, 7, 7]``; ``quantize(z_e) -> codes [B, 7, 7]``;
    ``decode(z [B, D, 7, 7]) -> images [B, 1, 28, 28]`` in [0, 1];
    ``decode_codes(codes [B, 49] or [B, 7, 7])``; ``forward(x) -> (recon, vq_loss, codes)``.
    """

    latent_shape = (7, 7)

    def __init__(self, num_codes: int = 128, dim: int = 16, hidden: int = 64):
        super().__init__()
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden // 2, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )
        self.quantizer = VectorQuantizerEMA(num_codes, dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden // 2, 1, 4, stride=2, padding=1),
        )


class GANGenerator(nn.Module):
    """DCGAN generator: latent ``z [B, latent_dim]`` ~ N(0, 1) -> images ``[B,1,28,28]`` in [0, 1]."""

    def __init__(self, latent_dim: int = 32, width: int = 64):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2 * width * 7 * 7), nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
        )
        self._width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 2 * self._width, 7, 7)
        return torch.sigmoid(self.net(h))


class GANDiscriminator(nn.Module):
    """DCGAN discriminator (training only; not shipped)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
