"""CMA-ES through the ``cma`` package, on a Box (and on a Grid through its Box).

The search runs in coordinates normalized to ``[0, 1]^dim`` so one ``sigma0``
suits boxes of any size, with ``cma``'s bound handling.  All randomness comes
from the optimizer's own seeded generator (``cma``'s ``randn`` option), never
from numpy's global state.  When CMA-ES meets one of its stopping criteria
before the budget is spent, it restarts with a doubled population (IPOP).
``cma`` does not handle one-dimensional problems, so a 1-D box is searched with
one extra dummy coordinate that the objective never sees.  When the loop's
batches can span two generations (a batch size, seen at the first ask, that
does not divide the population size), the step size is adapted by CSA, not by
``cma``'s two-point adaptation (its choice from a few hundred dimensions, which
fails when a generation is asked before the previous one is told); for the
best CMA-ES in high dimension leave the batch size to the optimizer (its
population, or a divisor of it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import ConfigError
from .base import GenerationOptimizer


class CMAES(GenerationOptimizer):
    """Covariance matrix adaptation evolution strategy (Hansen), via ``cma``.

    Parameters
    ----------
    sigma0 : initial step size in normalized coordinates (box = unit cube).
    popsize : population size; default ``4 + 3 ln(dim)``.
    x0 : ``"center"`` (default), ``"random"``, or a point of the box.
    diagonal : use separable (diagonal) CMA, cheaper in high dimension.
    restarts : restart with a doubled population when CMA-ES stops early.
    """

    name = "cma"
    native = ("box",)
    defaults = {"sigma0": 0.3, "popsize": None, "x0": "center", "diagonal": False, "restarts": True}

    def _setup_generations(self) -> None:
        self._check_params()
        self._popsize = int(self.params["popsize"] or 4 + int(3 * math.log(self.space.dim)))
        self._restarts = 0
        self._batch = None  # the size of the loop's batches, known at the first ask
        self._z0 = None
        self._es = self._new_es(self._popsize, first=True)

    def _check_params(self) -> None:
        """Each parameter's type and range, before anything is asked (one line naming the parameter)."""
        p = self.params
        s0 = p["sigma0"]
        if isinstance(s0, bool) or not isinstance(s0, (int, float, np.number)) or not 0 < s0 < math.inf:
            raise ConfigError(f"cma: sigma0 must be a number > 0 (a step in the box scaled to the unit cube; "
                              f"default 0.3), got {s0!r}.")
        pop = p["popsize"]
        if pop is not None and (isinstance(pop, bool) or not isinstance(pop, (int, np.integer)) or pop < 2):
            raise ConfigError(f"cma: popsize must be an integer >= 2 (or null: 4 + 3 ln(dim)), got {pop!r}.")
        for key in ("diagonal", "restarts"):
            if not isinstance(p[key], (bool, np.bool_)):
                raise ConfigError(f"cma: {key} must be true or false, got {p[key]!r}.")
        x0 = p["x0"]
        if isinstance(x0, str):
            if x0 not in ("center", "random"):
                raise ConfigError(f"cma: x0 must be 'center', 'random' or a point of the box, got {x0!r}.")
            return
        try:
            x = np.asarray(x0, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ConfigError(f"cma: x0 must be 'center', 'random' or a point of the box, got {x0!r}.") from None
        box = self.space
        if len(x) != box.dim or not np.all(np.isfinite(x)) or np.any(x < box.low) or np.any(x > box.high):
            raise ConfigError(f"cma: x0 must be a point of the box ({box.dim} numbers within its bounds), got "
                              f"{len(x)} number(s)" + ("" if len(x) != box.dim else " outside the bounds") + ".")

    def _ask(self, n: int) -> np.ndarray:
        if self._batch is None:
            self._batch = n
            if self._spans_generations(self._popsize) and not self._gens and not self._es.countiter:
                from cma.sigma_adaptation import CMAAdaptSigmaTPA

                if isinstance(self._es.adapt_sigma, CMAAdaptSigmaTPA):  # rebuilt (nothing sampled yet) with CSA
                    self._es = self._new_es(self._popsize, first=True)
        return super()._ask(n)

    def _spans_generations(self, popsize: int) -> bool:
        """Whether a batch of the loop's size can hold points of two generations (it does not divide the
        population: the next generation is asked before this one is told)."""
        return self._batch is not None and popsize % self._batch != 0

    def _new_es(self, popsize: int, first: bool):
        import cma

        box = self.space
        x0 = self.params["x0"]
        if first and self._z0 is not None:  # the first distribution rebuilt: the same start
            z0 = self._z0
        elif first and isinstance(x0, str) and x0 == "center":
            z0 = np.full(box.dim, 0.5)
        elif isinstance(x0, str):
            if x0 != "random" and first:
                raise ValueError(f"cma x0 must be 'center', 'random' or a point, got {x0!r}")
            z0 = self.rng.random(box.dim)
        else:
            z0 = (np.asarray(x0, dtype=float) - box.low) / (box.high - box.low)
        if first:
            self._z0 = z0
        if box.dim == 1:
            z0 = np.append(z0, 0.5)  # dummy coordinate: cma needs dim >= 2
        rng = self.rng
        opts = {
            "bounds": [0.0, 1.0],
            "popsize": popsize,
            "seed": np.nan,  # cma must not touch numpy's global state
            "randn": lambda lam, n: rng.standard_normal((lam, n)),
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "maxiter": np.inf,
            "tolfun": 1e-11,
        }
        if self.params["diagonal"]:
            opts["CMA_diagonal"] = True
        if self._spans_generations(popsize):
            # cma's two-point step-size adaptation (its default from a few hundred dimensions) needs a generation's
            # paired mean-shift samples told with it, which fails when a generation is asked before the previous
            # one is told, so use cumulative adaptation
            from cma.sigma_adaptation import CMAAdaptSigmaCSA

            opts["AdaptSigma"] = CMAAdaptSigmaCSA
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cma.CMAEvolutionStrategy(z0, float(self.params["sigma0"]), opts)

    @property
    def preferred_batch_size(self) -> int:
        return self._popsize

    def _ask_generation(self):
        if self._es.stop() and self.params["restarts"]:
            self._restarts += 1
            self._es = self._new_es(self._popsize * 2 ** self._restarts, first=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z = self._es.ask()
        z = np.clip(np.asarray(z), 0.0, 1.0)
        x = self.space.low + z[:, : self.space.dim] * (self.space.high - self.space.low)
        return self.space.clip(x), (self._es, self._es.countiter, [zi.copy() for zi in z])

    def _tell_generation(self, points, values, token) -> None:
        es, iteration, z = token
        if es is not self._es:  # generation from before a restart
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if es.countiter != iteration:
                # Sampled before the previous generation was told (a batch spanned two generations).
                # cma takes one tell per iteration, so open a new iteration and tell these samples there.
                es.ask()
            es.tell(z, (-np.asarray(values)).tolist())  # cma minimizes

    def _warm_start(self, points, values) -> None:
        """Centre the first search distribution on the best warm point (Wang & Ponce 2022).

        Before the first ask the distribution is rebuilt with its mean there;
        later, the points are injected like any foreign points.
        """
        if self._gens or self._restarts or self._es.countiter:
            self._tell_extra(points, values)
            return
        self.params["x0"] = np.asarray(points[int(np.argmax(values))], dtype=float)
        self._setup()

    def _tell_extra(self, points, values) -> None:
        z = (points - self.space.low) / (self.space.high - self.space.low)
        if self.space.dim == 1:
            z = np.hstack([z, np.full((len(z), 1), 0.5)])
        self._es.inject(list(z), force=True)
