"""The budgeted loop: :func:`maximize`, the :class:`Run` it drives, and its callbacks.

One iteration asks the optimizer for a batch of points, evaluates them (each
point may cost several *queries* -- stimulus presentations -- when the oracle
repeats), records the batch, tells the optimizer, and calls the callbacks
(progress bar, run store) before the next ask.  The budget counts queries and
is never exceeded: the last batch is truncated to what is left.

A *pipelined* loop (``pipeline=True``, the default for a rig oracle) evaluates in a worker thread and asks
for batch k + 1 while batch k is evaluated, so a rig never waits for the optimizer; the optimizer knows
the pending points (:meth:`~mango.optimizers.Optimizer.can_ask_ahead`).  A batch larger than the
*lag* (``pipeline_lag``, default :data:`PIPELINE_LAG` points) is evaluated in two parts, its head and its
last ``lag`` points: the head's values are told first, and batch k + 1 is asked while the tail is shown, so
the optimizer lacks only ``lag`` values, not a whole batch.  The order of asks and tells is
fixed by the budget, the batch size and the lag alone, so a seed still gives one history and a resume
replays it.

What a run returns, :class:`~mango.runs.result.Result`, lives in :mod:`mango.runs.result`
(importable from here too); recording a run into a file and resuming it, in
:mod:`mango.runs.resume` and :mod:`mango.runs.store`.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, ObjectiveError
from .objective import as_objective, evaluate
from ..optimizers import Optimizer, make
from ..optimizers.population import campaign_optimizer
from ..optimizers.warm import WarmStart
from .result import Result
from ..spaces import Space
from .threads import ThreadChoice, choose_threads, use_threads

__all__ = ["maximize", "DEFAULT_OPTIMIZER", "PIPELINE_LAG", "Result", "Run", "Batch", "Asked", "Callback"]

#: points of a batch still being shown when a pipelined loop asks for the next batch (``pipeline_lag``): the
#: optimizer must propose a batch in the time the rig takes to show this many stimuli (2.5 s at 250 ms each)
PIPELINE_LAG = 10


@dataclass
class Batch:
    """One evaluated batch, as handed to callbacks."""

    index: int
    points: np.ndarray
    values: np.ndarray
    query_start: int  # query index of the batch's first point
    queries: int  # presentations spent by this batch
    responses: np.ndarray | None = None
    stimuli: Any = None
    optimizer_s: float = 0.0
    objective_s: float = 0.0
    t_end: float = 0.0  # seconds since the start of the run
    replayed: bool = False
    unit_values: np.ndarray | None = None  # a population campaign's values [n, K], one column per target
    times: tuple | None = None  # (onset, offset) [n] of each point's presentation as the rig reported them, Unix s
    reasked: bool = False  # the batch repeats one an earlier session asked and ended without recording


class Callback:
    """Base class for loop callbacks; every hook is optional."""

    def on_start(self, run: "Run") -> None: ...

    def on_ask(self, run: "Run", asked: "Asked") -> None:
        """A batch was asked of the optimizer, before it is shown (see :class:`Asked`)."""

    def on_batch(self, run: "Run", batch: Batch) -> None: ...

    def on_end(self, run: "Run") -> None: ...


class Run:
    """Mutable state of one :func:`maximize` call, shared with callbacks."""

    def __init__(self, objective, space: Space, optimizer: Optimizer, budget: int, batch_size: int,
                 seed, nonfinite: str, config: dict, pipeline: bool = False, pipeline_lag: int | None = None):
        self.objective = objective
        #: ask the next batch while the objective evaluates this one (see :func:`_loop`)
        self.pipeline = bool(pipeline)
        #: a pipelined loop asks the next batch with this many points of the last still out (None: the whole batch)
        self.pipeline_lag = None if not self.pipeline or pipeline_lag is None else int(pipeline_lag)
        self._ahead: deque = deque()  # batches asked and not recorded: a resume's, or a pipelined replay's
        #: the budget the recorded history was asked under (a resume that raises the budget replays under the old)
        self.replay_budget: int | None = None
        self.space = space
        self.optimizer = optimizer
        self.budget = budget
        self.batch_size = batch_size
        self.seed = seed
        self.nonfinite = nonfinite
        self.config = config
        self.queries_per_point = int(getattr(objective, "queries_per_point", 1))
        self.unit_names = list(getattr(objective, "unit_names", []) or [])
        #: a population campaign's target columns and names (None / [] for one value per point)
        self.targets: list[int] | None = getattr(objective, "targets", None)
        self.target_names: list[str] = list(getattr(objective, "target_names", []) or [])
        k = len(self.targets or ())
        self.unit_best_values = np.full(k, -np.inf)
        self.unit_best_queries = np.full(k, -1, dtype=np.int64)
        self.unit_best_stimuli: list = [None] * k
        self._unit_values: list[np.ndarray] = []
        self.n_queries = 0
        self.n_batches = 0
        self.t0 = time.perf_counter()
        self.t_offset = 0.0  # seconds already spent before a resume
        self._points: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._queries: list[np.ndarray] = []
        self._batch: list[np.ndarray] = []
        self._t: list[np.ndarray] = []
        self._responses: list[np.ndarray] = []
        self._opt_s: list[float] = []
        self._obj_s: list[float] = []
        self.best_value: float | None = None
        self.best_point = None
        self.best_query: int | None = None
        self.best_stimulus = None
        self.lowest_value: float | None = None
        self.stop_reason = "budget"
        #: torch's thread count for the run, where it came from and why (:mod:`mango.runs.threads`)
        self.threads: ThreadChoice | None = None

    @property
    def remaining(self) -> int:
        return self.budget - self.n_queries

    def take_ahead(self) -> list["Asked"]:
        """The batches asked and not yet recorded that a resume left (the loop shows them first); empties them."""
        out = list(self._ahead)
        self._ahead.clear()
        return out

    def set_ahead(self, batches: Sequence[tuple]) -> None:
        """Batches the optimizer has asked and the history does not hold yet (a checkpoint taken while the next
        batch was in flight), in ask order, each ``(index, points, query_start)``."""
        self._ahead = deque(self.asked(int(i), np.asarray(p), int(q)) for i, p, q in batches)

    def asked(self, index: int, points: np.ndarray, query_start: int, optimizer_s: float = 0.0) -> "Asked":
        """A batch just asked, with the head a pipelined loop tells before it asks the next batch."""
        lag = self.pipeline_lag
        head = len(points) - lag if lag is not None and len(points) > lag else 0
        return Asked(index, points, query_start, optimizer_s, head=head)

    @property
    def ahead(self) -> list["Asked"]:
        """The batches asked and not yet recorded (see :meth:`set_ahead`)."""
        return list(self._ahead)

    def elapsed(self) -> float:
        return self.t_offset + time.perf_counter() - self.t0

    def set_elapsed(self, seconds: float) -> None:
        """Continue the run's clock from ``seconds`` already spent (a resumed run: its recorded time)."""
        self.t_offset = float(seconds)
        self.t0 = time.perf_counter()

    @property
    def n_points(self) -> int:
        """Number of evaluated points in the history (a point costs ``queries_per_point`` queries)."""
        return sum(len(p) for p in self._points)

    def record(self, batch: Batch) -> None:
        """Append an evaluated batch to the history."""
        n = len(batch.points)
        qpp = self.queries_per_point
        self._points.append(np.asarray(batch.points))
        self._values.append(np.asarray(batch.values, dtype=float))
        self._queries.append(batch.query_start + qpp * np.arange(n))
        self._batch.append(np.full(n, batch.index))
        self._t.append(np.full(n, batch.t_end))
        if batch.responses is not None:
            self._responses.append(np.asarray(batch.responses, dtype=float))
        self._opt_s.append(batch.optimizer_s)
        self._obj_s.append(batch.objective_s)
        if self.targets is not None:
            self._record_units(batch)
        self.n_queries = batch.query_start + batch.queries
        self.n_batches = batch.index + 1
        finite = np.isfinite(batch.values)
        if finite.any():
            low = float(np.min(batch.values[finite]))
            self.lowest_value = low if self.lowest_value is None else min(self.lowest_value, low)
            i = int(np.flatnonzero(finite)[np.argmax(batch.values[finite])])
            if self.best_value is None or batch.values[i] > self.best_value:
                self.best_value = float(batch.values[i])
                self.best_point = np.asarray(batch.points[i]).copy()
                self.best_query = int(batch.query_start + qpp * i)
                if batch.stimuli is not None:
                    self.best_stimulus = _to_numpy(batch.stimuli[i])

    def _record_units(self, batch: Batch) -> None:
        """Keep each target's best value, point, query and stimulus (a population campaign)."""
        uv = np.asarray(batch.unit_values, dtype=float).reshape(len(batch.points), len(self.targets))
        self._unit_values.append(uv)
        for j in range(uv.shape[1]):
            col = np.where(np.isfinite(uv[:, j]), uv[:, j], -np.inf)
            i = int(np.argmax(col))
            if col[i] > self.unit_best_values[j]:
                self.unit_best_values[j] = col[i]
                self.unit_best_queries[j] = int(batch.query_start + self.queries_per_point * i)
                self.unit_best_stimuli[j] = None if batch.stimuli is None else _to_numpy(batch.stimuli[i])

    def unit_values_of(self, responses) -> np.ndarray:
        """A population campaign's values ``[n, K]`` from recorded responses (the targets' columns)."""
        if responses is None:
            raise ConfigError("this population campaign's recorded batch has no responses; its per-unit values "
                              "cannot be rebuilt.")
        return np.asarray(responses, dtype=float)[:, self.targets]

    def replay_batch(self, points, values, responses=None, query_start=None, t_end=0.0,
                     optimizer_s=0.0, objective_s=0.0) -> Batch:
        """Feed a batch recorded earlier (a resumed run) through ask/tell and into the history.

        The optimizer is asked for as many points as the batch holds, so its
        random state advances exactly as in the original run; the recorded
        points and values are what it is told.  Nothing is queried.
        """
        points = self.space.validate(points)
        values = np.asarray(values, dtype=float).reshape(-1)
        unit_values = None if self.targets is None else self.unit_values_of(responses)
        told = values if unit_values is None else unit_values
        if self.pipeline:  # the asks come as the pipelined loop made them: the next batch before this one's tell
            self._replay_fill()
            front = self._ahead[0] if self._ahead else None
            if front is None or len(front.points) != len(points):
                raise ConfigError(f"cannot replay recorded batch {self.n_batches}: it holds {len(points)} points but "
                                  f"the pipelined loop would ask {0 if front is None else len(front.points)} here; "
                                  "was the run recorded with other settings?")
            h = front.head
            if h:  # the head is told before the next batch is asked, the tail after
                self.optimizer.tell(points[:h], self.told_values(told[:h]))
                front.head_done = (told[:h], {})
                self._replay_fill()
            self._ahead.popleft()
            self.optimizer.tell(points[h:], self.told_values(told[h:]))
        else:
            self.optimizer.ask(len(points))
            self.optimizer.tell(points, self.told_values(told))
        qs = self.n_queries if query_start is None else int(query_start)
        batch = Batch(self.n_batches, points, values, qs, len(points) * self.queries_per_point,
                      responses=responses, optimizer_s=optimizer_s, objective_s=objective_s, t_end=t_end,
                      replayed=True, unit_values=unit_values)
        self.record(batch)
        return batch

    def _replay_fill(self) -> None:
        """Ask as the pipelined loop did at this point, under the budget the history was asked under."""
        budget, self.budget = self.budget, self.replay_budget or self.budget
        try:
            _fill(self, self._ahead, [], 1, lambda b: None)
        finally:
            self.budget = budget

    def restore_batch(self, index: int, points, values, query_start: int, queries: int, responses=None,
                      optimizer_s: float = 0.0, objective_s: float = 0.0, t_end: float = 0.0) -> Batch:
        """Put a batch recorded earlier (a resumed run) into the history without asking or telling the optimizer.

        For the batches an optimizer checkpoint already holds; the batches after
        it go through :meth:`replay_batch`.  Nothing is queried.
        """
        batch = Batch(int(index), np.asarray(points).astype(self.space.dtype), values, int(query_start), int(queries),
                      responses=responses, optimizer_s=optimizer_s, objective_s=objective_s, t_end=t_end,
                      replayed=True, unit_values=None if self.targets is None else self.unit_values_of(responses))
        self.record(batch)
        return batch

    def told_values(self, values: np.ndarray) -> np.ndarray:
        """Values handed to the optimizer: non-finite ones as the worst seen (nonfinite='worst').

        A population campaign's values ``[n, K]`` are filled column by column.
        """
        bad = ~np.isfinite(values)
        if not bad.any():
            return values
        if values.ndim == 2:
            seen = np.concatenate(self._unit_values) if self._unit_values else np.zeros((0, values.shape[1]))
            out = values.copy()
            for j in range(values.shape[1]):
                col = np.concatenate([seen[:, j], values[:, j]])
                col = col[np.isfinite(col)]
                out[bad[:, j], j] = col.min() if col.size else 0.0
            return out
        finite = values[~bad]
        worst = min([v for v in (self.lowest_value, finite.min() if finite.size else None) if v is not None],
                    default=0.0)
        out = values.copy()
        out[bad] = worst
        return out

    def result(self) -> Result:
        cat = (lambda xs, empty: np.concatenate(xs) if xs else empty)
        dim = self.space.dim
        return Result(
            best_point=self.best_point, best_value=self.best_value, best_query=self.best_query,
            n_queries=self.n_queries, budget=self.budget, optimizer=self.optimizer.name, seed=self.seed,
            space=self.space,
            points=cat(self._points, np.zeros((0, dim), self.space.dtype)),
            values=cat(self._values, np.zeros(0)),
            queries=cat(self._queries, np.zeros(0, np.int64)).astype(np.int64),
            batch=cat(self._batch, np.zeros(0, np.int64)).astype(np.int64),
            t=cat(self._t, np.zeros(0)),
            responses=(cat(self._responses, None)
                       if self._responses and len(self._responses) == len(self._points) else None),
            unit_names=self.unit_names,
            batch_optimizer_s=np.asarray(self._opt_s), batch_objective_s=np.asarray(self._obj_s),
            wall_s=self.elapsed(), stop_reason=self.stop_reason, best_stimulus=self.best_stimulus,
            optimizer_diagnostics=dict(self.optimizer.diagnostics()),
            config=self.config,
            targets=None if self.targets is None else list(self.targets), target_names=list(self.target_names),
            unit_values=(cat(self._unit_values, np.zeros((0, len(self.targets)))) if self.targets is not None
                         else None),
            unit_best_stimuli=list(self.unit_best_stimuli) if self.targets is not None else None,
            threads=None if self.threads is None else self.threads.to_dict(),
        )


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().to("cpu").numpy()
    return np.asarray(x)


