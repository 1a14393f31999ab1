"""Pure numpy functions behind the ``tt`` optimizer: chain products, exact gradients, sampling.

A PROTES-style distribution is a chain of small non-negative matrices, and
everything the optimizer needs is a product along such a chain, its logarithm,
its derivative with respect to every factor, and draws from it.  The matrices
are tiny (``r x r`` with ``r ~ 5``), so what these functions cost is the number
of array operations, not arithmetic: each is written with a number of numpy
calls that grows with ``log2(d)`` (doubling scans, pointer jumping) or with the
number of binary digits ``q`` of a mode, never with ``d`` itself, and the
derivatives are computed in closed form (no autograd graph).
``tests/test_tt.py`` checks them against torch autograd and teneva.

Conventions: a *chain* is an array ``M [C, L, r, r]`` of ``C`` independent
sequences of ``L`` matrices, and its value is ``e0^T M[:, 0] ... M[:, L-1] e0``
(first row, first column), the convention of a TT whose first and last cores
use only their first row and column.  Binary (QTT) cores are ``[d, q, r, 2, r]``,
most significant digit first.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "chain_log", "chain_vectors", "right_vectors", "merge_bits", "digit_sums", "digit_sums_vjp",
    "sample_path", "RowTable",
]

_TINY = np.finfo(np.float64).tiny


def _normalize(P: np.ndarray) -> None:
    """Divide each matrix of ``P [..., r, r]`` by its sum, in place."""
    P /= np.maximum(P.sum(axis=(-2, -1)), _TINY)[..., None, None]


def chain_log(M: np.ndarray) -> np.ndarray:
    """``log(e0^T M[c, 0] @ ... @ M[c, L-1] e0)`` for each chain ``c`` of non-negative ``M [C, L, r, r]``.

    A tree reduction (``ceil(log2 L)`` batched products), each partial product
    divided by its sum so that nothing over- or underflows.
    """
    M = np.array(M, dtype=np.float64)
    C, r = M.shape[0], M.shape[-1]
    logs = np.zeros(C)
    while M.shape[1] > 1:
        if M.shape[1] % 2:
            M = np.concatenate([M, np.broadcast_to(np.eye(r), (C, 1, r, r))], axis=1)
        M = M[:, 0::2] @ M[:, 1::2]
        s = np.maximum(M.sum(axis=(-2, -1)), _TINY)
        M /= s[..., None, None]
        logs += np.log(s).sum(axis=1)
    return logs + np.log(np.maximum(M[:, 0, 0, 0], _TINY))


def _scan(M: np.ndarray, suffix: bool) -> np.ndarray:
    """Prefix products ``M[0] ... M[j]`` (or suffix products ``M[j] ... M[L-1]``) of every chain,
    each divided by its sum (Hillis-Steele doubling: ``ceil(log2 L)`` batched products)."""
    P = M.copy()
    _normalize(P)
    L, shift, level = P.shape[1], 1, 0
    while shift < L:
        if suffix:
            P[:, : L - shift] = P[:, : L - shift] @ P[:, shift:]
        else:  # the right-hand side is evaluated before the assignment: no aliasing
            P[:, shift:] = P[:, : L - shift] @ P[:, shift:]
        level += 1
        if level % 2 == 0 or shift * 2 >= L:
            # every other level suffices: a product of non-negative matrices of sum <= 1 has sum <= 1
            # (no overflow), and two levels multiply at most four normalized factors (no underflow)
            _normalize(P[:, : L - shift] if suffix else P[:, shift:])
        shift *= 2
    return P


# chains up to this length are swept factor by factor (two small products a factor, no matrix
# products); longer ones by doubling scans (ceil(log2 L) rounds of batched matrix products)
_SWEEP_MAX_LEN = 128


def _sweep(M: np.ndarray, suffix: bool) -> np.ndarray:
    """Interface vectors by a sweep: ``out[:, j]`` = first row of ``M[:, 0] ... M[:, j-1]``
    (or first column of ``M[:, j+1] ... M[:, L-1]``), rescaled every few factors."""
    C, L, r = M.shape[0], M.shape[1], M.shape[-1]
    out = np.empty((C, L, r))
    v = np.zeros((C, 1, r) if not suffix else (C, r, 1))
    v[:, 0, 0] = 1.0
    order = range(L - 1, -1, -1) if suffix else range(L)
    for i, j in enumerate(order):
        if suffix:
            out[:, j] = v[:, :, 0]
            v = M[:, j] @ v
        else:
            out[:, j] = v[:, 0]
            v = v @ M[:, j]
        if i % 8 == 7:  # a product of 8 factors stays far inside the floating-point range
            v /= np.maximum(v.sum(axis=(1, 2), keepdims=True), _TINY)
    return out


def _interfaces(M: np.ndarray, suffix: bool) -> np.ndarray:
    """Left (or right) interface vectors of every factor of ``M [C, L, r, r]``, each scaled to sum 1."""
    C, L, r = M.shape[0], M.shape[1], M.shape[-1]
    if L <= _SWEEP_MAX_LEN:
        out = _sweep(M, suffix)
    else:
        out = np.zeros((C, L, r))
        if suffix:
            out[:, -1, 0] = 1.0
            out[:, :-1] = _scan(M[:, 1:], suffix=True)[:, :, :, 0]
        else:
            out[:, 0, 0] = 1.0
            out[:, 1:] = _scan(M[:, :-1], suffix=False)[:, :, 0, :]
    out /= np.maximum(out.sum(axis=-1, keepdims=True), _TINY)
    return out


def right_vectors(M: np.ndarray) -> np.ndarray:
    """``rv [C, L, r]``: the first column of ``M[c, j+1] ... M[c, L-1]`` for every factor ``j``
    (scaled to sum 1): the right interfaces a sampler conditions on."""
    return _interfaces(np.asarray(M, dtype=np.float64), suffix=True)


def chain_vectors(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interface vectors of every factor of every chain.

    Returns ``(lv [C, L, r], rv [C, L, r], den [C, L])``: ``lv[c, j]`` is
    the first row of ``M[c, 0] ... M[c, j-1]`` and ``rv[c, j]`` the first column of
    ``M[c, j+1] ... M[c, L-1]`` (each scaled to sum 1), and ``den = lv M rv``.
    The derivative of ``log v`` in factor ``j`` is ``outer(lv, rv) / den`` (any
    scale of ``lv`` and ``rv`` cancels); ``rv`` is also the right interface a
    sampler conditions on.
    """
    M = np.asarray(M, dtype=np.float64)
    lv, rv = _interfaces(M, suffix=False), _interfaces(M, suffix=True)
    den = np.maximum(np.einsum("clr,clrs,cls->cl", lv, M, rv), _TINY)
    return lv, rv, den


