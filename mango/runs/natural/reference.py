"""References that give a unit's values a meaning: its responses to natural images.

A bare activation ("best value 22.5") says little.  As in Wang & Ponce, mango
compares it with the unit's responses to a set of natural images:

* zoo networks: the zoo's training images (:func:`mango.zoo.data.load_digits`,
  the same images :mod:`mango.bench` normalizes by); for the colour zoo
  (``snn-color``), its shipped colour held-out images
  (:func:`mango.zoo.color.heldout_color`);
* any network: the user's own images (``--reference DIR`` of image files, or
  ``--reference FILE.npy`` holding ``[n, H, W]`` or ``[n, C, H, W]``).

The reference is the unit's **maximum** over the images and its 99th
**percentile**; ``normalized = value / max`` (1.0 = as strong as the best
natural image; activation maximization usually goes beyond 1).  This is the
one home of that normalization; :mod:`mango.bench.problems` uses it too.

Computing it costs one forward pass per image (about a minute for the 4,000
zoo training images through the spiking network on a CPU), so it is computed
once and cached as a small JSON file in ``$MANGO_CACHE/references/`` (default
``~/.cache/mango/references/``), keyed by a hash of the oracle's settings, the
network's weights and the images: retraining the network or changing the
images computes it anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import ConfigError

__all__ = ["Reference", "normalize", "unit_responses", "all_responses", "unit_reference", "population_reference",
           "zoo_images", "load_images", "PERCENTILE"]

PERCENTILE = 99.0
_FORMAT = "mango-reference/1"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def normalize(value, ref_max: float, ref_low: float = 0.0):
    """``(value - ref_low) / (ref_max - ref_low)``: 0 at ``ref_low``, 1 at the reference maximum."""
    return (np.asarray(value, dtype=float) - ref_low) / (ref_max - ref_low)


@dataclass
class Reference:
    """A unit's responses to a set of natural images, summarized."""

    max: float
    percentile: float  # which percentile (99)
    percentile_value: float
    n_images: int
    images: str  # where the images came from
    cache_file: str | None = None
    seconds: float = 0.0  # time it took to compute (0 when read from the cache)

    def normalize(self, value):
        return normalize(value, self.max)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "seconds"}


def all_responses(oracle, images, batch: int = 500) -> np.ndarray:
    """Every response column of ``oracle`` to ``images`` (``[n, n_units]``), in batches."""
    out = []
    for i in range(0, len(images), batch):
        r = np.asarray(oracle(images[i:i + batch]), dtype=float)
        out.append(r[:, None] if r.ndim == 1 else r)
    return np.concatenate(out) if out else np.zeros((0, 1))


def unit_responses(oracle, images, select=None, batch: int = 500) -> np.ndarray:
    """The value ``oracle`` reports for each image (first unit, or ``select(responses)``), in batches."""
    out = []
    for i in range(0, len(images), batch):
        r = all_responses(oracle, images[i:i + batch], batch)
        out.append(np.asarray(select(r), dtype=float).reshape(-1) if select is not None else r[:, 0])
    return np.concatenate(out) if out else np.zeros(0)


def _hash_images(images) -> str:
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    h = hashlib.sha256(str((x.shape, str(x.dtype))).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _hash_model(oracle) -> str | None:
    model = getattr(oracle, "model", None)
    if model is None or not hasattr(model, "state_dict"):
        return None
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cache_dir() -> str:
    from ...zoo.data import cache_dir

    return os.path.join(cache_dir(), "references")


def _cache_path(oracle, images, select_name) -> str:
    desc = oracle.describe() if hasattr(oracle, "describe") else type(oracle).__name__
    key = hashlib.sha256(json.dumps({"format": _FORMAT, "oracle": desc, "model": _hash_model(oracle),
                                     "images": _hash_images(images), "select": select_name},
                                    sort_keys=True, default=str).encode()).hexdigest()[:24]
    return os.path.join(_cache_dir(), f"{key}.json")


def _read_cache(path: str) -> Reference | None:
    """The cached :class:`Reference` at ``path``, or None when absent or damaged."""
    try:
        with open(path) as f:
            d = json.load(f)
        if d.get("format") == _FORMAT:
            return Reference(max=float(d["max"]), percentile=float(d["percentile"]),
                             percentile_value=float(d["percentile_value"]), n_images=int(d["n_images"]),
                             images=d["images"], cache_file=path)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or damaged: compute it
    return None


def _summarize(r: np.ndarray, source: str, seconds: float, what: str = "the unit") -> Reference:
    finite = r[np.isfinite(r)]
    if finite.size == 0:
        raise ConfigError(f"{what} gave no finite response to any of the {len(r)} reference images ({source}).")
    return Reference(max=float(finite.max()), percentile=PERCENTILE,
                     percentile_value=float(np.percentile(finite, PERCENTILE)), n_images=int(len(r)), images=source,
                     seconds=seconds)


def _write_cache(ref: Reference, path: str, oracle) -> None:
    """Cache ``ref`` at ``path`` (sets ``ref.cache_file``); a read-only home leaves it uncached."""
    desc = oracle.describe() if hasattr(oracle, "describe") else type(oracle).__name__
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"format": _FORMAT, **{k: v for k, v in ref.to_dict().items() if k != "cache_file"},
                       "oracle": desc, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                      f, indent=1, default=str)
        os.replace(tmp, path)
        ref.cache_file = path
    except OSError:  # a read-only home: no cache, the reference is still right
        pass


