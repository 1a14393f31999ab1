"""Tensor-train optimizer of the PROTES family, in numpy (no jax, no autograd).

The method (Batsheva, Chertkov, Ryzhakov, Oseledets, 2023, "PROTES:
probabilistic optimization with tensor sampling") keeps a probability
distribution over a discrete grid ``n_1 x ... x n_d`` in tensor-train (TT)
format, draws batches of points from it, and sharpens it toward the best points
seen by a few Adam steps on the mean log-likelihood of that elite.

The distribution
----------------
Core ``j`` is a non-negative tensor ``G_j`` of shape ``[r, n_j, r]``
(``G_j = |theta_j|``, entries for indices ``>= n_j`` masked to zero), and

    p(i_1, ..., i_d) = G_1[i_1] G_2[i_2] ... G_d[i_d] / Z,   Z = sum over all i

(the first core uses its first row, the last core its first column, so the
product is a number).  Because the cores are non-negative this *is* the
distribution PROTES samples from with its sequential conditionals; here the
likelihood and ``Z`` are computed exactly as chain products of matrices, and
their gradients in closed form (interface vectors by blocked sweeps,
:mod:`mango.optimizers.tt_math`), so an Adam step costs a few hundred small
array operations whatever ``d`` is, and no autograd graph.

Quantization (QTT)
------------------
With ``quantize=True`` (or ``"auto"`` for large modes) each mode of size ``n``
is parametrized by ``q = ceil(log2 n)`` binary cores of rank ``r`` (most
significant bit first), exactly the QTT reshape PROTES is run on.  The
distribution is the QTT distribution restricted to valid indices: the sums
behind ``Z`` run over the indices ``< n`` only (a recursion over the digits of
``n - 1``), and a draw picks its digits one at a time with the weight of the
valid completions, so a size that is not a power of two never produces an
invalid index, and the likelihood of the elite is exact.  Nothing of size
``2^q`` is ever formed (except by :meth:`TTOptimizer.tt_cores`).

A space of ``d`` binary dimensions (a ``Codebook(d, 2)``, PROTES's literal QTT
setting) already is such a chain of ``[r, 2, r]`` cores: its dimensions are
grouped ``q`` at a time into modes of ``2^q`` levels (``q`` a divisor of ``d``
near ``d^(1/3)``; see :meth:`TTOptimizer._binary_group`) and run on the QTT
engine, which draws the same distribution with far fewer array operations.

ask / tell
----------
``ask(n)`` draws any ``n`` points from the current distribution (with
``dedup=True``, points already seen or outstanding are redrawn, then nudged in
one coordinate: on a deterministic neuron model a repeated query is a wasted
one; use ``dedup=False`` for the plain PROTES behaviour).  ``tell`` adds the
values to the elite (the best ``k_top`` points of everything seen with
``elite="seen"``, of the points told since the last update with
``elite="batch"`` as in PROTES) and, every ``k`` told values, makes ``k_gd``
Adam steps.  Telling points that were never asked is a warm start with
measured values; :meth:`TTOptimizer.warm_start` fits the distribution to
points without values (e.g. the codes of real images).

:meth:`TTOptimizer.tt_cores` exports the distribution as teneva-compatible
cores (see ``examples/tt_cores_teneva.py``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from . import tt_math
from .base import Optimizer

__all__ = ["TTOptimizer"]

_B1, _B2, _EPS = 0.9, 0.999, 1e-8


def _adam(theta: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float) -> None:
    """Adam step ``t`` in place, with no temporaries of the parameters' size (``g`` is overwritten):
    ``m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  theta -= lr mhat / (sqrt(vhat) + eps)``.

    (torch's fused Adam kernel was measured here too: no faster inside an update,
    where the four arrays come from memory rather than cache.)
    """
    c2 = math.sqrt(1 - _B2 ** t)
    g *= 1 - _B1
    m *= _B1
    m += g
    g *= g
    g *= (1 - _B2) / (1 - _B1) ** 2
    v *= _B2
    v += g
    np.sqrt(v, out=g)
    g += _EPS * c2
    np.divide(m, g, out=g)
    g *= lr * c2 / (1 - _B1 ** t)
    theta -= g


class TTOptimizer(Optimizer):
    """PROTES-style tensor-train optimizer (probabilistic sampling from a TT).

    Parameters
    ----------
    rank : TT rank ``r`` of the distribution.
    k : number of told values between two updates of the distribution
        (PROTES's samples per iteration); also the preferred batch size.
    k_top : elite size: the update maximizes the likelihood of the best
        ``k_top`` points.
    lr : Adam learning rate.
    k_gd : Adam steps per update.
    elite : ``"seen"`` -- elite from every point told so far (default, best at
        small budgets); ``"batch"`` -- from the points told since the last
        update (PROTES).
    quantize : ``False``; ``True`` -- QTT: every mode of size ``n`` is
        parametrized by ``ceil(log2 n)`` binary cores; ``"auto"`` -- quantize
        when the largest mode has more than 64 levels.  (A space of binary
        dimensions is its own QTT and always runs on the QTT engine, see above.)
    dedup : redraw points already seen or outstanding (see module doc).
    init : scale of the random initial cores (uniform in ``[1 - init, 1]``;
        1.0 is PROTES's uniform ``[0, 1]``, 0.0 the uniform distribution).

    The arithmetic is a few hundred operations on ``r x r`` matrices per
    update: it runs in double precision in numpy on the host (see
    :mod:`mango.optimizers.tt_math`), where such small operations are fastest,
    whatever device the generator and the network use.
    """

    name = "tt"
    native = ("grid", "codebook")
    defaults = {"rank": 5, "k": 20, "k_top": 5, "lr": 0.1, "k_gd": 2, "elite": "seen",
                "quantize": False, "dedup": True, "init": 1.0}

    # ------------------------------------------------------------------ setup
    def _check_params(self) -> None:
        p = self.params
        for key in ("rank", "k", "k_top", "k_gd"):
            v = p[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"tt: {key} must be a positive integer, got {v!r}.")
        if not (isinstance(p["lr"], (int, float)) and p["lr"] > 0 and math.isfinite(p["lr"])):
            raise ConfigError(f"tt: lr must be a positive number, got {p['lr']!r}.")
        if p["elite"] not in ("seen", "batch"):
            raise ConfigError(f"tt: elite must be 'seen' or 'batch', got {p['elite']!r}.")
        if p["quantize"] not in (True, False, "auto"):
            raise ConfigError(f"tt: quantize must be True, False or 'auto', got {p['quantize']!r}.")
        if not (isinstance(p["init"], (int, float)) and 0.0 <= p["init"] <= 1.0):
            raise ConfigError(f"tt: init must be a number in [0, 1], got {p['init']!r}.")
        if p["elite"] == "batch" and p["k_top"] > p["k"]:
            raise ConfigError(f"tt: with elite='batch', k_top ({p['k_top']}) must be <= k ({p['k']}).")
        if self.space.dim < 1:  # pragma: no cover - spaces forbid it
            raise ConfigError("tt needs a space with at least one dimension.")

    @staticmethod
    def _binary_group(sizes: np.ndarray) -> int:
        """Digits per mode for a space of ``d`` binary dimensions computed as its own QTT (0: not).

        Such a space *is* a QTT: grouping its dimensions ``q`` at a time into modes of
        ``2^q`` levels changes nothing in the distribution (the same chain of ``[r, 2, r]``
        cores, the same parameters) but lets the QTT engine sweep ``q`` digits and
        ``d / q`` modes instead of ``d`` modes.  ``q`` divides ``d`` (no padding), with
        ``3 <= q <= 16`` and at least two modes; it is the divisor nearest ``1.1 d^(1/3)``
        (about balancing the digit sweeps against the blocked sweeps over the modes).
        """
        d = len(sizes)
        if d < 6 or not bool(np.all(sizes == 2)):
            return 0
        qs = [q for q in range(3, 17) if d % q == 0 and d // q >= 2]
        return min(qs, key=lambda q: abs(q - 1.1 * d ** (1 / 3))) if qs else 0

    def _setup(self) -> None:
        self._check_params()
        p = self.params
        sizes = np.asarray(self.space.sizes, dtype=np.int64)
        quant = p["quantize"]
        self._group = self._binary_group(sizes)
        if self._group:  # binary dimensions, q at a time, as modes of 2^q levels (see _binary_group)
            sizes = np.full(len(sizes) // self._group, 2 ** self._group, dtype=np.int64)
            quant = True
        self._sizes = sizes  # the modes of the distribution (those of the space unless grouped)
        self._dim = len(sizes)
        d, r, nmax = self._dim, int(p["rank"]), int(sizes.max())
        if quant == "auto":
            quant = nmax > 64
        self._q = max(1, math.ceil(math.log2(nmax))) if quant else 0
        N = 2 ** self._q if self._q else nmax
        lo = 1.0 - float(p["init"])
        shape = (d, self._q, r, 2, r) if self._q else (d, r, N, r)
        # parameters and Adam moments in single precision (as PROTES): every Adam step streams them;
        # the cores' chains, sums and gradients are evaluated in double.
        self._dtype = np.float32
        self._theta = self._from_teneva(lo + (1.0 - lo) * self.rng.random(shape)).astype(self._dtype)
        self._m = np.zeros_like(self._theta)
        self._v = np.zeros_like(self._theta)
        self._t = 0
        mask = np.arange(N)[None, :] < sizes[:, None]  # [d, N]: valid indices of each mode
        self._masked = not bool(mask.all())
        self._mask = mask.astype(np.float64)[:, None, :, None]  # broadcasts over [d, r, N, r]
        self._mask_rrn = mask.astype(np.float64)[:, None, None, :]  # over the dense parameters [d, r, r, N]
        q = max(self._q, 1)
        self._shifts = np.arange(q - 1, -1, -1)
        # binary digits of n_j - 1, most significant first (the digit recursion of the valid sums)
        self._cbits = (((sizes[:, None] - 1) >> self._shifts[None, :]) & 1).astype(np.float64)
        self._cbits_mask = self._cbits if self._masked else None  # None: every index of every mode valid
        self._elite_p = np.zeros((0, d), np.int64)
        self._elite_v = np.zeros(0)
        self._pending = 0
        self._seen: set[bytes] = set()
        self._outstanding: dict[bytes, int] = {}
        self._cache = self._tables = None  # derived from theta; reset by every update
        self._ws: dict = {}  # work arrays, see _work
        if self._q:  # flat offsets in |theta|'s binary cores of matrix (t, j, 0): bit 1 lies r further (see _selected)
            t, j, a, b = np.ix_(np.arange(self._q), np.arange(d), np.arange(r), np.arange(r))
            self._gather_base = (((t * d + j) * r + a) * 2 * r + b)[:, None]  # [q, 1, d, r, r]
        self._digits = np.arange(2)[:, None, None]

    def _work(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        """A work array reused from update to update (contents undefined).

        Every update needs a few arrays the size of the parameters; allocated
        afresh each time, arrays this large come from the operating system and
        cost page faults that take longer than the arithmetic on them.  Each is
        overwritten by the next update, so nothing derived from one outlives it.
        ``shape`` is a tuple of ints.  Arrays much larger than the parameters (say,
        for the log-probabilities of a large batch) are not kept.
        """
        a = self._ws.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = np.empty(shape, dtype)
            if a.size <= 8 * self._theta.size:
                self._ws[name] = a
        return a

    @property
    def preferred_batch_size(self) -> int:
        return int(self.params["k"])

    # ---------------------------------------------------------- distribution
    def _abs_bits(self, reuse: bool = False) -> np.ndarray:
        """``|theta|`` of the binary cores as ``[q, d, r, 2, r]``, in double precision (one pass);
        ``reuse``: into the work array of the current update.

        No rescaling is needed: a mode's product of ``q`` cores with entries of
        Adam-sized magnitude stays far inside the double range, and the chains
        across modes are rescaled as they are swept.
        """
        batch_last = self._theta.transpose(3, 4, 0, 1, 2)
        G = self._work("Gb", batch_last.shape) if reuse else np.empty(batch_last.shape)
        np.absolute(batch_last, out=G)
        return G

    def _from_teneva(self, a: np.ndarray) -> np.ndarray:
        """Parameters from teneva's core layout to the internal one: dense ``[d, r, N, r]`` ->
        ``[d, r, r, N]`` (levels last: contiguous sums and sampling rows); QTT ``[d, q, r, 2, r]`` ->
        ``[r, 2, r, q, d]`` (batch-last: the gradient's and Adam's elementwise work runs along
        rows of ``q d``)."""
        axes = (2, 3, 4, 1, 0) if self._q else (0, 1, 3, 2)
        return np.ascontiguousarray(a.transpose(*axes))

    def _to_teneva(self, a: np.ndarray) -> np.ndarray:
        axes = (4, 3, 0, 1, 2) if self._q else (0, 1, 3, 2)
        return np.ascontiguousarray(a.transpose(*axes))

    def _cores(self) -> np.ndarray:
        """Non-negative masked cores ``[d, r, N, r]`` (teneva layout, batched over dimensions)."""
        G = tt_math.merge_bits(self._abs_bits()) if self._q else self._dist()["G"].transpose(0, 1, 3, 2)
        return G * self._mask if self._masked and self._q else G

    def _dist(self) -> dict:
        """What the current cores determine, computed once per update and shared by sampling,
        likelihoods and the next gradient: the cores, the per-mode sums ``S_j`` over valid
        indices (for QTT with the digit suffix sums they come from), and ``Z``'s chain of
        them (interface vectors, lazily its log value)."""
        if self._cache is None:
            c: dict = {}
            if self._q:
                c["Gb"] = self._abs_bits(reuse=True)
                c["Rl"], c["Rt"], S, c["Bs"] = tt_math.digit_suffixes(c["Gb"], self._cbits_mask, work=self._work)
            else:
                G = np.absolute(self._theta, out=self._work("G", self._theta.shape, np.float32))  # [d, r, r, N]
                if self._masked:
                    G *= self._mask_rrn
                c["G"] = G
                S = c["G"].sum(axis=3, dtype=np.float64)
            lvZ, rvZ, denZ = tt_math.chain_vectors(S[None])
            c.update(S=S, lvZ=lvZ[0], rvZ=rvZ[0], denZ=denZ[0])
            self._cache = c
        return self._cache

    def _bits(self, idx: np.ndarray) -> np.ndarray:
        """Binary digits ``[B, d, q]`` of integer points ``idx [B, d]``, most significant first."""
        return (idx[:, :, None] >> self._shifts[None, None, :]) & 1

    def _selected(self, idx: np.ndarray, extra: int = 0):
        """The matrices that points ``idx [B, d]`` select: ``[B, d, r, r]`` per mode (and, for QTT,
        the selected binary cores ``[q, B + extra, d, r, r]``, digit-major, in a work array with
        ``extra`` slots left for the caller after the points', and the digits ``[q, B, d]``)."""
        c = self._dist()
        if not self._q:
            return c["G"].transpose(0, 3, 1, 2)[np.arange(self._dim)[None, :], idx], None, None
        bits = self._bits(idx).transpose(2, 0, 1)  # [q, B, d]
        q, r, B = self._q, self.params["rank"], len(idx)
        # one gather from the flat cores: entry (t, j, a, bit, b) sits at base[t, j, a, b] + bit * r
        Bsel = self._work("selected", (q, B + extra) + self._gather_base.shape[2:])
        Bsel[:, :B] = c["Gb"].reshape(-1).take(self._gather_base + (bits * r)[..., None, None])
        A = Bsel[0, :B].copy()  # the mode's product of its binary cores
        for t in range(1, q):
            np.matmul(A, Bsel[t, :B], out=A)
        return A, Bsel, bits

    def _log_prob(self, idx: np.ndarray) -> np.ndarray:
        """Exact log-probabilities of valid integer points ``idx [B, d]``."""
        return tt_math.chain_log(self._selected(idx)[0]) - self._log_z()

    def _log_z(self) -> float:
        c = self._dist()
        if "logZ" not in c:
            c["logZ"] = float(tt_math.chain_log(c["S"][None])[0])
        return c["logZ"]

    def _loss_grad(self, idx: np.ndarray) -> np.ndarray:
        """Gradient in ``theta`` of the loss ``-mean(log p(idx))``, exact and in closed form.

        ``log p = log T(idx) - log Z``: the chain of the selected matrices minus the
        chain of the per-mode sums.  The derivative of a chain in a factor is the outer
        product of its interface vectors (:func:`tt_math.chain_vectors`); for QTT the
        vectors are carried through a mode's binary cores, and through the digit
        recursion of ``S_j`` for ``Z`` (:func:`tt_math.digit_sums_vjp`).  ``|.|``
        contributes ``sign(theta)``.  Returned in a work array in the parameters'
        precision and layout.
        """
        c, B = self._dist(), len(idx)
        with_z = bool(self._q) and not self._masked  # every index valid: Z's vectors ride along the elite's
        A, Bsel, bits = self._selected(idx, extra=int(with_z))
        lv, rv, den = tt_math.chain_vectors(A)  # the elite's chains (Z's are cached)
        lvZ, rvZ, denZ = c["lvZ"], c["rvZ"], c["denZ"]
        full = self._work("grad", self._theta.shape, self._dtype)
        if not self._q:
            # d log Z / d S_j at every index (S_j sums G_j over the valid ones), then the points' terms
            full[:] = (lvZ[:, :, None] * rvZ[:, None, :] / denZ[:, None, None])[:, :, :, None]
            g = lv[..., :, None] * rv[..., None, :] * (-1.0 / B / den)[..., None, None]
            gp, ar = full.transpose(0, 3, 1, 2), np.arange(full.shape[0])
            for b in range(B):  # one point: distinct (mode, index) pairs, so a plain indexed add is exact
                gp[ar, idx[b]] += g[b]
            if self._masked:
                full *= self._mask_rrn
            return self._times_sign(full)
        q, d, r = self._q, A.shape[1], A.shape[-1]
        # Row vectors entering each selected binary core (lam) and column vectors leaving it (rho),
        # digit-major, by one sweep over the digits in each direction; the loss's factor -1 / (B den)
        # rides on the first vector.  With every index valid, Z's chain through a mode is the
        # product of its digit sums, and its vectors (scaled by 1 / den_Z) ride along as chain B.
        C = B + int(with_z)
        lam = np.empty((q, C, d, 1, r))
        lam[0, :B, :, 0] = lv * (-1.0 / B / den)[..., None]
        rho = np.empty((q, C, d, r, 1))
        rho[q - 1, :B, :, :, 0] = rv
        if with_z:
            Bsel[:, B] = c["Bs"]
            lam[0, B, :, 0] = lvZ / denZ[:, None]
            rho[q - 1, B, :, :, 0] = rvZ
        lams, rhos, Ms, mm = list(lam), list(rho), list(Bsel), np.matmul
        for t in range(1, q):
            mm(lams[t - 1], Ms[t - 1], out=lams[t])
            mm(Ms[q - t], rhos[q - t], out=rhos[q - t - 1])
        # a point selects one digit of each core: its term placed by a one-hot of the digits,
        # [C, r, q, d] vectors in the parameters' precision, batch-last like theta
        lT = np.ascontiguousarray(lam[:, :, :, 0, :].transpose(1, 3, 0, 2), dtype=self._dtype)
        rT = np.ascontiguousarray(rho[:, :, :, :, 0].transpose(1, 3, 0, 2), dtype=self._dtype)
        onehot = (bits.transpose(1, 0, 2)[:, None] == self._digits).astype(self._dtype)  # [B, digit, q, d]
        for b in range(B):
            term = full if b == 0 else self._work("term", self._theta.shape, self._dtype)
            np.multiply((lT[b, :, None] * onehot[b, None])[:, :, None], rT[b, None, None], out=term)
            if b:
                full += term
        # plus Z's term, the same for both digits of a core (they enter Z only through their sum);
        # with a mask, through the digit recursion of the valid sums
        if with_z:
            full += (lT[B, :, None] * rT[B, None])[:, None]
        else:
            tt_math.digit_sums_vjp(c["Gb"], self._cbits, lvZ / denZ[:, None], rvZ, Bs=c["Bs"], out=full)
        return self._times_sign(full)  # times d|theta|/dtheta = sign(theta)

    def _times_sign(self, g: np.ndarray) -> np.ndarray:
        """``g * sign(theta)`` in place, by flipping the sign bits of ``g`` where ``theta`` is negative
        (two integer passes; ``np.sign`` is several times slower).  At ``theta == 0`` exactly, where
        ``|theta|`` has no derivative, this takes the one-sided derivative of ``+0`` or ``-0``."""
        bits = self._work("signbits", self._theta.shape, np.uint32)
        np.bitwise_and(self._theta.view(np.uint32), np.uint32(0x80000000), out=bits)
        gi = g.view(np.uint32)
        np.bitwise_xor(gi, bits, out=gi)
        return g

    def _adam_steps(self, points: np.ndarray, steps: int) -> None:
        idx = np.asarray(points, dtype=np.int64)
        for _ in range(int(steps)):
            g = self._loss_grad(idx)  # a work array in the parameters' precision: updated in place
            self._t += 1
            _adam(self._theta, g, self._m, self._v, self._t, float(self.params["lr"]))
            self._cache = self._tables = None

    def _sampling_tables(self):
        """Tables for drawing points (built once per update).

        A draw is exact and vectorized over the modes: the chain's rank index after
        each mode is a Markov chain (transitions ``S_j[a, b] R_j[b]``, ``R_j`` the
        right interface) sampled by pointer jumping; given the rank indices ``a``
        before and ``b`` after mode ``j``, its index is drawn from ``G_j[a, :, b]``
        (dense: from a table of cumulative probabilities; QTT: digit by digit,
        :func:`tt_math.sample_digits`).
        """
        if self._tables is None:
            c = self._dist()
            T = c["S"] * c["rvZ"][:, None, :]
            cdf = T @ tt_math.upper_ones(T.shape[-1])  # row-wise cumulative sums
            cdf /= np.maximum(cdf[:, :, -1:], np.finfo(np.float64).tiny)
            if self._q:
                Rl, Rt = c["Rl"], c["Rt"]
                nv = 1 if Rt is None else 3
                V = tt_math.digit_table(Rl, Rt, out=self._work("V", (nv * Rl.size * 2,)))
                self._tables = (cdf, V)
            else:
                G = c["G"]  # [d, r, r, N]: rows (j, a, b)
                self._tables = (cdf, tt_math.RowTable(G.reshape(-1, G.shape[3]), work=self._work))
        return self._tables

    def _sample(self, n: int) -> np.ndarray:
        cdf, table = self._sampling_tables()
        d, r = self._dim, cdf.shape[-1]
        u = self.rng.random((n, d, 1 + max(self._q, 1)))
        np.subtract(1.0, u, out=u)  # (0, 1]: rank path, then the index (digits)
        b = tt_math.sample_path(cdf, u[:, :, 0])  # rank index after each mode
        a = np.zeros_like(b)
        a[:, 1:] = b[:, :-1]
        if self._q:
            c = self._dist()
            idx = tt_math.sample_digits(c["Gb"], self._cbits, table, c["Rt"] is not None, a, b, u[:, :, 1:])
            return self._to_space(idx)
        j = np.arange(d)[None, :]
        return table.draw((j * r + a) * r + b, u[:, :, 1])

    def _to_space(self, idx: np.ndarray) -> np.ndarray:
        """Points of the space from indices of the distribution's modes (the same unless grouped)."""
        return self._bits(idx).reshape(len(idx), -1) if self._group else idx

    def _from_space(self, x: np.ndarray) -> np.ndarray:
        """Indices of the distribution's modes from points of the space (most significant digit first)."""
        return x.reshape(len(x), self._dim, self._group) @ (1 << self._shifts) if self._group else x

    # --------------------------------------------------------------- ask/tell
    def _ask(self, n: int) -> np.ndarray:
        pts = self._sample(n)
        if self.params["dedup"]:  # (the bookkeeping of asked and seen points serves deduplication only)
            pts = self._dedup(pts)
            for p in pts:
                key = p.tobytes()
                self._outstanding[key] = self._outstanding.get(key, 0) + 1
        return pts

    def _dedup(self, pts: np.ndarray) -> np.ndarray:
        taken = set()

        def dup_rows(P):
            bad = []
            for i, p in enumerate(P):
                key = p.tobytes()
                if key in self._seen or key in self._outstanding or key in taken:
                    bad.append(i)
                else:
                    taken.add(key)
            return bad

        bad = dup_rows(pts)
        for _ in range(2):  # redraw from the distribution
            if not bad:
                return pts
            new = self._sample(len(bad))
            still = []
            for i, p in zip(bad, new):
                key = p.tobytes()
                if key in self._seen or key in self._outstanding or key in taken:
                    still.append(i)
                else:
                    taken.add(key)
                    pts[i] = p
            bad = still
        for i in bad:  # nudge: change 1, then more, random coordinates to random values
            p = pts[i]
            for attempt in range(200):
                q = p.copy()
                m = min(self.space.dim, 1 + attempt // 20)
                js = self.rng.choice(self.space.dim, size=m, replace=False)
                q[js] = (self.rng.random(m) * self.space.sizes[js]).astype(np.int64)
                key = q.tobytes()
                if not (key in self._seen or key in self._outstanding or key in taken):
                    p = q
                    break
            # (if 200 attempts found nothing new, the space is nearly exhausted: repeat a point)
            taken.add(p.tobytes())
            pts[i] = p
        return pts

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        pts = np.asarray(points, dtype=np.int64)
        for p in (pts if self.params["dedup"] else ()):
            key = p.tobytes()
            self._seen.add(key)
            c = self._outstanding.get(key)
            if c is not None:
                if c <= 1:
                    del self._outstanding[key]
                else:
                    self._outstanding[key] = c - 1
        self._add_elite(self._from_space(pts), values)
        self._pending += len(pts)
        if self._pending >= int(self.params["k"]):
            self._pending = 0
            self._adam_steps(self._elite_p, int(self.params["k_gd"]))
            if self.params["elite"] == "batch":
                self._elite_p, self._elite_v = self._elite_p[:0], self._elite_v[:0]

    def _add_elite(self, pts, values) -> None:
        P = np.concatenate([self._elite_p, pts])
        V = np.concatenate([self._elite_v, np.asarray(values, dtype=float)])
        order = np.argsort(-V, kind="stable")[: int(self.params["k_top"])]
        self._elite_p, self._elite_v = P[order], V[order]

    # ---------------------------------------------------------------- extras
    def warm_start(self, points, steps: int = 50) -> None:
        """Fit the distribution to ``points`` (no values needed), e.g. codes of real images.

        Makes ``steps`` Adam steps on the mean log-likelihood of ``points``,
        so sampling starts around them.  No query is spent; to add points
        *with* measured values, simply ``tell`` them.
        """
        pts = self.space.validate(points, name="warm-start points").astype(np.int64)
        if int(steps) != steps or steps < 1:
            raise ConfigError(f"tt.warm_start: steps must be a positive integer, got {steps!r}.")
        self._adam_steps(self._from_space(pts), int(steps))

    def log_prob(self, points) -> np.ndarray:
        """Log-probability of ``points`` under the current distribution."""
        return self._log_prob(self._from_space(self.space.validate(points).astype(np.int64)))

    def tt_cores(self) -> list[np.ndarray]:
        """The current distribution as teneva-compatible TT cores.

        Returns a list of ``d`` numpy arrays of shape ``[r_{j-1}, n_j, r_j]``
        (``r_0 = r_d = 1``, ``n_j`` the size of dimension ``j`` of the space,
        not quantized) whose full contraction is the probability ``p(i)`` with
        which :meth:`ask` draws point ``i`` (before deduplication): entries are
        non-negative and sum to 1.  For QTT the binary cores of each mode are
        multiplied out (a space of binary dimensions gets its binary cores, one a
        dimension).  Analyze with teneva, e.g. ``teneva.get(cores, i)``,
        ``teneva.sum(cores)`` (= 1), ``teneva.optima_tt(cores)`` (the most
        probable point).
        """
        logZ = self._log_z()
        if self._group:  # the binary cores of the modes, in the order of the space's dimensions
            Gb = self._abs_bits()  # [q, modes, r, 2, r]: dimension (mode, digit) is mode * q + digit
            G = Gb.transpose(1, 0, 2, 3, 4).reshape(self.space.dim, *Gb.shape[2:])
            sizes = self.space.sizes
        else:
            G, sizes = self._cores(), self._sizes
        d = G.shape[0]
        scale = math.exp(-logZ / d)
        cores = []
        for j in range(d):
            c = G[j, :, : sizes[j]].astype(np.float64) * scale  # [r, n_j, r]
            if j == 0:
                c = c[:1]
            if j == d - 1:
                c = c[:, :, :1]
            cores.append(np.ascontiguousarray(c))
        return cores

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Native state: cores, Adam moments, elite, seen points, rng state (exact continuation)."""
        seen = np.array([np.frombuffer(k, dtype=np.int64) for k in self._seen], dtype=np.int64).reshape(-1, self.space.dim)
        outk = list(self._outstanding.items())
        outstanding = np.array([np.frombuffer(k, dtype=np.int64) for k, _ in outk], dtype=np.int64).reshape(-1, self.space.dim)
        return {
            **self._state_header("tt-1"),
            "theta": self._to_teneva(self._theta),
            "adam_m": self._to_teneva(self._m),
            "adam_v": self._to_teneva(self._v),
            "adam_t": int(self._t),
            "elite_points": self._elite_p.copy(),
            "elite_values": self._elite_v.copy(),
            "pending": int(self._pending),
            "seen": seen,
            "outstanding": outstanding,
            "outstanding_counts": np.array([c for _, c in outk], dtype=np.int64),
            "rng": self.rng.bit_generator.state,
            "best_point": None if self._best_point is None else np.asarray(self._best_point).copy(),
            "best_value": self._best_value,
            "n_told": int(self._n_told),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (also accepts the base class's replay format)."""
        if state.get("format") == "replay-1":
            return super().load_state_dict(state)
        self._restore_header(state, "tt-1")
        self._reset()
        th = np.asarray(state["theta"])
        expected = self._to_teneva(self._theta).shape
        if th.shape != expected:
            raise ConfigError(f"tt state has cores of shape {th.shape}, expected {expected}.")
        as_a = lambda a: self._from_teneva(np.array(a, dtype=self._dtype))  # noqa: E731
        self._theta, self._m, self._v = as_a(th), as_a(state["adam_m"]), as_a(state["adam_v"])
        self._t = int(state["adam_t"])
        self._elite_p = np.asarray(state["elite_points"], dtype=np.int64).reshape(-1, self._dim)
        self._elite_v = np.asarray(state["elite_values"], dtype=float)
        self._pending = int(state["pending"])
        self._seen = {np.ascontiguousarray(p, dtype=np.int64).tobytes()
                      for p in np.asarray(state["seen"]).reshape(-1, self.space.dim)}
        outs = np.asarray(state["outstanding"]).reshape(-1, self.space.dim)
        self._outstanding = {np.ascontiguousarray(p, dtype=np.int64).tobytes(): int(c)
                             for p, c in zip(outs, np.asarray(state["outstanding_counts"]))}
        self.rng.bit_generator.state = state["rng"]
        bp = state["best_point"]
        self._best_point = None if bp is None else np.asarray(bp).astype(self.space.dtype)
        self._best_value = None if state["best_value"] is None else float(state["best_value"])
        self._n_told = int(state["n_told"])
        self._cache = self._tables = None
