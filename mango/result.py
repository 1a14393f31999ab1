"""The outcome of a run, :class:`Result`, and its exports to pandas, CSV and JSON.

A :class:`Result` is what :func:`mango.maximize` returns and what
:meth:`mango.store.RunStore.result` rebuilds from a run file: the best point
and value, the full history (one row per evaluated point) and the run's
timings.  The exports here read only the in-memory Result, never a store:
:func:`result_to_dataframe`, :func:`result_to_csv` and :func:`result_to_json`.
:func:`response_columns` and :func:`plain_cell` are the column and cell
conventions shared with the store's own exports
(:meth:`~mango.store.RunStore.to_dataframe`, :meth:`~mango.store.RunStore.to_json`),
so both give the same columns.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spaces import Space

__all__ = ["Result", "result_to_dataframe", "result_to_csv", "result_to_json", "response_columns", "plain_cell"]


@dataclass
class Result:
    """The outcome of :func:`maximize`.

    ``points``, ``values``, ``queries`` (query index of each point), ``batch``
    and ``t`` (seconds since start when the point's response arrived) hold the
    full history, one row per evaluated point; ``responses`` every unit's
    response when the objective reports them.
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

    def best_so_far(self) -> np.ndarray:
        """Best value after each query (length ``n_queries``; repeats share their point's value)."""
        out = np.full(self.n_queries, np.nan)
        if len(self.values) == 0:
            return out
        per_point = np.maximum.accumulate(self.values)
        ends = np.append(self.queries[1:], self.n_queries)
        for q0, q1, v in zip(self.queries, ends, per_point):
            out[q0:q1] = v
        return out

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
        """The best-so-far curve: one row per query (``query,value,best_so_far``)."""
        best = self.best_so_far()
        vals = np.full(self.n_queries, np.nan)
        for q, v in zip(self.queries, self.values):
            vals[q] = v
        with open(path, "w") as f:
            f.write("query,value,best_so_far\n")
            for i in range(self.n_queries):
                f.write(f"{i},{'' if np.isnan(vals[i]) else repr(float(vals[i]))},{float(best[i])!r}\n")

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
    """A :class:`Result`'s history as a pandas DataFrame (the columns of :meth:`mango.store.RunStore.to_dataframe`
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
