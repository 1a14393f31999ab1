"""Objectives: what the loop maximizes.

An objective maps a batch of points of a space to one float per point.  The
simplest is a plain function ``f(points) -> values``.  :class:`Objective`
composes a generator (points -> stimuli) with an oracle (stimuli -> responses
of one or more units) and picks the value to maximize, so optimizers never see
images and the loop still records every unit's response and the stimuli.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, ObjectiveError, UnknownNameError

__all__ = ["Objective", "Selectivity", "Direction", "as_objective", "evaluate"]


class Selectivity:
    """Unit ``target`` against the other units the oracle reads: a value to maximize from responses ``[n, K]``.

    With ``r`` the target's response and ``m`` the mean response of the others
    (``others``: their column indices; default every other column):

    * ``mode="difference"``: ``r - m``, in the responses' own units.  Works for any
      readout (membrane potentials, logits, rates).
    * ``mode="ratio"``: ``r / (m + eps)``, how many times the others' mean response
      the target gets.  Only for non-negative responses (spike counts or rates);
      a negative response is refused, not silently turned into a meaningless ratio.

    Use it as the ``unit=`` of :func:`mango.maximize` with an oracle that reads
    all the units compared, e.g. ``SNNOracle(net, layer="output", unit=list(range(10)))``
    and ``unit=Selectivity(3)``: the stimulus that drives output 3 and not the
    other nine.
    """

    def __init__(self, target: int, mode: str = "difference", others=None, eps: float = 1e-6):
        if isinstance(target, bool) or int(target) != target or target < 0:
            raise ConfigError(f"Selectivity target must be a column index >= 0, got {target!r}.")
        if mode not in ("difference", "ratio"):
            raise ConfigError(f"Selectivity mode must be 'difference' or 'ratio', got {mode!r}.")
        self.target, self.mode, self.eps = int(target), mode, float(eps)
        self.others = None if others is None else [int(o) for o in others]
        if self.others is not None and (not self.others or self.target in self.others):
            raise ConfigError(f"Selectivity others must be a non-empty list of columns without the target "
                              f"{self.target}, got {others!r}.")
        self.__name__ = f"selectivity({self.target}, {mode})"

    def check(self, n_units: int) -> None:
        """Refuse columns the oracle does not read (called by :class:`Objective`)."""
        cols = [self.target] + (self.others or [])
        if n_units is not None and (max(cols) >= n_units or n_units < 2):
            raise ConfigError(f"{self.__name__} compares columns {sorted(set(cols))} but the oracle reads "
                              f"{n_units} unit(s); read the compared units too (e.g. unit=list(range(10))).")

    def __call__(self, responses) -> np.ndarray:
        r = np.asarray(responses, dtype=float)
        self.check(r.shape[1])
        others = self.others if self.others is not None else [j for j in range(r.shape[1]) if j != self.target]
        mine, rest = r[:, self.target], r[:, others].mean(axis=1)
        if self.mode == "difference":
            return mine - rest
        if (r[:, [self.target] + others] < 0).any():
            raise ObjectiveError(f"{self.__name__}: a response is negative, so a ratio means nothing; use "
                                 "mode='difference' (membrane potentials, logits) or a spike count/rate readout.")
        return mine / (rest + self.eps)

    def describe(self) -> dict:
        return {"selectivity": self.target, "mode": self.mode, "others": self.others}


class Direction:
    """A weighted population direction: ``responses @ weights`` (one weight per unit the oracle reads).

    E.g. ``Direction([1, -1])`` drives unit 0 up and unit 1 down at once;
    ``Direction(np.ones(K) / K)`` is the population mean.  The weights are used
    as given (not normalized), so the value is in the responses' units.
    """

    def __init__(self, weights):
        w = np.asarray(weights, dtype=float)
        if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or not np.any(w):
            raise ConfigError("Direction weights must be a non-empty 1-D list of finite numbers, not all zero; got "
                              f"{np.array2string(w, threshold=8)}.")
        self.weights = w
        self.__name__ = "direction"

    def check(self, n_units: int) -> None:
        if n_units is not None and n_units != len(self.weights):
            raise ConfigError(f"the direction has {len(self.weights)} weights but the oracle reads {n_units} unit(s); "
                              "give one weight per unit.")

    def __call__(self, responses) -> np.ndarray:
        r = np.asarray(responses, dtype=float)
        self.check(r.shape[1])
        return r @ self.weights

    def describe(self) -> dict:
        return {"direction": self.weights.tolist()}


class Objective:
    """``generator`` -> ``oracle`` -> one value per point.

    Parameters
    ----------
    oracle : a mango Oracle (``oracle(stimuli) -> responses [n, n_units]``).
    generator : a mango Generator (``generator(points) -> stimuli``); its space
        is the objective's space.  Without a generator the points *are* the
        stimuli (e.g. pixels), and ``space`` must be given.
    unit : which response to maximize: an index or a name among
        ``oracle.unit_names``, ``"mean"`` (population mean), a
        :class:`Selectivity` or :class:`Direction`, or any callable
        ``responses [n, n_units] -> values [n]``.  Default: the only unit, or the
        mean when the oracle reads several.

        Several units -- a list of indices or names, a ``range``, or ``"all"``
        -- make a **population campaign**: each unit is a target of its own
        (:attr:`targets`), :meth:`evaluate` returns values ``[n, K]`` (one
        column per target) and :func:`mango.maximize` shares the budget among
        them (:mod:`mango.optimizers.population`).
    """

    def __init__(self, oracle, generator=None, unit=None, space=None):
        self.oracle = oracle
        self.generator = generator
        self.space = space if space is not None else getattr(generator, "space", None)
        names = list(getattr(oracle, "unit_names", []) or [])
        n_units = getattr(oracle, "n_units", len(names) or None)
        self.targets: list[int] | None = None
        if (isinstance(unit, str) and unit == "all") or isinstance(unit, (list, tuple, range, np.ndarray)):
            self.targets = _target_columns(unit, names, n_units)
            unit = None
        if unit is None and self.targets is None:
            unit = 0 if n_units == 1 else "mean"
        if isinstance(unit, str) and unit != "mean":
            if unit not in names:
                raise UnknownNameError("unit", unit, names)
            unit = names.index(unit)
        if isinstance(unit, (int, np.integer)) and n_units is not None and not 0 <= unit < n_units:
            raise ConfigError(f"unit {unit} is out of range: the oracle reads {n_units} unit(s), "
                              f"valid 0..{n_units - 1}.")
        if hasattr(unit, "check"):  # Selectivity, Direction: are the units they compare read?
            unit.check(n_units)
        self.unit = unit

    @property
    def queries_per_point(self) -> int:
        return int(getattr(self.oracle, "queries_per_stimulus", 1))

    @property
    def unit_names(self) -> list[str]:
        return list(getattr(self.oracle, "unit_names", []) or [])

    @property
    def target_names(self) -> list[str]:
        """Names of a population campaign's targets (their unit names, else their column indices)."""
        if self.targets is None:
            return []
        names = self.unit_names
        return [names[j] if j < len(names) else str(j) for j in self.targets]

    def select(self, responses: np.ndarray) -> np.ndarray:
        if self.targets is not None:
            if responses.shape[1] <= max(self.targets):
                raise ObjectiveError(f"the oracle returned {responses.shape[1]} response column(s) but the campaign "
                                     f"targets column(s) up to {max(self.targets)}: it records fewer units than "
                                     "asked. Check the rig's channels (or the oracle's unit_names).")
            return responses[:, self.targets]
        if callable(self.unit):
            return np.asarray(self.unit(responses), dtype=float).reshape(-1)
        if isinstance(self.unit, str):  # "mean"
            return responses.mean(axis=1)
        return responses[:, int(self.unit)]

    def evaluate(self, points) -> tuple[np.ndarray, dict[str, Any]]:
        stimuli = self.generator(points) if self.generator is not None else points
        rig = _timed_oracle(self.oracle)
        if rig is not None:
            rig.take_times()  # forget times of presentations made outside this batch
        responses = np.asarray(self.oracle(stimuli), dtype=float)
        if responses.ndim == 1:
            responses = responses[:, None]
        if responses.shape[0] != len(points):
            raise ObjectiveError(
                f"the oracle returned {responses.shape[0]} responses for {len(points)} stimuli; it must return one "
                "row per stimulus."
            )
        info = {"responses": responses, "stimuli": stimuli}
        times = _point_times(rig, len(points))
        if times is not None:
            info["times"] = times
        return self.select(responses), info

    def __call__(self, points) -> np.ndarray:
        return self.evaluate(points)[0]

    def describe(self) -> dict:
        if self.targets is not None:
            d = {"units": list(self.targets)}
        elif hasattr(self.unit, "describe"):
            d = {"unit": self.unit.describe()}
        else:
            d = {"unit": self.unit if not callable(self.unit) else getattr(self.unit, "__name__", "callable")}
        for key, obj in (("oracle", self.oracle), ("generator", self.generator)):
            if obj is not None:
                d[key] = obj.describe() if hasattr(obj, "describe") else type(obj).__name__
        return d