class _Progress(Callback):
    def __init__(self, budget: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=budget, unit="query", dynamic_ncols=True, leave=True)

    def on_batch(self, run, batch):
        self.bar.update(batch.queries)
        if run.best_value is not None:
            post = {"best": f"{run.best_value:.4g}"}
            if run.threads is not None:
                post["threads"] = run.threads.count
            self.bar.set_postfix(post, refresh=False)

    def on_end(self, run):
        self.bar.close()


def _want_progress(progress) -> bool:
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI"):
        return False
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, float) and value.is_integer()):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


#: The optimizer of ``maximize`` and of ``mango maximize`` when none is named: ``surrogate``, which on the
#: ``lab`` suite reaches at 1,000 queries what the best other optimizer reaches at 3,000
#: (``benchmarks/RESULTS.md``), at 0.03-0.1 s of computation per query on a 2-core CPU.
DEFAULT_OPTIMIZER = "surrogate"


def maximize(objective, space: Space | None = None, optimizer: str | Optimizer = DEFAULT_OPTIMIZER, budget: int = 1000,
             batch_size: int | None = None, seed: int | None = 0, *, generator=None, unit=None,
             callbacks: Sequence[Callback] = (), progress: bool | None = None, nonfinite: str = "raise",
             store=None, resume: bool = False, metadata: dict | None = None, warm_start=None,
             warm_n: int | None = None, threads: int | ThreadChoice | None = None, pipeline: bool | None = None,
             pipeline_lag: int | None = None, **optimizer_params) -> Result:
    """Search ``space`` for the points that maximize ``objective`` within ``budget`` queries.

    Parameters
    ----------
    objective : a function ``points [n, dim] -> values [n]``, an
        :class:`~mango.runs.objective.Objective`, or an oracle together with
        ``generator=``.
    space : the search space; taken from the generator when one is given.
    optimizer : a registered name (see :func:`mango.optimizers.available`) or
        an :class:`~mango.optimizers.Optimizer` instance (default :data:`DEFAULT_OPTIMIZER`,
        ``"surrogate"``).
    budget : number of queries (stimulus presentations; repeats count).
        Never exceeded; the last batch is truncated.
    batch_size : points per batch (default: the optimizer's population size,
        else 10).
    seed : seed of the optimizer.  Same seed, same history.
    generator, unit : compose an oracle with a generator and pick the unit.
        Several units (``unit=[0, 1, 2]``, ``range(10)``, names, ``"all"``)
        make a **population campaign**: one budget shared by the units, each
        with its own optimizer of the kind named (see
        :mod:`mango.optimizers.population`), or one model of them all
        (``optimizer="inception"``); every query's responses serve every
        unit, and the result has per-unit bests
        (:meth:`~mango.runs.result.Result.units`).
    callbacks : objects with ``on_start``/``on_batch``/``on_end``.
    progress : tqdm bar; default on when stderr is a terminal (off in CI).
    nonfinite : ``"raise"`` (default) stops with an :class:`ObjectiveError`
        carrying the partial result; ``"worst"`` tells the optimizer the worst
        value seen so far and warns.
    store, resume : a :class:`mango.runs.store.RunStore` or a path: every batch is
        written before the next ask; ``resume=True`` continues a killed run
        (see :mod:`mango.runs.resume`), or extends a run: a ``budget`` above the
        recorded one continues it up to the new budget.
    metadata : a JSON-able dict kept in the run's config (and its store).
    warm_start : start from natural images or known points (see
        :mod:`mango.runs.natural.screening`): ``"zoo"`` (the zoo's held-out digits), a
        folder of images, an ``.npy`` file, an image array ``[n, (C,) H, W]``,
        or points of the space ``[n, dim]`` (e.g. an earlier run's best).
        They are shown first and **count against the budget**; then the
        optimizer takes them over (:meth:`~mango.optimizers.Optimizer.warm_start`).
    warm_n : how many images to screen (default: 20 zoo digits, else all).
    threads : torch's intra-op threads for the run (the optimizer's model,
        the generator, an in-process oracle); ``None`` (default):
        ``MANGO_THREADS``, else ``OMP_NUM_THREADS``, else mango's policy --
        the usable cores less one, at most 8 (see :mod:`mango.runs.threads`).
        Set for the run and restored after; ``result.threads`` records it.
        ``threads=torch.get_num_threads()`` keeps your own setting.
    pipeline : propose the next batch while the objective evaluates this one (in a worker thread), so a
        rig never waits for the optimizer's computation; the optimizer is told which points are pending
        (``surrogate`` conditions its model on them; a generation-based method asks ahead only within a
        generation: :meth:`~mango.optimizers.Optimizer.can_ask_ahead`).  ``None`` (default): on for a
        rig oracle (:class:`mango.rig.RigOracle`), off otherwise.  The budget, the seed's history and
        a resume are as exact as without it; the history differs from the synchronous loop's, since the
        optimizer decides without the values of the points still being shown.
    pipeline_lag : with the pipeline on, a batch of more than this many points is shown in two parts and the
        next batch is asked when all but its last ``pipeline_lag`` points have their values (default
        :data:`PIPELINE_LAG`, 10; a resume takes the recorded one).  Smaller: each proposal knows more values,
        but the optimizer must propose a batch in the time the rig takes to show that many stimuli, or the
        rig waits.  A lag of at least the batch size asks the next batch as soon as this one is sent.
    **optimizer_params : passed to the optimizer.

    Ctrl-C returns the partial result with ``stop_reason == "interrupted"``.
    """
    budget = _check_int("budget", budget)
    thread_choice = choose_threads(threads)
    with use_threads(thread_choice):  # the whole run: a warm start's screening, a resume's replay, the loop
        return _maximize(objective, space, optimizer, budget, batch_size, seed, generator, unit, callbacks, progress,
                         nonfinite, store, resume, metadata, warm_start, warm_n, thread_choice, pipeline,
                         pipeline_lag, optimizer_params)


