"""Progress for runs whose stderr is not a terminal (a log file, a lab's job runner).

A tqdm bar redraws in place, which a log file cannot show; :class:`LineProgress`
instead writes one plain line every ``every`` seconds::

    mango: 230/1000 queries (23%), best 18.41 (1.14x best natural image), 61.2 queries/s, ETA 13 s
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["LineProgress"]


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class LineProgress:
    """A loop callback printing queries, best value, rate and ETA every ``every`` seconds."""

    def __init__(self, every: float = 10.0, stream=None, reference_max: float | None = None):
        self.every = float(every)
        self.stream = stream
        self.reference_max = reference_max
        self._next = None
        self._t0 = None
        self._q0 = 0

    def on_start(self, run) -> None:
        self._t0 = time.perf_counter()
        self._q0 = run.n_queries  # a resumed run starts counting here
        self._next = self._t0 + self.every

    def on_batch(self, run, batch) -> None:
        now = time.perf_counter()
        if self._next is None or now < self._next or getattr(batch, "replayed", False):
            return
        self._next = now + self.every
        self.stream_write(self.line(run, now))

    def on_end(self, run) -> None:
        pass

    def line(self, run, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        done = run.n_queries - self._q0
        rate = done / max(now - self._t0, 1e-9)
        left = run.budget - run.n_queries
        best = "–" if run.best_value is None else f"{run.best_value:.4g}"
        bests = getattr(run, "unit_best_values", None)
        if getattr(run, "targets", None) is not None and bests is not None and np.isfinite(bests).any():
            best = f"{float(np.median(bests[np.isfinite(bests)])):.4g} (median over {len(bests)} units)"
        elif run.best_value is not None and self.reference_max:
            best += f" ({run.best_value / self.reference_max:.3g}x best natural image)"
        eta = _duration(left / rate) if rate > 0 else "?"
        return (f"mango: {run.n_queries}/{run.budget} queries ({100 * run.n_queries / run.budget:.0f}%), "
                f"best {best}, {rate:.3g} queries/s, ETA {eta}")

    def stream_write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
