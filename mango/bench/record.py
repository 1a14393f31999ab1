"""Typed benchmark records: one :class:`RunRecord` per (problem, optimizer, seed), one :class:`BudgetRow` per budget.

These are what :func:`mango.bench.runner.run_one` builds, ``results.jsonl``
holds (one :meth:`RunRecord.to_dict` per line) and ``results.csv`` holds (one
:class:`BudgetRow` per line, written and read with the :mod:`csv` module).
Files written before these classes load unchanged: ``fixed_budget`` and
``provenance`` (absent from older runs) read as ``None``, and ``skipped``
(present only for a run that was not run) as ``None`` otherwise;
:meth:`RunRecord.to_dict` leaves them out when they are ``None``, so the files
keep the keys they always had.  A record's ``provenance`` is
:func:`mango.runs.provenance.provenance` in the process that ran it.

A population problem (several units, one campaign) also has, per budget row,
``unit_best_values`` and ``unit_normalized`` (each unit's value and its value
over its own reference; the row's ``best_value``, ``observed`` and
``normalized`` are then the medians over the units), and per record ``units``
(each unit's name and reference).  They are ``None`` -- and left out of the
JSON -- for a single unit; ``results.csv`` keeps its columns (the medians).

For code written against the earlier plain dicts, a record also answers
``rec["key"]``, ``rec.get("key")`` and ``"key" in rec`` (a ``None`` optional
field counts as absent).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["BudgetRow", "RunRecord", "CSV_COLUMNS", "write_csv", "append_csv", "read_csv", "read_jsonl"]


class _Fields:
    """Read-only mapping access to a dataclass's fields (``None`` optional fields count as absent)."""

    _OPTIONAL: tuple[str, ...] = ()

    def __getitem__(self, key: str):
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        names = {f.name for f in dataclasses.fields(self)}
        return key in names and not (key in self._OPTIONAL and getattr(self, key) is None)

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name in self]


@dataclass
class BudgetRow(_Fields):
    """A run read at one budget (a line of ``results.csv``)."""

    problem: str
    family: str
    noise: str
    optimizer: str
    seed: int
    run_seed: int
    budget: int
    queries: int
    best_value: float
    observed: float
    normalized: float
    wall_s: float
    optimizer_s: float
    oracle_s: float
    #: a population problem's per-unit values and normalized values at this budget (None for one unit)
    unit_best_values: list | None = None
    unit_normalized: list | None = None

    _OPTIONAL = ("unit_best_values", "unit_normalized")

    @classmethod
    def from_dict(cls, d: dict) -> "BudgetRow":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d or f.name not in cls._OPTIONAL})

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k in self._OPTIONAL and v is None)}


CSV_COLUMNS = [f.name for f in dataclasses.fields(BudgetRow) if f.name not in BudgetRow._OPTIONAL]
_INT = {"seed", "run_seed", "budget", "queries"}
_STR = {"problem", "family", "noise", "optimizer"}


@dataclass
class RunRecord(_Fields):
    """One (problem, optimizer, seed) run: its rows per budget and its recommendation curve as steps
    (``curve_q`` queries, ``curve_v`` raw values, ``curve_n`` normalized)."""

    problem: str
    problem_spec: dict
    optimizer: str
    optimizer_name: str
    optimizer_params: dict
    seed: int
    run_seed: int
    budgets: list
    n_queries: int
    ref_low: float
    ref_max: float
    curve_q: list = field(default_factory=list)
    curve_v: list = field(default_factory=list)
    curve_n: list = field(default_factory=list)
    wall_s: float = 0.0
    optimizer_s: float = 0.0
    oracle_s: float = 0.0
    rows: list = field(default_factory=list)  # of BudgetRow
    #: whether the optimizer was run once per budget (budget-aware); None in files older than the flag
    fixed_budget: bool | None = None
    #: why the run was not run (a continuous optimizer on a Codebook); None for a run that ran
    skipped: str | None = None
    #: a population problem's units: ``[{"name", "column", "ref_max"}, ...]``; None for one unit
    units: list | None = None
    #: what ran it (:func:`mango.runs.provenance.provenance`: mango's version and git commit, package versions,
    #: thread counts); None in files older than the field
    provenance: dict | None = None

    _OPTIONAL = ("fixed_budget", "skipped", "units", "provenance")

    @property
    def key(self) -> tuple[str, str, int]:
        """``(problem, optimizer label, seed)``: what identifies a run in a results directory."""
        return (self.problem, self.optimizer, self.seed)

    def to_dict(self) -> dict:
        """The JSON form (a line of ``results.jsonl``); ``None`` optional fields are left out."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in self._OPTIONAL and v is None:
                continue
            d[f.name] = [r.to_dict() for r in v] if f.name == "rows" else v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        """Read the JSON form, of any version mango has written."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["rows"] = [r if isinstance(r, BudgetRow) else BudgetRow.from_dict(r) for r in d.get("rows", [])]
        return cls(**kw)


def _fmt(v) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else str(v)
    return repr(float(v)) if isinstance(v, float) else v


def _rows(records: Iterable[RunRecord]):
    for rec in records:
        for row in rec.rows:
            yield [_fmt(getattr(row, c)) for c in CSV_COLUMNS]


def write_csv(records: Iterable[RunRecord], path: str | os.PathLike) -> None:
    """Write every row of ``records`` to ``path`` (a header, then one line per run and budget)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        w.writerows(_rows(records))


def append_csv(record: RunRecord, path: str | os.PathLike) -> None:
    """Append the rows of one finished run to ``path`` (written with its header by :func:`write_csv`)."""
    with open(path, "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(_rows([record]))


def read_csv(path: str | os.PathLike) -> list[BudgetRow]:
    """The rows of a ``results.csv`` (typed: integers, floats with ``nan``/``inf``, strings)."""
    with open(path, newline="") as f:
        out = []
        for d in csv.DictReader(f):
            out.append(BudgetRow(**{c: (int(d[c]) if c in _INT else d[c] if c in _STR else float(d[c]))
                                    for c in CSV_COLUMNS}))
        return out


def read_jsonl(out: str | os.PathLike) -> list[RunRecord]:
    """Every run recorded in directory ``out``, in file order, duplicates kept: the lines of
    ``results.jsonl.gz`` (finished runs compressed for keeping) if there is one, then those of ``results.jsonl``.

    A line that does not parse -- a run killed mid-write -- is skipped (the runner redoes the run).
    """
    recs = []
    for name, opener in (("results.jsonl.gz", gzip.open), ("results.jsonl", open)):
        path = os.path.join(out, name)
        if not os.path.exists(path):
            continue
        with opener(path, "rt") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    recs.append(RunRecord.from_dict(json.loads(line)))
                except json.JSONDecodeError:
                    continue
    return recs
