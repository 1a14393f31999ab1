"""Search spaces: where optimizers search.

Three kinds of space, each a set of points represented as 1-D numpy vectors of
length ``dim`` (a batch is a 2-D array ``[n, dim]``):

* :class:`Box` -- a continuous box ``low <= x <= high`` (a GAN latent, stimulus
  parameters, a VQ-VAE's continuous embedding view).  Points are floats.
* :class:`Grid` -- a Box discretized to ``levels`` evenly spaced values per
  dimension.  Points are integer *indices* ``0 <= i < levels``; ``grid.values``
  maps indices to Box values and ``grid.index`` maps Box values to the nearest
  indices.  This is what tensor-train methods need.
* :class:`Codebook` -- ``positions`` discrete slots each holding one of
  ``codes`` unordered categories (a VQ-VAE's 8x8 grid of 512 codes).  Points
  are integer code indices.

Which optimizer runs on which space
-----------------------------------
* Box: every continuous optimizer natively; discrete optimizers (``tt``) through
  ``box.grid(levels)``.
* Grid: discrete optimizers natively; continuous optimizers (``cma``, ``ng:*``,
  ``ga``) search the Grid's Box and their points are snapped to the nearest
  level.
* Codebook: the codes are unordered categories, so rounding a continuous "code
  number" is no geometry at all and mango refuses to do it.  Codebooks are
  searched by discrete/categorical optimizers (``random``, ``tt``, ``ga`` with
  categorical mutation, ``ng:*`` through nevergrad's categorical ``Choice``).
  Continuous optimizers reach a codebook latent through a generator's
  continuous embedding view (e.g. ``VQVAEGenerator.embedding_space()``), where
  nearby points decode to nearby images.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import SpaceError

__all__ = ["Space", "Box", "Grid", "Codebook", "DiscreteSpace", "space_from_dict"]


def _as_rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


class Space:
    """Base class.  Subclasses define ``dim``, ``dtype``, validation and sampling."""

    kind: str = "abstract"
    dim: int
    dtype: type = float

    # -- validation -------------------------------------------------------
    def validate(self, points, name: str = "points") -> np.ndarray:
        """Return ``points`` as a 2-D array ``[n, dim]`` or raise :class:`SpaceError`.

        A single point (1-D array of length ``dim``) is accepted and returned as a
        batch of one.
        """
        arr = np.asarray(points)
        if arr.ndim == 1 and arr.shape[0] == self.dim:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise SpaceError(
                f"{name} have shape {tuple(np.shape(points))}, but {self!r} expects a batch of "
                f"shape (n, {self.dim}) (or one point of shape ({self.dim},))."
            )
        if arr.dtype.kind not in "biuf":
            raise SpaceError(f"{name} must be numeric, got dtype {arr.dtype}.")
        self._check_values(arr, name)
        return arr.astype(self.dtype, copy=False)

    def _check_values(self, arr: np.ndarray, name: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def contains(self, points) -> bool:
        try:
            self.validate(points)
        except SpaceError:
            return False
        return True

    def sample(self, n: int, seed=None) -> np.ndarray:
        """``n`` points drawn uniformly at random; ``seed`` an int or a numpy Generator."""
        raise NotImplementedError

    # -- serialization ----------------------------------------------------
    def to_dict(self) -> dict:
        raise NotImplementedError

    def describe(self) -> str:
        return repr(self)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and _plain_eq(self.to_dict(), other.to_dict())

    def __hash__(self) -> int:
        return hash(repr(self))


def _plain_eq(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _bound_array(value, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(dim, float(arr))
    if arr.shape != (dim,):
        raise SpaceError(f"{what} must be a scalar or an array of length dim={dim}, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise SpaceError(f"{what} must be finite, got {arr}.")
    return arr


class Box(Space):
    """A continuous box ``low <= x <= high`` in ``dim`` dimensions.

    >>> box = Box(3, -1.0, [1.0, 2.0, 3.0])
    >>> box.sample(2, seed=0).shape
    (2, 3)
    """

    kind = "box"
    dtype = float

    def __init__(self, dim: int, low=-1.0, high=1.0):
        if int(dim) != dim or dim < 1:
            raise SpaceError(f"Box dim must be a positive integer, got {dim!r}.")
        self.dim = int(dim)
        self.low = _bound_array(low, self.dim, "Box low")
        self.high = _bound_array(high, self.dim, "Box high")
        if np.any(self.high <= self.low):
            bad = np.flatnonzero(self.high <= self.low)[:5].tolist()
            raise SpaceError(f"Box needs low < high in every dimension; violated at dimensions {bad}.")

    def _check_values(self, arr, name):
        if not np.all(np.isfinite(arr)):
            raise SpaceError(f"{name} contain NaN or infinite coordinates.")
        # a tiny tolerance for float round-off from the optimizers' own clipping
        tol = 1e-9 * (self.high - self.low)
        out = (arr < self.low - tol) | (arr > self.high + tol)
        if out.any():
            i, j = np.argwhere(out)[0]
            raise SpaceError(
                f"{name}[{i}] is outside the box at dimension {j}: {arr[i, j]!r} not in "
                f"[{self.low[j]!r}, {self.high[j]!r}]. Clip with box.clip(points)."
            )

    def clip(self, points) -> np.ndarray:
        return np.clip(np.asarray(points, dtype=float), self.low, self.high)

    def sample(self, n: int, seed=None) -> np.ndarray:
        rng = _as_rng(seed)
        return self.low + (self.high - self.low) * rng.random((int(n), self.dim))

    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2.0

    def grid(self, levels: int | Sequence[int] = 64) -> "Grid":
        """This box discretized to ``levels`` values per dimension."""
        return Grid(self, levels)

    def to_dict(self) -> dict:
        return {"kind": "box", "dim": self.dim, "low": self.low.tolist(), "high": self.high.tolist()}

    def __repr__(self) -> str:
        lo, hi = self.low, self.high
        if np.all(lo == lo[0]) and np.all(hi == hi[0]):
            return f"Box(dim={self.dim}, low={lo[0]:g}, high={hi[0]:g})"
        return f"Box(dim={self.dim}, low=[...], high=[...])"


class DiscreteSpace(Space):
    """A product of finite sets: dimension ``i`` takes values ``0 .. sizes[i]-1``."""

    dtype = np.int64
    sizes: np.ndarray

    def _check_values(self, arr, name):
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise SpaceError(
                    f"{name} must be integer indices for {self!r}; got non-integer values. "
                    "Continuous optimizers cannot search this space directly (see mango.spaces)."
                )
        out = (arr < 0) | (arr >= self.sizes)
        if out.any():
            i, j = np.argwhere(out)[0]
            raise SpaceError(
                f"{name}[{i}] is out of range at dimension {j}: {arr[i, j]!r} not in "
                f"0..{int(self.sizes[j]) - 1}."
            )

    def sample(self, n: int, seed=None) -> np.ndarray:
        rng = _as_rng(seed)
        return (rng.random((int(n), self.dim)) * self.sizes).astype(np.int64)

    @property
    def cardinality(self) -> float:
        """Number of points (as a float: it is usually astronomically large)."""
        return float(np.prod(self.sizes.astype(float)))


class Grid(DiscreteSpace):
    """A :class:`Box` discretized to ``levels`` evenly spaced values per dimension.

    Points are integer indices; ``values(idx)`` gives the Box coordinates
    (``low + idx * (high - low) / (levels - 1)``) and ``index(x)`` the nearest
    indices of Box coordinates.
    """

    kind = "grid"

    def __init__(self, box: Box, levels: int | Sequence[int] = 64):
        if not isinstance(box, Box):
            raise SpaceError(f"Grid needs a Box, got {type(box).__name__}. Example: Grid(Box(8, -4, 4), 64).")
        lv = np.asarray(levels)
        if lv.ndim == 0:
            lv = np.full(box.dim, int(lv))
        if lv.shape != (box.dim,) or np.any(lv < 2) or np.any(lv != np.round(lv)):
            raise SpaceError(f"Grid levels must be an integer >= 2 (or one per dimension), got {levels!r}.")
        self.box = box
        self.dim = box.dim
        self.sizes = lv.astype(np.int64)
        self.levels = int(lv[0]) if np.all(lv == lv[0]) else self.sizes.copy()

    def values(self, idx) -> np.ndarray:
        """Box coordinates of grid indices."""
        idx = np.asarray(idx, dtype=float)
        step = (self.box.high - self.box.low) / (self.sizes - 1)
        return self.box.low + idx * step

    def index(self, x) -> np.ndarray:
        """Nearest grid indices of Box coordinates (clipped into the box)."""
        x = self.box.clip(x)
        step = (self.box.high - self.box.low) / (self.sizes - 1)
        idx = np.rint((x - self.box.low) / step)
        return np.clip(idx, 0, self.sizes - 1).astype(np.int64)

    def to_dict(self) -> dict:
        return {"kind": "grid", "box": self.box.to_dict(), "levels": self.sizes.tolist()}

    def __repr__(self) -> str:
        return f"Grid({self.box!r}, levels={self.levels if np.ndim(self.levels) == 0 else '[...]'})"


class Codebook(DiscreteSpace):
    """``positions`` slots, each holding one of ``codes`` unordered categories.

    ``positions`` is an int, or a shape such as ``(8, 8)`` for a VQ-VAE's latent
    grid (``dim`` is then its product and ``shape`` keeps the layout).
    """

    kind = "codebook"

    def __init__(self, positions: int | Sequence[int], codes: int):
        shape = (int(positions),) if np.ndim(positions) == 0 else tuple(int(p) for p in positions)
        if any(p < 1 for p in shape):
            raise SpaceError(f"Codebook positions must be positive, got {positions!r}.")
        if int(codes) != codes or codes < 2:
            raise SpaceError(f"Codebook needs at least 2 codes, got {codes!r}.")
        self.shape = shape
        self.positions = int(np.prod(shape))
        self.dim = self.positions
        self.codes = int(codes)
        self.sizes = np.full(self.dim, self.codes, dtype=np.int64)

    def to_dict(self) -> dict:
        return {"kind": "codebook", "positions": list(self.shape), "codes": self.codes}

    def __repr__(self) -> str:
        pos = self.shape[0] if len(self.shape) == 1 else self.shape
        return f"Codebook(positions={pos}, codes={self.codes})"


def space_from_dict(d: dict[str, Any]) -> Space:
    """Rebuild a space from :meth:`Space.to_dict` output."""
    kind = d.get("kind")
    if kind == "box":
        return Box(d["dim"], d["low"], d["high"])
    if kind == "grid":
        return Grid(space_from_dict(d["box"]), d["levels"])
    if kind == "codebook":
        return Codebook(d["positions"], d["codes"])
    raise SpaceError(f"unknown space kind {kind!r} in {d!r}; expected 'box', 'grid' or 'codebook'.")
