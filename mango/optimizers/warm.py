"""Warm start: show given points first, then hand them with their values to an optimizer.

:class:`WarmStart` wraps any optimizer.  Its first asks return the warm points
(e.g. natural images encoded by :mod:`mango.runs.natural.screening`, or the best stimuli of
an earlier run); once every one of them has a value, the wrapped optimizer gets
them through :meth:`~mango.optimizers.Optimizer.warm_start` and serves all later
asks.  The warm points are queries like any other: they count against the
budget and are recorded, and the wrapped optimizer is told the budget that is
left.

When the warm points do not fill a whole number of batches, the last warm batch
is padded with seeded uniform draws from the space (they are handed over with
the warm points), because the wrapped optimizer may only propose once it has
seen the warm values (CMA-ES centres its mean on the best of them).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Optimizer, Wrapper


class WarmStart(Wrapper):
    """``inner`` started from ``points``: they are asked first, then given to ``inner.warm_start``."""

    native = ("box", "grid", "codebook")

    def __init__(self, inner: Optimizer, points):
        if not isinstance(inner, Optimizer):
            raise ConfigError(f"WarmStart wraps a mango Optimizer, got {type(inner).__name__}.")
        warm = inner.space.validate(points, name="warm start points")
        if len(warm) == 0:
            raise ConfigError("a warm start needs at least one point.")
        self.inner = inner
        self.name = inner.name
        self._warm = warm
        super().__init__(inner.space, seed=inner.seed, budget=inner.budget, batch_size=inner.batch_size)

    @property
    def n_warm(self) -> int:
        """How many warm points this wrapper shows before the wrapped optimizer takes over."""
        return len(self._warm)

    @property
    def handed_over(self) -> bool:
        """Whether the wrapped optimizer has received the warm points."""
        return self._handed

    def _connect(self, **resources) -> None:
        self.inner.connect(**resources)

    def _setup(self) -> None:
        self.inner.reset()  # a reset wrapper starts its inner optimizer afresh too
        self._shown: list[np.ndarray] = []  # warm (and padding) points asked, in order
        self._values: list = []  # their values (a row per point for several targets), in the order told
        self._told_points: list[np.ndarray] = []
        self._handed = False
        self._n_asked = 0

    def _ask(self, n: int) -> np.ndarray:
        self._n_asked += n
        if self._handed:
            return self.inner.ask(n)
        if len(self._shown) and len(self._shown) >= len(self._warm):
            raise ConfigError("the warm points are still waiting for their values; tell them before asking for more.")
        start = len(self._shown)
        take = self._warm[start:start + n]
        if len(take) < n:
            take = np.concatenate([take, self.space.sample(n - len(take), seed=self.rng)])
        self._shown.extend(take)
        return take

    def can_ask_ahead(self, n: int) -> bool:
        """The warm points may all be asked at once; the wrapped optimizer's first ask waits for their values."""
        if self._handed:
            return self.inner.can_ask_ahead(n)
        return len(self._shown) < len(self._warm)

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        if self._handed:
            self.inner.tell(points, values)
            return
        self._told_points.extend(points)
        self._values.extend(values.tolist())
        if len(self._values) >= len(self._shown) >= len(self._warm):
            self._handed = True
            self.inner.warm_start(np.array(self._told_points), np.asarray(self._values, dtype=float))

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        dim = self.space.dim
        empty = np.zeros((0, dim), self.space.dtype)
        return {
            **self._state_header("warm-1"),
            "warm": self._warm,
            "shown": np.array(self._shown) if self._shown else empty,
            "told_points": np.array(self._told_points) if self._told_points else empty,
            "values": np.asarray(self._values, dtype=float),
            "handed": bool(self._handed),
            "rng": self.rng.bit_generator.state,
            "inner": self.inner.state_dict() if self._handed else None,
            "best_point": self._best_point, "best_value": self._best_value,
            "n_told": self.n_told,
            "n_asked": int(self._n_asked),
        }

    def load_state_dict(self, state: dict) -> None:
        self._restore_header(state, "warm-1")
        saved = np.asarray(state["warm"])
        if saved.size != self._warm.size or not np.array_equal(saved.reshape(self._warm.shape), self._warm):
            raise ConfigError("the saved state is for other warm start points; use the same points to resume.")
        self._reset()
        self._shown = list(np.asarray(state["shown"]).reshape(-1, self.space.dim))
        self._told_points = list(np.asarray(state["told_points"]).reshape(-1, self.space.dim))
        values = np.asarray(state["values"], dtype=float)
        self._values = (values.reshape(-1) if self.n_targets == 1 else values.reshape(-1, self.n_targets)).tolist()
        self.rng.bit_generator.state = state["rng"]
        self._handed = bool(state["handed"])
        if self._handed:
            self.inner.load_state_dict(state["inner"])
        self._n_told, self._n_asked = int(state["n_told"]), int(state["n_asked"])
        self._restore_best(state)
