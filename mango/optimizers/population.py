"""``Population``: many targets (recorded units), one query budget, one optimizer per target.

A population campaign maximizes K units at once.  Every query gives every
unit's response, so nothing one unit's search shows is lost to the others:

* Each batch **serves** one target, in turn (``allocation="round-robin"``: with
  K targets and B batches, every target gets B/K of them, give or take one --
  the per-unit median, which is what a population campaign is judged by, gains
  nothing from starving some units to feed others), or every batch is **shared
  out** over the targets (``allocation="interleave"``: a batch of ``q`` points
  gives each target ``q / K`` of them, the remainder going to the next targets
  in turn; each target's optimizer then runs with batch size ``ceil(q / K)``).
  Interleaving gives every target K times as many, smaller steps: a
  model-based optimizer refits and moves its trust region after each of them.
  The default, ``"auto"``, interleaves for optimizers that learn from the
  points shown to the other targets (``surrogate``: on the zoo SNN's output
  neurons a median per-unit activation of 1.030 against 0.887 round-robin,
  5 seeds, ``benchmarks/RESULTS.md``) and serves in turn otherwise (an
  evolution strategy's batch is one generation).
* The served target's optimizer is told the batch's values of its own column.
* Every other target's optimizer that has started **observes** the batch
  (:meth:`~mango.optimizers.Optimizer.observe`): a model-based optimizer
  (``surrogate``) fits its model of that unit on every query of the campaign;
  evolution strategies only keep the best point (injecting foreign points into
  their update would derail it).
* The first time a target is served, its optimizer is **warm-started**
  (:meth:`~mango.optimizers.Optimizer.warm_start`) from the points shown so
  far with that unit's values: it starts from the stimuli that already drive
  its unit.  ``surrogate`` gets all of them (data for its model); optimizers
  that only take a start get the best ``max(10, batch_size)`` (CMA-ES centres
  its mean on the best, a GA takes them into its population).

One optimizer per target keeps every single-unit optimizer usable as it is
(``population`` of ``cma``, ``ga``, ``surrogate``, ``ng:NGOpt`` ...).  Each
inner optimizer gets its own seed (derived from the campaign's seed and the
target's index) and the budget hint ``budget / K``.

State is compact (format ``population-1``): the started inner optimizers'
states, the campaign's history and the allocation counters.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..spaces import Space
from .base import Optimizer
from .pending import Pending

__all__ = ["Population", "target_seed", "campaign_optimizer"]

_ALLOCATIONS = ("auto", "round-robin", "interleave")


def target_seed(seed: int | None, target: int) -> int | None:
    """The seed of target ``target``'s optimizer in a campaign seeded ``seed`` (``None`` stays ``None``)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), int(target)]).generate_state(1)[0])


def campaign_optimizer(name: str, space: Space, n_targets: int, seed: int | None = None, budget: int | None = None,
                       batch_size: int | None = None, **params) -> Optimizer:
    """The optimizer of a campaign over ``n_targets`` units.

    An optimizer that models several targets itself (``multi_target = True``,
    e.g. ``inception``) is made with ``n_targets``; any other is run once per
    target inside a :class:`Population`.
    """
    from .registry import get, make

    if getattr(get(name)[0], "multi_target", False):
        return make(name, space, seed=seed, budget=budget, batch_size=batch_size, n_targets=n_targets, **params)
    return Population(space, n_targets, name, seed=seed, budget=budget, batch_size=batch_size, **params)


