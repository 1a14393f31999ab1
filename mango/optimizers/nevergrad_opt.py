"""Any optimizer of nevergrad's registry, as ``ng:<Name>`` (``ng:NGOpt``, ``ng:Portfolio``, ...).

Spaces: a Box becomes a bounded ``ng.p.Array``; a Codebook becomes one
categorical ``ng.p.Choice`` per position (nevergrad's own categorical
handling, not rounding); a Grid is searched through its Box by
:func:`mango.optimizers.make`.  nevergrad minimizes, so values are negated.
The loop's budget and batch size are passed on as nevergrad's ``budget`` and
``num_workers`` (NGOpt and the portfolios choose their algorithms from them).
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

from ..errors import ConfigError, UnknownNameError
from .base import Optimizer


def nevergrad_names() -> list[str]:
    try:
        import nevergrad as ng
    except ImportError:  # pragma: no cover - nevergrad is a core dependency
        return []
    return sorted(ng.optimizers.registry.keys())


class NevergradOptimizer(Optimizer):
    """Wraps ``nevergrad.optimizers.registry[method]``."""

    name = "ng"
    native = ("box", "codebook")
    defaults = {"method": "NGOpt"}

    def _setup(self) -> None:
        import nevergrad as ng

        method = self.params["method"]
        registry = ng.optimizers.registry
        if method not in registry:
            raise UnknownNameError("nevergrad optimizer", f"ng:{method}", [f"ng:{k}" for k in registry])
        self.name = f"ng:{method}"
        if self.space.kind == "box":
            param = ng.p.Array(shape=(self.space.dim,), lower=self.space.low, upper=self.space.high)
        else:  # codebook: categorical per position
            param = ng.p.Choice(list(range(self.space.codes)), repetitions=self.space.dim, deterministic=True)
        param.random_state = np.random.RandomState(self.rng.integers(2**31 - 1))
        self._param = param
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._opt = registry[method](parametrization=param, budget=self.budget,
                                         num_workers=max(1, int(self.batch_size or 1)))
        self._pending: deque = deque()

    def _to_point(self, cand) -> np.ndarray:
        return np.asarray(cand.value, dtype=self.space.dtype).reshape(self.space.dim)

    def _ask(self, n: int) -> np.ndarray:
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                try:
                    cand = self._opt.ask()
                except ImportError as exc:  # some nevergrad methods pick optional backends (e.g. fcmaes)
                    raise ConfigError(
                        f"nevergrad's {self.params['method']} needs an optional package on this space: {exc}. "
                        "Install it, or choose another method (e.g. ng:CMA, ng:NGOpt)."
                    ) from None
                pt = self._to_point(cand)
                if self.space.kind == "box":
                    pt = self.space.clip(pt)
                self._pending.append((pt, cand))
                out.append(pt)
        return np.array(out)

    def _tell(self, points, values) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for p, v in zip(points, values):
                for i, (q, cand) in enumerate(self._pending):
                    if np.array_equal(q, p):
                        del self._pending[i]
                        self._opt.tell(cand, -float(v))
                        break
                else:  # not asked: tell nevergrad if the method supports it
                    value = tuple(int(c) for c in p) if self.space.kind == "codebook" else np.asarray(p, float)
                    try:
                        self._opt.tell(self._param.spawn_child(new_value=value), -float(v))
                    except Exception:  # TellNotAskedNotSupportedError and friends
                        pass
