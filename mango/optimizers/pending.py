"""Asked points awaiting their values: each has an id, a told point finds its ask in O(1).

An optimizer hands out points with ``ask`` and gets them back with ``tell``,
in any order and in any grouping (:mod:`mango.runs.loop` tells a batch in the order
it was asked, a user driving the optimizer by hand may not).  Many optimizers
must know *which* ask a told point answers: a population method puts the value
into its generation, an adapter tells its inner optimizer the inner point that
produced the outer one, the nevergrad wrapper tells nevergrad the candidate
object it drew.  :class:`Pending` is the one place that does this matching.

* :meth:`Pending.add` records asked points (with an optional *handle* each,
  any object the caller wants back) and returns their ids: consecutive integers
  in ask order.
* :meth:`Pending.pop` matches told points to outstanding asks and removes them.
  A point is looked up by the bytes of its coordinates (cast to the dtype the
  ``Pending`` was made with; ``-0.0`` counts as ``0.0``), so a lookup costs
  O(dim), not O(outstanding).  When the same point was asked more than once,
  its asks are matched in ask order (first asked, first told).
* A told point that matches no outstanding ask is an error
  (:class:`~mango.errors.ConfigError`, saying whether it was never asked or
  told already), or, with ``unasked="none"``, comes back as ``None`` for the
  caller to treat as a point from elsewhere (a warm start, foreign data).

:meth:`Pending.state_dict` / :meth:`Pending.load_state_dict` save and restore
the outstanding asks as plain data (see :mod:`mango.runs.serial`); handles are
saved as they are, so they must be plain data too for that.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, NamedTuple

import numpy as np

from ..errors import ConfigError

__all__ = ["Asked", "Pending"]


class Asked(NamedTuple):
    """One outstanding ask: its ``id`` and the ``handle`` given to :meth:`Pending.add`."""

    id: int
    handle: Any


class Pending:
    """Points asked and not yet told, each with an id and an optional handle (see the module docstring).

    ``dim`` is the number of coordinates of every point, ``dtype`` the dtype
    points are compared in (a space's ``dtype``).
    """

    def __init__(self, dim: int, dtype=float):
        if int(dim) != dim or dim < 1:
            raise ConfigError(f"Pending needs dim >= 1, got {dim!r}.")
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "biuf":
            raise ConfigError(f"Pending compares numeric points; got dtype {self.dtype}.")
        self._clear()

    def _clear(self) -> None:
        self._by_key: dict[bytes, deque] = {}  # row bytes -> ids outstanding for that point, oldest first
        self._asked: dict[int, tuple[bytes, Any]] = {}  # id -> (row bytes, handle); dicts keep ask order
        self._told: set[int] = set()  # hash() of the bytes of points matched already (for the error message)
        self._next_id = 0

    # -- keys --------------------------------------------------------------
    def _rows(self, points, what: str) -> np.ndarray:
        arr = np.asarray(points)
        if arr.ndim == 1 and arr.shape[0] == self.dim:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ConfigError(f"{what} points have shape {np.shape(points)}; expected (n, {self.dim}).")
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if self.dtype.kind == "f":
            arr = arr + 0.0  # -0.0 -> 0.0: equal values give equal bytes
        return arr

    def _keys(self, points, what: str) -> list[bytes]:
        return [row.tobytes() for row in self._rows(points, what)]

    # -- protocol ------------------------------------------------------------
    def add(self, points, handles: Iterable[Any] | None = None) -> np.ndarray:
        """Record asked ``points`` (``[n, dim]``), with one handle each (default ``None``); return their ids."""
        keys = self._keys(points, "asked")
        hs = [None] * len(keys) if handles is None else list(handles)
        if len(hs) != len(keys):
            raise ConfigError(f"Pending.add got {len(keys)} points but {len(hs)} handles; give one per point.")
        ids = np.arange(self._next_id, self._next_id + len(keys), dtype=np.int64)
        for i, key, h in zip(ids.tolist(), keys, hs):
            self._asked[i] = (key, h)
            self._by_key.setdefault(key, deque()).append(i)
        self._next_id += len(keys)
        return ids

    def pop(self, points, unasked: str = "raise") -> list[Asked | None]:
        """Match told ``points`` to outstanding asks, remove those, and return one :class:`Asked` per point.

        A point that matches no outstanding ask raises :class:`ConfigError` (and
        nothing is removed) when ``unasked="raise"``; with ``unasked="none"`` its
        entry is ``None``.
        """
        if unasked not in ("raise", "none"):
            raise ConfigError(f"Pending.pop: unasked must be 'raise' or 'none', got {unasked!r}.")
        keys = self._keys(points, "told")
        out: list[Asked | None] = []
        taken: list[tuple[bytes, int]] = []
        for row, key in enumerate(keys):
            queue = self._by_key.get(key)
            if not queue:
                if unasked == "none":
                    out.append(None)
                    continue
                for k, i in reversed(taken):  # put back what this call took: all or nothing
                    self._by_key.setdefault(k, deque()).appendleft(i)
                raise self._unasked_error(points, row, key)
            i = queue.popleft()
            taken.append((key, i))
            out.append(Asked(i, self._asked[i][1]))
        for key, i in taken:
            del self._asked[i]
            self._told.add(hash(key))
            if key in self._by_key and not self._by_key[key]:  # (a point told twice in this call: deleted already)
                del self._by_key[key]
        return out

    def _unasked_error(self, points, row: int, key: bytes) -> ConfigError:
        point = np.asarray(points).reshape(-1, self.dim)[row]
        shown = np.array2string(point, threshold=8, precision=6)
        if hash(key) in self._told:
            why = "was told already (each asked point is told once)"
        else:
            why = "was never asked"
        return ConfigError(f"told point {row} ({shown}) {why}; tell each asked point exactly once, "
                           "with the coordinates ask() returned.")

    def __len__(self) -> int:
        """Number of outstanding asks."""
        return len(self._asked)

    def __contains__(self, point) -> bool:
        """Whether ``point`` (one point, ``[dim]`` or ``[1, dim]``) is outstanding."""
        keys = self._keys(point, "looked-up")
        if len(keys) != 1:
            raise ConfigError(f"`point in pending` takes one point, got {len(keys)}.")
        return keys[0] in self._by_key

    def ids(self) -> np.ndarray:
        """Ids of the outstanding asks, in ask order."""
        return np.fromiter(self._asked, dtype=np.int64, count=len(self._asked))

    def points(self) -> np.ndarray:
        """The outstanding points (``[n, dim]``, this ``Pending``'s dtype), in ask order."""
        raw = b"".join(key for key, _ in self._asked.values())
        return np.frombuffer(raw, dtype=self.dtype).reshape(-1, self.dim).copy()

    # -- state ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """The outstanding asks as plain data: ids, points, handles (as given), and the next id."""
        return {"ids": self.ids(), "points": self.points(),
                "handles": [h for _, h in self._asked.values()], "next_id": int(self._next_id)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (replaces everything outstanding).

        Which points were told already is not part of the state, so after a load a
        point told twice is reported as never asked.
        """
        ids = np.asarray(state["ids"], dtype=np.int64).reshape(-1)
        points = np.asarray(state["points"]).reshape(-1, self.dim)
        handles = list(state["handles"])
        next_id = int(state["next_id"])
        if not len(ids) == len(points) == len(handles):
            raise ConfigError(f"Pending state has {len(ids)} ids, {len(points)} points and {len(handles)} "
                              "handles; they must be equally many.")
        if len(ids) and (len(set(ids.tolist())) != len(ids) or ids.min() < 0 or ids.max() >= next_id):
            raise ConfigError("Pending state has repeated ids or ids outside 0 .. next_id - 1.")
        self._clear()
        order = np.argsort(ids, kind="stable")  # ask order: a point asked twice is matched oldest first
        keys = self._keys(points, "saved")
        for j in order.tolist():
            i, key, h = int(ids[j]), keys[j], handles[j]
            self._asked[i] = (key, h)
            self._by_key.setdefault(key, deque()).append(i)
        self._next_id = next_id

    def __repr__(self) -> str:
        return f"<Pending {len(self)} outstanding of {self._next_id} asked, dim={self.dim}, dtype={self.dtype}>"
