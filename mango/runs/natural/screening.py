"""Warm start from natural images: which images to screen, and where they sit in the latent space.

XDream (Ponce et al. 2019) and Wang & Ponce (2022) start their searches from the
codes of natural images rather than from random latents.  mango does the same
on request (``maximize(..., warm_start=...)``, ``mango maximize --warm-start``):

1. :func:`load_images` reads the images to screen -- the zoo's held-out digits,
   a folder of PNG/JPEG files, an ``.npy`` array, or an array/tensor you pass;
2. :func:`encode_images` maps each image to a point of the search space, with
   the generator's encoder where it has one (the VQ-VAE's codes or embedding)
   and by gradient inversion through the decoder where it is differentiable
   (GAN, gratings, a differentiable module);
3. :class:`mango.optimizers.warm.WarmStart` shows those points to the neuron
   as the run's first queries -- **every screened image counts against the
   budget** -- and then hands them, with their responses, to the optimizer's
   :meth:`~mango.optimizers.Optimizer.warm_start` (CMA-ES centres its mean on
   the best, GA and nevergrad take them as their first population, the
   surrogate fits its model on them).

The screened stimulus is the *decoded* point, not the raw image: the optimizer
can only propose what the generator makes, so the first queries are the
generator's reconstructions of the images.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch

from ...errors import ConfigError
from ...generators.base import as_images
from ...spaces import Space

__all__ = ["load_images", "encode_images", "warm_points", "DEFAULT_SCREEN"]

#: how many zoo images are screened by default (two of each digit)
DEFAULT_SCREEN = 20

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices spread evenly over the classes of ``labels``, seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = [idx[k] for k in range(max(len(p) for p in per_class)) for idx in per_class if k < len(idx)]
    return np.asarray(order[:n], dtype=np.int64)


def _read_folder(path: pathlib.Path) -> torch.Tensor:
    from matplotlib import image as mpimg  # matplotlib is a core dependency; reads PNG itself, JPEG via pillow

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in the folder {str(path)!r}.")
    arrays = []
    for f in files:
        a = np.asarray(mpimg.imread(f), dtype=np.float64)
        if a.dtype.kind in "ui" or a.max() > 1.0:
            a = a / 255.0
        a = a[..., None] if a.ndim == 2 else a[..., :3]  # drop alpha
        arrays.append(a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ConfigError(f"the images in {str(path)!r} have different sizes {sorted(shapes)}; "
                          "resize them to one size.")
    return torch.as_tensor(np.stack(arrays), dtype=torch.float32)


def load_images(source, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The images to screen, ``[n, C, H, W]`` float in [0, 1].

    ``source``: ``"zoo"`` (the zoo's held-out digits, ``n`` of them spread over
    the ten classes, default :data:`DEFAULT_SCREEN`), a folder of image files,
    an ``.npy`` file (``[n, H, W]`` or ``[n, C, H, W]``; never unpickled), or an
    array / tensor.  ``n`` keeps a seeded random subset of a folder or array.
    """
    if n is not None and (int(n) != n or n < 1):
        raise ConfigError(f"the number of images to screen must be a positive integer, got {n!r}.")
    if isinstance(source, str) and source == "zoo":
        from ...zoo.data import heldout_digits

        x, y = heldout_digits()
        idx = _stratified(np.asarray(y), int(n or DEFAULT_SCREEN), seed)
        return x[torch.as_tensor(idx)].float()
    if isinstance(source, (str, os.PathLike)):
        path = pathlib.Path(source)
        if path.is_dir():
            images = _read_folder(path)
        elif path.suffix == ".npy" and path.is_file():
            try:
                images = torch.as_tensor(np.load(path, allow_pickle=False), dtype=torch.float32)
            except ValueError as exc:
                raise ConfigError(f"{str(path)!r} is not a plain numeric .npy array ({exc}).") from None
        else:
            raise ConfigError(f"warm start source {str(source)!r} is neither 'zoo', a folder of images, nor an .npy "
                              "file.")
    else:
        try:
            images = torch.as_tensor(np.asarray(source) if not torch.is_tensor(source) else source,
                                     dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"warm start images must be numeric [n, H, W] or [n, C, H, W], got {exc}.") from None
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"warm start images must be [n, H, W] or [n, C, H, W] with n >= 1, got shape "
                          f"{tuple(images.shape)}.")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ConfigError("warm start images must be finite and in [0, 1] (divide 8-bit images by 255).")
    if n is not None and n < len(images):
        keep = np.sort(np.random.default_rng(seed).choice(len(images), int(n), replace=False))
        images = images[torch.as_tensor(keep)]
    return images


