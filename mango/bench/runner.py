"""Run problems x optimizers x seeds on an executor; write results as each run finishes.

Each run is independent: its seed is derived deterministically from
``(problem name, optimizer label, seed)`` (:func:`run_seed`), so a run gives the
same numbers on any executor, in any order, on any machine with the same
package versions.  A run executes the *largest* budget once and reads the
best-so-far at every smaller budget (anytime evaluation): the value at budget
``b`` is what the run had after its first ``b`` queries.

Fixed-budget honesty: an optimizer that chooses its algorithm from the budget
(``budget_aware``: nevergrad's; ``surrogate`` and ``turbo`` never read it) behaves differently
when told 300 than when told 3,000, so reading a long run at 300 would report
what no user who sets ``budget=300`` gets.  Such an optimizer is run once *per
budget*, each run told its own budget (same run seed), and read at that budget
only.

Outputs in ``out``:

* ``results.jsonl`` -- one JSON line per finished run (its rows, its
  best-so-far curve as steps, timings, and its provenance: mango's version and
  git commit, package versions, thread counts).  Resuming reads it and skips
  finished ``(problem, optimizer, seed)`` runs that cover the requested budgets.
  A ``results.jsonl.gz`` beside it (finished runs compressed for keeping, e.g.
  in git) is read first, as if its lines came before the plain file's.
* ``results.csv`` -- one row per run and budget: problem, family, noise,
  optimizer, seed, run_seed, budget, queries, best_value, observed, normalized,
  wall_s, optimizer_s, oracle_s.  Appended as runs finish, rewritten from the
  jsonl at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError, SpaceTooLargeError, WorkerDiedError
from ..runs.provenance import provenance
from .problems import Problem, objective_for_run
from .record import CSV_COLUMNS, BudgetRow, RunRecord, append_csv, read_jsonl, write_csv

__all__ = ["OptimizerSpec", "parse_optimizers", "run_seed", "run_one", "budget_aware", "run_benchmark", "load_records",
           "CSV_COLUMNS", "RunRecord", "BudgetRow", "write_csv", "make_executor"]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer as benchmarked: a ``label`` (shown in tables), a registry ``name`` and parameters."""

    label: str
    name: str
    params: tuple = ()

    @property
    def kw(self) -> dict:
        return dict(self.params)


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_optimizers(spec: str | Sequence) -> list[OptimizerSpec]:
    """Parse ``"tt,cma,ng:NGOpt,protes[k=10;k_top=1]"`` into :class:`OptimizerSpec` s.

    Parameters go in brackets, separated by ``;`` (values parsed as JSON when
    possible).  ``warm_start`` and ``warm_n`` are the loop's warm start (see
    :mod:`mango.runs.natural.screening`), e.g. ``cma[warm_start=zoo;warm_n=20]``: the run
    screens those images first, counted in its budget.  A list may mix strings and specs.  Names are checked against
    :func:`mango.optimizers.available` later, when the run is built.
    """
    from ..optimizers.registry import parse_value

    items = _split_top(spec) if isinstance(spec, str) else list(spec)
    out = []
    for it in items:
        if isinstance(it, OptimizerSpec):
            out.append(it)
            continue
        it = str(it).strip()
        name, params = it, {}
        if "[" in it:
            if not it.endswith("]"):
                raise ConfigError(f"optimizer spec {it!r}: parameters go in brackets at the end, "
                                  "e.g. protes[k=10;k_top=1].")
            name, _, inner = it[:-1].partition("[")
            for kv in filter(None, (s.strip() for s in inner.split(";"))):
                if "=" not in kv:
                    raise ConfigError(f"optimizer spec {it!r}: parameter {kv!r} must be key=value.")
                k, v = kv.split("=", 1)
                params[k.strip()] = parse_value(v.strip())
        out.append(OptimizerSpec(it, name.strip(), tuple(sorted(params.items()))))
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"optimizer labels must be unique, got {labels}.")
    if not out:
        raise ConfigError("no optimizers given; e.g. --optimizers random,cma,ng:NGOpt.")
    return out


