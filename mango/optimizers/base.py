"""The optimizer protocol: ``ask`` / ``tell`` under a seed, with plain-data state.

An optimizer *maximizes*.  ``ask(n)`` returns ``n`` points of its space (a 2-D
array ``[n, dim]``); ``tell(points, values)`` reports one float per point.
Any ``n`` may be asked at any time; population methods buffer internally
(:class:`GenerationOptimizer`), so the caller's batch size never has to match a
population size.

What an optimizer sees
----------------------
By default only points and values.  An optimizer that can use more declares it
in ``needs`` (a set of names) and receives it through :meth:`Optimizer.connect`,
which :func:`mango.maximize` calls once, before the first ``ask`` -- for a fresh
run, a resumed one (before its history is replayed), the CLI and the benchmark
runner alike, since they all go through ``maximize``.  Today one resource exists:

* ``"generator"``: the run's :class:`~mango.generators.Generator` (``None`` when
  the objective is a plain function of the points).  With it, the stimulus of
  every past and candidate point is ``generator(points)`` -- generators are
  deterministic -- and a differentiable one (``generator.differentiable``) gives
  gradients through :meth:`~mango.generators.Generator.decode`.  The neuron
  itself never gives gradients.

Points it did not ask for
-------------------------
Besides ``tell`` (the values of points it asked), an optimizer can be handed
points that were shown anyway, with their values:

* :meth:`Optimizer.warm_start`: before it proposes (screened natural images, an
  earlier run's best, the stimuli that already drive a unit of a population
  campaign); CMA-ES centres its mean on the best one, a GA takes them into its
  population.
* :meth:`Optimizer.observe`: while it runs, points shown for another purpose
  (the batches a population campaign spends on the other units).  They are data,
  not the outcome of its own proposals: a model-based optimizer adds them to its
  model; the default only keeps the best, because injecting foreign points into
  an evolution strategy's update would derail its step-size adaptation.

Values per point
----------------
An optimizer maximizes one value per point (``n_targets = 1``).  A
:class:`~mango.optimizers.population.Population` optimizer serves several
targets at once and is told ``[n, n_targets]`` values (one column per unit).

State
-----
``state_dict()`` returns plain data (dicts, lists, numbers, numpy arrays; see
:mod:`mango.runs.serial`) and ``load_state_dict()`` restores it.  The default
implementation is *exact replay*: the state is the optimizer's name, space,
seed, parameters and the log of every ``ask``/``tell`` call; loading rebuilds
the optimizer from its seed and replays the log.  Because every random choice
is drawn from the optimizer's own seeded generator, the replayed optimizer is
in exactly the state of the original, including points asked but not yet told.
This works for wrapped libraries (``cma``, ``nevergrad``) whose internal state
could otherwise only be saved with pickle, which mango never loads.
Optimizers with a compact native state may override the two methods.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ..errors import ConfigError, SpaceError, close_matches
from ..spaces import Space, space_from_dict
from .pending import Pending

__all__ = ["Optimizer", "GenerationOptimizer", "Wrapper"]


class Optimizer:
    """Base class of mango optimizers.

    Subclasses set ``name``, ``native`` (the space kinds they search directly:
    any of ``"box"``, ``"grid"``, ``"codebook"``), ``defaults`` (their
    parameters and default values), and implement ``_setup``, ``_ask`` and
    ``_tell``.  ``budget`` and ``batch_size`` are hints from the loop that an
    optimizer may use (nevergrad chooses algorithms by budget).
    """

    name: str = "base"
    native: tuple[str, ...] = ()
    defaults: dict[str, Any] = {}
    #: what the optimizer needs from the loop besides points and values (see :meth:`connect`)
    needs: frozenset = frozenset()
    #: whether the optimizer chooses its algorithm from ``budget`` (then a benchmark runs it once per budget
    #: instead of reading a longer run at smaller budgets; see :mod:`mango.bench.runner`)
    budget_aware: bool = False
    #: values per point that ``tell`` takes: 1, or one per target of a population optimizer
    n_targets: int = 1

    def __init__(self, space: Space, seed: int | None = None, budget: int | None = None,
                 batch_size: int | None = None, **params):
        if not isinstance(space, Space):
            raise ConfigError(f"{type(self).__name__} needs a mango Space (Box, Grid, Codebook), "
                              f"got {type(space).__name__}.")
        if space.kind not in self.native:
            raise ConfigError(
                f"optimizer {self.name!r} does not search {space.kind} spaces natively; "
                f"create it with mango.optimizers.make(), which adapts spaces where that makes sense."
            )
        unknown = [k for k in params if k not in self.defaults]
        if unknown:
            k = unknown[0]
            hint = close_matches(k, self.defaults)
            raise ConfigError(
                f"unknown parameter {k!r} for optimizer {self.name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f". Valid parameters: {', '.join(sorted(self.defaults)) or 'none'}."
            )
        if seed is not None and (int(seed) != seed or seed < 0):
            raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}.")
        self.space = space
        self.seed = None if seed is None else int(seed)
        self.budget = budget
        self.batch_size = batch_size
        self.params = {**self.defaults, **params}
        self._reset()

    # -- protocol ---------------------------------------------------------
    def ask(self, n: int = 1) -> np.ndarray:
        """Return ``n`` new points, shape ``[n, dim]``."""
        if int(n) != n or n < 1:
            raise ConfigError(f"ask(n) needs n >= 1, got {n!r}.")
        n = int(n)
        pts = self.space.validate(self._ask(n), name=f"{self.name} proposals")
        if len(pts) != n:  # pragma: no cover - implementation bug guard
            raise RuntimeError(f"optimizer {self.name!r} returned {len(pts)} points for ask({n})")
        self._log.append(("a", n, None, None))
        return pts

    def tell(self, points, values) -> None:
        """Report the objective ``values`` (to be maximized) of ``points``."""
        pts, vals = self._checked(points, values, "tell")
        if len(pts) == 0:
            return
        self._record("t", pts, vals)
        self._tell(pts, vals)

    def _checked(self, points, values, who: str) -> tuple[np.ndarray, np.ndarray]:
        pts = self.space.validate(points)
        k = int(self.n_targets)
        try:
            vals = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{who}() needs numbers as values: {exc}") from None
        vals = vals.reshape(-1) if k == 1 else vals.reshape(len(pts), -1) if vals.size == len(pts) * k else vals
        if k == 1 and len(vals) != len(pts):
            raise ConfigError(f"{who}() got {len(pts)} points but {len(vals)} values; give one value per point.")
        if k > 1 and vals.shape != (len(pts), k):
            raise ConfigError(f"{who}() got values of shape {vals.shape} for {len(pts)} points; this optimizer "
                              f"serves {k} targets: give an array [n_points, {k}], one column per target.")
        if not np.all(np.isfinite(vals)):
            bad = np.flatnonzero(~np.isfinite(vals.reshape(len(vals), -1)).all(axis=1))[:5].tolist()
            raise ConfigError(
                f"{who}() got non-finite values at rows {bad}; replace them (e.g. by a very low value) "
                "or use maximize(..., nonfinite='worst')."
            )
        return pts, vals

    def _record(self, kind: str, pts: np.ndarray, vals: np.ndarray) -> None:
        """Log a tell (``"t"``) or warm start (``"w"``) for the replay state, and keep the best point."""
        self._log.append((kind, len(pts), pts.copy(), vals.copy()))
        self._keep_best(pts, vals)
        if kind != "o":
            self._n_told += len(pts)

    def _restore_best(self, state: dict) -> None:
        """Take a state's ``best_point``/``best_value`` (when it has them) as the best so far, if better."""
        if state.get("best_value") is not None:
            pt = np.asarray(state["best_point"]).reshape(1, -1).astype(self.space.dtype)
            self._keep_best(pt, np.asarray([state["best_value"]], dtype=float))

    def _keep_best(self, pts: np.ndarray, vals: np.ndarray) -> None:
        score = vals if vals.ndim == 1 else vals.mean(axis=1)  # several targets: the best of their mean
        i = int(np.argmax(score))
        if self._best_value is None or score[i] > self._best_value:
            self._best_value, self._best_point = float(score[i]), pts[i].copy()

    def can_ask_ahead(self, n: int) -> bool:
        """Whether ``ask(n)`` may come now, before the points asked earlier are told.

        A pipelined loop (``maximize(..., pipeline=True)``) asks for the next batch while the rig
        presents the last one, and does so only when this says yes; otherwise it waits for the
        values and tells them first.  The default is yes: any number of points can be outstanding
        (a model-based optimizer should then know them -- ``surrogate`` conditions its model on
        them).  A :class:`GenerationOptimizer` says yes only within the generation it has started.
        """
        return True

    def warm_start(self, points, values) -> None:
        """Start from ``points`` that were already shown, with their ``values``, before proposing.

        :class:`mango.optimizers.warm.WarmStart` calls this once the screened
        points have values.  The default tells them like any other points
        (population-based optimizers take points they did not ask as
        candidates for their population); optimizers with a better use
        override :meth:`_warm_start` (CMA-ES centres its mean on the best point).
        """
        pts, vals = self._checked(points, values, "warm_start")
        if len(pts) == 0:
            return
        self._record("w", pts, vals)
        self._warm_start(pts, vals)

    def observe(self, points, values) -> None:
        """Take ``points`` shown meanwhile for another purpose, with their values, as data.

        A population campaign hands each unit's optimizer the batches it spends
        on the other units.  They are not answers to this optimizer's asks and
        do not count in :attr:`n_told`.  The default keeps only the best point;
        optimizers that model the response (``surrogate``) override
        :meth:`_observe` and fit on them.
        """
        pts, vals = self._checked(points, values, "observe")
        if len(pts) == 0:
            return
        if not self.learns_from_observations:  # only the best is kept: nothing to replay, a small state
            self._keep_best(pts, vals)
            return
        self._record("o", pts, vals)
        self._observe(pts, vals)

    @property
    def learns_from_observations(self) -> bool:
        """Whether :meth:`observe` changes what the optimizer proposes (it overrides :meth:`_observe`)."""
        return type(self).observes_as_data()

    @classmethod
    def observes_as_data(cls) -> bool:
        """:attr:`learns_from_observations` of the class's instances, known before one is made."""
        return cls._observe is not Optimizer._observe

    def connect(self, **resources) -> None:
        """Receive what :attr:`needs` declares (e.g. ``generator=``), before the first ``ask``.

        Called by :func:`mango.maximize`; call it yourself when driving an optimizer by hand.
        Resources that were not declared are refused, so a typo cannot pass silently.
        """
        unknown = sorted(set(resources) - set(self.needs))
        if unknown:
            raise ConfigError(f"optimizer {self.name!r} does not take {unknown} (it needs: "
                              f"{sorted(self.needs) or 'nothing'}).")
        self._connect(**resources)

    def _connect(self, **resources) -> None:
        """Subclass hook: keep the resources declared in :attr:`needs`."""

    @property
    def best(self) -> tuple[np.ndarray | None, float | None]:
        """``(point, value)`` of the best point told so far (``(None, None)`` before any tell)."""
        return self._best_point, self._best_value

    @property
    def n_told(self) -> int:
        return self._n_told

    def diagnostics(self) -> dict:
        """Counts of the optimizer's numerical events worth a user's attention (e.g. ``surrogate``'s
        ``model_fallbacks``: batches drawn at random because its model failed); ``{}`` when it has none.
        A run's result carries them (``Result.optimizer_diagnostics``, ``result.json``'s
        ``search.diagnostics``)."""
        return {}

    def reset(self) -> None:
        """Bring the optimizer back to its freshly seeded state: nothing asked or told, same seed and parameters.

        A resumed run without a usable checkpoint resets its optimizer and replays the recorded history.
        """
        self._reset()

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        asks = [n for kind, n, _, _ in self._log if kind == "a"]
        events = "".join(kind for kind, _, _, _ in self._log)
        counts = [n for _, n, _, _ in self._log]
        told = [(p, v) for kind, _, p, v in self._log if kind in "two"]
        dim = self.space.dim
        return {
            **self._state_header("replay-1"),
            "events": events,
            "counts": counts,
            "points": np.concatenate([p for p, _ in told]) if told else np.zeros((0, dim), self.space.dtype),
            "values": np.concatenate([v for _, v in told]) if told else np.zeros((0,) if self.n_targets == 1 else
                                                                                  (0, self.n_targets)),
            "n_asked": int(sum(asks)),
            "best_point": self._best_point, "best_value": self._best_value,  # (observed points are not replayed)
        }

    def _state_header(self, fmt: str) -> dict:
        """What every state format starts with: format, name, space, seed, hints, parameters."""
        return {"format": fmt, "optimizer": self.name, "space": self.space.to_dict(), "seed": self.seed,
                "budget": self.budget, "batch_size": self.batch_size, "params": dict(self.params),
                "n_targets": int(self.n_targets)}

    def _restore_header(self, state: dict, fmt: str) -> None:
        """Check a state's header against this optimizer and take its seed, hints and parameters."""
        if state.get("format") != fmt:
            raise ConfigError(f"unrecognized {self.name} optimizer state format {state.get('format')!r}.")
        if state.get("optimizer") != self.name:
            raise ConfigError(f"state is for optimizer {state.get('optimizer')!r}, not {self.name!r}.")
        if space_from_dict(state["space"]) != self.space:
            raise ConfigError(f"state is for space {state['space']}, not {self.space.to_dict()}.")
        if int(state.get("n_targets", 1)) != self.n_targets:
            raise ConfigError(f"the state is for {state['n_targets']} targets, not {self.n_targets}.")
        self.seed, self.budget, self.batch_size = state["seed"], state["budget"], state["batch_size"]
        self.params = dict(state["params"])

    def load_state_dict(self, state: dict) -> None:
        self._restore_header(state, "replay-1")
        self._reset()
        points = np.asarray(state["points"]).reshape(-1, self.space.dim)
        values = np.asarray(state["values"], dtype=float)
        values = values.reshape(-1) if self.n_targets == 1 else values.reshape(-1, self.n_targets)
        pos = 0
        for kind, n in zip(state["events"], state["counts"]):
            if kind == "a":
                self.ask(n)
            else:
                {"t": self.tell, "w": self.warm_start, "o": self.observe}[kind](points[pos:pos + n],
                                                                               values[pos:pos + n])
                pos += n
        self._restore_best(state)

    # -- for subclasses ---------------------------------------------------
    def _reset(self) -> None:
        self._log: list = []
        self._best_point = None
        self._best_value = None
        self._n_told = 0
        self.rng = np.random.default_rng(self.seed)
        self._setup()

    def _setup(self) -> None:
        """Build fresh internal state from ``self.space``, ``self.seed``, ``self.params``, ``self.rng``."""

    def _ask(self, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def _warm_start(self, points: np.ndarray, values: np.ndarray) -> None:
        """Subclass hook of :meth:`warm_start`; the default tells the points."""
        self._tell(points, values)

    def _observe(self, points: np.ndarray, values: np.ndarray) -> None:
        """Subclass hook of :meth:`observe`; the default does nothing more (the best point is kept)."""

    @property
    def preferred_batch_size(self) -> int | None:
        """A natural batch size (a population size), or None."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.space!r}, seed={self.seed}, told={self._n_told}>"


class Wrapper(Optimizer):
    """An optimizer that serves another one, ``self.inner``: it shows the inner optimizer's traits.

    Subclasses (the space adapters, :class:`~mango.optimizers.warm.WarmStart`)
    say through :meth:`_wrapped` whose ``needs`` and ``budget_aware`` they show;
    the preferred batch size is always the inner optimizer's.
    """

    def _wrapped(self):
        """The optimizer (class or instance) whose traits this one shows; default ``self.inner``."""
        return self.inner

    @property
    def needs(self) -> frozenset:
        return self._wrapped().needs

    @property
    def budget_aware(self) -> bool:
        return self._wrapped().budget_aware

    @property
    def n_targets(self) -> int:
        return int(getattr(self._wrapped(), "n_targets", 1))

    @property
    def preferred_batch_size(self):
        return self.inner.preferred_batch_size

    def can_ask_ahead(self, n: int) -> bool:
        return self.inner.can_ask_ahead(n)


class GenerationOptimizer(Optimizer):
    """An optimizer that thinks in generations but serves any ``ask(n)``.

    Subclasses implement ``_ask_generation() -> (points, token)`` and
    ``_tell_generation(points, values, token)``; ``token`` is anything the
    subclass wants back with the generation (e.g. the exact arrays a wrapped
    library produced).  Asked points are handed out in order; a generation is
    told to the subclass once all its points have values.  Points told that
    were not asked (a warm start, replayed foreign data) go to
    ``_tell_extra`` (default: only counted in ``best``).
    """

    def _setup(self) -> None:
        self._gens: deque = deque()  # each: dict(points, token, values, n_told, n_asked)
        self._asked = Pending(self.space.dim, self.space.dtype)  # handle: (generation dict, row)
        self._setup_generations()

    def _setup_generations(self) -> None:
        """Subclass hook for fresh state."""

    def _ask(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            gen = self._gens[-1] if self._gens else None
            if gen is None or gen["n_asked"] == len(gen["points"]):
                pts, token = self._ask_generation()
                gen = {"points": np.asarray(pts), "token": token, "values": np.full(len(pts), np.nan),
                       "n_told": 0, "n_asked": 0}
                self._gens.append(gen)
            take = min(n, len(gen["points"]) - gen["n_asked"])
            rows = range(gen["n_asked"], gen["n_asked"] + take)
            self._asked.add(gen["points"][rows.start:rows.stop], [(gen, r) for r in rows])
            out.append(gen["points"][rows.start:rows.stop])
            gen["n_asked"] += take
            n -= take
        return np.concatenate(out)

    def can_ask_ahead(self, n: int) -> bool:
        """Yes when nothing is outstanding, or when the newest generation still has ``n`` points to hand out:
        a generation is drawn from what the method learnt from the ones before, so the next one waits for them."""
        if len(self._asked) == 0:
            return True
        gen = self._gens[-1] if self._gens else None
        return gen is not None and len(gen["points"]) - gen["n_asked"] >= int(n)

    def _tell(self, points: np.ndarray, values: np.ndarray) -> None:
        extra = []
        for p, v, asked in zip(points, values, self._asked.pop(points, unasked="none")):
            if asked is None:
                extra.append((p, v))
                continue
            gen, r = asked.handle
            gen["values"][r] = v
            gen["n_told"] += 1
        # hand complete generations to the subclass, oldest first
        while self._gens and self._gens[0]["n_told"] == len(self._gens[0]["points"]):
            gen = self._gens.popleft()
            self._tell_generation(gen["points"], gen["values"], gen["token"])
        if extra:
            self._tell_extra(np.array([p for p, _ in extra]), np.array([v for _, v in extra]))

    def _ask_generation(self):  # pragma: no cover
        raise NotImplementedError

    def _tell_generation(self, points, values, token) -> None:  # pragma: no cover
        raise NotImplementedError

    def _tell_extra(self, points, values) -> None:
        pass
