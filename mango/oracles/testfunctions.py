"""Standard test functions (to be *maximized*: each returns minus a loss).

Used by tests, benchmarks and ``mango maximize --objective NAME``.  Every
function takes a batch ``[n, dim]`` and returns ``n`` values; the optimum value
is 0 for all of them.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnknownNameError
from ..spaces import Box, Codebook, Space


def shifted_sphere(shift: float = 0.3):
    """``-sum((x - shift)^2)``; optimum 0 at ``x = shift``."""
    def f(x):
        x = np.asarray(x, dtype=float)
        return -np.sum((x - shift) ** 2, axis=1)
    f.__name__ = "shifted_sphere"
    return f


def rastrigin(shift: float = 0.3):
    """Negated shifted Rastrigin; optimum 0 at ``x = shift``."""
    def f(x):
        z = np.asarray(x, dtype=float) - shift
        return -(10.0 * z.shape[1] + np.sum(z ** 2 - 10.0 * np.cos(2 * np.pi * z), axis=1))
    f.__name__ = "rastrigin"
    return f


def separable_codebook(space: Codebook, seed: int = 0):
    """A separable function on a Codebook: each position has one preferred code.

    ``value = -sum_i cost_i(code_i)`` with random costs in [0, 1] and a zero-cost
    code per position; optimum 0.  Codes are categories: cost has no order.
    """
    rng = np.random.default_rng(seed)
    costs = rng.random((space.dim, space.codes))
    costs[np.arange(space.dim), rng.integers(space.codes, size=space.dim)] = 0.0

    def f(points):
        p = np.asarray(points, dtype=np.int64)
        return -costs[np.arange(space.dim)[None, :], p].sum(axis=1)
    f.__name__ = "separable_codebook"
    f.optimum = 0.0
    return f


FUNCTIONS = {
    "sphere": (lambda dim: (shifted_sphere(), Box(dim, -1.0, 1.0))),
    "rastrigin": (lambda dim: (rastrigin(), Box(dim, -5.12, 5.12))),
    "codebook": (lambda dim: (lambda sp: (separable_codebook(sp), sp))(Codebook(dim, 16))),
}


def get(name: str, dim: int = 10) -> tuple:
    """``(function, space)`` for a named test function."""
    if name not in FUNCTIONS:
        raise UnknownNameError("test function", name, FUNCTIONS)
    return FUNCTIONS[name](dim)


def __getattr__(name):  # pragma: no cover
    raise AttributeError(name)


__all__ = ["shifted_sphere", "rastrigin", "separable_codebook", "get", "FUNCTIONS", "Space"]
