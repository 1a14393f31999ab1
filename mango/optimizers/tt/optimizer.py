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
:mod:`mango.optimizers.tt.kernels`), so an Adam step costs a few hundred small
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
near ``d^(1/3)``; see :func:`mango.optimizers.tt.dist.binary_group`) and run on the QTT
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
measured values (what :meth:`~mango.optimizers.Optimizer.warm_start` does);
:meth:`TTOptimizer.fit_points` fits the distribution to points without values
(e.g. the codes of real images).

:meth:`TTOptimizer.tt_cores` exports the distribution as teneva-compatible
cores (see ``examples/tt_cores_teneva.py``).

Modules
-------
:mod:`mango.optimizers.tt.dist` holds the distribution (cores, layout,
log-probabilities, gradient and Adam update), :mod:`mango.optimizers.tt.sample`
draws from it, :mod:`mango.optimizers.tt.kernels` has the numpy kernels both use
(each with a plain reference it is tested against); this module is the ask/tell
shell: parameters, elite, deduplication and state.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError
from ..base import Optimizer
from ..pending import Pending
from .dist import TTDistribution
from .sample import TTSampler

__all__ = ["TTOptimizer"]


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
    :mod:`mango.optimizers.tt.kernels`), where such small operations are fastest,
    whatever device the generator and the network use.

    ``distribution`` (a :class:`~mango.optimizers.tt.dist.TTDistribution`) and
    ``sampler`` (a :class:`~mango.optimizers.tt.sample.TTSampler`) are the model
    and its sampler, rebuilt by every reset.
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
        if not isinstance(p["dedup"], (bool, np.bool_)):
            raise ConfigError(f"tt: dedup must be true or false, got {p['dedup']!r}.")
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
        self.distribution = TTDistribution(self.space.sizes, int(p["rank"]), p["quantize"], float(p["init"]),
                                           self.rng)
        self.sampler = TTSampler(self.distribution)
        self._elite_p = np.zeros((0, self.distribution.dim), np.int64)  # (mode indices)
        self._elite_v = np.zeros(0)
        self._pending = 0
        self._seen: set[bytes] = set()
        self._asked = Pending(self.space.dim, np.int64)  # asked, not yet told (dedup avoids them)

    @property
    def preferred_batch_size(self) -> int:
        return int(self.params["k"])

    @property
    def elite(self) -> tuple[np.ndarray, np.ndarray]:
        """``(points, values)``: the elite the next update fits, best first (copies)."""
        return self.distribution.to_space(self._elite_p).copy(), self._elite_v.copy()

    def sample(self, n: int) -> np.ndarray:
        """``n`` points of the space drawn from the current distribution: no deduplication and no
        bookkeeping (nothing becomes outstanding), but the optimizer's generator advances."""
        return self.distribution.to_space(self.sampler.draw(n, self.rng))

    # --------------------------------------------------------------- ask/tell
    def _ask(self, n: int) -> np.ndarray:
        pts = self.sample(n)
        if self.params["dedup"]:  # (the bookkeeping of asked and seen points serves deduplication only)
            pts = self._dedup(pts)
            self._asked.add(pts)
        return pts

    def _dedup(self, pts: np.ndarray) -> np.ndarray:
        """``pts`` with every point already seen, outstanding or repeated in the batch replaced: redrawn
        from the distribution (twice at most), then nudged in random coordinates."""
        taken = set()

        def dup_rows(P):
            bad = []
            for i, p in enumerate(P):
                key = p.tobytes()
                if key in self._seen or key in taken or p in self._asked:
                    bad.append(i)
                else:
                    taken.add(key)
            return bad

        bad = dup_rows(pts)
        for _ in range(2):  # redraw from the distribution
            if not bad:
                return pts
            new = self.sample(len(bad))
            still = []
            for i, p in zip(bad, new):
                key = p.tobytes()
                if key in self._seen or key in taken or p in self._asked:
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
                if not (key in self._seen or key in taken or q in self._asked):
                    p = q
                    break
            # (if 200 attempts found nothing new, the space is nearly exhausted: repeat a point)
            taken.add(p.tobytes())
            pts[i] = p
        return pts

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        pts = np.asarray(points, dtype=np.int64)
        if self.params["dedup"]:
            self._seen.update(p.tobytes() for p in pts)
            self._asked.pop(pts, unasked="none")  # (told points that were never asked: a warm start)
        self._add_elite(self.distribution.from_space(pts), values)
        self._pending += len(pts)
        if self._pending >= int(self.params["k"]):
            self._pending = 0
            self.distribution.adam_steps(self._elite_p, int(self.params["k_gd"]), float(self.params["lr"]))
            if self.params["elite"] == "batch":
                self._elite_p, self._elite_v = self._elite_p[:0], self._elite_v[:0]

    def _add_elite(self, pts, values) -> None:
        P = np.concatenate([self._elite_p, pts])
        V = np.concatenate([self._elite_v, np.asarray(values, dtype=float)])
        order = np.argsort(-V, kind="stable")[: int(self.params["k_top"])]
        self._elite_p, self._elite_v = P[order], V[order]

    # ---------------------------------------------------------------- extras
    def fit_points(self, points, steps: int = 50) -> None:
        """Fit the distribution to ``points`` (no values needed), e.g. codes of real images.

        Makes ``steps`` Adam steps on the mean log-likelihood of ``points``,
        so sampling starts around them.  No query is spent; to add points
        *with* measured values, simply ``tell`` them.
        """
        pts = self.space.validate(points, name="warm-start points").astype(np.int64)
        if int(steps) != steps or steps < 1:
            raise ConfigError(f"tt.fit_points: steps must be a positive integer, got {steps!r}.")
        self.distribution.adam_steps(self.distribution.from_space(pts), int(steps), float(self.params["lr"]))

    def log_prob(self, points) -> np.ndarray:
        """Log-probability of ``points`` under the current distribution."""
        dist = self.distribution
        return dist.log_prob(dist.from_space(self.space.validate(points).astype(np.int64)))

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
        return self.distribution.tt_cores(self.space.sizes)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Native state: cores, Adam moments, elite, seen points, rng state (exact continuation)."""
        seen = np.array([np.frombuffer(k, dtype=np.int64) for k in self._seen], dtype=np.int64)
        seen = seen.reshape(-1, self.space.dim)
        outstanding = self._asked.points()
        return {
            **self._state_header("tt-1"),
            **self.distribution.state(),
            "elite_points": self._elite_p.copy(),
            "elite_values": self._elite_v.copy(),
            "pending": int(self._pending),
            "seen": seen,
            "outstanding": outstanding,
            "outstanding_counts": np.ones(len(outstanding), dtype=np.int64),
            "rng": self.rng.bit_generator.state,
            "best_point": None if self._best_point is None else np.asarray(self._best_point).copy(),
            "best_value": self._best_value,
            "n_told": int(self._n_told), "n_asked": int(self._n_told) + len(outstanding),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (also accepts the base class's replay format)."""
        if state.get("format") == "replay-1":
            return super().load_state_dict(state)
        self._restore_header(state, "tt-1")
        self._reset()
        self.distribution.load_state(state)
        self._elite_p = np.asarray(state["elite_points"], dtype=np.int64).reshape(-1, self.distribution.dim)
        self._elite_v = np.asarray(state["elite_values"], dtype=float)
        self._pending = int(state["pending"])
        self._seen = {np.ascontiguousarray(p, dtype=np.int64).tobytes()
                      for p in np.asarray(state["seen"]).reshape(-1, self.space.dim)}
        outs = np.asarray(state["outstanding"]).reshape(-1, self.space.dim)
        self._asked.add(np.repeat(outs, np.asarray(state["outstanding_counts"], dtype=np.int64), axis=0))
        self.rng.bit_generator.state = state["rng"]
        bp = state["best_point"]
        self._best_point = None if bp is None else np.asarray(bp).astype(self.space.dtype)
        self._best_value = None if state["best_value"] is None else float(state["best_value"])
        self._n_told = int(state["n_told"])
