"""Optional peers: the reference tensor-train packages ``protes`` and ``ttopt`` as mango optimizers.

One home for all three, each registered in :mod:`mango.optimizers.registry`
only when its package is installed (``pip install 'mango-am[peers]'``):

* ``"protes"`` -- :class:`ProtesOptimizer`: PROTES (Batsheva et al., 2023; needs
  jax) stepped one generation at a time with the package's own jitted
  functions and optax's Adam.  Any batch size, exact replay, the elite chosen
  by mango (stable on the float64 values).  The package has no public
  step-by-step API, so its internal functions are read in exactly one place,
  :func:`protes_internals`, which checks the version it was written for.
* ``"protes-loop"`` -- :class:`ProtesLoopOptimizer`: the package's public
  ``protes.protes`` loop driven by ask/tell (:mod:`mango.optimizers.peers.threaded`),
  with a ``quantize`` option (QTT) and modes of unequal size; the setting of the
  benchmarks (``benchmarks/RESULTS.md``).
* ``"ttopt"`` -- :class:`TTOptOptimizer`: TTOpt (Sozykin et al., 2022; numpy), the
  package's public ``ttopt.ttopt`` loop (cross maximum volume on the TT
  unfoldings) driven by ask/tell.

All search Grid and Codebook spaces (a Box through a grid of levels, see
:func:`mango.optimizers.make`).
"""

from __future__ import annotations

import importlib
import math
from functools import reduce
from types import SimpleNamespace

import numpy as np

from ...errors import ConfigError
from ..base import GenerationOptimizer
from .threaded import ThreadedLoopOptimizer

__all__ = ["ProtesOptimizer", "ProtesLoopOptimizer", "TTOptOptimizer", "protes_internals", "PROTES_TESTED"]

#: the protes versions whose internal functions :func:`protes_internals` was written against
PROTES_TESTED = ("0.3",)
_PROTES_NEEDED = ("_generate_initial", "_interface_matrices", "_likelihood", "_sample")


def protes_internals() -> SimpleNamespace:
    """The protes package's internal building blocks, for stepping PROTES one generation at a time.

    ``protes.protes`` runs its loop to the end and samples a new batch only after
    the last one's values; mango's ``"protes"`` asks and tells any number of points
    at any time, so it calls the package's own (private) functions instead:
    ``generate_initial(d, n, r, key)``, ``interface_matrices(Ym, Yr)``,
    ``likelihood(Yl, Ym, Yr, Zm, i)`` and ``sample(Yl, Ym, Yr, Zm, key)``, plus
    ``jax``, ``jnp`` and ``optax``.  This is the only place that reads them: a
    protes version other than :data:`PROTES_TESTED` is refused with a clear
    error (the names and signatures are not part of protes's API).
    """
    try:
        import jax
        import jax.numpy as jnp
        import optax
        import protes

        module = importlib.import_module("protes.protes")
    except ImportError as exc:  # pragma: no cover - the registry checks first
        raise ConfigError(f"optimizer 'protes' needs the protes package and jax ({exc}): "
                          "pip install 'mango-am[peers]'.") from None
    version = str(getattr(protes, "__version__", "?"))
    missing = [n for n in _PROTES_NEEDED if not callable(getattr(module, n, None))]
    if missing or not version.startswith(tuple(v + "." for v in PROTES_TESTED)):
        raise ConfigError(
            f"optimizer 'protes' steps PROTES with the protes package's internal functions, written for protes "
            f"{', '.join(v + '.x' for v in PROTES_TESTED)}; the installed protes {version} "
            + (f"lacks {', '.join(missing)}" if missing else "is another version")
            + ". Install a tested one (pip install --no-deps 'protes>=0.3,<0.4') or use 'protes-loop', which runs "
              "protes's public loop.")
    return SimpleNamespace(jax=jax, jnp=jnp, optax=optax,
                           **{n[1:]: getattr(module, n) for n in _PROTES_NEEDED})


def _check_protes_params(p: dict) -> None:
    for key in ("k", "k_top", "k_gd", "r"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"protes: {key} must be a positive integer, got {v!r}.")
    if p["k_top"] > p["k"]:
        raise ConfigError(f"protes: k_top ({p['k_top']}) must be <= k ({p['k']}).")
    if isinstance(p["lr"], bool) or not (isinstance(p["lr"], (int, float)) and p["lr"] > 0):
        raise ConfigError(f"protes: lr must be a positive number, got {p['lr']!r}.")


