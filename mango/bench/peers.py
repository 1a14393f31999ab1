"""The ``protes`` package (PROTES, Batsheva et al. 2023) as a mango ask/tell optimizer.

``protes.protes(f, d, n, ...)`` runs its own loop and calls ``f(I)`` on batches
of ``k`` multi-indices.  :class:`ProtesPeer` runs that loop in a helper thread
and turns each call of ``f`` into one generation of asks: ``ask`` returns the
batch protes wants evaluated, ``tell`` hands the values back and protes makes
its next update.  Nothing of protes is re-implemented, so the benchmark
compares against the package as users run it.

Registered (in :mod:`mango.optimizers.registry`, lazily: importing nothing) as
optimizer ``"protes-loop"`` when the package is installed; ``"protes"`` is
:mod:`mango.optimizers.tt_peers`, which re-steps the package's jitted functions.

Parameters are protes's own (``k=100``, ``k_top=10``, ``k_gd=1``, ``lr=0.05``,
``r=5``: its defaults) plus ``quantize``: ``True`` searches the QTT form (each
mode of size ``n`` split into ``ceil(log2 n)`` binary modes, indices past
``n - 1`` clipped to ``n - 1``), the setting of the PROTES activation
maximization experiments together with ``k=10, k_top=1``.  Modes of unequal
size are padded to the largest (indices clipped).
"""

from __future__ import annotations

import atexit
import math
import queue
import threading
import weakref

import numpy as np

from ..errors import ConfigError
from ..optimizers.base import GenerationOptimizer

__all__ = ["ProtesPeer", "register"]


_LIVE: list = []  # (thread, resp queue) of running protes loops


@atexit.register
def _shutdown() -> None:
    """End every protes loop before the interpreter finalizes (a daemon thread inside jax at exit aborts)."""
    for thread, resp in list(_LIVE):
        if thread.is_alive():
            resp.put(None)
            thread.join(timeout=10)


def _run_protes(req: queue.Queue, resp: queue.Queue, d: int, n: int, kw: dict) -> None:
    """Thread body: protes's loop, talking to the optimizer only through the two queues."""
    import protes

    def f(I):
        req.put(np.asarray(I))
        y = resp.get()
        return None if y is None else np.asarray(y, dtype=float)  # None: protes stops

    try:
        protes.protes(f, d, n, m=None, is_max=True, log=False, **kw)
    except BaseException as exc:  # surfaced in ask()
        req.put(exc)
        return
    finally:
        _LIVE[:] = [(t, q) for t, q in _LIVE if q is not resp]
    req.put(None)


class ProtesPeer(GenerationOptimizer):
    """``protes.protes`` driven by ask/tell (see the module doc)."""

    name = "protes"
    native = ("grid", "codebook")
    defaults = {"k": 100, "k_top": 10, "k_gd": 1, "lr": 5e-2, "r": 5, "quantize": False}

    def _setup_generations(self) -> None:
        if getattr(self, "_thread", None) is not None:  # a reset: end the old loop
            self._resp.put(None)
        p = self.params
        for key in ("k", "k_top", "k_gd", "r"):
            v = p[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"protes: {key} must be a positive integer, got {v!r}.")
        if p["k_top"] > p["k"]:
            raise ConfigError(f"protes: k_top ({p['k_top']}) must be <= k ({p['k']}).")
        if not (isinstance(p["lr"], (int, float)) and p["lr"] > 0):
            raise ConfigError(f"protes: lr must be a positive number, got {p['lr']!r}.")
        if p["quantize"] not in (True, False):
            raise ConfigError(f"protes: quantize must be true or false, got {p['quantize']!r}.")
        self._sizes = np.asarray(self.space.sizes, dtype=np.int64)
        n = int(self._sizes.max())
        if p["quantize"]:
            self._bits = max(1, math.ceil(math.log2(n)))
            self._d, self._n = self.space.dim * self._bits, 2
        else:
            self._bits = 0
            self._d, self._n = self.space.dim, n
        self._thread = None
        self._req: queue.Queue = queue.Queue()
        self._resp: queue.Queue = queue.Queue()

    def _start(self) -> None:
        p = self.params
        kw = {"k": int(p["k"]), "k_top": int(p["k_top"]), "k_gd": int(p["k_gd"]), "lr": float(p["lr"]),
              "r": int(p["r"]), "seed": int(self.rng.integers(2**31 - 1))}
        self._thread = threading.Thread(target=_run_protes, args=(self._req, self._resp, self._d, self._n, kw),
                                        daemon=True, name="protes")
        # when this optimizer is dropped (e.g. after a truncated last batch), let protes's loop end
        weakref.finalize(self, self._resp.put, None)
        _LIVE.append((self._thread, self._resp))
        self._thread.start()

    def _decode(self, I: np.ndarray) -> np.ndarray:
        I = np.asarray(I, dtype=np.int64)
        if self._bits:
            I = I.reshape(len(I), self.space.dim, self._bits)
            I = (I << np.arange(self._bits)).sum(axis=2)
        return np.minimum(I, self._sizes - 1)

    def _ask_generation(self):
        if self._thread is None:
            self._start()
        msg = self._req.get()
        if isinstance(msg, BaseException):
            raise RuntimeError(f"protes failed: {msg!r}") from msg
        if msg is None:  # pragma: no cover - protes only stops when told to
            raise RuntimeError("protes stopped unexpectedly.")
        return self._decode(msg), None

    def _tell_generation(self, points, values, token) -> None:
        self._resp.put(np.asarray(values, dtype=float))

    @property
    def preferred_batch_size(self) -> int | None:
        return int(self.params["k"])
