"""Optional peers: the reference ``protes`` package as a mango optimizer.

``protes`` (Batsheva et al., 2023; needs jax) drives its own loop
(``protes.protes(f, d, n, m)``).  :class:`ProtesOptimizer` runs the same
algorithm step by step with the package's own jitted functions
(``_generate_initial``, ``_interface_matrices``, ``_sample``, ``_likelihood``)
and optax's Adam, so it fits mango's ask/tell loop and budget and can be
compared with ``tt`` side by side.  Available as ``make("protes", space)``
when the package is installed (``pip install 'mango-am[peers]'``).

It searches Grid and Codebook spaces whose dimensions all have the same size
(PROTES's ``n``).  State is mango's exact replay (jax's random keys are
derived from the seed).
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import ConfigError
from .base import GenerationOptimizer

__all__ = ["ProtesOptimizer"]


class ProtesOptimizer(GenerationOptimizer):
    """The ``protes`` package's PROTES, one generation of ``k`` samples at a time.

    Parameters are protes's: ``k`` samples per iteration, ``k_top`` elite
    from each batch, ``k_gd`` Adam steps, learning rate ``lr``, TT rank ``r``.
    Protes minimizes; mango maximizes, so the elite is the ``k_top`` largest values.
    """

    name = "protes"
    native = ("grid", "codebook")
    defaults = {"k": 100, "k_top": 10, "k_gd": 1, "lr": 5e-2, "r": 5}

    def _setup_generations(self) -> None:
        try:
            import jax
            import jax.numpy as jnp
            import optax
            P = importlib.import_module("protes.protes")
        except ImportError as exc:  # pragma: no cover - registry checks first
            raise ConfigError(f"optimizer 'protes' needs the protes package and jax ({exc}): "
                              "pip install 'mango-am[peers]'.") from None
        sizes = np.asarray(self.space.sizes)
        if not np.all(sizes == sizes[0]):
            raise ConfigError("protes needs every dimension to have the same number of levels; "
                              f"got sizes {sizes.tolist()[:8]}... Use mango's 'tt', which accepts any sizes.")
        p = self.params
        for key in ("k", "k_top", "k_gd", "r"):
            if int(p[key]) != p[key] or p[key] < 1:
                raise ConfigError(f"protes: {key} must be a positive integer, got {p[key]!r}.")
        if p["k_top"] > p["k"]:
            raise ConfigError(f"protes: k_top ({p['k_top']}) must be <= k ({p['k']}).")
        d, n = self.space.dim, int(sizes[0])
        if d < 3:
            raise ConfigError("protes needs at least 3 dimensions (its cores are first, middle, last).")
        self._jax, self._jnp = jax, jnp
        self._key = jax.random.PRNGKey(0 if self.seed is None else self.seed)
        self._key, sub = jax.random.split(self._key)
        self._P = P._generate_initial(d, n, int(p["r"]), sub)
        optim = optax.adam(float(p["lr"]))
        self._state = optim.init(self._P)
        interface = jax.jit(P._interface_matrices)
        likelihood = jax.jit(jax.vmap(P._likelihood, (None, None, None, None, 0)))
        self._interface = interface
        self._sample_fn = jax.jit(jax.vmap(P._sample, (None, None, None, None, 0)))

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
