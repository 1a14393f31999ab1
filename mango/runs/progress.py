"""Progress for runs whose stderr is not a terminal (a log file, a lab's job runner).

A tqdm bar redraws in place, which a log file cannot show; :class:`LineProgress`
instead writes one plain line every ``every`` seconds::

    mango: 230/1000 queries (23%), best 18.41 (1.14x best natural image), 61.2 queries/s on 1 thread, ETA 13 s

The rate and the ETA follow the recent queries (:class:`QueryTimes`): a model-based
optimizer such as ``surrogate`` spends more time per query the more it has seen,
and its first (random) queries are nearly free, so the average since the start
would promise far too early an end.  "on 1 thread": torch's thread count for
the run, which mango chose (:mod:`mango.runs.threads`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["LineProgress", "QueryTimes"]


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class QueryTimes:
    """Seconds per query as the run goes, and the time left: the recent cost, and its trend.

    Each batch adds its queries and the seconds they took.  The cost *now* is
    the mean over the recent queries (exponentially weighted, half-life
    ``recent`` x the queries done); its *trend* is a weighted straight line
    through the cost of every batch against the query index (half-life
    ``trend`` x the queries done), shrunk towards flat unless the data show it
    clearly (``z`` standard errors), and never negative.  The time left
    assumes the cost keeps changing at that pace: ``cost x left + trend x
    left**2 / 2`` -- exact when the cost per query grows linearly with the
    queries seen (a Gaussian process refit on every point), and the recent
    rate when it does not change.  A cost that levels off, or a one-off step
    (another job starting on the machine), makes it pessimistic for a while.
    """

    def __init__(self, recent: float = 0.15, trend: float = 1.0, z: float = 3.0):
        self.recent, self.trend, self.z = float(recent), float(trend), float(z)
        self._mid: list[float] = []  # each batch's middle query
        self._cost: list[float] = []  # its seconds per query
        self._n: list[int] = []  # its queries

    def add(self, query_start: int, queries: int, seconds: float) -> None:
        """A batch of ``queries`` from query ``query_start`` on, measured at ``seconds``."""
        if queries > 0 and seconds >= 0:
            self._mid.append(query_start + queries / 2)
            self._cost.append(seconds / queries)
            self._n.append(int(queries))

    def _weights(self, done: float, halflife: float) -> np.ndarray:
        age = done - np.asarray(self._mid)
        return np.asarray(self._n) * 0.5 ** (age / max(halflife * done, 1.0))

    def slope(self, done: float) -> float:
        """Seconds per query added by each query (the trend), >= 0; 0 when the data do not show one."""
        if len(self._mid) < 3:
            return 0.0
        q, c = np.asarray(self._mid), np.asarray(self._cost)
        w = self._weights(done, self.trend)
        sw = w.sum()
        mq, mc = (w * q).sum() / sw, (w * c).sum() / sw
        sxx = (w * (q - mq) ** 2).sum()
        if not sxx > 0:
            return 0.0
        b = (w * (q - mq) * (c - mc)).sum() / sxx
        if b <= 0:
            return 0.0
        n_eff = sw ** 2 / (w ** 2).sum()
        resid = (w * (c - mc - b * (q - mq)) ** 2).sum() / sw * n_eff / max(n_eff - 2.0, 1.0)
        se = np.sqrt(resid * (w ** 2 * (q - mq) ** 2).sum()) / sxx  # the weighted slope's standard error
        return float(b * max(0.0, 1.0 - (self.z * se / b) ** 2))

    def cost(self, done: float) -> float | None:
        """Seconds per query now: the recent mean, moved along the trend to the latest query."""
        if not self._mid:
            return None
        w = self._weights(done, self.recent)
        mq = (w * np.asarray(self._mid)).sum() / w.sum()
        mc = (w * np.asarray(self._cost)).sum() / w.sum()
        return float(max(mc + self.slope(done) * (done - mq), 0.0))

    def seconds_left(self, done: float, budget: float) -> float | None:
        """Estimated seconds until ``budget`` queries, ``done`` of them done; None before any batch."""
        c = self.cost(done)
        if c is None:
            return None
        left = max(budget - done, 0.0)
        return c * left + self.slope(done) * left ** 2 / 2


class LineProgress:
    """A loop callback printing queries, best value, rate and ETA every ``every`` seconds.

    The rate and the ETA follow the recent queries (:class:`QueryTimes`).
    ``clock``: the time source (seconds; a test passes a fake one).
    """

    def __init__(self, every: float = 10.0, stream=None, reference_max: float | None = None,
                 clock=time.perf_counter):
        self.every = float(every)
        self.stream = stream
        self.reference_max = reference_max
        self.clock = clock
        self.times = QueryTimes()
        self._next = None
        self._t0 = None
        self._last = None
        self._q0 = 0

    def on_start(self, run) -> None:
        self._t0 = self._last = self.clock()
        self._q0 = run.n_queries  # a resumed run starts counting here
        self.times = QueryTimes()
        self._next = self._t0 + self.every

    def on_batch(self, run, batch) -> None:
        if getattr(batch, "replayed", False):
            return
        now = self.clock()
        if self._last is not None:
            self.times.add(batch.query_start, batch.queries, now - self._last)
        self._last = now
        if self._next is None or now < self._next:
            return
        self._next = now + self.every
        self.stream_write(self.line(run, now))

    def on_end(self, run) -> None:
        pass

    def line(self, run, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        cost = self.times.cost(run.n_queries)
        if cost:
            rate = 1.0 / cost
        else:  # no batch timed yet: the mean since the start
            rate = (run.n_queries - self._q0) / max(now - self._t0, 1e-9)
        left = run.budget - run.n_queries
        secs = self.times.seconds_left(run.n_queries, run.budget)
        best = "–" if run.best_value is None else f"{run.best_value:.4g}"
        bests = getattr(run, "unit_best_values", None)
        if getattr(run, "targets", None) is not None and bests is not None and np.isfinite(bests).any():
            best = f"{float(np.median(bests[np.isfinite(bests)])):.4g} (median over {len(bests)} units)"
        elif run.best_value is not None and self.reference_max:
            best += f" ({run.best_value / self.reference_max:.3g}x best natural image)"
        eta = _duration(secs) if secs is not None else (_duration(left / rate) if rate > 0 else "?")
        threads = getattr(run, "threads", None)
        on = "" if threads is None else f" on {threads}"
        return (f"mango: {run.n_queries}/{run.budget} queries ({100 * run.n_queries / run.budget:.0f}%), "
                f"best {best}, {rate:.3g} queries/s{on}, ETA {eta}")

    def stream_write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