def _timed_oracle(oracle):
    """The oracle behind ``oracle`` (through wrappers) that reports presentation times (``take_times``), or None."""
    for _ in range(8):
        if oracle is None or hasattr(oracle, "take_times"):
            return oracle
        oracle = getattr(oracle, "oracle", None)
    return None


def _point_times(rig, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Onset and offset ``[n]`` of each point's presentation: a point shown k times (``Repeat`` sends the batch k
    times over) runs from its first onset to its last offset.  None when the rig reported no times."""
    times = None if rig is None else rig.take_times()
    if times is None or n == 0 or len(times[0]) % n:
        return None
    onset, offset = (t.reshape(-1, n) for t in times)
    return onset.min(axis=0), offset.max(axis=0)


def _target_columns(unit, names: list[str], n_units: int | None) -> list[int]:
    """The response columns of a population campaign's ``unit``: ``"all"``, or a list of indices and names."""
    if isinstance(unit, str):  # "all"
        if not n_units:
            raise ConfigError("unit='all' needs an oracle that says how many units it reads (unit_names); "
                              "list the units instead, e.g. unit=[0, 1, 2].")
        return list(range(n_units))
    cols = []
    for u in list(unit):
        if isinstance(u, str):
            if u not in names:
                raise UnknownNameError("unit", u, names)
            u = names.index(u)
        if isinstance(u, bool) or not isinstance(u, (int, np.integer)):
            raise ConfigError(f"a population campaign's units are indices or names, got {u!r}.")
        if u < 0 or (n_units is not None and u >= n_units):
            valid = f"0..{n_units - 1}" if n_units else "indices >= 0"
            raise ConfigError(f"unit {int(u)} is out of range: the oracle reads {n_units} unit(s), valid {valid}. "
                              "Fix the unit list (e.g. --unit 0-9 for ten units).")
        cols.append(int(u))
    if not cols:
        raise ConfigError("the unit list is empty; give at least one unit (e.g. unit=[0, 1] or unit='all').")
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise ConfigError(f"the unit list names unit(s) {dup} more than once; list each unit once.")
    return cols