def _maximize(objective, space, optimizer, budget: int, batch_size, seed, generator, unit, callbacks, progress,
              nonfinite: str, store, resume: bool, metadata, warm_start, warm_n, thread_choice: ThreadChoice,
              pipeline: bool | None, pipeline_lag: int | None, optimizer_params: dict) -> Result:
    """:func:`maximize` once its thread count is set."""
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size)
    if nonfinite not in ("raise", "worst"):
        raise ConfigError(f"nonfinite must be 'raise' or 'worst', got {nonfinite!r}.")
    if pipeline is not None and not isinstance(pipeline, (bool, np.bool_)):
        raise ConfigError(f"pipeline must be True, False or None (on for a rig oracle), got {pipeline!r}.")
    objective, space = as_objective(objective, generator=generator, space=space, unit=unit)
    pipeline = _is_remote(objective) if pipeline is None else bool(pipeline)
    if pipeline_lag is not None:
        pipeline_lag = _check_int("pipeline_lag", pipeline_lag)
    if not isinstance(space, Space):
        raise ConfigError(f"space must be a mango.spaces Box, Grid or Codebook, got {type(space).__name__}.")
    qpp = int(getattr(objective, "queries_per_point", 1))
    if qpp < 1:
        raise ConfigError(f"queries_per_point must be >= 1, got {qpp}.")
    if qpp > budget:
        raise ConfigError(f"one point costs {qpp} queries (repeats) but the budget is only {budget}.")

    recorded: dict = {}
    if resume and store is not None:
        from .resume import recorded_config  # noqa: WPS433 - optional heavy import

        recorded = recorded_config(store)

    warm = None
    if warm_start is not None:
        from .natural.screening import warm_points

        warm = warm_points(warm_start, getattr(objective, "generator", None), space, n=warm_n,
                           seed=0 if seed is None else seed)
        if len(warm) * qpp >= budget:
            raise ConfigError(f"the warm start screens {len(warm)} points ({len(warm) * qpp} queries) but the budget "
                              f"is {budget}; screen fewer (warm_n=) or raise the budget.")
    n_warm = 0 if warm is None else len(warm)

    targets = getattr(objective, "targets", None)
    if isinstance(optimizer, Optimizer):
        if optimizer_params:
            raise ConfigError("optimizer parameters go to make(); pass either an Optimizer instance or a name with "
                              "parameters.")
        if optimizer.space != space:
            raise ConfigError(f"the optimizer searches {optimizer.space!r} but the objective's space is {space!r}.")
        k = 1 if targets is None else len(targets)
        if optimizer.n_targets != k:
            raise ConfigError(f"the optimizer serves {optimizer.n_targets} target(s) but the campaign has {k}; for "
                              "several units pass the optimizer's name (each unit gets its own, or 'inception' "
                              "models them all) or a mango.optimizers.population.Population with one target "
                              "per unit.")
        opt = optimizer
        opt_name = opt.name
    else:
        hint = batch_size or 10
        planned = budget
        if resume and store is not None:  # an extended run's optimizer is built as it was first (exact replay)
            planned = min(budget, recorded.get("budget") or budget)
        n_points = math.ceil(planned / qpp) - n_warm
        if targets is None:
            opt = make(optimizer, space, seed=seed, budget=n_points, batch_size=hint, **optimizer_params)
        else:
            opt = campaign_optimizer(optimizer, space, len(targets), seed=seed, budget=n_points, batch_size=hint,
                                     **optimizer_params)
        opt_name = optimizer
    if warm is not None:
        opt = WarmStart(opt, warm)
    if batch_size is None:
        batch_size = int(opt.preferred_batch_size or 10)
    lag = None
    if pipeline:  # a resume keeps the recorded lag unless one is given (a store from before it: the whole batch)
        lag = pipeline_lag or (recorded.get("pipeline_lag", recorded.get("batch_size")) if recorded.get("pipeline")
                               else None) or PIPELINE_LAG
        lag = min(lag, batch_size)

    config = {
        "optimizer": opt_name, "optimizer_params": {k: v for k, v in optimizer_params.items()},
        "seed": seed, "budget": budget, "batch_size": batch_size, "space": space.to_dict(),
        "nonfinite": nonfinite, "pipeline": pipeline, "pipeline_lag": lag, "metadata": dict(metadata or {}),
        "targets": None if targets is None else list(targets),
        "warm_start": None if warm is None else {"n": n_warm, "sha256": _digest(warm),
                                                 "source": warm_start if isinstance(warm_start, str) else "array"},
        "objective": objective.describe() if hasattr(objective, "describe") else getattr(
            objective, "__name__", type(objective).__name__),
    }
    if opt.needs:
        opt.connect(**_resources(opt.needs, objective))
    run = Run(objective, space, opt, budget, batch_size, seed, nonfinite, config, pipeline=pipeline,
              pipeline_lag=lag)
    run.threads = thread_choice
    cbs = list(callbacks)
    if store is not None:
        from .resume import attach_store  # noqa: WPS433 - optional heavy import

        cbs.insert(0, attach_store(store, run, resume=resume))
    elif resume:
        raise ConfigError("resume=True needs store= (the run's SQLite file).")
    if _want_progress(progress):
        cbs.append(_Progress(budget))
    for cb in cbs:
        getattr(cb, "on_start", lambda r: None)(run)
    try:
        _loop(run, cbs)
    except KeyboardInterrupt:
        run.stop_reason = "interrupted"
    finally:
        for cb in cbs:
            getattr(cb, "on_end", lambda r: None)(run)
    return run.result()