def merge_bits(Gb: np.ndarray) -> np.ndarray:
    """Multiply binary cores ``[d, t, r, 2, r]`` (most significant first) into mode cores ``[d, r, 2^t, r]``."""
    d, t, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    A = Gb[:, 0]
    for s in range(1, t):
        m = A.shape[2]
        A = (A.reshape(d, r * m, r) @ Gb[:, s].reshape(d, r, 2 * r)).reshape(d, r, 2 * m, r)  # index i*2+bit
    return A


def digit_sums(Gb: np.ndarray, cbits: np.ndarray) -> np.ndarray:
    """Per-mode sums ``S_j = sum_{i < n_j} G_j[i]`` of QTT cores over the *valid* indices only.

    ``Gb [d, q, r, 2, r]`` binary cores, ``cbits [d, q]`` the binary digits of
    ``n_j - 1`` (most significant first).  A digit recursion: ``E`` is the
    product along the digits of ``n_j - 1`` (the prefixes still *tight*), ``L``
    the sum over the prefixes already below it (*loose*).  Returns ``[d, r, r]``.
    """
    d, q, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    B0, B1 = Gb[:, :, :, 0, :], Gb[:, :, :, 1, :]
    if cbits.all():  # n_j = 2^q for every mode: all indices valid, S_j is a product of sums
        Bs = B0 + B1
        S = Bs[:, 0]
        for t in range(1, q):
            S = S @ Bs[:, t]
        return S
    c = cbits[:, :, None, None]
    E = np.broadcast_to(np.eye(r), (d, r, r))
    L = np.zeros((d, r, r))
    for t in range(q):
        L = L @ (B0[:, t] + B1[:, t]) + c[:, t] * (E @ B0[:, t])
        E = E @ (B0[:, t] + c[:, t] * (B1[:, t] - B0[:, t]))
    return L + E


