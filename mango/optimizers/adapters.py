"""Space adapters: a continuous optimizer on a Grid, a discrete one on a Box.

* :class:`OnGridViaBox` -- the inner optimizer searches the Grid's Box; its
  points are snapped to the nearest grid level.  Told values go back to the
  continuous points that produced them.
* :class:`OnBoxViaGrid` -- the inner optimizer searches ``box.grid(levels)``;
  its indices are mapped to Box coordinates.

:func:`mango.optimizers.make` applies them; a Codebook is never adapted to a
continuous optimizer (codes are categories, see :mod:`mango.spaces`).
"""

from __future__ import annotations

import numpy as np

from ..spaces import Box, Grid
from .base import Optimizer, Wrapper
from .pending import Pending


class _Adapter(Wrapper):
    inner_cls: type = Optimizer
    extra_defaults: dict = {}

    def __init__(self, space, inner_cls, seed=None, budget=None, batch_size=None, **params):
        self.inner_cls = inner_cls
        self.name = inner_cls.name
        self.native = (space.kind,)
        self.defaults = {**inner_cls.defaults, **self.extra_defaults}
        super().__init__(space, seed=seed, budget=budget, batch_size=batch_size, **params)

    def _wrapped(self):
        return self.inner_cls  # (traits are asked before the inner optimizer is built)

    def _connect(self, **resources) -> None:
        self._resources = resources  # kept: a reset (resume without a usable checkpoint) builds a new inner
        self.inner.connect(**resources)

    def _inner_space(self):  # pragma: no cover
        raise NotImplementedError

    def _setup(self) -> None:
        inner_params = {k: v for k, v in self.params.items() if k not in self.extra_defaults}
        self.inner = self.inner_cls(self._inner_space(), seed=self.seed, budget=self.budget,
                                    batch_size=self.batch_size, **inner_params)
        self.name = self.inner.name
        if getattr(self, "_resources", None):
            self.inner.connect(**self._resources)
        self._asked = Pending(self.space.dim, self.space.dtype)  # outer points; handle: the inner point

    def _ask(self, n):
        inner_pts = self.inner.ask(n)
        outer = self._to_outer(inner_pts)
        self._asked.add(outer, inner_pts)
        return outer

    def _tell(self, points, values):
        """Tell the inner optimizer the inner point behind each asked outer point (a point not asked: mapped)."""
        inner = [self._to_inner(p[None])[0] if asked is None else asked.handle
                 for p, asked in zip(points, self._asked.pop(points, unasked="none"))]
        self.inner.tell(np.array(inner), values)



class OnGridViaBox(_Adapter):
    """A continuous optimizer searching a :class:`Grid` through its Box."""

    def _inner_space(self) -> Box:
        return self.space.box

    def _to_outer(self, x):
        return self.space.index(x)

    def _to_inner(self, idx):
        return self.space.values(idx)


class OnBoxViaGrid(_Adapter):
    """A discrete optimizer searching a :class:`Box` through ``box.grid(levels)``."""

    extra_defaults = {"levels": 64}

    def _inner_space(self) -> Grid:
        return self.space.grid(self.params["levels"])

    def _to_outer(self, idx):
        return self.space.clip(self._grid.values(idx))

    def _to_inner(self, x):
        return self._grid.index(x)

    def _setup(self) -> None:
        self._grid = self._inner_space()
        super()._setup()
