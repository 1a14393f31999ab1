"""Architectures of the colour zoo models (3x32x32 images in [0, 1], CIFAR-size).

* :class:`SNNColor` — convolutional spiking network (snntorch Leaky neurons), T = 64 steps,
  two convolutional and two linear spiking layers, trained with a firing-rate penalty so that
  its output neurons do not saturate on natural images.
* :class:`VQVAEColor` — VQ-VAE with the paper's latent: 8x8 positions x 512 codes, 64-d
  embedding (a 4,096-d embedding space).
* :class:`SNGANGenerator` / :class:`SNGANDiscriminator` — SN-GAN-style generator (128-d
  N(0, 1) latent -> 3x32x32) and its spectrally normalised discriminator (training only).

Plus :func:`heldout_color`: the fixed held-out images shipped with the zoo
(``weights/heldout-color.pt``), usable at run time as natural reference images.
The training data builder is :mod:`mango.zoo.color_data`; training is :mod:`mango.zoo.train_color`.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import VQVAE, LeakySNN, VectorQuantizerEMA

__all__ = ["SNNColor", "VQVAEColor", "SNGANGenerator", "SNGANDiscriminator", "heldout_color", "HELDOUT_PATH"]

HELDOUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "heldout-color.pt")


def heldout_color(kind: str = "all", n: int | None = None):
    """The shipped held-out colour images ``(images float [n,3,32,32] in [0,1], labels int64 [n])``.

    ``kind``: ``"digits"`` — held-out digits composited in colour onto held-out regions of the
    photographs (labels 0..9); ``"photos"`` — plain 32x32 crops of those regions (label -1);
    ``"all"`` — both (digits first).  Loaded with ``torch.load(..., weights_only=True)``; no
    training-time package is needed.  ``n``: the first ``n`` of the selection.
    """
    d = torch.load(HELDOUT_PATH, map_location="cpu", weights_only=True)
    x, y = d["images"], d["labels"]
    if kind == "digits":
        keep = y >= 0
    elif kind == "photos":
        keep = y < 0
    elif kind == "all":
        keep = torch.ones_like(y, dtype=torch.bool)
    else:
        raise ValueError(f"kind must be 'all', 'digits' or 'photos', got {kind!r}")
    x, y = x[keep], y[keep]
    if n is not None:
        x, y = x[:n], y[:n]
    return x.float() / 255.0, y.clone()


class SNNColor(LeakySNN):
    """Convolutional spiking network for 3x32x32 colour images (snntorch), T = 64 steps.

    ``conv1`` (3->16, 5x5, pad 2) -> maxpool 2 -> ``lif1`` [16,16,16] -> maxpool 2 (of the spikes)
    -> ``conv2`` (16->32, 3x3, pad 1) -> ``lif2`` [32,8,8]
    -> ``fc1`` (2048->128) -> ``lif3`` [128] -> ``fc2`` (128->10) -> ``lif4`` (output) [10].

    Same conventions as :class:`mango.zoo.models.SNNDigits`: constant-current input (the image
    is fed at every one of ``num_steps`` steps), EXPLICIT state (every :meth:`forward` starts
    from zero membrane), ``forward(x) -> (spk_rec, mem_rec)`` of the output layer, each
    ``[T, B, 10]``; :meth:`record` returns every layer's spike trains; forward hooks on the
    ``lif*`` layers see ``(spk, mem)`` tuples; the class is the output neuron with the most spikes.
    """

    num_steps: int = 64
    layer_names = ("lif1", "lif2", "lif3", "lif4")

    def __init__(self, num_steps: int = 64, beta: float = 0.9, slope: float = 25.0):
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        sg = surrogate.fast_sigmoid(slope=slope)
        self.num_steps = int(num_steps)
        self.conv1 = nn.Conv2d(3, 16, 5, padding=2)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=sg)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=sg)
        self.fc1 = nn.Linear(32 * 8 * 8, 128)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=sg)
        self.fc2 = nn.Linear(128, 10)
        self.lif4 = snn.Leaky(beta=beta, spike_grad=sg)

    def _run(self, x: torch.Tensor, record_all: bool):
        if x.dim() == 3:
            x = x.unsqueeze(0)
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        mem3, mem4 = self.lif3.init_leaky(), self.lif4.init_leaky()
        cur1 = F.max_pool2d(self.conv1(x), 2)  # constant in time (constant-current input)
        recs = {k: [] for k in self.layer_names}
        mem4_rec = []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(cur1, mem1)
            spk2, mem2 = self.lif2(self.conv2(F.max_pool2d(spk1, 2)), mem2)
            spk3, mem3 = self.lif3(self.fc1(spk2.flatten(1)), mem3)
            spk4, mem4 = self.lif4(self.fc2(spk3), mem4)
            recs["lif4"].append(spk4)
            mem4_rec.append(mem4)
            if record_all:
                recs["lif1"].append(spk1)
                recs["lif2"].append(spk2)
                recs["lif3"].append(spk3)
        out = (torch.stack(recs["lif4"]), torch.stack(mem4_rec))
        if record_all:
            return {k: torch.stack(v) for k, v in recs.items()}, out[1]
        return out


class _Res(nn.Module):
    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, ch, 1))

    def forward(self, x):
        return x + self.block(x)


class VQVAEColor(VQVAE):
    """VQ-VAE for 3x32x32 colour images: 8x8 latent positions, 512 codes, embedding dim 64.

    Same interface as :class:`mango.zoo.models.VQVAEDigits` (so
    :class:`mango.generators.VQVAEGenerator` wraps it): ``encode(x) -> z_e [B, 64, 8, 8]``;
    ``quantize(z_e) -> codes [B, 8, 8]``; ``decode(z [B, 64, 8, 8]) -> images [B, 3, 32, 32]``
    in [0, 1]; ``decode_codes(codes [B, 64] or [B, 8, 8])``; ``forward(x) -> (recon, vq_loss, codes)``;
    ``codebook`` ``[512, 64]``.
    """

    latent_shape = (8, 8)

    def __init__(self, num_codes: int = 512, dim: int = 64, hidden: int = 96):
        super().__init__()
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden // 2, hidden, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            _Res(hidden, hidden // 2), nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )
        self.quantizer = VectorQuantizerEMA(num_codes, dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1),
            _Res(hidden, hidden // 2), nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(hidden // 2, 3, 4, stride=2, padding=1),
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # channels-last activations take oneDNN's fast convolution path on CPU: 1,000 images decode in about half
        # the time (the images differ from the default layout's in the last bits, at most ~1e-6)
        x = self.decoder(z.contiguous(memory_format=torch.channels_last))
        return torch.sigmoid(x).contiguous()


class SNGANGenerator(nn.Module):
    """SN-GAN-style generator: ``z [B, 128]`` ~ N(0, 1) -> images ``[B, 3, 32, 32]`` in [0, 1].

    fc -> ``4 x 4 x (4w)`` -> three (nearest upsample x2 -> conv 3x3 -> BN -> ReLU) stages
    (8, 16, 32 px) -> conv 3x3 to RGB -> sigmoid.  (The original SN-GAN uses residual
    blocks and tanh; this is the small "standard CNN" variant, sigmoid for [0, 1] output.)
    """

    def __init__(self, latent_dim: int = 128, width: int = 64):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self._width = int(width)
        w = self._width
        self.fc = nn.Linear(latent_dim, 4 * w * 4 * 4)

        def up(cin, cout):
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        self.net = nn.Sequential(
            nn.BatchNorm2d(4 * w), nn.ReLU(),
            *up(4 * w, 2 * w), *up(2 * w, w), *up(w, w),
            nn.Conv2d(w, 3, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], 4 * self._width, 4, 4)
        return torch.sigmoid(self.net(h))


class SNGANDiscriminator(nn.Module):
    """SN-GAN discriminator (spectral norm on every layer; training only, not shipped)."""

    def __init__(self, width: int = 64):
        super().__init__()
        sn = nn.utils.spectral_norm
        w = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, w, 3, padding=1)), nn.LeakyReLU(0.1),
            sn(nn.Conv2d(w, w, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),        # 16
            sn(nn.Conv2d(w, 2 * w, 3, padding=1)), nn.LeakyReLU(0.1),
            sn(nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),  # 8
            sn(nn.Conv2d(2 * w, 4 * w, 3, padding=1)), nn.LeakyReLU(0.1),
            sn(nn.Conv2d(4 * w, 4 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),  # 4
            nn.Flatten(), sn(nn.Linear(4 * w * 4 * 4, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).squeeze(1)
