"""The trust region: where the next batch may go, and how it grows, shrinks and restarts.

TuRBO's rules (Eriksson et al. 2019), in unit coordinates of the space: a box of
side ``length`` around the centre (a Codebook: at most ``length * d`` positions
changed).  ``success_tol`` improving batches in a row double the side (up to
``length_max``), ``failure_tol`` batches without improvement halve it, and below
``length_min`` the region restarts from a fresh random design.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TrustRegion", "candidates", "failure_tolerance", "improved"]


@dataclass
class TrustRegion:
    length: float
    length_init: float
    length_min: float
    length_max: float
    success_tol: int
    failure_tol: int
    successes: int = 0
    failures: int = 0
    restarts: int = 0
    epoch_start: int = 0  # index of the first told point of the current region (after the last restart)

    def update(self, improved: bool) -> bool:
        """Record one batch; return True when the region has collapsed and must restart."""
        if improved:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        if self.successes >= self.success_tol:
            self.length, self.successes = min(2.0 * self.length, self.length_max), 0
        elif self.failures >= self.failure_tol:
            self.length, self.failures = self.length / 2.0, 0
        return self.length < self.length_min

    def restart(self, n_told: int) -> None:
        self.length, self.successes, self.failures = self.length_init, 0, 0
        self.restarts += 1
        self.epoch_start = n_told

    def to_dict(self) -> dict:
        return asdict(self)


def improved(region: np.ndarray, batch: np.ndarray, rel: float = 1e-3) -> bool:
    """Whether a batch's best value beats the region's best so far by more than ``rel`` times the spread
    (standard deviation) of the region's values: a success of the region.

    TuRBO's ``1e-3 * |best|`` depends on where zero is; the spread does not, so a response ``a * f + b``
    (a > 0) counts the same successes as ``f``.
    """
    region = np.asarray(region, dtype=float)
    return float(np.max(batch)) > float(np.max(region)) + rel * float(np.std(region))


def failure_tolerance(dim: int, batch: int, perturb: int) -> int:
    """Batches without improvement before the side halves: TuRBO's ``max(4, d) / q`` with ``d`` the
    number of coordinates a candidate changes (``perturb``), not the full dimension."""
    return max(1, math.ceil(max(4.0, float(min(dim, 2 * perturb))) / max(batch, 1)))


def candidates(kind: str, center: np.ndarray, length: float, n: int, rng: np.random.Generator, perturb: int,
               sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` candidate points around ``center`` inside the region; also the region's bounds.

    Box/Grid (unit coordinates): each coordinate is redrawn uniformly inside the region with
    probability ``min(1, perturb / d)`` (at least one per candidate), the others stay at the centre:
    in hundreds of dimensions, changing a few coordinates at a time is what makes progress.
    Codebook (codes): the same mask, capped at ``max(1, round(length * d))`` changed positions, each
    changed position takes a uniformly random other code.  Returns ``(points, lo, hi)``
    (``lo``/``hi`` only meaningful for unit coordinates).
    """
    d = len(center)
    p = min(1.0, perturb / d)
    mask = rng.random((n, d)) < p
    rows = np.flatnonzero(~mask.any(1))
    mask[rows, rng.integers(0, d, len(rows))] = True
    if kind == "codebook":
        cap = max(1, int(round(length * d)))
        if cap < d:  # keep a random subset of at most `cap` of each row's changed positions
            keys = np.where(mask, rng.random((n, d)), 2.0)
            rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
            mask &= rank < cap
        shift = rng.integers(1, sizes, size=(n, d))  # never the same code
        pts = np.where(mask, (center[None, :] + shift) % sizes, center[None, :]).astype(np.int64)
        return pts, center, center
    lo = np.clip(center - length / 2.0, 0.0, 1.0)
    hi = np.clip(center + length / 2.0, 0.0, 1.0)
    draw = lo + rng.random((n, d)) * (hi - lo)
    return np.where(mask, draw, center[None, :]), lo, hi
