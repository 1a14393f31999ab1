"""Drawing points from a :class:`~mango.optimizers.tt.dist.TTDistribution` (the ``tt`` optimizer's sampler).

A draw is exact and vectorized over the modes: the chain's rank index after
each mode is a Markov chain (transitions ``S_j[a, b] R_j[b]``, ``S_j`` the
mode's sum over its valid indices, ``R_j`` the right interface of ``Z``'s chain)
sampled by pointer jumping (:func:`tt_math.sample_path`); given the rank indices
``a`` before and ``b`` after mode ``j``, its index is drawn from ``G_j[a, :, b]``
(dense: from a table of cumulative probabilities, :class:`tt_math.RowTable`;
QTT: digit by digit, :func:`tt_math.sample_digits`), so an invalid index is never
drawn.  The tables are built once per version of the distribution.
"""

from __future__ import annotations

import numpy as np

from . import kernels as tt_math
from .dist import TTDistribution

__all__ = ["TTSampler"]


class TTSampler:
    """Draws mode indices from ``dist``, with tables rebuilt whenever its parameters change."""

    def __init__(self, dist: TTDistribution):
        self.dist = dist
        self._tables = None
        self._version = -1  # the distribution's version the tables were built for

    def tables(self):
        """``(cdf, table)``: the rank path's row-wise cumulative transition probabilities
        ``[d, r, r]`` and the index table (QTT: :func:`tt_math.digit_table`'s weights;
        dense: a :class:`tt_math.RowTable` over the rows ``(j, a, b)``)."""
        dist = self.dist
        if self._tables is None or self._version != dist.version:
            c = dist.derived()
            T = c["S"] * c["rvZ"][:, None, :]
            cdf = T @ tt_math.upper_ones(T.shape[-1])  # row-wise cumulative sums
            cdf /= np.maximum(cdf[:, :, -1:], np.finfo(np.float64).tiny)
            if dist.q:
                Rl, Rt = c["Rl"], c["Rt"]
                nv = 1 if Rt is None else 3
                V = tt_math.digit_table(Rl, Rt, out=dist.work("V", (nv * Rl.size * 2,)))
                self._tables = (cdf, V)
            else:
                G = c["G"]  # [d, r, r, N]: rows (j, a, b)
                self._tables = (cdf, tt_math.RowTable(G.reshape(-1, G.shape[3]), work=dist.work))
            self._version = dist.version
        return self._tables

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws of the distribution's mode indices ``[n, d]`` (one call of ``rng.random``)."""
        dist = self.dist
        cdf, table = self.tables()
        d, r = dist.dim, cdf.shape[-1]
        u = rng.random((n, d, 1 + max(dist.q, 1)))
        np.subtract(1.0, u, out=u)  # (0, 1]: rank path, then the index (digits)
        b = tt_math.sample_path(cdf, u[:, :, 0])  # rank index after each mode
        a = np.zeros_like(b)
        a[:, 1:] = b[:, :-1]
        if dist.q:
            c = dist.derived()
            return tt_math.sample_digits(c["Gb"], dist.cbits, table, c["Rt"] is not None, a, b, u[:, :, 1:])
        j = np.arange(d)[None, :]
        return table.draw((j * r + a) * r + b, u[:, :, 1])