_PROTES_DEFAULTS = {"k": 100, "k_top": 10, "k_gd": 1, "lr": 5e-2, "r": 5}


class ProtesOptimizer(GenerationOptimizer):
    """The ``protes`` package's PROTES, one generation of ``k`` samples at a time.

    Parameters are protes's: ``k`` samples per iteration, ``k_top`` elite
    from each batch, ``k_gd`` Adam steps, learning rate ``lr``, TT rank ``r``.
    Protes minimizes; mango maximizes, so the elite is the ``k_top`` largest values.
    Every dimension must have the same size (PROTES's ``n``), and there must be at
    least 3.  State is mango's exact replay (jax's random keys are derived from the seed).
    """

    name = "protes"
    native = ("grid", "codebook")
    defaults = dict(_PROTES_DEFAULTS)

    def _setup_generations(self) -> None:
        sizes = np.asarray(self.space.sizes)
        if not np.all(sizes == sizes[0]):
            raise ConfigError("protes needs every dimension to have the same number of levels; "
                              f"got sizes {sizes.tolist()[:8]}... Use mango's 'tt', which accepts any sizes, "
                              "or 'protes-loop', which pads them.")
        p = self.params
        _check_protes_params(p)
        d, n = self.space.dim, int(sizes[0])
        if d < 3:
            raise ConfigError("protes needs at least 3 dimensions (its cores are first, middle, last).")
        P = protes_internals()
        jax, jnp = P.jax, P.jnp
        self._jax, self._jnp = jax, jnp
        self._key = jax.random.PRNGKey(0 if self.seed is None else self.seed)
        self._key, sub = jax.random.split(self._key)
        self._P = P.generate_initial(d, n, int(p["r"]), sub)
        optim = P.optax.adam(float(p["lr"]))
        self._state = optim.init(self._P)
        interface = jax.jit(P.interface_matrices)
        likelihood = jax.jit(jax.vmap(P.likelihood, (None, None, None, None, 0)))
        self._interface = interface
        self._sample_fn = jax.jit(jax.vmap(P.sample, (None, None, None, None, 0)))

        def loss(P_cur, I_cur):
            Pl, Pm, Pr = P_cur
            return jnp.mean(-likelihood(Pl, Pm, Pr, interface(Pm, Pr), I_cur))

        grad = jax.grad(loss)

        @jax.jit
        def optimize(state, P_cur, I_cur):
            updates, state = optim.update(grad(P_cur, I_cur), state)
            return state, jax.tree_util.tree_map(lambda a, u: a + u, P_cur, updates)

        self._optimize = optimize

    @property
    def preferred_batch_size(self) -> int:
        return int(self.params["k"])

    def _ask_generation(self):
        Pl, Pm, Pr = self._P
        self._key, sub = self._jax.random.split(self._key)
        I = self._sample_fn(Pl, Pm, Pr, self._interface(Pm, Pr), self._jax.random.split(sub, int(self.params["k"])))
        return np.asarray(I, dtype=np.int64), None

    def _tell_generation(self, points, values, token) -> None:
        ind = np.argsort(-np.asarray(values), kind="stable")[: int(self.params["k_top"])]
        I = self._jnp.asarray(np.asarray(points)[ind], dtype=self._jnp.int32)
        for _ in range(int(self.params["k_gd"])):
            self._state, self._P = self._optimize(self._state, self._P, I)


