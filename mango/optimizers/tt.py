"""Tensor-train optimizer of the PROTES family, in torch and numpy (no jax).

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
likelihood and ``Z`` are computed exactly as chain products of matrices, in
``log2(d)`` batched steps (a tree reduction with log-scaling), so a gradient
step costs a handful of tensor operations whatever ``d`` is.

Quantization (QTT)
------------------
With ``quantize=True`` (or ``"auto"`` for large modes) each mode of size ``n``
is parametrized by ``q = ceil(log2 n)`` binary cores of rank ``r`` (most
significant bit first), exactly the QTT reshape PROTES is run on.  The ``q``
binary cores of a mode are multiplied into one ``[r, 2^q, r]`` core and the
entries ``>= n`` are masked to zero *before* normalizing and sampling, so the
distribution is exactly the QTT distribution restricted to valid indices: a
size that is not a power of two never produces an invalid index, and the
likelihood of the elite is exact.

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
import torch

from ..errors import ConfigError
from ..devices import default_device
from .base import Optimizer

__all__ = ["TTOptimizer"]


def _chain_log(M: torch.Tensor) -> torch.Tensor:
    """``log((M[:, 0] @ M[:, 1] @ ... @ M[:, -1])[0, 0])`` for non-negative ``M [B, d, r, r]``.

    A tree reduction (``ceil(log2 d)`` batched matmuls) with the scale of each
    partial product factored out, so neither overflow nor underflow occurs.
    """
    B, r = M.shape[0], M.shape[-1]
    tiny = torch.finfo(M.dtype).tiny
    logs = torch.zeros(B, dtype=M.dtype, device=M.device)
    while M.shape[1] > 1:
        if M.shape[1] % 2:
            eye = torch.eye(r, dtype=M.dtype, device=M.device).expand(B, 1, r, r)
            M = torch.cat([M, eye], dim=1)
        M = M[:, 0::2] @ M[:, 1::2]
        s = M.sum(dim=(-2, -1), keepdim=True).clamp_min(tiny)
        M = M / s
        logs = logs + torch.log(s).sum(dim=(1, 2, 3))
    return logs + torch.log(M[:, 0, 0, 0].clamp_min(tiny))


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
        when the largest mode has more than 64 levels.
    dedup : redraw points already seen or outstanding (see module doc).
    init : scale of the random initial cores (uniform in ``[1 - init, 1]``;
        1.0 is PROTES's uniform ``[0, 1]``, 0.0 the uniform distribution).
    float32 : compute in single precision (default; as PROTES) or double.
    device : torch device of the gradient steps (default: CUDA when available).
    """

    name = "tt"
    native = ("grid", "codebook")
    defaults = {"rank": 5, "k": 20, "k_top": 5, "lr": 0.1, "k_gd": 2, "elite": "seen",
                "quantize": False, "dedup": True, "init": 1.0, "float32": True, "device": None}

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

    def _setup(self) -> None:
        self._check_params()
        p = self.params
        self.device = default_device(p["device"])
        self.dtype = torch.float32 if p["float32"] else torch.float64
        sizes = np.asarray(self.space.sizes, dtype=np.int64)
        self._sizes = sizes
        d, r, nmax = self.space.dim, int(p["rank"]), int(sizes.max())
        quant = p["quantize"]
        if quant == "auto":
            quant = nmax > 64
        self._q = max(1, math.ceil(math.log2(nmax))) if quant else 0
        N = 2 ** self._q if self._q else nmax
        self._N = N
        lo = 1.0 - float(p["init"])
        shape = (d, self._q, r, 2, r) if self._q else (d, r, N, r)
        init = lo + (1.0 - lo) * self.rng.random(shape)
        self._theta = torch.tensor(init, dtype=self.dtype, device=self.device)
        self._m = torch.zeros_like(self._theta)
        self._v = torch.zeros_like(self._theta)
        self._t = 0
        mask = np.arange(N)[None, :] < sizes[:, None]
        self._masked = not bool(mask.all())
        q = max(self._q, 1)
        self._shifts = torch.arange(q - 1, -1, -1, device=self.device)
        self._ar_q = torch.arange(q, device=self.device)
        mb = ((sizes[:, None] - 1) >> np.arange(q - 1, -1, -1)[None, :]) & 1  # bits of n_j - 1, MSB first
        self._mbits = torch.tensor(mb, dtype=self.dtype, device=self.device)
        self._mask = torch.tensor(mask, dtype=self.dtype, device=self.device)[:, None, :, None]
        self._elite_p = np.zeros((0, d), np.int64)
        self._elite_v = np.zeros(0)
        self._pending = 0
        self._seen: set[bytes] = set()
        self._outstanding: dict[bytes, int] = {}
        self._sampler = None  # cached numpy arrays for sampling; None after an update

    @property
    def preferred_batch_size(self) -> int:
        return int(self.params["k"])

    # ---------------------------------------------------------- distribution
    def _merge_bits(self, Gb: torch.Tensor) -> torch.Tensor:
        """Multiply binary cores ``[d, t, r, 2, r]`` (most significant first) into ``[d, r, 2^t, r]``."""
        d, t, r = Gb.shape[0], Gb.shape[1], Gb.shape[2]
        A = Gb[:, 0]
        for s in range(1, t):
            m = A.shape[2]
            A = (A.reshape(d, r * m, r) @ Gb[:, s].reshape(d, r, 2 * r)).reshape(d, r, 2 * m, r)  # i*2+bit
        return A

    def _cores(self, theta: torch.Tensor) -> torch.Tensor:
        """Non-negative masked cores ``[d, r, N, r]`` (teneva layout, batched over dimensions)."""
        G = self._merge_bits(self._scaled_bits(theta)) if self._q else theta.abs()
        return G * self._mask if self._masked else G

    def _qtt_mode_sums(self, Gb: torch.Tensor) -> torch.Tensor:
        """Per-mode sums over the *valid* indices ``i < n_j`` of QTT cores, without merging.

        A digit recursion over the bits of ``n_j - 1``: ``E`` is the product along
        the bits of ``n_j - 1``, ``L`` the sum over prefixes already below it.
        ``Gb`` should be scaled (see :meth:`_scaled_bits`).  Returns ``[d, r, r]``.
        """
        d, r = Gb.shape[0], Gb.shape[2]
        E = torch.eye(r, dtype=Gb.dtype, device=Gb.device).expand(d, r, r)
        L = torch.zeros_like(E)
        for t in range(self._q):
            B0, B1 = Gb[:, t, :, 0, :], Gb[:, t, :, 1, :]
            c = self._mbits[:, t, None, None]
            L = L @ (B0 + B1) + c * (E @ B0)
            E = E @ (B0 + c * (B1 - B0))
        return L + E

    @staticmethod
    def _scaled_bits(theta: torch.Tensor) -> torch.Tensor:
        """``|theta|`` with each binary core divided by its (detached) largest entry.

        The distribution does not change when a core is scaled, so neither does
        the gradient; scaled cores keep every product of a mode's ``q`` cores
        within floating-point range.
        """
        G = theta.abs()
        return G / G.detach().amax(dim=(2, 3, 4), keepdim=True).clamp_min(torch.finfo(G.dtype).tiny)

    def _log_prob_theta(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Exact log-probabilities of valid integer points ``idx [B, d]`` (differentiable in ``theta``)."""
        d = self.space.dim
        ar = torch.arange(d, device=theta.device)
        if not self._q:
            G = self._cores(theta)
            sel = G.permute(0, 2, 1, 3)[ar[None, :], idx]  # [B, d, r, r]
            logs = _chain_log(torch.cat([sel, G.sum(dim=2)[None]], dim=0))
            return logs[:-1] - logs[-1]
        Gb = self._scaled_bits(theta)  # [d, q, r, 2, r]
        q, r = self._q, Gb.shape[2]
        bits = (idx[:, :, None] >> self._shifts[None, None, :]) & 1  # [B, d, q]
        sel = Gb.permute(0, 1, 3, 2, 4)[ar[None, :, None], self._ar_q[None, None, :], bits]  # [B, d, q, r, r]
        logT = _chain_log(sel.reshape(idx.shape[0], d * q, r, r))
        logZ = _chain_log(self._qtt_mode_sums(Gb)[None])[0]
        return logT - logZ

    def _adam_steps(self, points: np.ndarray, steps: int) -> None:
        idx = torch.as_tensor(np.asarray(points, dtype=np.int64), device=self.device)
        lr, b1, b2, eps = float(self.params["lr"]), 0.9, 0.999, 1e-8
        for _ in range(int(steps)):
            theta = self._theta.detach().requires_grad_(True)
            loss = -self._log_prob_theta(theta, idx).mean()
            (g,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                self._t += 1
                self._m.mul_(b1).add_(g, alpha=1 - b1)
                self._v.mul_(b2).addcmul_(g, g, value=1 - b2)
                step = lr / (1 - b1 ** self._t)
                denom = (self._v / (1 - b2 ** self._t)).sqrt_().add_(eps)
                self._theta = self._theta.addcdiv(self._m, denom, value=-step)
        self._sampler = None

    def _prepare_sampler(self):
        """Cores in the form the sequential sampler needs (recomputed after each update).

        Each mode's core is ``Hi[i_hi] @ Lo[i_lo]`` (for QTT, the high and low
        halves of the bits multiplied out separately, which is much cheaper than
        the full ``[r, 2^q, r]`` core), and ``W[j] = core_j . R_{j+1}`` is the
        unnormalized conditional of mode ``j`` given the right interface.
        """
        if self._sampler is None:
            with torch.no_grad():
                d = self.space.dim
                if self._q:
                    Gb = self._scaled_bits(self._theta)
                    qh = (self._q + 1) // 2
                    Hi = self._merge_bits(Gb[:, :qh])
                    Lo = self._merge_bits(Gb[:, qh:]) if qh < self._q else None
                    S = self._qtt_mode_sums(Gb)
                else:
                    Hi, Lo = self._cores(self._theta), None
                    S = Hi.sum(dim=2)
                r = Hi.shape[1]
                Sn = S.cpu().double().numpy()
                R = np.zeros((d + 1, r))  # right interfaces R[j] ~ S_j ... S_d e_0 (scaled)
                R[d, 0] = 1.0
                for j in range(d - 1, -1, -1):
                    v = Sn[j] @ R[j + 1]
                    R[j] = v / max(v.max(), 1e-300)
                Rt = torch.as_tensor(R[1:], dtype=Hi.dtype, device=Hi.device)
                if Lo is None:
                    W = (Hi.reshape(d, -1, r) @ Rt[:, :, None]).reshape(d, r, -1)
                    LoP = None
                else:
                    LoR = (Lo.reshape(d, -1, r) @ Rt[:, :, None]).reshape(d, r, -1)  # [d, r, Nl]
                    W = (Hi.reshape(d, -1, r) @ LoR).reshape(d, r, -1)  # [d, r, Nh * Nl]
                    LoP = Lo.permute(0, 2, 1, 3).contiguous()
                if self._masked:
                    W = W * self._mask[:, :, :, 0]
                HiP = Hi.permute(0, 2, 1, 3)  # [d, Nh, r, r] view: HiP[j][i] are matrices
                nl = 0 if Lo is None else Lo.shape[2].bit_length() - 1
            self._sampler = (HiP, LoP, W.contiguous(), nl)
        return self._sampler

    def _sample(self, n: int) -> np.ndarray:
        HiP, LoP, W, nl = self._prepare_sampler()
        d, r, N = W.shape
        u = torch.as_tensor(1.0 - self.rng.random((d, n, 1)), dtype=W.dtype, device=W.device)  # (0, 1]
        with torch.no_grad():
            Q = torch.zeros(n, r, dtype=W.dtype, device=W.device)
            Q[:, 0] = 1.0
            out = torch.empty(n, d, dtype=torch.int64, device=W.device)
            for j in range(d):
                cdf = torch.cumsum(Q @ W[j], dim=1)
                # first index with cdf >= u * total: its probability is positive (masked entries never chosen)
                i = torch.searchsorted(cdf, u[j] * cdf[:, -1:]).clamp_max_(N - 1)[:, 0]
                out[:, j] = i
                if LoP is None:
                    Q = (Q[:, None, :] @ HiP[j][i])[:, 0]
                else:
                    Q = (Q[:, None, :] @ HiP[j][i >> nl] @ LoP[j][i & ((1 << nl) - 1)])[:, 0]
                Q = Q / Q.sum(dim=1, keepdim=True)
        return out.cpu().numpy()

    # --------------------------------------------------------------- ask/tell
    def _ask(self, n: int) -> np.ndarray:
        pts = self._sample(n)
        if self.params["dedup"]:
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
                q[js] = (self.rng.random(m) * self._sizes[js]).astype(np.int64)
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
        for p in pts:
            key = p.tobytes()
            self._seen.add(key)
            c = self._outstanding.get(key)
            if c is not None:
                if c <= 1:
                    del self._outstanding[key]
                else:
                    self._outstanding[key] = c - 1
        self._add_elite(pts, values)
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
        self._adam_steps(pts, int(steps))

    def log_prob(self, points) -> np.ndarray:
        """Log-probability of ``points`` under the current distribution."""
        pts = self.space.validate(points).astype(np.int64)
        with torch.no_grad():
            return self._log_prob_theta(self._theta, torch.as_tensor(pts, device=self.device)).cpu().numpy()

    def tt_cores(self) -> list[np.ndarray]:
        """The current distribution as teneva-compatible TT cores.

        Returns a list of ``d`` numpy arrays of shape ``[r_{j-1}, n_j, r_j]``
        (``r_0 = r_d = 1``, ``n_j`` the size of dimension ``j`` of the space,
        not quantized) whose full contraction is the probability ``p(i)`` with
        which :meth:`ask` draws point ``i`` (before deduplication): entries are
        non-negative and sum to 1.  For QTT the binary cores of each mode are
        multiplied out.  Analyze with teneva, e.g. ``teneva.get(cores, i)``,
        ``teneva.sum(cores)`` (= 1), ``teneva.optima_tt(cores)`` (the most
        probable point).
        """
        with torch.no_grad():
            G = self._cores(self._theta)
            logZ = float(_chain_log(G.sum(dim=2)[None])[0])
            G = G.cpu().numpy()
        d = G.shape[0]
        scale = math.exp(-logZ / d)
        cores = []
        for j in range(d):
            c = G[j, :, : self._sizes[j]] * scale  # [r, n_j, r]
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
            "theta": self._theta.detach().cpu().numpy().copy(),
            "adam_m": self._m.detach().cpu().numpy().copy(),
            "adam_v": self._v.detach().cpu().numpy().copy(),
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
        if th.shape != tuple(self._theta.shape):
            raise ConfigError(f"tt state has cores of shape {th.shape}, expected {tuple(self._theta.shape)}.")
        as_t = lambda a: torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)  # noqa: E731
        self._theta, self._m, self._v = as_t(th), as_t(state["adam_m"]), as_t(state["adam_v"])
        self._t = int(state["adam_t"])
        self._elite_p = np.asarray(state["elite_points"], dtype=np.int64).reshape(-1, self.space.dim)
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
        self._sampler = None