def digit_sums_vjp(Gb: np.ndarray, cbits: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivative of ``x_j^T S_j y_j`` (:func:`digit_sums`) in the binary cores, for every mode: ``[d, q, r, 2, r]``.

    The recursion is linear in each core, and with a rank-one output gradient
    ``x y^T`` every intermediate gradient stays rank one, so the forward pass
    carries row vectors (``x^T L``, ``x^T E``) and the backward pass column
    vectors: ``4 q`` small batched products in all.
    """
    d, q, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    B0, B1 = Gb[:, :, :, 0, :], Gb[:, :, :, 1, :]
    Bs = B0 + B1
    if cbits.all():  # S_j = Bs_0 ... Bs_{q-1}: both digits of core t get outer(x^T Bs_0..Bs_{t-1}, Bs_{t+1}.. y)
        lam = np.empty((d, q, 1, r))
        rho = np.empty((d, q, r, 1))
        lam[:, 0, 0], rho[:, q - 1, :, 0] = x, y
        for t in range(q - 1):
            lam[:, t + 1] = lam[:, t] @ Bs[:, t]
            rho[:, q - 2 - t] = Bs[:, q - 1 - t] @ rho[:, q - 1 - t]
        outer = lam.transpose(0, 1, 3, 2) * rho.transpose(0, 1, 3, 2)  # [d, q, r, r]
        return np.broadcast_to(outer[:, :, :, None, :], (d, q, r, 2, r))  # the same for both digits (read-only)
    out = np.empty((d, q, r, 2, r))
    c = cbits[:, :, None]
    Bc = B0 + c[..., None] * (B1 - B0)
    lvec = np.zeros((d, q + 1, r))  # x^T L_t
    evec = np.zeros((d, q + 1, r))  # x^T E_t
    evec[:, 0] = x
    for t in range(q):
        lvec[:, t + 1] = (lvec[:, t, None, :] @ Bs[:, t])[:, 0] + c[:, t] * (evec[:, t, None, :] @ B0[:, t])[:, 0]
        evec[:, t + 1] = (evec[:, t, None, :] @ Bc[:, t])[:, 0]
    yL, yE = y, y  # column vectors of the gradients of L_t and E_t
    for t in range(q - 1, -1, -1):
        ct, lt, et = c[:, t], lvec[:, t], evec[:, t]
        both = lt[:, :, None] * yL[:, None, :]
        out[:, t, :, 0, :] = both + et[:, :, None] * (ct * yL + (1.0 - ct) * yE)[:, None, :]
        out[:, t, :, 1, :] = both + et[:, :, None] * (ct * yE)[:, None, :]
        yL, yE = (Bs[:, t] @ yL[:, :, None])[:, :, 0], (ct * (B0[:, t] @ yL[:, :, None])[:, :, 0]
                                                        + (Bc[:, t] @ yE[:, :, None])[:, :, 0])
    return out


def sample_path(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw paths of a Markov chain that starts in state 0, by pointer jumping.

    ``cdf [L, s, s]``: row-wise cumulative transition probabilities of each step;
    ``u [n, L]`` uniform numbers.  Every step's random map ``f_j(a)`` (the next
    state from state ``a`` with the shared number ``u[:, j]``) is drawn for all
    states at once, and the maps are composed by doubling (``ceil(log2 L)``
    rounds), so a path is exact and costs no Python loop over the steps (a path
    visits one state per step, so sharing ``u`` across states is harmless).
    Returns the state after each step, ``[n, L]``.
    """
    s = cdf.shape[-1]
    F = np.zeros((u.shape[0], cdf.shape[0], s), dtype=np.int64)  # [n, L, s]: next state from each state
    for k in range(s - 1):  # the number of cumulative probabilities below u (thresholds one at a time)
        F += cdf[None, :, :, k] < u[:, :, None]
    n, L, shift = F.shape[0], F.shape[1], 1
    flat = F.reshape(-1)
    base = (np.arange(n)[:, None, None] * L + np.arange(L)[None, :, None]) * s  # offsets of F[i, l, :]
    while shift < L:  # F[:, l] <- F[:, l] o F[:, l - shift]
        F[:, shift:] = flat[base[:, shift:] + F[:, : L - shift]]
        shift *= 2
    return F[:, :, 0]


class RowTable:
    """Inverse-CDF sampling from many discrete distributions (one per row of ``W [R, K]``).

    An index is the first whose cumulative probability reaches ``u`` times the
    row's total, so an entry of weight zero (a masked, invalid index) is never
    drawn.  Rows with many entries (``K > 64``) are split into about ``sqrt(K)``
    blocks: a block is drawn from the block totals, then an entry within it
    (the uniform number rescaled to the block), so no cumulative sum over all
    ``R x K`` entries is needed.  For many draws the cumulative sums of all
    rows, each shifted by its row number, form one sorted array and a draw is
    one ``searchsorted``; for fewer draws than rows, only the rows drawn from
    are gathered (whichever touches less memory).
    """

    def __init__(self, W: np.ndarray):
        R, K = W.shape
        self._W, self._K, self._flat, self._blocks = W, K, None, None
        if K > 64:
            root = math.isqrt(K - 1) + 1
            # block size ~ sqrt(K): a divisor of K when there is one nearby (no padding copy)
            bs = next((b for b in range(root, 2 * root + 1) if K % b == 0), root)
            nb = -(-K // bs)
            Wp = W if nb * bs == K else np.concatenate([W, np.zeros((R, nb * bs - K))], axis=1)
            Wb = Wp.reshape(R, nb, bs)
            self._blocks = (Wb, np.cumsum(Wb.sum(axis=2, dtype=np.float64), axis=1))
            self._top = RowTable(self._blocks[1] - np.concatenate([np.zeros((R, 1)), self._blocks[1][:, :-1]], axis=1))

    def draw(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One index per entry of ``rows``, with uniform numbers ``u`` in ``(0, 1]`` of the same shape."""
        if self._blocks is not None:
            Wb, cum = self._blocks
            blk = self._top.draw(rows, u)
            hi = cum[rows, blk]
            lo = np.where(blk > 0, cum[rows, np.maximum(blk - 1, 0)], 0.0)
            # u rescaled to the block: uniform in (0, 1] given the block
            ub = np.clip((u * cum[rows, -1] - lo) / np.maximum(hi - lo, _TINY), 1e-300, 1.0)
            C = np.cumsum(Wb[rows, blk], axis=-1, dtype=np.float64)
            pos = (C[..., :-1] < (ub * C[..., -1])[..., None]).sum(axis=-1)
            return np.minimum(blk * Wb.shape[2] + np.minimum(pos, Wb.shape[2] - 1), self._K - 1)
        R, K = self._W.shape
        if rows.size < R and self._flat is None:
            C = np.cumsum(self._W[rows], axis=-1, dtype=np.float64)
            pos = (C[..., :-1] < (u * C[..., -1])[..., None]).sum(axis=-1)
            return np.minimum(pos, K - 1)
        if self._flat is None:
            C = np.cumsum(self._W, axis=1, dtype=np.float64)
            C /= np.maximum(C[:, -1:], _TINY)
            C += np.arange(R, dtype=np.float64)[:, None]
            self._flat = C.ravel()
        # u is kept above the float spacing of the row offsets, so a leading zero-weight entry stays unreachable
        pos = np.searchsorted(self._flat, rows + np.maximum(u, 1e-11)) - rows * K
        return np.clip(pos, 0, K - 1)