def _digest(points: np.ndarray) -> str:
    """A short fingerprint of an array (to tell one warm start from another on resume)."""
    return hashlib.sha256(np.ascontiguousarray(points, dtype=np.float64).tobytes()).hexdigest()[:16]


def _is_remote(objective) -> bool:
    """Whether the oracle behind ``objective`` (through its wrappers) presents on a rig (``remote = True``)."""
    obj = objective
    for _ in range(8):
        if obj is None:
            return False
        if getattr(type(obj), "remote", False) is True:
            return True
        obj = getattr(obj, "oracle", None)
    return False


def _resources(needs, objective) -> dict:
    """What the loop can give an optimizer that declares :attr:`~mango.optimizers.Optimizer.needs`."""
    have = {"generator": getattr(objective, "generator", None)}
    missing = sorted(set(needs) - set(have))
    if missing:
        raise ConfigError(f"the optimizer needs {missing}, which maximize() cannot provide (it provides "
                          f"{sorted(have)}).")
    return {k: have[k] for k in needs}


@dataclass
class Asked:
    """A batch asked of the optimizer and not yet recorded: what callbacks' ``on_ask`` receive.

    In a pipelined loop the next batch is asked while the rig presents this one.  ``reasked``: the batch
    repeats one that an earlier session of the run asked and ended without recording (set by the store
    callback; the batch's record keeps it).  ``head``: the points a pipelined loop evaluates and tells first,
    before it asks the next batch (0: none, the whole batch is told at once; see :data:`PIPELINE_LAG`).
    """

    index: int
    points: np.ndarray
    query_start: int
    optimizer_s: float = 0.0
    future: Any = None
    reasked: bool = False
    head: int = 0
    head_future: Any = None
    #: the head's ``(values, info)`` once told
    head_done: Any = None

    @property
    def head_pending(self) -> bool:
        """Whether the batch has a head not told yet (the loop asks nothing more until it is)."""
        return self.head > 0 and self.head_done is None

    def cancel(self) -> None:
        """Cancel the evaluations not started (an error or Ctrl-C: batches not started are not shown)."""
        for f in (self.head_future, self.future):
            if f is not None:
                f.cancel()


