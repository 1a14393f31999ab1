"""Plain references of the ``tt`` kernels (:mod:`mango.optimizers.tt.kernels`), for the tests only.

Each ``<kernel>_reference`` is a loop over the cores or an enumeration of the indices, teneva where it has
the operation (``teneva.interface``, ``teneva.core_qtt_to_tt``): slow and obviously right.
``tests/test_tt.py`` checks every kernel against its reference.  They lived in the library until 0.x; they
are test code.
"""

from __future__ import annotations

import math

import numpy as np

_TINY = np.finfo(np.float64).tiny


def chain_log_reference(M: np.ndarray) -> np.ndarray:
    """Reference for :func:`chain_log`: the row vector ``e0^T`` multiplied by one factor after the
    other (a loop over the chain, the vector rescaled to sum 1 and the scales' logs summed)."""
    M = np.asarray(M, dtype=np.float64)
    out = np.empty(M.shape[0])
    for c in range(M.shape[0]):
        v, log_scale = np.eye(M.shape[-1])[0], 0.0
        for Mj in M[c]:
            v = v @ Mj
            s = max(v.sum(), _TINY)
            v, log_scale = v / s, log_scale + math.log(s)
        out[c] = log_scale + math.log(max(v[0], _TINY))
    return out


def chain_vectors_reference(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference for :func:`chain_vectors` by teneva: each chain as a TT of ``L`` one-level cores
    (first row of the first, first column of the last), its interface vectors by
    ``teneva.interface`` in both directions, scaled to sum 1; ``den = lv M rv``."""
    import teneva

    M = np.asarray(M, dtype=np.float64)
    C, L, r = M.shape[0], M.shape[1], M.shape[-1]
    lv, rv, den = np.zeros((C, L, r)), np.zeros((C, L, r)), np.zeros((C, L))
    e0 = np.eye(r)[0]
    for c in range(C):
        Y = [Mj[:, None, :].copy() for Mj in M[c]]
        Y[0] = Y[0][:1]
        Y[-1] = Y[-1][:, :, :1]  # (L = 1: both on the one core)
        idx = np.zeros(L, dtype=int)
        right = teneva.interface(Y, i=idx, norm="linalg")  # right[k]: cores k.. contracted, length r_k
        left = teneva.interface(Y, i=idx, norm="linalg", ltr=True)  # left[k]: cores ..k-1 contracted
        for j in range(L):
            lv[c, j] = left[j] if j > 0 else e0
            rv[c, j] = right[j + 1] if j < L - 1 else e0
        lv[c] /= lv[c].sum(axis=1, keepdims=True)
        rv[c] /= rv[c].sum(axis=1, keepdims=True)
        den[c] = [max(lv[c, j] @ M[c, j] @ rv[c, j], _TINY) for j in range(L)]
    return lv, rv, den


def merge_bits_reference(Gb: np.ndarray) -> np.ndarray:
    """Reference for :func:`merge_bits` by teneva: ``teneva.core_qtt_to_tt`` on each mode's binary
    cores.  teneva reads the first core's digit as the *least* significant one, this module as the
    most significant, so the merged index's binary digits are reversed."""
    import teneva

    t, d = Gb.shape[0], Gb.shape[1]
    rev = np.array([int(format(i, f"0{t}b")[::-1], 2) for i in range(2 ** t)])  # bit reversal
    return np.stack([teneva.core_qtt_to_tt([Gb[s, j] for s in range(t)])[:, rev, :] for j in range(d)])


def _sizes_of(cbits: np.ndarray) -> np.ndarray:
    """The number of levels ``n_j`` of each mode from the digits ``cbits [d, q]`` of ``n_j - 1``."""
    q = cbits.shape[1]
    return (cbits.astype(np.int64) @ (1 << np.arange(q - 1, -1, -1))) + 1


def _digit_product(Gb: np.ndarray, j: int, digits) -> np.ndarray:
    """The product of binary cores ``Gb[t, j, :, digits[k], :]`` for ``t = first, first + 1, ...``,
    ``digits`` a tuple of the last ``len(digits)`` digits of mode ``j`` (the identity for none)."""
    q, r = Gb.shape[0], Gb.shape[2]
    P = np.eye(r)
    for k, bit in enumerate(digits):
        P = P @ Gb[q - len(digits) + k, j, :, bit, :]
    return P


def digit_suffixes_reference(Gb: np.ndarray, cbits: np.ndarray):
    """Reference for :func:`digit_suffixes` (and :func:`digit_sums`), by enumeration: for mode ``j``
    and digit ``t``, ``Rl[t, j]`` sums the products of the cores after digit ``t`` over every
    completion of the digits after ``t``; ``Rt[t, j]`` only over those that keep the index below
    ``n_j`` when the digits through ``t`` are those of ``n_j - 1``; ``S[j]`` sums the merged core
    over the valid indices, ``Bs`` are the digit sums.  ``cbits [d, q]`` as in :func:`digit_suffixes`
    (``Rt`` is ``None`` when every mode has ``2^q`` levels).  Exponential in ``q``: small cores only."""
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    sizes = _sizes_of(cbits)
    Rl, Rt, S = np.zeros((q, d, r, r)), np.zeros((q, d, r, r)), np.zeros((d, r, r))
    for j in range(d):
        for i in range(sizes[j]):
            S[j] += _digit_product(Gb, j, [(i >> (q - 1 - s)) & 1 for s in range(q)])
        for t in range(q):
            m = q - 1 - t  # digits after t
            prefix = (int(sizes[j]) - 1) >> m  # the digits of n_j - 1 through t
            for s in range(2 ** m):
                P = _digit_product(Gb, j, [(s >> (m - 1 - k)) & 1 for k in range(m)])
                Rl[t, j] += P
                if (prefix << m) + s < sizes[j]:
                    Rt[t, j] += P
    return Rl, (None if bool(cbits.all()) else Rt), S, Gb.sum(axis=3)


def sample_digits_reference(Gb: np.ndarray, cbits: np.ndarray, a: np.ndarray, b: np.ndarray,
                            u: np.ndarray) -> np.ndarray:
    """Reference for :func:`sample_digits` (with :func:`digit_table`): draw by draw, mode by mode,
    digit by digit, the outcome ``(digit, c')`` of weight ``Gb[t, j, c, digit, c'] R[c', b]``
    (``R`` the suffix sums of :func:`digit_suffixes_reference`: tight while the prefix equals that
    of ``n_j - 1``, where a digit above it has weight zero) is the first whose cumulative weight
    reaches ``u`` times the total; the same numbers give the same indices."""
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    Rl, Rt, _, _ = digit_suffixes_reference(Gb, cbits)
    Rt = Rl if Rt is None else Rt
    cb = cbits.astype(np.int64)
    out = np.zeros(a.shape, dtype=np.int64)
    for i in range(a.shape[0]):
        for j in range(d):
            state, tight, index = int(a[i, j]), True, 0
            for t in range(q):
                w = np.zeros((2, r))
                for bit in range(2):
                    if tight and bit > cb[j, t]:
                        continue  # the index would exceed n_j - 1
                    R = Rt if (tight and bit == cb[j, t]) else Rl
                    w[bit] = Gb[t, j, state, bit, :] * R[t, j, :, b[i, j]]
                cum = np.cumsum(w.ravel())
                o = int(np.argmax(cum >= u[i, j, t] * cum[-1]))
                bit, state = divmod(o, r)
                tight = tight and bit == cb[j, t]
                index = 2 * index + bit
            out[i, j] = index
    return out


def digit_sums_vjp_reference(Gb: np.ndarray, cbits: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference for :func:`digit_sums_vjp`, by enumeration: ``x_j^T S_j y_j`` sums the chain of
    binary cores over the valid indices ``i < n_j``, so its derivative in core ``(t, j)`` at the
    digit ``i_t`` is ``outer(x_j^T (cores before t), (cores after t) y_j)`` summed over those
    indices.  Returned in the cores' layout ``[q, d, r, 2, r]``."""
    q, d, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
    sizes = _sizes_of(cbits)
    g = np.zeros((q, d, r, 2, r))
    for j in range(d):
        for i in range(sizes[j]):
            digits = [(i >> (q - 1 - s)) & 1 for s in range(q)]
            mats = [Gb[s, j, :, digits[s], :] for s in range(q)]
            for t in range(q):
                left, right = x[j], y[j]
                for Ms in mats[:t]:
                    left = left @ Ms
                for Ms in reversed(mats[t + 1:]):
                    right = Ms @ right
                g[t, j, :, digits[t], :] += np.outer(left, right)
    return g


def sample_path_reference(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Reference for :func:`sample_path`: each path step by step, the next state the number of
    cumulative probabilities of the current state's row (all but the last) below ``u``."""
    n, L = u.shape
    out = np.zeros((n, L), dtype=np.int64)
    for i in range(n):
        state = 0
        for j in range(L):
            state = int(np.sum(cdf[j, state, :-1] < u[i, j]))
            out[i, j] = state
    return out


def row_draw_reference(W: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Reference for :meth:`RowTable.draw`: for each entry of ``rows``, the first index of row
    ``W[row]`` whose cumulative weight reaches ``u`` times the row's total."""
    out = np.zeros(rows.shape, dtype=np.int64)
    for k in np.ndindex(rows.shape):
        cum = np.cumsum(np.asarray(W[rows[k]], dtype=np.float64))
        out[k] = int(np.argmax(cum >= u[k] * cum[-1]))
    return out
