"""The outcome of a run, :class:`Result`, and its exports to pandas, CSV and JSON.

A :class:`Result` is what :func:`mango.maximize` returns and what
:meth:`mango.runs.store.RunStore.result` rebuilds from a run file: the best point
and value, the full history (one row per evaluated point) and the run's
timings.  The exports here read only the in-memory Result, never a store:
:func:`result_to_dataframe`, :func:`result_to_csv` and :func:`result_to_json`.
:func:`response_columns` and :func:`plain_cell` are the column and cell
conventions shared with the store's own exports
(:meth:`~mango.runs.store.RunStore.to_dataframe`, :meth:`~mango.runs.store.RunStore.to_json`),
so both give the same columns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spaces import Space

__all__ = ["Result", "UnitResult", "result_to_dataframe", "result_to_csv", "result_to_json", "response_columns",
           "plain_cell"]


@dataclass
class UnitResult:
    """One target of a population campaign: its best stimulus, value and query, and its best-so-far curve."""

    name: str
    column: int  # the unit's column among the oracle's responses
    best_value: float | None
    best_point: np.ndarray | None
    best_query: int | None
    best_stimulus: np.ndarray | None
    curve: np.ndarray  # best value after each query (length n_queries)

    def to_dict(self) -> dict:
        return {"name": self.name, "column": self.column, "best_value": self.best_value,
                "best_query": self.best_query,
                "best_point": None if self.best_point is None else np.asarray(self.best_point).tolist()}


@dataclass
class Result:
    """The outcome of :func:`maximize`.

    ``points``, ``values``, ``queries`` (query index of each point), ``batch``
    and ``t`` (seconds since start when the point's response arrived) hold the
    full history, one row per evaluated point; ``responses`` every unit's
    response when the objective reports them.

    A population campaign (several units) also has ``targets`` (the units'
    response columns), ``target_names`` and ``unit_values`` ``[n, K]`` (each
    target's value of each point); its ``values`` are the targets' mean, and
    :meth:`units` gives each unit's best stimulus, value, query and curve.
    """

    best_point: np.ndarray | None
    best_value: float | None
    best_query: int | None
    n_queries: int
    budget: int
    optimizer: str
    seed: int | None
    space: Space
    points: np.ndarray
    values: np.ndarray
    queries: np.ndarray
    batch: np.ndarray
    t: np.ndarray
    responses: np.ndarray | None = None
    unit_names: list[str] = field(default_factory=list)
    batch_optimizer_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    batch_objective_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_s: float = 0.0
    stop_reason: str = "budget"
    best_stimulus: np.ndarray | None = None
    config: dict = field(default_factory=dict)
    targets: list[int] | None = None
    target_names: list[str] = field(default_factory=list)
    unit_values: np.ndarray | None = None
    unit_best_stimuli: list | None = None
    optimizer_diagnostics: dict = field(default_factory=dict)  # Optimizer.diagnostics() at the end of the run
    threads: dict | None = None  # torch's thread count for the run: count, source, why (mango.runs.threads)

    @property
    def is_population(self) -> bool:
        """Whether this is a population campaign (several target units)."""
        return self.targets is not None

    def units(self) -> list[UnitResult]:
        """Per target of a population campaign: best value, point, query, stimulus and best-so-far curve.

        Computed from the recorded history alone (``unit_values``), exactly what a
        single-unit campaign over the same queries records.
        """
        if self.targets is None:
            raise ValueError("units() is for population campaigns (maximize(..., unit=[...])); this run has one "
                             "value per point: use best_value / best_so_far().")
        out = []
        names = self.target_names or [str(c) for c in self.targets]
        for j, col in enumerate(self.targets):
            v = self.unit_values[:, j] if len(self.unit_values) else np.zeros(0)
            fin = np.isfinite(v)
            i = int(np.flatnonzero(fin)[np.argmax(v[fin])]) if fin.any() else None
            stim = None if self.unit_best_stimuli is None else self.unit_best_stimuli[j]
            out.append(UnitResult(name=names[j], column=int(col), best_value=None if i is None else float(v[i]),
                                  best_point=None if i is None else self.points[i],
                                  best_query=None if i is None else int(self.queries[i]),
                                  best_stimulus=stim, curve=self._curve(v)))
        return out

    def _curve(self, values: np.ndarray) -> np.ndarray:
        out = np.full(self.n_queries, np.nan)
        if len(values) == 0:
            return out
        per_point = np.fmax.accumulate(np.where(np.isfinite(values), values, np.nan))
        ends = np.append(self.queries[1:], self.n_queries)
        for q0, q1, v in zip(self.queries, ends, per_point):
            out[q0:q1] = v
        return out

    @property
    def optimizer_s(self) -> float:
        return float(np.sum(self.batch_optimizer_s))

    @property
    def objective_s(self) -> float:
        return float(np.sum(self.batch_objective_s))

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def history(self) -> dict[str, np.ndarray]:
        """The history as a dict of equal-length columns."""
        h = {"query": self.queries, "batch": self.batch, "t": self.t, "value": self.values, "point": self.points}
        if self.responses is not None:
            h["responses"] = self.responses
        return h

    def best_so_far(self, unit: int | str | None = None) -> np.ndarray:
        """Best value after each query (length ``n_queries``; repeats share their point's value).

        ``unit`` (a population campaign): that target's curve, by position among
        the targets or by name.
        """
        if unit is None:
            return self._curve(self.values)
        if self.targets is None:
            raise ValueError("best_so_far(unit=) is for population campaigns; this run has one value per point.")
        names = self.target_names or [str(c) for c in self.targets]
        j = names.index(unit) if isinstance(unit, str) and unit in names else unit
        if isinstance(j, str) or not 0 <= int(j) < len(self.targets):
            raise ValueError(f"unit {unit!r} is not a target of this campaign; targets: {names}.")
        return self._curve(self.unit_values[:, int(j)])

    def to_dict(self, history: bool = False) -> dict:
        d = {
            "best_value": self.best_value,
            "best_query": self.best_query,
            "best_point": None if self.best_point is None else np.asarray(self.best_point).tolist(),
            "n_queries": self.n_queries,
            "budget": self.budget,
            "optimizer": self.optimizer,
            "seed": self.seed,
            "space": self.space.to_dict(),
            "wall_s": self.wall_s,
            "optimizer_s": self.optimizer_s,
            "objective_s": self.objective_s,
            "stop_reason": self.stop_reason,
            "unit_names": list(self.unit_names),
            "config": self.config,
        }
        if self.threads is not None:
            d["threads"] = dict(self.threads)
        if self.targets is not None:
            d["units"] = [u.to_dict() for u in self.units()]
        if history:
            d["history"] = {
                "query": self.queries.tolist(), "batch": self.batch.tolist(), "t": self.t.tolist(),
                "value": self.values.tolist(), "point": self.points.tolist(),
            }
            if self.responses is not None:
                d["history"]["responses"] = self.responses.tolist()
        return d

    def to_json(self, path: str | os.PathLike | None = None, history: bool = False) -> str:
        text = json.dumps(self.to_dict(history=history), indent=2, default=_json_default)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def write_curve_csv(self, path: str | os.PathLike) -> None:
        """The best-so-far curve: one row per query (``query,value,best_so_far``).

        A population campaign adds each unit's best so far (``best_so_far[<unit name>]``).
        """
        best = self.best_so_far()
        vals = np.full(self.n_queries, np.nan)
        for q, v in zip(self.queries, self.values):
            vals[q] = v
        units = self.units() if self.targets is not None else []
        with open(path, "w") as f:
            f.write("query,value,best_so_far" + "".join(f",best_so_far[{u.name}]" for u in units) + "\n")
            for i in range(self.n_queries):
                f.write(f"{i},{'' if np.isnan(vals[i]) else repr(float(vals[i]))},{float(best[i])!r}"
                        + "".join(f",{float(u.curve[i])!r}" for u in units) + "\n")

    def __repr__(self) -> str:
        bv = "None" if self.best_value is None else f"{self.best_value:.6g}"
        return (f"Result(best_value={bv}, best_query={self.best_query}, n_queries={self.n_queries}/{self.budget}, "
                f"optimizer={self.optimizer!r}, stop_reason={self.stop_reason!r})")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)



def response_columns(responses, unit_names) -> dict:
    """Every unit's responses ``[n, units]`` as DataFrame columns ``r_<unit name>``.

    Unit names are used when there is one per column (a repeated name gets its
    column index appended), else the column indices; ``None`` gives no columns.
    """
    if responses is None:
        return {}
    names = list(unit_names or [])
    if len(names) != responses.shape[1]:
        names = [str(j) for j in range(responses.shape[1])]
    out, seen = {}, set()
    for j, n in enumerate(names):
        key = f"r_{n}"
        if key in seen:
            key = f"r_{n}_{j}"
        seen.add(key)
        out[key] = responses[:, j]
    return out


def plain_cell(v):
    """A DataFrame cell as exact JSON: numpy scalars to Python, NaN/inf to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def result_to_dataframe(result: Result):
    """A :class:`Result`'s history as a pandas DataFrame (the columns of :meth:`mango.runs.store.RunStore.to_dataframe`
    that an in-memory result has: ``query, batch, t, value, x0.., r_<unit>..``)."""
    import pandas as pd

    pts = np.asarray(result.points)
    cols: dict[str, Any] = {"query": result.queries, "batch": result.batch, "t": result.t, "value": result.values}
    for j in range(pts.shape[1] if pts.ndim == 2 else 0):
        cols[f"x{j}"] = pts[:, j]
    cols.update(response_columns(result.responses, result.unit_names))
    return pd.DataFrame(cols)


def result_to_csv(result: Result, path: str | os.PathLike) -> None:
    """Write a Result's history as CSV (columns of :func:`result_to_dataframe`)."""
    result_to_dataframe(result).to_csv(path, index=False)


def result_to_json(result: Result, path: str | os.PathLike | None = None) -> str:
    """A Result with its full history as JSON (``Result.to_json(history=True)``)."""
    return result.to_json(path, history=True)