def _next_size(run: Run, queued: int) -> int:
    """Points of the next batch to ask with ``queued`` queries asked and not yet recorded (0: the budget is spent)."""
    qpp = run.queries_per_point
    return max(0, min(run.batch_size, (run.remaining - queued) // qpp))


def _fill(run: Run, queue, cbs: list, depth: int, submit) -> None:
    """Ask batches until ``depth + 1`` are in flight (a pipelined loop: the next one while the rig presents one),
    the budget is spent, the newest batch's head is not told yet, or the optimizer cannot ask ahead; hand each
    to ``on_ask``, then to ``submit``."""
    qpp = run.queries_per_point
    while len(queue) <= depth and not (queue and queue[-1].head_pending):
        queued = sum(len(b.points) for b in queue) * qpp
        n = _next_size(run, queued)
        if n < 1 or (queue and not run.optimizer.can_ask_ahead(n)):
            return
        t = time.perf_counter()
        points = run.optimizer.ask(n)
        b = run.asked(run.n_batches + len(queue), points, run.n_queries + queued, time.perf_counter() - t)
        queue.append(b)
        for cb in cbs:
            getattr(cb, "on_ask", lambda r, a: None)(run, b)
        submit(b)


def _loop(run: Run, cbs: list) -> None:
    """Ask, evaluate, tell, record, until the budget is spent.

    Synchronous (``run.pipeline`` false): one batch at a time.  Pipelined: the objective evaluates batch k in a
    worker thread (the rig presents it) while the optimizer, told batches up to k - 1 and the head of batch k
    (all but its last ``run.pipeline_lag`` points), is asked for batch k + 1 (it knows the rest of batch k is
    pending); batch k + 1 is queued behind batch k, so a rig goes from one to the next without waiting.  Either
    way the order of asks and tells depends only on the budget, the batch size, the lag and the optimizer, never
    on timing: the same seed gives the same history, and a resume replays it.
    """
    qpp = run.queries_per_point
    queue: deque = deque(run.take_ahead())
    if not run.pipeline:
        _steps(run, cbs, queue, 0, lambda b: None, lambda b: evaluate(run.objective, b.points), None)
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="mango-objective") as pool:
            def submit(b):
                if b.head:  # two requests, back to back: the head's values come while the tail is shown
                    b.head_future = pool.submit(evaluate, run.objective, b.points[:b.head])
                b.future = pool.submit(evaluate, run.objective, b.points[b.head:])

            for b in queue:
                submit(b)
            try:
                _steps(run, cbs, queue, 1, submit, lambda b: b.future.result(), lambda b: b.head_future.result())
            finally:
                for b in queue:
                    b.cancel()
    if run.remaining > 0 and run.remaining < qpp:
        run.stop_reason = "budget (remainder smaller than one point's repeats)"


def _steps(run: Run, cbs: list, queue, depth: int, submit, result, head_result) -> None:
    """The loop's body: keep ``depth + 1`` batches asked, take the oldest's values from ``result``, tell, record.

    A batch with a head (see :class:`Asked`) takes the head's values from ``head_result`` and tells them first;
    the next batch is asked before the tail's values are awaited.
    """
    qpp = run.queries_per_point
    while True:
        _fill(run, queue, cbs, depth, submit)
        if not queue:
            return
        front = queue[0]
        wait_s = opt_s = 0.0
        if front.head_pending:
            t_b = time.perf_counter()
            values, info = _take(run, front.query_start, head_result, front)
            t_c = time.perf_counter()
            run.optimizer.tell(front.points[:front.head], run.told_values(values))
            wait_s, opt_s = t_c - t_b, time.perf_counter() - t_c
            front.head_done = (values, info)
            _fill(run, queue, cbs, depth, submit)  # the next batch, while the tail is shown
        asked = queue.popleft()
        points, n, h = asked.points, len(asked.points), asked.head
        t_b = time.perf_counter()
        values, info = _take(run, asked.query_start + qpp * h, result, asked)
        t_c = time.perf_counter()
        run.optimizer.tell(points[h:], run.told_values(values))
        wait_s, opt_s = wait_s + t_c - t_b, opt_s + time.perf_counter() - t_c
        if h:
            values, info = _join(asked.head_done, (values, info))
        unit_values = None
        if run.targets is not None:  # a population campaign: [n, K]; the recorded value is the targets' mean
            unit_values, values = values, values.mean(axis=1)
        batch = Batch(run.n_batches, points, values, run.n_queries, n * qpp,
                      responses=info.get("responses"), stimuli=info.get("stimuli"),
                      optimizer_s=asked.optimizer_s + opt_s, objective_s=wait_s, t_end=run.elapsed(),
                      unit_values=unit_values, times=info.get("times"), reasked=asked.reasked)
        run.record(batch)
        for cb in cbs:
            cb.on_batch(run, batch)


def _take(run: Run, query_start: int, result, asked: "Asked") -> tuple[np.ndarray, dict]:
    """Values ``[n]`` (a population campaign: ``[n, K]``) and info from ``result(asked)``: the whole batch, or the
    part of it that starts at ``query_start``; non-finite values raise or warn as ``run.nonfinite`` says."""
    qpp = run.queries_per_point
    try:
        values, info = result(asked)
    except ObjectiveError as exc:
        run.stop_reason = "error"
        if exc.partial_result is None:
            exc.partial_result = run.result()
        raise
    bad = ~np.isfinite(values if run.targets is None else values.mean(axis=1))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        msg = (f"the objective returned non-finite values (NaN/inf) for {int(bad.sum())} of {len(values)} points "
               f"(queries {[query_start + qpp * r for r in rows]}).")
        if run.nonfinite == "raise":
            run.stop_reason = "error"
            raise ObjectiveError(
                msg + " Fix the oracle, or pass nonfinite='worst' to count them as the worst value seen. "
                "Everything recorded before is in this error's .partial_result.",
                partial_result=run.result(),
            )
        warnings.warn(msg + " Counted as the worst value seen so far.", RuntimeWarning, stacklevel=6)
    return values, info


def _join(head: tuple, tail: tuple) -> tuple[np.ndarray, dict]:
    """One batch's ``(values, info)`` from its head's and its tail's (info keys both parts have are joined)."""
    (v0, i0), (v1, i1) = head, tail
    info = {}
    for key in ("responses", "stimuli"):
        a, b = i0.get(key), i1.get(key)
        if a is not None and b is not None:
            if isinstance(a, np.ndarray):
                info[key] = np.concatenate([a, b])
            else:  # a generator's torch tensors
                import torch  # noqa: WPS433 - only a torch generator gets here

                info[key] = torch.cat([a, b])
    if i0.get("times") is not None and i1.get("times") is not None:
        info["times"] = tuple(np.concatenate([a, b]) for a, b in zip(i0["times"], i1["times"]))
    return np.concatenate([v0, v1]), info