def _is_oracle(obj) -> bool:
    return hasattr(obj, "unit_names") and hasattr(obj, "queries_per_stimulus")


def as_objective(objective, generator=None, space=None, unit=None):
    """Turn what the user passed to :func:`mango.maximize` into ``(objective, space)``."""
    if generator is not None:
        if isinstance(objective, Objective):
            raise ConfigError("pass either an Objective or an oracle with generator=, not both.")
        if not _is_oracle(objective):
            raise ConfigError(
                "generator= needs an Oracle as the first argument (e.g. mango.oracles.TorchOracle); "
                f"got {type(objective).__name__}. For a plain function of the latent points, omit generator=."
            )
        if space is not None and space != generator.space:
            raise ConfigError(f"space={space!r} differs from the generator's space {generator.space!r}; omit space=.")
        objective = Objective(objective, generator, unit=unit)
        space = generator.space
    elif _is_oracle(objective):
        if space is None:
            raise ConfigError(
                "an oracle needs stimuli: pass generator= (e.g. a VQVAEGenerator) so points become images, "
                "or space= when the points are the stimuli themselves."
            )
        objective = Objective(objective, None, unit=unit, space=space)
    elif unit is not None:
        raise ConfigError("unit= only applies to oracles; your objective already returns one value per point.")
    if space is None:
        space = getattr(objective, "space", None)
    if space is None:
        raise ConfigError("maximize() needs space= (a mango.spaces Box, Grid or Codebook) or a generator= that "
                          "has one.")
    if not callable(objective) and not hasattr(objective, "evaluate"):
        raise ConfigError(f"the objective must be callable, got {type(objective).__name__}.")
    return objective, space


def evaluate(objective: Callable | Objective, points: np.ndarray) -> tuple[np.ndarray, dict]:
    """Call ``objective`` on ``points``; return ``(values, info)`` with shape checks."""
    if hasattr(objective, "evaluate"):
        values, info = objective.evaluate(points)
    else:
        values, info = objective(points), {}
    k = len(getattr(objective, "targets", None) or ())
    try:
        values = np.asarray(values, dtype=float)
        values = values.reshape(len(values), k) if k else values.reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ObjectiveError(f"the objective must return numbers, one per point{f' and target ({k})' if k else ''}; "
                             f"got {type(values).__name__}: {exc}")
    if len(values) != len(points):
        raise ObjectiveError(
            f"the objective returned {len(values)} values for a batch of {len(points)} points; "
            "it must take a batch [n, dim] and return n values."
        )
    return values, info