def unit_reference(oracle, images, source: str, select=None, cache: bool = True) -> Reference:
    """The :class:`Reference` of ``oracle``'s unit over ``images`` (``[n, C, H, W]`` in [0, 1]).

    Read from the cache when it was computed before with the same oracle
    settings, network weights and images; else computed and cached.
    """
    if len(images) == 0:
        raise ConfigError(f"the reference images ({source}) are empty.")
    path = _cache_path(oracle, images, getattr(select, "__name__", None))
    if cache:
        ref = _read_cache(path)
        if ref is not None:
            return ref
    t0 = time.perf_counter()
    ref = _summarize(unit_responses(oracle, images, select), source, time.perf_counter() - t0)
    if cache:
        _write_cache(ref, path, oracle)
    return ref


def population_reference(oracle, images, source: str, columns, cache: bool = True) -> list[Reference]:
    """One :class:`Reference` per response column in ``columns`` (a population campaign's units).

    The images go through the oracle once for all columns (reading ten units
    costs what reading one does); each column is cached on its own, as
    :func:`unit_reference` with ``select`` = that column would cache it.
    """
    if len(images) == 0:
        raise ConfigError(f"the reference images ({source}) are empty.")
    columns = [int(c) for c in columns]
    paths = [_cache_path(oracle, images, f"column({c})") for c in columns]
    refs: list = [_read_cache(p) if cache else None for p in paths]
    if all(r is not None for r in refs):
        return refs
    t0 = time.perf_counter()
    resp = all_responses(oracle, images)
    seconds = time.perf_counter() - t0
    for j, (c, p) in enumerate(zip(columns, paths)):
        if refs[j] is None:
            refs[j] = _summarize(resp[:, c], source, seconds, what=f"unit {c}")
            if cache:
                _write_cache(refs[j], p, oracle)
    return refs


def zoo_images(model: str | None = None):
    """``(images [n, C, H, W] in [0, 1], description)``: the natural images of zoo model ``model``.

    The digit zoo (``model`` None or a ``*-digits`` name): the zoo's training
    digits ``[4000, 1, 28, 28]``.  The colour zoo (``snn-color``,
    ``vqvae-color``, ``gan-color``): the shipped colour held-out set
    ``[1000, 3, 32, 32]`` (:func:`mango.zoo.color.heldout_color`: 500 digits
    composited on held-out photograph regions and 500 plain photograph crops;
    no training-time package needed).  ``model`` may carry the ``zoo:`` prefix;
    an unknown name raises :class:`~mango.errors.UnknownNameError`.
    """
    if model is not None:
        from ...zoo import MODELS, canonical_name

        name = canonical_name(model)
        if MODELS[name].get("module") == "color":
            from ...zoo.color import heldout_color

            x, _ = heldout_color("all")
            return x, (f"the colour zoo's held-out images (weights/heldout-color.pt: 500 colour digits on "
                       f"photographs + 500 photograph crops, {len(x)} images)")
    from ...zoo.data import load_digits

    d = load_digits()
    return d.x_train, f"the zoo's training images ({d.source}, {len(d.x_train)} images)"


def load_images(path: str, shape) -> tuple:
    """``(images [n, C, H, W] float32 in [0, 1], description)`` from a directory of image files or a ``.npy``.

    ``shape`` is the stimuli's ``(C, H, W)``: image files are converted to
    grayscale (C = 1) or RGB (C = 3) and resized to ``H x W``; a ``.npy`` must
    already have that shape (``[n, H, W]`` is taken as C = 1), with values in
    [0, 1] (floats) or 0..255 (uint8).
    """
    import torch

    c, h, w = (int(s) for s in shape)
    if os.path.isdir(path):
        from PIL import Image

        files = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_SUFFIXES))
        if not files:
            raise ConfigError(f"--reference {path!r} holds no image files ({', '.join(_IMAGE_SUFFIXES)}).")
        arrs = []
        for f in files:
            try:
                img = Image.open(os.path.join(path, f)).convert("L" if c == 1 else "RGB").resize((w, h))
            except OSError as exc:
                raise ConfigError(f"cannot read reference image {f!r} in {path!r}: {exc}") from None
            a = np.asarray(img, dtype=np.float32) / 255.0
            arrs.append(a[None] if c == 1 else a.transpose(2, 0, 1))
        x = np.stack(arrs)
        src = f"{len(files)} images in {os.path.abspath(path)}"
    elif os.path.isfile(path) and path.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ConfigError(f"cannot read {path!r} as a plain .npy array: {exc}") from None
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ConfigError(f"--reference {path!r} has shape {tuple(x.shape)}; the stimuli are {(c, h, w)}, so "
                              f"it must be [n, {c}, {h}, {w}]" + (f" or [n, {h}, {w}]" if c == 1 else "") + ".")
        if x.min() < -1e-6 or x.max() > 1 + 1e-6:
            raise ConfigError(f"--reference {path!r} holds values in [{x.min():.3g}, {x.max():.3g}]; stimuli are "
                              "in [0, 1] (floats) or 0..255 (uint8).")
        src = f"{len(x)} images from {os.path.abspath(path)}"
    else:
        raise ConfigError(f"--reference takes a directory of images or a .npy file; {path!r} is neither.")
    return torch.as_tensor(x), src