class Population(Optimizer):
    """One inner optimizer per target, one shared budget (see the module doc).

    Parameters
    ----------
    space : the search space (shared by every target).
    n_targets : K, the number of targets; ``tell`` takes values ``[n, K]``.
    optimizer : the registered name of every target's optimizer.
    seed, budget, batch_size : the campaign's; each inner optimizer gets
        :func:`target_seed`, ``ceil(budget / K)`` and ``batch_size`` (``ceil(batch_size / K)`` when
        interleaving).
    allocation : how batches are shared out: ``"round-robin"`` (a batch serves one target, in turn),
        ``"interleave"`` (every batch serves every target) or ``"auto"`` (interleave when the targets'
        optimizer learns from observed points, else round-robin); :attr:`allocation` is the one used.
    **optimizer_params : passed to every inner optimizer.
    """

    name = "population"
    native = ("box", "grid", "codebook")
    defaults = {"optimizer": "cma", "allocation": "auto", "params": {}}

    def __init__(self, space: Space, n_targets: int, optimizer: str = "cma", seed: int | None = None,
                 budget: int | None = None, batch_size: int | None = None, allocation: str = "auto",
                 **optimizer_params):
        if isinstance(n_targets, bool) or int(n_targets) != n_targets or n_targets < 1:
            raise ConfigError(f"a population campaign needs n_targets >= 1, got {n_targets!r}.")
        if allocation not in _ALLOCATIONS:
            raise ConfigError(f"allocation must be one of {_ALLOCATIONS}, got {allocation!r}.")
        if not isinstance(optimizer, str):
            raise ConfigError(f"a population campaign takes the optimizer's registered name (e.g. 'cma', "
                              f"'surrogate'), got {type(optimizer).__name__}.")
        self.n_targets = int(n_targets)
        self.name = optimizer  # a campaign is named after its units' optimizer (the result's and the store's)
        self._resources: dict | None = None
        super().__init__(space, seed=seed, budget=budget, batch_size=batch_size, optimizer=optimizer,
                         allocation=allocation, params=dict(optimizer_params))

    # -- traits of the inner optimizers ------------------------------------------
    @property
    def inner(self) -> list[Optimizer]:
        """The targets' optimizers, in target order."""
        return list(self._inner)

    def diagnostics(self) -> dict:
        """The targets' optimizers' counts, summed."""
        out: dict = {}
        for opt in self._inner:
            for k, v in opt.diagnostics().items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def allocation(self) -> str:
        """``"round-robin"`` or ``"interleave"``: how this campaign shares out its batches."""
        return self._allocation

    @property
    def needs(self) -> frozenset:
        return frozenset(self._inner[0].needs)

    @property
    def budget_aware(self) -> bool:
        return bool(self._inner[0].budget_aware)

    @property
    def preferred_batch_size(self) -> int | None:
        return self._inner[0].preferred_batch_size

    def _connect(self, **resources) -> None:
        self._resources = dict(resources)
        for opt in self._inner:
            opt.connect(**resources)

    # -- setup --------------------------------------------------------------------
    def _setup(self) -> None:
        from .registry import get, make  # the registry builds the inner optimizers (it does not import this module)

        k = self.n_targets
        budget = None if self.budget is None else max(1, math.ceil(self.budget / k))
        alloc = self.params["allocation"]
        if alloc == "auto":  # the class decides, before its instances are made with their batch size
            cls = get(self.params["optimizer"])[0]
            alloc = ("interleave" if isinstance(cls, type) and issubclass(cls, Optimizer) and cls.observes_as_data()
                     else "round-robin")
        self._allocation = alloc
        batch = self.batch_size
        if alloc == "interleave" and batch is not None:
            batch = max(1, math.ceil(batch / k))  # each target gets its share of every batch
        self._inner = [make(self.params["optimizer"], self.space, seed=target_seed(self.seed, j), budget=budget,
                            batch_size=batch, **self.params["params"]) for j in range(k)]
        if self._resources is not None:  # a reset campaign keeps what the loop connected
            for opt in self._inner:
                opt.connect(**self._resources)
        self._started = np.zeros(k, dtype=bool)
        self._next = 0  # the round-robin turn
        self._points: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._pending = Pending(self.space.dim, self.space.dtype)  # handle: the target an asked point serves
        self._n_asked = 0

    def _history(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._points:
            return np.zeros((0, self.space.dim), self.space.dtype), np.zeros((0, self.n_targets))
        return np.concatenate(self._points), np.concatenate(self._values)

    # -- ask / tell ---------------------------------------------------------------
    def next_target(self) -> int:
        """The target the next ask serves."""
        return int(self._next)

    def shares(self, n: int) -> list[tuple[int, int]]:
        """``(target, points)`` for the next ask of ``n`` points, in serving order."""
        k, j = self.n_targets, self.next_target()
        if self._allocation == "round-robin":
            return [(j, n)]
        order = [(j + i) % k for i in range(min(n, k))]
        return [(t, n // k + (1 if i < n % k else 0)) for i, t in enumerate(order)]

    def _start(self, j: int) -> None:
        """Warm-start target ``j``'s optimizer from the campaign so far (its first service)."""
        opt = self._inner[j]
        self._started[j] = True
        pts, vals = self._history()
        if len(pts) and not opt.learns_from_observations:  # it takes a start, not data: the best few
            keep = np.argsort(-vals[:, j], kind="stable")[:max(10, int(self.batch_size or 10))]
            pts, vals = pts[keep], vals[keep]
        if len(pts):
            opt.warm_start(pts, vals[:, j])

    def can_ask_ahead(self, n: int) -> bool:
        """Yes when every target the next ask serves can ask ahead (a target not yet started always can)."""
        return all(not self._started[j] or self._inner[j].can_ask_ahead(m) for j, m in self.shares(n))

    def _ask(self, n: int) -> np.ndarray:
        out = []
        for j, m in self.shares(n):
            if not self._started[j]:
                self._start(j)
            pts = self._inner[j].ask(m)
            self._pending.add(pts, [j] * m)
            out.append(pts)
        self._next = (self.next_target() + (1 if self._allocation == "round-robin" else n)) % self.n_targets
        self._n_asked += n
        return np.concatenate(out)

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        serves = np.array([-1 if a is None else a.handle for a in self._pending.pop(points, unasked="none")])
        values = np.asarray(values, dtype=float).reshape(len(points), self.n_targets)
        self._points.append(np.asarray(points))
        self._values.append(np.asarray(values, dtype=float))
        for j, opt in enumerate(self._inner):
            own = serves == j
            if own.any():
                opt.tell(points[own], values[own, j])
            if self._started[j] and (~own).any():
                opt.observe(points[~own], values[~own, j])

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        pts, vals = self._history()
        return {
            **self._state_header("population-1"),
            "inner": [self._compact(opt.state_dict(), j, pts, vals) if started else None
                      for j, (opt, started) in enumerate(zip(self._inner, self._started))],
            "points": pts, "values": vals,
            "next": int(self._next), "pending": self._pending.state_dict(),
            "n_asked": int(self._n_asked), "n_told": int(self._n_told),
            "best_point": self._best_point, "best_value": self._best_value,
        }

    @staticmethod
    def _compact(inner: dict, j: int, pts: np.ndarray, vals: np.ndarray) -> dict:
        """An inner state without its data when that data is exactly the campaign's history (a model-based
        optimizer fits on every query: K copies of the history would make every checkpoint K times larger)."""
        p, v = inner.get("points"), inner.get("values")
        if (isinstance(p, np.ndarray) and isinstance(v, np.ndarray) and p.shape == pts.shape
                and v.shape == (len(pts),) and np.array_equal(p, pts) and np.array_equal(v, vals[:, j])):
            inner = {k: x for k, x in inner.items() if k not in ("points", "values")}
            inner["data_is_history"] = True
        return inner

    def load_state_dict(self, state: dict) -> None:
        self._restore_header(state, "population-1")
        self._reset()
        pts = np.asarray(state["points"]).reshape(-1, self.space.dim).astype(self.space.dtype)
        vals = np.asarray(state["values"], dtype=float).reshape(len(pts), self.n_targets)
        for j, inner in enumerate(state["inner"]):
            if inner is not None:
                if inner.get("data_is_history"):  # the campaign's history, stored once (see _compact)
                    inner = {k: v for k, v in inner.items() if k != "data_is_history"}
                    inner["points"], inner["values"] = pts, vals[:, j]
                self._inner[j].load_state_dict(inner)
                self._started[j] = True
        if len(pts):
            self._points, self._values = [pts], [vals]
        self._next = int(state["next"])
        self._pending.load_state_dict(state["pending"])
        self._n_asked, self._n_told = int(state["n_asked"]), int(state["n_told"])
        self._restore_best(state)