def run_seed(problem: str, optimizer: str, seed: int) -> int:
    """The seed of one run: a hash of ``(problem, optimizer label, seed)`` in ``[0, 2**31)``."""
    h = hashlib.sha256(f"{problem}|{optimizer}|{int(seed)}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class _Timeline:
    """Loop callback: cumulative queries / optimizer time / oracle time / wall time after each batch."""

    def __init__(self):
        self.q, self.opt, self.obj, self.wall = [0], [0.0], [0.0], [0.0]

    def on_start(self, run):
        pass

    def on_batch(self, run, batch):
        self.q.append(run.n_queries)
        self.opt.append(self.opt[-1] + batch.optimizer_s)
        self.obj.append(self.obj[-1] + batch.objective_s)
        self.wall.append(run.elapsed())

    def on_end(self, run):
        pass

    def at(self, b: int) -> tuple[float, float, float]:
        q = np.asarray(self.q, float)
        return tuple(float(np.interp(b, q, np.asarray(a))) for a in (self.wall, self.opt, self.obj))


def _recommendation_steps(result, clean_fn, noisy: bool, values=None, column: int | None = None):
    """Steps ``(queries spent, value of the recommendation)``: the recommendation is the
    point with the best *observed* value so far; its value is the noiseless one.

    ``values`` / ``column``: one unit of a population campaign (its observed
    values, and its column of ``clean_fn``'s values).
    """
    values = np.asarray(result.values if values is None else values, float)
    if len(values) == 0:
        return [], []
    qpp = 1
    if len(result.queries) > 1:
        qpp = int(np.min(np.diff(result.queries))) or 1
    elif result.n_queries:
        qpp = result.n_queries
    best_idx, best, idx = [], -np.inf, []
    for i, v in enumerate(values):
        if np.isfinite(v) and v > best:
            best = v
            idx.append(i)
    if not idx:
        return [], []
    if noisy:
        clean = np.asarray(clean_fn(np.asarray(result.points)[idx]), float)
        if column is not None:
            clean = clean[:, column]
    else:
        clean = values[idx]
    qs = [int(result.queries[i]) + qpp for i in idx]
    return qs, [float(c) for c in clean]


def _value_at(qs, vs, b: int) -> float:
    """Value of the step function at ``b`` queries (NaN before the first step)."""
    j = np.searchsorted(np.asarray(qs), b, side="right") - 1
    return float(vs[j]) if j >= 0 else float("nan")


def budget_aware(name: str) -> bool:
    """Whether optimizer ``name`` reads its budget (then it is run once per budget, see the module doc)."""
    from ..optimizers import registry

    return bool(getattr(registry.get(name)[0], "budget_aware", False))


def _worker_threads() -> int:
    """torch's thread count in this worker (``run_benchmark``'s ``threads``): a run keeps it, not mango's policy."""
    import torch  # a core dependency

    return int(torch.get_num_threads())


def run_one(problem: Problem, optimizer: OptimizerSpec, seed: int, budgets: Sequence[int], device=None,
            batch_size: int | None = None) -> RunRecord:
    """Run one (problem, optimizer, seed) for ``max(budgets)`` queries; return its :class:`RunRecord`.

    A continuous-only optimizer on a Codebook problem is not run, nor one that refuses the space as too
    large for this machine (:class:`~mango.errors.SpaceTooLargeError`): its record has ``skipped`` (the
    reason) and no rows, and tables show it as n/a.

    The record holds one :class:`BudgetRow` per budget and the run's
    recommendation curve as steps ``curve_q`` / ``curve_v`` (raw values) and
    ``curve_n`` (normalized).
    """
    from ..runs.loop import maximize
    from ..runs.objective import evaluate
    from ..optimizers import registry

    budgets = sorted({int(b) for b in budgets})
    kw = dict(optimizer.kw)
    # a warm start (``cma[warm_start=zoo;warm_n=20]``) is the loop's, not an optimizer parameter
    warm = {k: kw.pop(k) for k in ("warm_start", "warm_n") if k in kw}
    rs = run_seed(problem.name, optimizer.label, seed)
    objective, built = objective_for_run(problem, rs, device)
    cls, _ = registry.get(optimizer.name)

    def skipped(reason: str) -> RunRecord:  # not a failure of the optimizer: a pair that cannot run at all
        return RunRecord(problem.name, problem.to_dict(), optimizer.label, optimizer.name, optimizer.kw, int(seed), rs,
                         budgets, 0, built.ref_low, built.ref_max, skipped=reason, provenance=provenance())

    if built.space.kind == "codebook" and "codebook" not in getattr(cls, "native", ("codebook",)):
        return skipped(f"{optimizer.name} is continuous and cannot search a Codebook")  # codes are categories
    from ..optimizers import make

    try:
        make(optimizer.name, built.space, seed=0, **kw)  # warm-up: imports are not the run's time
    except SpaceTooLargeError as exc:  # refused before any query (e.g. a full CMA-ES over a colour codebook)
        return skipped(str(exc))
    noisy = problem.noise != "none"
    fixed = budget_aware(optimizer.name)
    campaigns = {}  # budget -> (result, timeline, steps q, steps v), one campaign per budget when fixed
    wall = 0.0
    for told in (budgets if fixed else budgets[-1:]):
        if fixed:  # a fresh objective per campaign: its noise stream starts over, as in a user's run
            objective, built = objective_for_run(problem, rs, device)
        tl = _Timeline()
        t0 = time.perf_counter()
        res = maximize(objective, built.space, optimizer=optimizer.name, budget=told, batch_size=batch_size,
                       seed=rs, callbacks=[tl], progress=False, threads=_worker_threads(), **warm, **kw)
        wall += time.perf_counter() - t0

        def clean_fn(p):
            return evaluate(built.clean, p)[0]

        if built.is_population:  # one step curve per unit
            campaigns[told] = (res, tl, [_recommendation_steps(res, clean_fn, noisy, res.unit_values[:, j], j)
                                         for j in range(res.unit_values.shape[1])])
        else:
            campaigns[told] = (res, tl, *_recommendation_steps(res, clean_fn, noisy))
    row = _RowMaker(problem, optimizer, int(seed), rs)
    if built.is_population:
        return _population_record(row, budgets, campaigns, fixed, built, wall)
    res, tl, qs, vs = campaigns[budgets[-1]]
    rows = []
    for b in budgets:
        res_b, tl, qs_b, vs_b = campaigns[b] if fixed else campaigns[budgets[-1]]
        obs = res_b.best_so_far()
        q = min(b, res_b.n_queries)
        value = _value_at(qs_b, vs_b, q)
        rows.append(row(b, q, tl, value, float(obs[q - 1]) if q > 0 else float("nan"),
                        float(built.normalize(value))))
    return RunRecord(
        problem.name, problem.to_dict(), optimizer.label, optimizer.name, optimizer.kw, int(seed), rs, budgets,
        int(res.n_queries), built.ref_low, built.ref_max, curve_q=qs, curve_v=vs,
        curve_n=[float(x) for x in built.normalize(vs)] if vs else [], wall_s=wall, optimizer_s=res.optimizer_s,
        oracle_s=res.objective_s, rows=rows, fixed_budget=fixed, provenance=provenance(),
    )


class _RowMaker:
    """Makes the :class:`BudgetRow` s of one (problem, optimizer, seed) run."""

    def __init__(self, problem: Problem, optimizer: OptimizerSpec, seed: int, rs: int):
        self.problem, self.optimizer, self.seed, self.rs = problem, optimizer, seed, rs

    def __call__(self, b: int, q: int, tl: _Timeline, value: float, observed: float, normalized: float,
                 **units) -> BudgetRow:
        p = self.problem
        w, o, r = tl.at(q)
        return BudgetRow(problem=p.name, family=p.family or p.kind, noise=p.noise, optimizer=self.optimizer.label,
                         seed=self.seed, run_seed=self.rs, budget=b, queries=int(q), best_value=value,
                         observed=observed, normalized=normalized, wall_s=w, optimizer_s=o, oracle_s=r, **units)


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def _population_record(row: _RowMaker, budgets: list[int], campaigns: dict, fixed: bool, built, wall: float):
    """The :class:`RunRecord` of a population problem: per budget each unit's value (its own recommendation,
    see :func:`_recommendation_steps`) and normalized value (by its own reference); the row's ``best_value``,
    ``observed`` and ``normalized`` -- and the record's curves -- are the medians over the units."""
    rows = []
    for b in budgets:
        res_b, tl, steps = campaigns[b] if fixed else campaigns[budgets[-1]]
        q = min(b, res_b.n_queries)
        values = [_value_at(qs, vs, q) for qs, vs in steps]
        normalized = [float(x) for x in built.normalize_units(np.asarray(values))]
        observed = [float(res_b.best_so_far(unit=j)[q - 1]) if q > 0 else float("nan") for j in range(len(steps))]
        rows.append(row(b, q, tl, _median(values), _median(observed), _median(normalized),
                        unit_best_values=values, unit_normalized=normalized))
    res, tl, steps = campaigns[budgets[-1]]
    curve_q = sorted({q for qs, _ in steps for q in qs})
    at = np.array([[_value_at(qs, vs, q) for qs, vs in steps] for q in curve_q]).reshape(len(curve_q), len(steps))
    units = [{"name": n, "column": int(c), "ref_max": float(r)}
             for n, c, r in zip(res.target_names, res.targets, built.unit_ref_max)]
    p, o = row.problem, row.optimizer
    return RunRecord(
        p.name, p.to_dict(), o.label, o.name, o.kw, row.seed, row.rs, budgets, int(res.n_queries), built.ref_low,
        built.ref_max, curve_q=curve_q, curve_v=[_median(v) for v in at],
        curve_n=[_median(v) for v in built.normalize_units(at)], wall_s=wall, optimizer_s=res.optimizer_s,
        oracle_s=res.objective_s, rows=rows, fixed_budget=fixed, units=units, provenance=provenance(),
    )


def _task(args) -> RunRecord | dict:
    """Worker entry point (module level: picklable): the run's record, or a dict with its ``error``."""
    problem, optimizer, seed, budgets, device, threads, batch_size = args
    if threads:
        try:
            import torch

            torch.set_num_threads(int(threads))
        except Exception:  # pragma: no cover - torch is a core dependency
            pass
    try:
        return run_one(problem, optimizer, seed, budgets, device=device, batch_size=batch_size)
    except Exception as exc:  # one failing run must not sink the benchmark; it is reported and retried
        import traceback

        return {"problem": problem.name, "optimizer": optimizer.label, "seed": int(seed),
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def load_records(out: str | os.PathLike) -> list[RunRecord]:
    """The finished runs recorded in ``out`` (``results.jsonl.gz``, then ``results.jsonl``; see
    :func:`~mango.bench.record.read_jsonl`), one per ``(problem, optimizer, seed)``: the last written (runs
    are deterministic, so duplicates from two invocations sharing a directory carry the same numbers)."""
    last = {r.key: r for r in read_jsonl(out)}
    return list(last.values())


def make_executor(workers: int = 2, dask: str | None = None):
    """``(executor, close)``: a process pool, or a Dask cluster's executor for ``dask``
    (an address like ``tcp://host:8786``, or ``"local"`` for a LocalCluster)."""
    if dask:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError("--dask needs dask.distributed: pip install 'mango-am[dask]'.") from exc
        if dask == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            cluster = None
            client = Client(dask)
        ex = client.get_executor()

        def close():
            client.close()
            if cluster is not None:
                cluster.close()

        return ex, close
    ctx = multiprocessing.get_context("spawn")
    ex = cf.ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx)
    return ex, lambda: ex.shutdown(wait=True, cancel_futures=True)


def run_benchmark(problems: Sequence[Problem], optimizers, seeds: int | Sequence[int], budgets: Sequence[int],
                  out: str | os.PathLike, *, executor=None, workers: int = 2, dask: str | None = None,
                  device=None, progress: bool | None = None, resume: bool = True, threads: int | None = 1,
                  batch_size: int | None = None) -> list[RunRecord]:
    """Run every (problem, optimizer, seed) and return all records (old and new).

    Parameters
    ----------
    problems : :class:`~mango.bench.problems.Problem` s (e.g. ``suites.get("quick")``).
    optimizers : a spec string ``"random,cma,ng:NGOpt"`` or a list (see :func:`parse_optimizers`).
    seeds : how many seeds (``0..n-1``) or the seeds themselves.
    budgets : query budgets; each run executes the largest once (anytime).
    out : output directory (created); results are appended as each run finishes.
    executor : any ``concurrent.futures``-style executor (``submit``); default a
        process pool of ``workers`` (``spawn``), or a Dask cluster with ``dask=``.
    resume : skip runs already in ``out/results.jsonl`` that cover ``budgets``.
        A run that raises is not fatal: it is warned about, written to
        ``out/errors.jsonl`` with its traceback, left out of the results and
        retried by the next call.  A worker process that dies (killed by the operating system, most often
        out of memory) ends the call with :class:`~mango.errors.WorkerDiedError`; the runs finished before
        stay in ``out`` and a rerun resumes after them.
    threads : torch threads per worker (1 keeps workers from fighting over cores).
    """
    opts = parse_optimizers(optimizers)
    seeds = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds must be a positive number or a non-empty list.")
    try:
        budgets = sorted({int(b) for b in budgets})
    except (TypeError, ValueError):
        raise ConfigError(f"budgets must be positive integers, got {budgets!r}.")
    if not budgets or budgets[0] < 1:
        raise ConfigError(f"budgets must be positive integers, got {budgets!r}.")
    problems = list(problems)
    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ConfigError(f"problem names must be unique, got {names}.")
    from ..optimizers import registry

    for o in opts:  # fail fast on an unknown or missing optimizer, before any run
        registry.get(o.name)
    os.makedirs(out, exist_ok=True)
    jsonl = os.path.join(out, "results.jsonl")
    csv = os.path.join(out, "results.csv")
    old = load_records(out) if resume else []
    if not resume:
        for p in (jsonl, csv):
            if os.path.exists(p):
                os.remove(p)
    done = {r.key for r in old if set(budgets) <= set(r.budgets)}
    # seed-major order: an interrupted benchmark has every (problem, optimizer) with fewer seeds
    todo = [(p, o, s) for s in seeds for p in problems for o in opts if (p.name, o.label, s) not in done]
    keep = [r for r in old if r.key in done]
    if len(keep) != len(old):  # drop stale records (fewer budgets) so they are redone
        with open(jsonl, "w") as f:
            for r in keep:
                f.write(json.dumps(r.to_dict()) + "\n")
    if not os.path.exists(csv) or len(keep) != len(old):
        write_csv(keep, csv)
    records = list(keep)
    if todo:
        close = None
        if executor is None:
            executor, close = make_executor(workers, dask)
        bar = None
        errors: list[dict] = []
        if progress or (progress is None and not os.environ.get("CI")):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="run", dynamic_ncols=True, desc="bench")
        try:
            futs = {executor.submit(_task, (p, o, s, budgets, device, threads, batch_size)): (p, o, s)
                    for p, o, s in todo}
            for fut in cf.as_completed(futs):
                try:
                    rec = fut.result()
                except cf.BrokenExecutor:  # a worker was killed (most often by the OS, out of memory)
                    finished = {r.key for r in records}
                    left = [(p.name, o.label, s) for p, o, s in todo if (p.name, o.label, s) not in finished]
                    shown = "; ".join(f"{p} / {o} / seed {s}" for p, o, s in left[:max(1, workers) + 1])
                    raise WorkerDiedError(
                        f"a benchmark worker process died abruptly, so the run it held never finished (the "
                        f"operating system ends a process this way when the machine runs out of memory: `dmesg` "
                        f"says which). The run was among the first not finished: {shown}. The "
                        f"{len(records)} finished runs are kept in {jsonl}: rerun the same command to resume, "
                        "with fewer --workers, or without the optimizer or problem that ran out of memory "
                        "(--optimizers / --problems).") from None
                if isinstance(rec, dict):  # the run raised
                    errors.append(rec)
                    with open(os.path.join(out, "errors.jsonl"), "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    if bar is not None:
                        bar.update(1)
                    warnings.warn(f"run {rec['problem']} / {rec['optimizer']} / seed {rec['seed']} failed: "
                                  f"{rec['error']} (traceback in {out}/errors.jsonl; rerun to retry)",
                                  RuntimeWarning, stacklevel=2)
                    continue
                append_csv(rec, csv)
                with open(jsonl, "a") as f:
                    f.write(json.dumps(rec.to_dict()) + "\n")
                records.append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{rec.problem} {rec.optimizer} s{rec.seed}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
            if close is not None:
                close()
    order = {(p.name, o.label, s): i for i, (p, o, s) in enumerate((p, o, s) for p in problems for o in opts
                                                                      for s in seeds)}
    records.sort(key=lambda r: order.get(r.key, len(order)))
    write_csv(records, csv)
    return records
