"""Random search: uniform samples of the space.  The baseline every method must beat."""

from __future__ import annotations

import numpy as np

from .base import Optimizer


class RandomSearch(Optimizer):
    """Independent uniform samples of any space (Box, Grid or Codebook)."""

    name = "random"
    native = ("box", "grid", "codebook")
    defaults: dict = {}

    def _ask(self, n: int) -> np.ndarray:
        return self.space.sample(n, self.rng)

    def _tell(self, points, values) -> None:
        pass
