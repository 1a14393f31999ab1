"""Pure numpy functions behind the ``tt`` optimizer: chain products, exact gradients, sampling.

A PROTES-style distribution is a chain of small non-negative matrices, and
everything the optimizer needs is a product along such a chain, its logarithm,
its derivative with respect to every factor, and draws from it.  The matrices
are tiny (``r x r`` with ``r ~ 5``), so what these functions cost is the number
of array operations, not arithmetic: each is written with a number of numpy
calls that grows with ``sqrt(d)`` (blocked sweeps), ``log2(d)`` (pointer
jumping) or the number of binary digits ``q`` of a mode, never with ``d``
itself, and the derivatives are computed in closed form (no autograd graph).

Each kernel has a plain reference in ``tests/_tt_reference.py`` (a loop over
the cores or an enumeration of the indices, teneva where it has the operation:
``teneva.interface``, ``teneva.core_qtt_to_tt``), slow and obviously right;
``tests/test_tt.py`` checks every kernel against its reference on small random
cores, dense and binary (QTT) layouts, and the optimizer against torch autograd
and teneva.

Conventions: a *chain* is an array ``M [C, L, r, r]`` of ``C`` independent
sequences of ``L`` matrices, and its value is ``e0^T M[:, 0] ... M[:, L-1] e0``
(first row, first column), the convention of a TT whose first and last cores
use only their first row and column.  Binary (QTT) cores are ``[q, d, r, 2, r]``
(digit-major: the cores of one digit of every mode are contiguous), most
significant digit first.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "chain_log", "chain_vectors", "merge_bits", "digit_sums", "digit_suffixes", "digit_sums_vjp",
    "sample_path", "sample_digits", "RowTable", "upper_ones", "digit_table",
]

_TINY = np.finfo(np.float64).tiny
_CONST: dict = {}  # small constant arrays (identities, vectors of ones, ...), built once per size


def _const(key, build) -> np.ndarray:
    """The small constant array ``build()`` for ``key``, built once and kept read-only."""
    a = _CONST.get(key)
    if a is None:
        a = _CONST[key] = build()
        a.flags.writeable = False
    return a


def _eye(r: int) -> np.ndarray:
    """The ``r x r`` identity."""
    return _const(("eye", r), lambda: np.eye(r))


def _ones(m: int) -> np.ndarray:
    """A vector of ``m`` ones: ``A @ _ones(m)`` sums the last axis (faster than ``sum`` over a short axis)."""
    return _const(("ones", m), lambda: np.ones(m))


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


def _both_interfaces(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right interface vectors ``(lv, rv)`` of every factor, each scaled to sum 1.

    The right vectors of ``M`` are the left vectors of the reversed, transposed
    chain, so both are carried together (``2 C`` row vectors).  Blocked sweep: the
    chain is cut into about ``sqrt(L)`` blocks; the prefix products inside all
    blocks are formed side by side (one batched product per position in a block),
    then the vectors at the block starts by a short sweep over the block totals,
    then every vector by one batched product -- about ``3 sqrt(L)`` calls instead
    of ``L``.  Factors are scaled to sum 1 first (which changes no vector's
    direction), so a product inside a block neither over- nor underflows; block
    totals are scaled the same way and the block-start vectors rescaled every
    four blocks.  (Sums over the short trailing axes are products with a vector
    of ones: numpy's reductions over a few elements cost more.)
    """
    C, L, r = M.shape[0], M.shape[1], M.shape[-1]
    rr = r * r
    bs = math.isqrt(L - 1) + 1  # block size ~ sqrt(L) (L >= 1)
    nb = -(-L // bs)
    Xb = np.empty((bs, nb, 2 * C, r, r))  # [position in block, block, chain]: each position contiguous
    Xv, m = Xb.transpose(1, 0, 2, 3, 4), L // bs
    Mt = M.transpose(1, 0, 2, 3)  # [L, C, r, r]
    Xv[:m, :, :C] = Mt[: m * bs].reshape(m, bs, C, r, r)
    Xv[:m, :, C:] = Mt[::-1][: m * bs].reshape(m, bs, C, r, r).transpose(0, 1, 2, 4, 3)
    if m < nb:  # a last, partial block, padded with identities
        Xv[m, : L - m * bs, :C] = Mt[m * bs:]
        Xv[m, : L - m * bs, C:] = Mt[::-1][m * bs:].transpose(0, 1, 3, 2)
        Xv[m, L - m * bs:] = _eye(r)
    flat = Xb.reshape(-1, rr)
    scale = flat @ _ones(rr)
    scale += _TINY
    np.divide(flat, scale[:, None], out=flat)
    P = np.empty((bs, nb, 2 * C, r, r))  # exclusive prefix products inside each block
    P[0] = _eye(r)
    Ps, Xs, mm = list(P), list(Xb), np.matmul
    for i in range(1, bs):
        mm(Ps[i - 1], Xs[i - 1], out=Ps[i])
    T = Ps[bs - 1] @ Xs[bs - 1]  # block totals, scaled to sum 1 (as the factors)
    scale = T.reshape(-1, rr) @ _ones(rr)
    scale += _TINY
    T /= scale.reshape(nb, 2 * C, 1, 1)
    T = list(T)
    V = np.zeros((nb, 2 * C, 1, r))  # vectors at the block starts
    V[0, :, 0, 0] = 1.0
    Vs = list(V)
    for k in range(nb - 1):
        v = mm(Vs[k], T[k], out=Vs[k + 1])
        if k % 4 == 3:  # four scaled block totals stay far inside the floating-point range
            v /= v @ _ones(r)[:, None] + _TINY
    out = (V[None] @ P)[:, :, :, 0]  # [bs, nb, 2C, r]
    out = out.transpose(2, 1, 0, 3).reshape(2 * C, nb * bs, r)[:, :L]
    scale = out @ _ones(r)
    scale += _TINY
    out /= scale[:, :, None]
    return out[:C], out[C:, ::-1]


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
    lv, rv = _both_interfaces(M)
    den = np.maximum(((lv[:, :, None, :] @ M)[:, :, 0, :] * rv) @ _ones(M.shape[-1]), _TINY)
    return lv, rv, den


def merge_bits(Gb: np.ndarray) -> np.ndarray:
    """Multiply binary cores ``[t, d, r, 2, r]`` (most significant first) into mode cores ``[d, r, 2^t, r]``."""
    t, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    A = Gb[0]
    for s in range(1, t):
        m = A.shape[2]
        A = (A.reshape(d, r * m, r) @ Gb[s].reshape(d, r, 2 * r)).reshape(d, r, 2 * m, r)  # index i*2+bit
    return A


def digit_sums(Gb: np.ndarray, cbits: np.ndarray) -> np.ndarray:
    """Per-mode sums ``S_j = sum_{i < n_j} G_j[i]`` of QTT cores over the *valid* indices only.

    ``Gb [q, d, r, 2, r]`` binary cores, ``cbits [d, q]`` the binary digits of
    ``n_j - 1`` (most significant first).  A digit recursion: ``E`` is the
    product along the digits of ``n_j - 1`` (the prefixes still *tight*), ``L``
    the sum over the prefixes already below it (*loose*).  Returns ``[d, r, r]``.
    (The reference the faster :func:`digit_suffixes` is tested against.)
    """
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    B0, B1 = Gb[:, :, :, 0, :], Gb[:, :, :, 1, :]
    if cbits.all():  # n_j = 2^q for every mode: all indices valid, S_j is a product of sums
        Bs = B0 + B1
        S = Bs[0]
        for t in range(1, q):
            S = S @ Bs[t]
        return S
    c = cbits[:, :, None, None]
    E = np.broadcast_to(np.eye(r), (d, r, r))
    L = np.zeros((d, r, r))
    for t in range(q):
        L = L @ (B0[t] + B1[t]) + c[:, t] * (E @ B0[t])
        E = E @ (B0[t] + c[:, t] * (B1[t] - B0[t]))
    return L + E


def digit_suffixes(Gb: np.ndarray, cbits: np.ndarray, work=None):
    """Suffix sums of QTT cores along the digits of each mode, for sampling and for ``Z``.

    ``Gb [q, d, r, 2, r]`` binary cores, ``cbits [d, q]`` the binary digits of
    ``n_j - 1`` (``None``: every mode has ``2^q`` levels).  Returns ``(Rl, Rt, S, Bs)``.
    ``Rl [q, d, r, r]`` (digit-major) is
    the sum over all values of the digits after digit ``t``, ``Bs_{t+1} ... Bs_{q-1}``
    (``Rl[q-1]`` the identity): the continuation of a prefix already below
    ``n_j - 1`` (*loose*); entry ``(c, b)`` leads from rank index ``c`` after digit
    ``t`` to ``b`` at the end of the mode.  ``Rt`` (same layout) sums the
    continuations that keep the index below ``n_j`` when the prefix through digit
    ``t`` equals that of ``n_j - 1`` (*tight*; ``None`` when every mode has ``2^q``
    levels, where ``Rt = Rl``).  ``S [d, r, r]`` is the sum over the valid indices
    (:func:`digit_sums`), ``Bs [q, d, r, r]`` the digit sums ``B0 + B1`` (for
    :func:`digit_sums_vjp`).  One backward pass over the digits: ``q - 1`` batched
    products (three per digit with a mask).  ``work(name, shape)``, if given,
    supplies the output arrays (reused from call to call).
    """
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    new = (lambda name, shape: np.empty(shape)) if work is None else work
    # B0 + B1 for every core at once: the [.., 2r] rows times two stacked identities (one product)
    Bsum = new("digit_sums", (q, d, r, r))
    np.matmul(Gb.reshape(q * d * r, 2 * r), _stacked_eye(r), out=Bsum.reshape(q * d * r, r))
    Rl = new("suffix_sums", (q, d, r, r))
    Rl[q - 1] = _eye(r)
    Rls, Bs, mm = list(Rl), list(Bsum), np.matmul
    for t in range(q - 1, 0, -1):
        mm(Bs[t], Rls[t], out=Rls[t - 1])
    if cbits is None or cbits.all():
        return Rl, None, Bs[0] @ Rls[0], Bsum
    c = list(cbits.T[:, :, None, None])
    Rt = new("tight_suffix_sums", (q, d, r, r))
    Rt[q - 1] = _eye(r)
    Rts = list(Rt)

    def before(t):  # the sum after digit t - 1 given a tight prefix: digit t below c_t goes loose
        return Gb[t, :, :, 0] @ (c[t] * Rls[t] + (1.0 - c[t]) * Rts[t]) + c[t] * (Gb[t, :, :, 1] @ Rts[t])

    for t in range(q - 1, 0, -1):
        Rts[t - 1][...] = before(t)
    return Rl, Rt, before(0), Bsum


def _stacked_eye(r: int) -> np.ndarray:
    """``[[I], [I]]`` (``2r x r``): a row ``(digit, c')`` of a binary core times it sums the two digits."""
    return _const(("eye2", r), lambda: np.concatenate([np.eye(r), np.eye(r)]))


def digit_table(Rl: np.ndarray, Rt, out: np.ndarray | None = None) -> np.ndarray:
    """The continuation weights :func:`sample_digits` multiplies a core's row by.

    Row ``(v, t, j, b)`` holds, for both values of digit ``t`` of mode ``j`` and every
    rank index ``c'`` after it, the weight of reaching rank index ``b`` at the end
    of the mode (column ``b`` of the suffix sums): ``Rl`` twice (variant 0, *loose*);
    with a mask also the *tight* variants, below a 0 of ``n_j - 1`` (``Rt`` for
    digit 0, nothing for digit 1) and below a 1 (``Rl`` for digit 0, ``Rt`` for
    digit 1).  Returns ``[variants * q * d * r, 2 r]``; ``out`` may be given (no
    fresh allocation).
    """
    q, d, r = Rl.shape[0], Rl.shape[1], Rl.shape[2]
    nv = 1 if Rt is None else 3
    V = np.empty((nv, q, d, r, 2, r)) if out is None else out.reshape(nv, q, d, r, 2, r)
    RlT = Rl.transpose(0, 1, 3, 2)
    V[0, :, :, :, 0], V[0, :, :, :, 1] = RlT, RlT
    if Rt is not None:
        RtT = Rt.transpose(0, 1, 3, 2)
        V[1, :, :, :, 0], V[1, :, :, :, 1] = RtT, 0.0
        V[2, :, :, :, 0], V[2, :, :, :, 1] = RlT, RtT
    return V.reshape(nv * q * d * r, 2 * r)


def sample_digits(Gb: np.ndarray, cbits: np.ndarray, Vf: np.ndarray, masked: bool, a: np.ndarray,
                  b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw the index of every mode of QTT draws whose rank indices around the modes are known.

    Given the rank index ``a [n, d]`` entering mode ``j`` and ``b [n, d]`` leaving it,
    the digits are drawn most significant first, each jointly with the rank index
    after it, with weights ``Gb[t, j, c, bit, c'] R[t, j, c', b]`` (``R`` = ``Rl``, or
    ``Rt`` while the prefix equals that of ``n_j - 1``; :func:`digit_suffixes`,
    tabulated by :func:`digit_table` as ``Vf``), so an index ``>= n_j`` has weight
    zero and is never drawn.  ``u [n, d, q]`` uniform numbers in ``(0, 1]``.
    Returns the indices ``[n, d]``.
    """
    n, d = a.shape
    q, r = Gb.shape[0], Gb.shape[2]
    # every step gathers one contiguous row of 2r weights per draw
    Gf = Gb.reshape(q * d * r, 2 * r)  # row (t, j, c): outcomes (digit, c')
    tri = upper_ones(2 * r)
    nd = n * d
    key = (n, d, q, r)
    if key not in _DRAW_INDEX:  # (a few shapes recur every update)
        j = np.tile(np.arange(d), n)
        steps = np.arange(q)[:, None]
        if len(_DRAW_INDEX) > 16:
            _DRAW_INDEX.clear()
        _DRAW_INDEX[key] = (j, steps * (d * r) + j * r)
    # base[t]: the row of rank index 0 of digit t's core of each draw's mode, in Gf and in Vf alike
    j, base = _DRAW_INDEX[key]
    g_rows, v_rows = list(base), list(base + b.reshape(-1))
    state = a.reshape(-1)
    uT = list(u.transpose(2, 0, 1).reshape(q, nd))
    O = np.empty((q, nd), dtype=np.int64)  # the outcome (digit, c') of every step
    if masked:
        tight = np.ones(nd, dtype=np.int64)
        cT = cbits.T.astype(np.int64)[:, j]  # [q, n * d]: the digits of n_j - 1 for every draw
    for t in range(q - 1):  # (array methods, not numpy's function wrappers: this loop is all small calls)
        W = Gf.take(g_rows[t] + state, axis=0)  # [n * d, 2r]
        rows = v_rows[t] if not masked else v_rows[t] + (tight * (1 + cT[t])) * (q * d * r)
        W *= Vf.take(rows, axis=0)
        cw = W @ tri
        o = (cw >= (uT[t] * cw[:, -1])[:, None]).argmax(axis=1, out=O[t])
        state = np.remainder(o, r)
        if masked:
            tight &= (o >= r) == cT[t]
    # the last digit must end in rank index b: two weights, G[c, 0, b] and G[c, 1, b] (a tight prefix
    # below a 0 of n_j - 1 allows only digit 0)
    at = (g_rows[q - 1] + state) * (2 * r) + b.reshape(-1)
    Gflat = Gf.reshape(-1)
    w0, w1 = Gflat.take(at), Gflat.take(at + r)
    if masked:
        w1 = w1 * ((tight == 0) | (cT[q - 1] == 1))
    O[q - 1] = r * (uT[q - 1] * (w0 + w1) > w0)
    return (np.left_shift(1, np.arange(q - 1, -1, -1)) @ (O >= r)).reshape(n, d)


def digit_sums_vjp(Gb: np.ndarray, cbits: np.ndarray, x: np.ndarray, y: np.ndarray, Bs: np.ndarray,
                   out: np.ndarray) -> np.ndarray:
    """Derivative of ``x_j^T S_j y_j`` (:func:`digit_sums`) in the binary cores ``Gb [q, d, r, 2, r]``.

    *Added* into ``out``, *batch-last* ``[r, 2, r, q, d]`` (entry ``[a, digit, b, t, j]``), the
    layout in which elementwise work on it runs along long contiguous rows.  ``Bs`` are the digit
    sums ``B0 + B1`` from :func:`digit_suffixes`, ``cbits [d, q]`` the digits of ``n_j - 1``.

    The recursion is linear in each core, and with a rank-one output gradient ``x y^T``
    every intermediate gradient stays rank one, so the forward pass carries row vectors
    (``x^T L``, ``x^T E``) and the backward pass column vectors.  (When every index is
    valid, ``S_j = Bs_0 ... Bs_{q-1}`` and both digits of core ``t`` simply get
    ``outer(x^T Bs_0 ... Bs_{t-1}, Bs_{t+1} ... y)``: the optimizer carries those vectors
    along its own sweeps instead.)
    """
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    B0, B1 = Gb[:, :, :, 0, :], Gb[:, :, :, 1, :]  # [q, d, r, r]
    acc = np.empty((q, d, r, 2, r))  # accumulated in the cores' layout
    c = cbits.T[:, :, None]  # [q, d, 1]
    Bc = B0 + c[..., None] * (B1 - B0)
    lvec = np.zeros((q + 1, d, r))  # x^T L_t
    evec = np.zeros((q + 1, d, r))  # x^T E_t
    evec[0] = x
    for t in range(q):
        lvec[t + 1] = (lvec[t, :, None, :] @ Bs[t])[:, 0] + c[t] * (evec[t, :, None, :] @ B0[t])[:, 0]
        evec[t + 1] = (evec[t, :, None, :] @ Bc[t])[:, 0]
    yL, yE = y, y  # column vectors of the gradients of L_t and E_t
    for t in range(q - 1, -1, -1):
        ct, lt, et = c[t], lvec[t], evec[t]
        both = lt[:, :, None] * yL[:, None, :]
        acc[t, :, :, 0, :] = both + et[:, :, None] * (ct * yL + (1.0 - ct) * yE)[:, None, :]
        acc[t, :, :, 1, :] = both + et[:, :, None] * (ct * yE)[:, None, :]
        yL, yE = (Bs[t] @ yL[:, :, None])[:, :, 0], (ct * (B0[t] @ yL[:, :, None])[:, :, 0]
                                                     + (Bc[t] @ yE[:, :, None])[:, :, 0])
    out += acc.transpose(2, 3, 4, 0, 1)
    return out


_DRAW_INDEX: dict = {}  # index arrays that depend only on shapes, which recur every update


def upper_ones(m: int) -> np.ndarray:
    """The ``m x m`` upper-triangular matrix of ones (row-wise cumulative sums as one product)."""
    return _const(("upper", m), lambda: np.triu(np.ones((m, m))))


def sample_path(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw paths of a Markov chain that starts in state 0.

    ``cdf [L, s, s]``: row-wise cumulative transition probabilities of each step;
    ``u [n, L]`` uniform numbers; the state after step ``j`` is the number of
    cumulative probabilities of the current state's row below ``u[:, j]``.
    Returns the state after each step, ``[n, L]``.  Few draws: pointer jumping
    -- every step's random map (the next state from *each* state with the shared
    number ``u[:, j]``; a path visits one state per step, so sharing is harmless)
    is drawn at once and the maps are composed by doubling, ``ceil(log2 L)``
    rounds and no loop over the steps; many draws: a sweep over the steps (a
    few calls a step, on arrays of ``n``), whichever moves less data.
    """
    n, L, s = u.shape[0], cdf.shape[0], cdf.shape[-1]
    if n * s * max(1, math.ceil(math.log2(max(L, 2)))) > 800:
        return _path_sweep(cdf, u)
    key = ("path", n, L, s)
    if key not in _DRAW_INDEX:  # flat offsets of (draw i, state 0, step l)
        if len(_DRAW_INDEX) > 16:
            _DRAW_INDEX.clear()
        _DRAW_INDEX[key] = np.arange(n)[:, None, None] * (s * L) + np.arange(L)[None, None, :]
    base = _DRAW_INDEX[key]  # [n, 1, L]
    # the maps, steps last (long rows): F[i, x, l] = the next state from state x at step l = the number
    # of cumulative probabilities below u[i, l], counted over all thresholds at once
    thr = np.ascontiguousarray(cdf[:, :, :-1].transpose(2, 1, 0))  # [s - 1, s, L]
    below = thr[:, None] < u[:, None, :]  # [s - 1, n, s, L]
    small = np.uint8 if s <= 255 else np.int64  # (a count below s fits a byte for any practical rank)
    F = np.add.reduce(below.view(np.uint8), axis=0, dtype=small)  # [n, s, L]
    # E[i, x, l] = flat index of (i, F[i, x, l], l) in E itself (C order: a flat view of E), so
    # composing two maps is one gather
    E = np.empty((n, s, L), dtype=np.int64)
    E[...] = F
    E *= L
    E += base
    flat, shift = E.reshape(-1), 1
    while shift < L:  # F[:, :, l] <- F[:, :, l] o F[:, :, l - shift]: E[i, x, l] = flat[E[i, x, l - shift] + shift]
        E[:, :, shift:] = flat[shift:].take(E[:, :, : L - shift])
        shift *= 2
    out = E[:, 0, :] - base[:, 0, :]
    out //= L
    return out


def _path_sweep(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    n, L, s = u.shape[0], cdf.shape[0], cdf.shape[-1]
    out = np.empty((L, n), dtype=np.int64)
    state = np.zeros(n, dtype=np.int64)
    rows, uT = list(np.ascontiguousarray(cdf[:, :, :-1])), list(np.ascontiguousarray(u.T))
    for j in range(L):
        out[j] = np.count_nonzero(np.take(rows[j], state, axis=0) < uT[j][:, None], axis=1)
        state = out[j]
    return out.T


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
    are gathered (whichever touches less memory).  ``work(name, shape)``, if
    given, supplies a reusable array for that table.
    """

    def __init__(self, W: np.ndarray, work=None):
        R, K = W.shape
        self._W, self._K, self._flat, self._blocks, self._work = W, K, None, None, work
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
            out = None if self._work is None else self._work("rowtable", (R, K))
            C = np.cumsum(self._W, axis=1, dtype=np.float64, out=out)
            C /= np.maximum(C[:, -1:], _TINY)
            C += np.arange(R, dtype=np.float64)[:, None]
            self._flat = C.ravel()
        # u is kept above the float spacing of the row offsets, so a leading zero-weight entry stays unreachable
        pos = np.searchsorted(self._flat, rows + np.maximum(u, 1e-11)) - rows * K
        return np.clip(pos, 0, K - 1)


