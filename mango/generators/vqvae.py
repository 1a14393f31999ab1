"""VQ-VAE generator: a discrete codebook latent, and a continuous view of the same latent."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..spaces import Box, Codebook
from .base import Generator, as_images

__all__ = ["VQVAEGenerator"]


class VQVAEGenerator(Generator):
    """Images from a VQ-VAE decoder.

    ``model`` needs ``codebook`` (``[K, D]`` tensor), ``latent_shape`` (``(h, w)``),
    ``decode(z [n, D, h, w]) -> images``, and for :meth:`encode` also
    ``encode(images) -> z_e [n, D, h, w]`` (e.g. :class:`mango.zoo.models.VQVAEDigits`;
    for a zoo model use ``mango.zoo.load_generator("vqvae-digits")``).

    * ``view="codes"``: space ``Codebook((h, w), K)``; a point is one code per position.
    * ``view="embedding"``: space ``Box(h*w*D, low, high)``, the decoder's input laid out
      position-major (point ``.reshape(h, w, D)``); bounds are the codebook's per-dimension
      min/max widened by ``margin`` of the range.  Points are decoded directly, or snapped to
      the nearest code at every position first when ``snap=True`` (then every image is one the
      codes view can make too).  Continuous optimizers (CMA-ES, ...) search this view.
    """

    name = "vqvae"

    def __init__(self, model, view: str = "codes", snap: bool = False, device=None, transform=None,
                 margin: float = 0.1):
        if isinstance(model, str):
            raise ConfigError(
                f"VQVAEGenerator needs a model, got the name {model!r}; for a zoo model use "
                f"mango.zoo.load_generator({model!r}) (or pass mango.zoo.load({model!r}))."
            )
        for attr in ("codebook", "decode"):
            if not hasattr(model, attr):
                raise ConfigError(
                    f"VQVAEGenerator needs a model with .codebook [K, D] and .decode(z); "
                    f"{type(model).__name__} has no .{attr}. Use mango.zoo.load('vqvae-digits') or wrap "
                    "your decoder with ModuleGenerator."
                )
        if view not in ("codes", "embedding"):
            raise ConfigError(f"VQVAEGenerator view must be 'codes' or 'embedding', got {view!r}.")
        self.model = self._adopt(model, device)
        self.view, self.snap, self.margin = view, bool(snap), float(margin)
        self.transform = transform
        cb = self.codebook
        self.num_codes, self.embedding_dim = int(cb.shape[0]), int(cb.shape[1])
        self.latent_shape = tuple(int(s) for s in getattr(model, "latent_shape", (7, 7)))
        self.space = (Codebook(self.latent_shape, self.num_codes) if view == "codes"
                      else self.embedding_space())
        self.output_shape = self._probe_shape()

    @property
    def codebook(self) -> torch.Tensor:
        """Code vectors ``[K, D]`` on the generator's device."""
        return self.model.codebook.detach()

    @property
    def positions(self) -> int:
        return int(np.prod(self.latent_shape))

    def embedding_space(self) -> Box:
        """The continuous view's Box: ``h*w*D`` dims, codebook min/max per embedding dim, widened."""
        cb = self.codebook.float().cpu().numpy()
        lo, hi = cb.min(0), cb.max(0)
        pad = self.margin * np.maximum(hi - lo, 1e-6)
        return Box(self.positions * self.embedding_dim, np.tile(lo - pad, self.positions),
                   np.tile(hi + pad, self.positions))

    # -- latent conversions --------------------------------------------------
    def _latent_from_codes(self, codes: np.ndarray) -> torch.Tensor:
        c = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        z = self.codebook[c.reshape(-1, *self.latent_shape)]  # [n, h, w, D]
        return z.permute(0, 3, 1, 2).contiguous()

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        cb = self.codebook.float()
        flat = z.reshape(-1, cb.shape[1]).float()
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)[None]
        return d.argmin(1).reshape(z.shape[:-1])

    def codes_to_embedding(self, codes) -> np.ndarray:
        """Points of the codes view -> the equal points of the embedding view ``[n, h*w*D]``."""
        codes = Codebook(self.latent_shape, self.num_codes).validate(codes, "codes")
        z = self._latent_from_codes(codes).permute(0, 2, 3, 1)
        return z.reshape(len(codes), -1).cpu().numpy().astype(float)

    def embedding_to_codes(self, points) -> np.ndarray:
        """Embedding-view points -> nearest code at every position ``[n, h*w]``."""
        pts = np.asarray(points, dtype=float)
        if pts.ndim == 1:
            pts = pts[None]
        z = torch.as_tensor(pts, dtype=torch.float32, device=self.device).reshape(
            -1, *self.latent_shape, self.embedding_dim)
        return self._nearest(z).reshape(len(pts), -1).cpu().numpy().astype(np.int64)

    # -- images -> latent ----------------------------------------------------
    def _encode_z(self, images) -> torch.Tensor:
        if not hasattr(self.model, "encode"):
            raise ConfigError(f"{type(self.model).__name__} has no .encode(images); cannot encode images.")
        x = as_images(images, self.device)
        with torch.no_grad():
            z = self.model.encode(x)
        if tuple(z.shape[2:]) != self.latent_shape or z.shape[1] != self.embedding_dim:
            raise ConfigError(
                f"the encoder returned {tuple(z.shape)}; expected [n, {self.embedding_dim}, "
                f"{self.latent_shape[0]}, {self.latent_shape[1]}]. Are the images {self.output_shape}?"
            )
        return z.permute(0, 2, 3, 1)  # [n, h, w, D]

    def encode(self, images) -> np.ndarray:
        """Images ``[n, C, H, W]`` in [0, 1] -> codes ``[n, h*w]`` (points of the codes view)."""
        z = self._encode_z(images)
        return self._nearest(z).reshape(z.shape[0], -1).cpu().numpy().astype(np.int64)

    def encode_embedding(self, images, quantized: bool = True) -> np.ndarray:
        """Images -> points of the embedding view ``[n, h*w*D]``.

        ``quantized=True`` gives the codebook vectors of :meth:`encode`'s codes (decodes to
        the same image as the codes view); ``False`` the raw encoder output, clipped into the box.
        """
        if quantized:
            return self.codes_to_embedding(self.encode(images))
        z = self._encode_z(images)
        pts = z.reshape(z.shape[0], -1).cpu().numpy().astype(float)
        return self.embedding_space().clip(pts)

    def encode_points(self, images) -> np.ndarray:
        """Images -> points of this generator's view: codes (:meth:`encode`), or the embedding of those codes."""
        return self.encode(images) if self.view == "codes" else self.encode_embedding(images, quantized=True)

    # -- generation ------------------------------------------------------------
    def _generate(self, points: np.ndarray) -> torch.Tensor:
        if self.view == "codes":
            return self.model.decode(self._latent_from_codes(points))
        return self._decode(torch.as_tensor(points, dtype=torch.float32, device=self.device))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(-1, *self.latent_shape, self.embedding_dim)  # [n, h, w, D]
        if self.snap:
            z = self.codebook[self._nearest(z)]
        return self.model.decode(z.permute(0, 3, 1, 2).contiguous())

    @property
    def differentiable(self) -> bool:
        return self.view == "embedding" and not self.snap

    def describe(self) -> dict:
        d = super().describe()
        d.update(view=self.view, snap=self.snap, num_codes=self.num_codes, embedding_dim=self.embedding_dim,
                 latent_shape=list(self.latent_shape), model=type(self.model).__name__,
                 zoo_name=getattr(self.model, "zoo_name", None))
        return d