class ProtesLoopOptimizer(ThreadedLoopOptimizer):
    """``protes.protes`` (the package's public loop) driven by ask/tell.

    Parameters are protes's own (``k=100``, ``k_top=10``, ``k_gd=1``, ``lr=0.05``,
    ``r=5``: its defaults) plus ``quantize``: ``True`` searches the QTT form (each
    mode of size ``n`` split into ``ceil(log2 n)`` binary modes, indices past
    ``n - 1`` clipped to ``n - 1``), the setting of the PROTES activation
    maximization experiments together with ``k=10, k_top=1``.  Modes of unequal
    size are padded to the largest (indices clipped).  protes's seed is drawn from
    the optimizer's generator.  Batches of ``k`` points (or fewer, dividing ``k``).
    """

    name = "protes-loop"
    package = "protes"
    native = ("grid", "codebook")
    defaults = {**_PROTES_DEFAULTS, "quantize": False}

    def _setup_loop(self) -> None:
        p = self.params
        _check_protes_params(p)
        if p["quantize"] not in (True, False):
            raise ConfigError(f"protes: quantize must be true or false, got {p['quantize']!r}.")
        self._sizes = np.asarray(self.space.sizes, dtype=np.int64)
        n = int(self._sizes.max())
        if p["quantize"]:
            self._bits = max(1, math.ceil(math.log2(n)))
            self._d, self._n = self.space.dim * self._bits, 2
        else:
            self._bits = 0
            self._d, self._n = self.space.dim, n

    def _run_loop(self, f) -> None:
        import protes

        p = self.params
        protes.protes(f, self._d, self._n, m=None, k=int(p["k"]), k_top=int(p["k_top"]), k_gd=int(p["k_gd"]),
                      lr=float(p["lr"]), r=int(p["r"]), seed=self._loop_seed, is_max=True, log=False, info={})

    def _start(self) -> None:
        self._loop_seed = int(self.rng.integers(2**31 - 1))
        super()._start()

    def _decode(self, I: np.ndarray) -> np.ndarray:
        I = np.asarray(I, dtype=np.int64)
        if self._bits:
            I = I.reshape(len(I), self.space.dim, self._bits)
            I = (I << np.arange(self._bits)).sum(axis=2)
        return np.minimum(I, self._sizes - 1)

    @property
    def preferred_batch_size(self) -> int | None:
        return int(self.params["k"])


class TTOptOptimizer(ThreadedLoopOptimizer):
    """``ttopt.ttopt`` (TTOpt's cross-maximum-volume loop, the package's public function) driven by ask/tell.

    Parameters are ttopt's: ``rank`` (maximum TT rank, its default 4) and
    ``fs_opt`` (its smoothing of values before the maximum-volume step, default
    1.0; ``None`` for arctan).  mango's values are handed to ttopt negated, so it
    runs as its users run it (minimizing, with its smoothing).  Its seed (the
    random initial TT tensor) is drawn from the optimizer's generator, so a run is
    determined by mango's seed.  Each sweep step asks for the ``r_i n_i r_i+1``
    points of one TT core's fibres; the preferred batch size divides them all.
    Modes of any size, at least 2 dimensions.  Repeated points are queried again
    (ttopt's default, no cache).
    """

    name = "ttopt"
    package = "ttopt"
    native = ("grid", "codebook")
    defaults = {"rank": 4, "fs_opt": 1.0}

    def _setup_loop(self) -> None:
        p = self.params
        r = p["rank"]
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise ConfigError(f"ttopt: rank must be a positive integer, got {r!r}.")
        fs = p["fs_opt"]
        if fs is not None and (isinstance(fs, bool) or not isinstance(fs, (int, float)) or fs < 0):
            raise ConfigError(f"ttopt: fs_opt must be a non-negative number or null (arctan), got {fs!r}.")
        if self.space.dim < 2:
            raise ConfigError("ttopt needs at least 2 dimensions (it works on the TT unfoldings of the grid); "
                              "use 'random' or 'ga' for a 1-D space.")
        self._sizes = [int(s) for s in self.space.sizes]
        ranks = [1]
        for s in self._sizes[:-1]:  # ttopt's ranks (ttopt_init): r_i+1 = min(rank, n_i r_i)
            ranks.append(min(int(r), s * ranks[-1]))
        ranks.append(1)
        self._generation = reduce(math.gcd, (ranks[i] * s * ranks[i + 1] for i, s in enumerate(self._sizes)))

    def _run_loop(self, f) -> None:
        import ttopt

        def g(I, i_opt, y_opt, opt_opt):
            y = f(I)
            return (None, None) if y is None else (y, [None] * len(y))

        p = self.params
        ttopt.ttopt(g, self._sizes, rank=int(p["rank"]), evals=None, seed=self._loop_seed,
                    fs_opt=None if p["fs_opt"] is None else float(p["fs_opt"]), is_max=False)

    def _start(self) -> None:
        self._loop_seed = int(self.rng.integers(2**31 - 1))
        super()._start()

    def _encode_values(self, values: np.ndarray):
        return -np.asarray(values, dtype=float)  # ttopt minimizes

    @property
    def preferred_batch_size(self) -> int | None:
        return int(self._generation)