def _fit_to(images: torch.Tensor, shape: tuple) -> torch.Tensor:
    """``images`` resized and channel-matched to ``[C, H, W] = shape``."""
    c, h, w = shape
    if tuple(images.shape[2:]) != (h, w):
        images = torch.nn.functional.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    if images.shape[1] != c:
        if images.shape[1] == 1:
            images = images.expand(-1, c, -1, -1)
        elif c == 1:
            images = images.mean(1, keepdim=True)
        else:
            raise ConfigError(f"cannot match {images.shape[1]}-channel images to a {c}-channel generator.")
    return images


def invert(generator, images: torch.Tensor, space: Space, steps: int = 300, seed: int = 0) -> np.ndarray:
    """Latents whose decoded images are closest (MSE) to ``images``, by Adam through the generator.

    Starts from the box centre plus a small seeded jitter; points stay in the box.
    """
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    g = torch.Generator().manual_seed(int(seed))
    u = (0.5 + 0.01 * torch.randn(len(images), space.dim, generator=g)).clamp(0.01, 0.99)
    logit = torch.logit(u).requires_grad_(True)
    with torch.no_grad():
        out_shape = tuple(generator.decode(low[None] + 0.5 * (high - low)[None]).shape[1:])
    target = _fit_to(as_images(images, "cpu"), out_shape)
    opt = torch.optim.Adam([logit], lr=0.05)
    for _ in range(int(steps)):
        z = low + torch.sigmoid(logit) * (high - low)
        out = generator.decode(z.to(generator.device) if hasattr(generator, "device") else z)
        loss = ((out.cpu() - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = (low + torch.sigmoid(logit) * (high - low)).detach().numpy().astype(np.float64)
    return space.clip(z)


def encode_images(generator, images, space: Space, seed: int = 0) -> np.ndarray:
    """Points of ``space`` for ``images``: the generator's encoder, else gradient inversion.

    A generator with neither (not differentiable, no encoder) is refused with
    an error that names the way out: pass latent points instead of images.
    """
    if generator is None:
        raise ConfigError("screening images needs a generator to encode them; pass warm_start= an array of points "
                          "of the search space instead, or search a generator's latent.")
    encoder = getattr(generator, "encode_points", None)  # a mango Generator; a duck-typed one may lack it
    pts = encoder(images) if encoder is not None else None
    if pts is not None:
        return np.asarray(pts)
    if getattr(generator, "differentiable", False) and space.kind == "box":
        return invert(generator, torch.as_tensor(images), space, seed=seed)
    if getattr(generator, "differentiable", False) and space.kind == "grid":  # invert in its box, then snap
        return space.index(invert(generator, torch.as_tensor(images), space.box, seed=seed))
    raise ConfigError(f"{type(generator).__name__} has no encoder and cannot be differentiated, so images cannot be "
                      "mapped to its latent; pass warm_start= an array of latent points instead.")


def warm_points(source, generator, space: Space, n: int | None = None, seed: int = 0) -> np.ndarray:
    """The points a warm start screens: ``source`` is images (see :func:`load_images`) or points of ``space``.

    An array whose rows have ``space.dim`` entries and lie in the space is taken
    as points (e.g. the best stimuli of an earlier run); anything else is
    read as images and encoded.
    """
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npy") and pathlib.Path(source).is_file():
        try:
            source = np.load(source, allow_pickle=False)  # points or images: told apart below
        except ValueError as exc:
            raise ConfigError(f"{str(source)!r} is not a plain numeric .npy array ({exc}).") from None
    if not isinstance(source, (str, os.PathLike)):
        arr = source.detach().cpu().numpy() if torch.is_tensor(source) else np.asarray(source)
        if arr.ndim == 2 and arr.shape[1] == space.dim and arr.dtype.kind in "fiu":
            pts = space.validate(arr, name="warm start points")
            if n is not None and n < len(pts):
                pts = pts[np.sort(np.random.default_rng(seed).choice(len(pts), int(n), replace=False))]
            return pts
    images = load_images(source, n=n, seed=seed)
    return space.validate(encode_images(generator, images, space, seed=seed), name="encoded warm start images")
