"""Trajectory hashes: the first proposals of an optimizer under a fixed seed, reduced to one sha256.

Used by ``tests/test_trajectory.py`` to pin the behaviour of the main
optimizers.  The proposals are rounded to ``digits`` significant digits before
hashing (float64, little-endian), so last-bit differences between platforms and
BLAS builds do not count, and torch runs on one thread while they are drawn.
"""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from mango.optimizers import make

BEHAVIOUR_CHANGED = "behaviour changed: if deliberate, update the hash and give the reason in the commit"


def proposals_hash(points, digits: int = 10) -> str:
    """sha256 of ``points`` (any array of numbers) rounded to ``digits`` significant digits; the shape counts."""
    a = np.asarray(points, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("proposals_hash: the points contain NaN or infinite values")
    rounded = np.array([float(f"{x:.{digits - 1}e}") for x in a.ravel()], dtype="<f8") + 0.0  # -0.0 -> 0.0
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(rounded.tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def one_torch_thread():
    """torch on one thread inside the block (the previous count restored after, also on an exception)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trajectory(name: str, space, f, n: int = 50, batch: int = 10, seed: int = 0, **params) -> np.ndarray:
    """The first ``n`` proposals of ``make(name, space, seed=seed, **params)``, asked ``batch`` at a time and
    told ``f``'s values, on one torch thread: an array ``[n, dim]``."""
    with one_torch_thread():
        opt = make(name, space, seed=seed, **params)
        out = []
        while sum(len(x) for x in out) < n:
            x = opt.ask(min(batch, n - sum(len(x) for x in out)))
            opt.tell(x, f(x))
            out.append(np.asarray(x))
    return np.concatenate(out)
