"""A package that drives its own optimization loop, served through mango's ask/tell.

Some reference packages (``protes.protes``, ``ttopt.ttopt``) own their loop and
call a function ``f(I)`` on batches of multi-indices.  :class:`ThreadedLoopOptimizer`
runs that loop in a helper thread and turns each call of ``f`` into one
generation: ``ask`` hands out the batch the package wants evaluated, ``tell``
hands the values back and the package makes its next step.  Nothing of the
package is re-implemented, so a comparison runs it as its users do, and the
budget is mango's: the loop is simply never answered past it.

The package proposes its next batch only after the last one is told, so at most
one generation may be asked ahead of its values; asking further is refused with
a :class:`~mango.errors.ConfigError` (instead of waiting forever) that names the
batch size to use (:attr:`ThreadedLoopOptimizer.preferred_batch_size`).
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref

import numpy as np

from ...errors import ConfigError
from ..base import GenerationOptimizer

__all__ = ["ThreadedLoopOptimizer"]

_LIVE: list = []  # (thread, resp queue) of running package loops


@atexit.register
def _shutdown() -> None:
    """End every package loop before the interpreter finalizes (a daemon thread inside jax at exit aborts)."""
    for thread, resp in list(_LIVE):
        if thread.is_alive():
            resp.put(None)
            thread.join(timeout=10)


def _serve(loop, req: queue.Queue, resp: queue.Queue) -> None:
    """Thread body: run ``loop(f)``, talking to the optimizer only through the two queues.

    ``f(I)`` puts the batch ``I`` on ``req`` and returns the values read from
    ``resp`` (``None``: the optimizer was dropped or reset, the package should stop).
    """

    def f(I):
        req.put(np.asarray(I))
        y = resp.get()
        return None if y is None else np.asarray(y, dtype=float)

    try:
        loop(f)
    except BaseException as exc:  # surfaced in ask()
        req.put(exc)
        return
    finally:
        _LIVE[:] = [(t, q) for t, q in _LIVE if q is not resp]
    req.put(None)


class ThreadedLoopOptimizer(GenerationOptimizer):
    """Base of peers whose package runs its own loop (see the module doc).

    Subclasses implement :meth:`_run_loop` (call the package with ``f``; it must
    stop when ``f`` returns ``None``), and may override :meth:`_decode` (the
    package's indices to points of the space) and :meth:`_encode_values`
    (mango's values, maximized, to what the package is handed).
    """

    #: the package name, for messages
    package: str = "?"

    def _setup_generations(self) -> None:
        if getattr(self, "_thread", None) is not None:  # a reset: end the old loop
            self._resp.put(None)
        self._thread = None
        self._req: queue.Queue = queue.Queue()
        self._resp: queue.Queue = queue.Queue()
        self._setup_loop()

    def _setup_loop(self) -> None:
        """Subclass hook: check parameters and prepare what :meth:`_run_loop` needs."""

    def _run_loop(self, f) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, I: np.ndarray) -> np.ndarray:
        return np.asarray(I, dtype=np.int64)

    def _encode_values(self, values: np.ndarray):
        return np.asarray(values, dtype=float)

    def _start(self) -> None:
        self._thread = threading.Thread(target=_serve, args=(self._run_loop, self._req, self._resp), daemon=True,
                                        name=self.package)
        # when this optimizer is dropped (e.g. after a truncated last batch), let the package's loop end
        weakref.finalize(self, self._resp.put, None)
        _LIVE.append((self._thread, self._resp))
        self._thread.start()

    def _ask_generation(self):
        if self._gens:  # a generation handed out and not yet told: the package cannot propose another
            raise ConfigError(
                f"optimizer {self.name!r} runs the {self.package} package's own loop, which proposes its next batch "
                f"only after the last one is told: ask at most one generation before telling it (batch size "
                f"{self.preferred_batch_size or 'of one generation'}, e.g. maximize(..., batch_size="
                f"{self.preferred_batch_size or 1}))."
            )
        if self._thread is None:
            self._start()
        msg = self._req.get()
        if isinstance(msg, BaseException):
            raise RuntimeError(f"{self.package} failed: {msg!r}") from msg
        if msg is None:  # pragma: no cover - the packages only stop when told to
            raise RuntimeError(f"{self.package} stopped unexpectedly.")
        return self._decode(msg), None

    def _tell_generation(self, points, values, token) -> None:
        self._resp.put(self._encode_values(np.asarray(values, dtype=float)))
