"""The distribution of the ``tt`` optimizer: TT or QTT cores, their layout, log-probabilities and updates.

A :class:`TTDistribution` is a probability distribution over a discrete grid
``n_1 x ... x n_d`` in tensor-train format (the model behind
:class:`mango.optimizers.tt.TTOptimizer`, which documents the method).  It owns

* the parameters ``theta`` (dense cores, or ``q`` binary cores a mode for QTT),
  their Adam moments and step count, and the conversion between the internal
  layout and teneva's (:meth:`TTDistribution.to_teneva`, :meth:`from_teneva`);
* the mapping between points of the space and the distribution's modes (a space
  of binary dimensions is grouped into modes of ``2^q`` levels,
  :func:`binary_group`);
* everything the cores determine, computed once per update and shared
  (:meth:`TTDistribution.derived`): the per-mode sums, ``Z``'s interface vectors,
  for QTT the digit suffix sums that the sampler (:mod:`mango.optimizers.tt.sample`)
  draws with;
* the exact log-probability of points, the closed-form gradient of the mean
  negative log-likelihood (:meth:`loss_grad`) and the Adam steps on it.

The arithmetic is done by the kernels of :mod:`mango.optimizers.tt.kernels`.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError
from . import kernels as tt_math

__all__ = ["TTDistribution", "adam_step", "binary_group"]

_B1, _B2, _EPS = 0.9, 0.999, 1e-8


def adam_step(theta: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float) -> None:
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


def binary_group(sizes: np.ndarray) -> int:
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


class TTDistribution:
    """A non-negative TT (or QTT) distribution over the points of a discrete space, with its Adam state.

    ``space_sizes`` are the numbers of levels of the space's dimensions, ``rank``
    the TT rank, ``quantize`` ``True``/``False``/``"auto"`` (see the optimizer),
    ``init`` the scale of the random initial cores (uniform in ``[1 - init, 1]``),
    drawn from ``rng`` (the only draw).

    Public attributes (read them, do not assign): ``sizes`` (the modes' levels),
    ``dim`` (number of modes), ``q`` (binary digits a mode, 0 dense), ``group``
    (binary dimensions a mode, 0 when not grouped), ``rank``, ``masked`` (some mode
    has indices that are not valid), ``cbits`` (digits of ``n_j - 1``), ``mask``
    (valid indices, ``[d, 1, N, 1]``), ``theta``, ``m``, ``v`` (parameters and
    Adam moments, internal layout), ``t`` (Adam steps made) and ``version``
    (counts the changes of the parameters: what was derived from one version is
    stale at the next).
    """

    def __init__(self, space_sizes, rank: int, quantize, init: float, rng: np.random.Generator):
        sizes = np.asarray(space_sizes, dtype=np.int64)
        self.group = binary_group(sizes)
        if self.group:  # binary dimensions, q at a time, as modes of 2^q levels (see binary_group)
            sizes = np.full(len(sizes) // self.group, 2 ** self.group, dtype=np.int64)
            quantize = True
        self.sizes = sizes  # the modes of the distribution (those of the space unless grouped)
        self.dim = len(sizes)
        d, r, nmax = self.dim, int(rank), int(sizes.max())
        self.rank = r
        if quantize == "auto":
            quantize = nmax > 64
        self.q = max(1, math.ceil(math.log2(nmax))) if quantize else 0
        N = 2 ** self.q if self.q else nmax
        lo = 1.0 - float(init)
        shape = (d, self.q, r, 2, r) if self.q else (d, r, N, r)
        # parameters and Adam moments in single precision (as PROTES): every Adam step streams them;
        # the cores' chains, sums and gradients are evaluated in double.
        self.dtype = np.float32
        self.theta = self.from_teneva(lo + (1.0 - lo) * rng.random(shape)).astype(self.dtype)
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.t = 0
        self.version = 0
        valid = np.arange(N)[None, :] < sizes[:, None]  # [d, N]: valid indices of each mode
        self.masked = not bool(valid.all())
        self.mask = valid.astype(np.float64)[:, None, :, None]  # broadcasts over [d, r, N, r]
        self._mask_rrn = valid.astype(np.float64)[:, None, None, :]  # over the dense parameters [d, r, r, N]
        q = max(self.q, 1)
        self._shifts = np.arange(q - 1, -1, -1)
        # binary digits of n_j - 1, most significant first (the digit recursion of the valid sums)
        self.cbits = (((sizes[:, None] - 1) >> self._shifts[None, :]) & 1).astype(np.float64)
        self._cbits_mask = self.cbits if self.masked else None  # None: every index of every mode valid
        self._cache = None  # derived from theta; reset by every change of it
        self._ws: dict = {}  # work arrays, see work
        if self.q:  # flat offsets in |theta|'s binary cores of matrix (t, j, 0): bit 1 lies r further (see _selected)
            t, j, a, b = np.ix_(np.arange(self.q), np.arange(d), np.arange(r), np.arange(r))
            self._gather_base = (((t * d + j) * r + a) * 2 * r + b)[:, None]  # [q, 1, d, r, r]
        self._digits = np.arange(2)[:, None, None]

    # ------------------------------------------------------------ work arrays
    def work(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
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
            if a.size <= 8 * self.theta.size:
                self._ws[name] = a
        return a

    def work_sizes(self) -> list[int]:
        """Sizes of the work arrays kept (each at most 8 times the parameters')."""
        return [a.size for a in self._ws.values()]

    # ----------------------------------------------------------------- layout
    def from_teneva(self, a: np.ndarray) -> np.ndarray:
        """Parameters from teneva's core layout to the internal one: dense ``[d, r, N, r]`` ->
        ``[d, r, r, N]`` (levels last: contiguous sums and sampling rows); QTT ``[d, q, r, 2, r]`` ->
        ``[r, 2, r, q, d]`` (batch-last: the gradient's and Adam's elementwise work runs along
        rows of ``q d``)."""
        axes = (2, 3, 4, 1, 0) if self.q else (0, 1, 3, 2)
        return np.ascontiguousarray(a.transpose(*axes))

    def to_teneva(self, a: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`from_teneva`."""
        axes = (4, 3, 0, 1, 2) if self.q else (0, 1, 3, 2)
        return np.ascontiguousarray(a.transpose(*axes))

    def bits(self, idx: np.ndarray) -> np.ndarray:
        """Binary digits ``[B, d, q]`` of integer points ``idx [B, d]``, most significant first."""
        return (idx[:, :, None] >> self._shifts[None, None, :]) & 1

    def to_space(self, idx: np.ndarray) -> np.ndarray:
        """Points of the space from indices of the distribution's modes (the same unless grouped)."""
        return self.bits(idx).reshape(len(idx), -1) if self.group else idx

    def from_space(self, x: np.ndarray) -> np.ndarray:
        """Indices of the distribution's modes from points of the space (most significant digit first)."""
        return x.reshape(len(x), self.dim, self.group) @ (1 << self._shifts) if self.group else x

    def abs_bits(self, reuse: bool = False) -> np.ndarray:
        """``|theta|`` of the binary cores as ``[q, d, r, 2, r]``, in double precision (one pass);
        ``reuse``: into the work array of the current update.

        No rescaling is needed: a mode's product of ``q`` cores with entries of
        Adam-sized magnitude stays far inside the double range, and the chains
        across modes are rescaled as they are swept.
        """
        batch_last = self.theta.transpose(3, 4, 0, 1, 2)
        G = self.work("Gb", batch_last.shape) if reuse else np.empty(batch_last.shape)
        np.absolute(batch_last, out=G)
        return G

    def cores(self) -> np.ndarray:
        """Non-negative masked cores ``[d, r, N, r]`` (teneva layout, batched over modes; not normalized)."""
        G = tt_math.merge_bits(self.abs_bits()) if self.q else self.derived()["G"].transpose(0, 1, 3, 2)
        return G * self.mask if self.masked and self.q else G

    def tt_cores(self, space_sizes) -> list[np.ndarray]:
        """The distribution as teneva TT cores ``[r_{j-1}, n_j, r_j]`` over the space's dimensions
        (``space_sizes``), normalized to sum 1 (see :meth:`mango.optimizers.tt.TTOptimizer.tt_cores`)."""
        logZ = self.log_z()
        if self.group:  # the binary cores of the modes, in the order of the space's dimensions
            Gb = self.abs_bits()  # [q, modes, r, 2, r]: dimension (mode, digit) is mode * q + digit
            G = Gb.transpose(1, 0, 2, 3, 4).reshape(len(space_sizes), *Gb.shape[2:])
            sizes = space_sizes
        else:
            G, sizes = self.cores(), self.sizes
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

    # ---------------------------------------------------------- derived values
    def derived(self) -> dict:
        """What the current cores determine, computed once per version and shared by sampling,
        likelihoods and the next gradient: the cores (``"G"`` dense ``[d, r, r, N]``, or ``"Gb"``
        binary ``[q, d, r, 2, r]`` with the digit suffix sums ``"Rl"``, ``"Rt"`` and digit sums
        ``"Bs"``, :func:`tt_math.digit_suffixes`), the per-mode sums ``"S"`` over valid indices
        and ``Z``'s chain of them (interface vectors ``"lvZ"``, ``"rvZ"``, ``"denZ"``, lazily
        ``"logZ"``).  Valid until the next change of the parameters; do not modify."""
        if self._cache is None:
            c: dict = {}
            if self.q:
                c["Gb"] = self.abs_bits(reuse=True)
                c["Rl"], c["Rt"], S, c["Bs"] = tt_math.digit_suffixes(c["Gb"], self._cbits_mask, work=self.work)
            else:
                G = np.absolute(self.theta, out=self.work("G", self.theta.shape, np.float32))  # [d, r, r, N]
                if self.masked:
                    G *= self._mask_rrn
                c["G"] = G
                S = c["G"].sum(axis=3, dtype=np.float64)
            lvZ, rvZ, denZ = tt_math.chain_vectors(S[None])
            c.update(S=S, lvZ=lvZ[0], rvZ=rvZ[0], denZ=denZ[0])
            self._cache = c
        return self._cache

    def _changed(self) -> None:
        """The parameters changed: what was derived from them is stale."""
        self._cache = None
        self.version += 1

    def _selected(self, idx: np.ndarray, extra: int = 0):
        """The matrices that points ``idx [B, d]`` select: ``[B, d, r, r]`` per mode (and, for QTT,
        the selected binary cores ``[q, B + extra, d, r, r]``, digit-major, in a work array with
        ``extra`` slots left for the caller after the points', and the digits ``[q, B, d]``)."""
        c = self.derived()
        if not self.q:
            return c["G"].transpose(0, 3, 1, 2)[np.arange(self.dim)[None, :], idx], None, None
        bits = self.bits(idx).transpose(2, 0, 1)  # [q, B, d]
        q, r, B = self.q, self.rank, len(idx)
        # one gather from the flat cores: entry (t, j, a, bit, b) sits at base[t, j, a, b] + bit * r
        Bsel = self.work("selected", (q, B + extra) + self._gather_base.shape[2:])
        Bsel[:, :B] = c["Gb"].reshape(-1).take(self._gather_base + (bits * r)[..., None, None])
        A = Bsel[0, :B].copy()  # the mode's product of its binary cores
        for t in range(1, q):
            np.matmul(A, Bsel[t, :B], out=A)
        return A, Bsel, bits

    # ----------------------------------------------------- likelihood, gradient
    def log_prob(self, idx: np.ndarray) -> np.ndarray:
        """Exact log-probabilities of valid integer points of the modes ``idx [B, d]``."""
        return tt_math.chain_log(self._selected(idx)[0]) - self.log_z()

    def log_z(self) -> float:
        """``log Z``, the log of the sum of the (unnormalized) cores over all valid points."""
        c = self.derived()
        if "logZ" not in c:
            c["logZ"] = float(tt_math.chain_log(c["S"][None])[0])
        return c["logZ"]

    def loss_grad(self, idx: np.ndarray) -> np.ndarray:
        """Gradient in ``theta`` of the loss ``-mean(log p(idx))``, exact and in closed form.

        ``log p = log T(idx) - log Z``: the chain of the selected matrices minus the
        chain of the per-mode sums.  The derivative of a chain in a factor is the outer
        product of its interface vectors (:func:`tt_math.chain_vectors`); for QTT the
        vectors are carried through a mode's binary cores, and through the digit
        recursion of ``S_j`` for ``Z`` (:func:`tt_math.digit_sums_vjp`).  ``|.|``
        contributes ``sign(theta)``.  Returned in a work array in the parameters'
        precision and layout.
        """
        c, B = self.derived(), len(idx)
        with_z = bool(self.q) and not self.masked  # every index valid: Z's vectors ride along the elite's
        A, Bsel, bits = self._selected(idx, extra=int(with_z))
        lv, rv, den = tt_math.chain_vectors(A)  # the elite's chains (Z's are cached)
        lvZ, rvZ, denZ = c["lvZ"], c["rvZ"], c["denZ"]
        full = self.work("grad", self.theta.shape, self.dtype)
        if not self.q:
            # d log Z / d S_j at every index (S_j sums G_j over the valid ones), then the points' terms
            full[:] = (lvZ[:, :, None] * rvZ[:, None, :] / denZ[:, None, None])[:, :, :, None]
            g = lv[..., :, None] * rv[..., None, :] * (-1.0 / B / den)[..., None, None]
            gp, ar = full.transpose(0, 3, 1, 2), np.arange(full.shape[0])
            for b in range(B):  # one point: distinct (mode, index) pairs, so a plain indexed add is exact
                gp[ar, idx[b]] += g[b]
            if self.masked:
                full *= self._mask_rrn
            return self._times_sign(full)
        q, d, r = self.q, A.shape[1], A.shape[-1]
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
        lT = np.ascontiguousarray(lam[:, :, :, 0, :].transpose(1, 3, 0, 2), dtype=self.dtype)
        rT = np.ascontiguousarray(rho[:, :, :, :, 0].transpose(1, 3, 0, 2), dtype=self.dtype)
        onehot = (bits.transpose(1, 0, 2)[:, None] == self._digits).astype(self.dtype)  # [B, digit, q, d]
        for b in range(B):
            term = full if b == 0 else self.work("term", self.theta.shape, self.dtype)
            np.multiply((lT[b, :, None] * onehot[b, None])[:, :, None], rT[b, None, None], out=term)
            if b:
                full += term
        # plus Z's term, the same for both digits of a core (they enter Z only through their sum);
        # with a mask, through the digit recursion of the valid sums
        if with_z:
            full += (lT[B, :, None] * rT[B, None])[:, None]
        else:
            tt_math.digit_sums_vjp(c["Gb"], self.cbits, lvZ / denZ[:, None], rvZ, Bs=c["Bs"], out=full)
        return self._times_sign(full)  # times d|theta|/dtheta = sign(theta)

    def _times_sign(self, g: np.ndarray) -> np.ndarray:
        """``g * sign(theta)`` in place, by flipping the sign bits of ``g`` where ``theta`` is negative
        (two integer passes; ``np.sign`` is several times slower).  At ``theta == 0`` exactly, where
        ``|theta|`` has no derivative, this takes the one-sided derivative of ``+0`` or ``-0``."""
        bits = self.work("signbits", self.theta.shape, np.uint32)
        np.bitwise_and(self.theta.view(np.uint32), np.uint32(0x80000000), out=bits)
        gi = g.view(np.uint32)
        np.bitwise_xor(gi, bits, out=gi)
        return g

    def adam_steps(self, idx: np.ndarray, steps: int, lr: float) -> None:
        """``steps`` Adam steps of learning rate ``lr`` on ``-mean(log p(idx))`` (mode indices ``idx``)."""
        idx = np.asarray(idx, dtype=np.int64)
        for _ in range(int(steps)):
            g = self.loss_grad(idx)  # a work array in the parameters' precision: updated in place
            self.t += 1
            adam_step(self.theta, g, self.m, self.v, self.t, float(lr))
            self._changed()

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Parameters and Adam state, in teneva's core layout."""
        return {"theta": self.to_teneva(self.theta), "adam_m": self.to_teneva(self.m),
                "adam_v": self.to_teneva(self.v), "adam_t": int(self.t)}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (cores checked against this distribution's shape)."""
        th = np.asarray(state["theta"])
        expected = self.to_teneva(self.theta).shape
        if th.shape != expected:
            raise ConfigError(f"tt state has cores of shape {th.shape}, expected {expected}.")
        as_a = lambda a: self.from_teneva(np.array(a, dtype=self.dtype))  # noqa: E731
        self.theta, self.m, self.v = as_a(th), as_a(state["adam_m"]), as_a(state["adam_v"])
        self.t = int(state["adam_t"])
        self._changed()
