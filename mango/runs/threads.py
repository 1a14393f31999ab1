"""How many threads torch uses for mango's own compute, and the one place that sets it.

mango's compute -- the optimizer's model, the generator, an oracle that runs in
mango's process -- runs on torch's intra-op threads.  torch's own default is one
thread per core of the machine, whoever else runs there; on a small or busy
machine those threads spin against the other processes (a rig's acquisition
and display, a simulator, other jobs) and a run is 4-15x slower (issue 32).
So mango chooses the count (:func:`choose_threads`), from the first of:

1. ``threads=`` of :func:`mango.maximize` (``--threads N`` on the command line);
2. the environment variable ``MANGO_THREADS``;
3. the environment variable ``OMP_NUM_THREADS`` (its first number), which the
   user set for every numeric library;
4. the **policy**: the cores this process may use (its CPU affinity, and a
   container's CPU quota when it sets one), less one left for the oracle or
   rig and the rest of the machine, at least 1 and at most
   :data:`MAX_POLICY_THREADS` (mango's models are small: a Gaussian process on
   at most a few thousand points, a generator decoding batches of ten; the cap
   is a judgement, not measured above 2 cores).  An
   in-process oracle shares these threads: it runs between the optimizer's
   steps, not beside them.

The policy does not read the machine's load: float sums are ordered by the
thread count, so a run's values depend on it, and a count that followed the
load would make the same command give different results from one run to the
next.  The count depends only on the machine and the settings, and
``result.json`` records it with where it came from (``provenance.threads.chosen``).

:func:`use_threads` sets it for a block and restores torch's previous count
after, so a library user's process is left as it was.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["ThreadChoice", "choose_threads", "policy", "usable_cores", "use_threads", "active", "ENV",
           "MAX_POLICY_THREADS", "RESERVED_CORES"]

#: the environment variable that overrides the policy
ENV = "MANGO_THREADS"
#: the policy's largest count: mango's models are small, so more threads mostly add synchronization (a judgement;
#: the policy was measured on 2 cores only, ``benchmarks/threads_load.py``)
MAX_POLICY_THREADS = 8
#: cores the policy leaves to the oracle or rig and the rest of the machine
RESERVED_CORES = 1

_ACTIVE: list["ThreadChoice"] = []  # the choices of the open use_threads blocks, innermost last


@dataclass(frozen=True)
class ThreadChoice:
    """torch's intra-op thread count for a run: ``count``, where it came from (``source``: ``policy``,
    ``threads=``, ``--threads``, ``MANGO_THREADS`` or ``OMP_NUM_THREADS``) and ``why``, in words."""

    count: int
    source: str
    why: str

    def to_dict(self) -> dict:
        return {"count": self.count, "source": self.source, "why": self.why}

    def __str__(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''}"


def _cgroup_quota() -> float | None:
    """The CPUs a container's cgroup quota allows this process (e.g. 2.0 for ``docker --cpus 2``); None
    without a quota (or where it cannot be read)."""
    paths = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    paths.append(os.path.join("/sys/fs/cgroup", line[3:].strip().lstrip("/"), "cpu.max"))
    except OSError:
        pass
    paths.append("/sys/fs/cgroup/cpu.max")
    for path in paths:  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
        try:
            with open(path) as f:
                quota, period = f.read().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores() -> tuple[int, str]:
    """``(cores, how)``: how many cores this process may use, and what said so (its CPU affinity, or a
    container's CPU quota when that is lower)."""
    try:
        n, how = len(os.sched_getaffinity(0)), "CPU affinity"
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n, how = os.cpu_count() or 1, "CPU count"
    quota = _cgroup_quota()
    if quota is not None and math.ceil(quota) < n:
        n, how = max(1, math.ceil(quota)), f"container CPU quota {quota:g} of {n} in the affinity"
    return max(1, n), how


def policy() -> ThreadChoice:
    """mango's own choice: the usable cores less :data:`RESERVED_CORES`, in 1..:data:`MAX_POLICY_THREADS`."""
    cores, how = usable_cores()
    count = max(1, min(MAX_POLICY_THREADS, cores - RESERVED_CORES))
    why = f"{cores} usable core{'s' if cores != 1 else ''} ({how})"
    if cores > RESERVED_CORES:
        why += f", {RESERVED_CORES} left for the oracle or rig and the rest of the machine"
    if cores - RESERVED_CORES > MAX_POLICY_THREADS:
        why += f", at most {MAX_POLICY_THREADS}"
    return ThreadChoice(count, "policy", why)


def _whole(value, name: str, fix: str) -> int:
    """``value`` as a thread count (a whole number >= 1, or its text), or a one-line error naming ``name``."""
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip()) if v.strip() else math.nan
        except ValueError:
            v = math.nan
    ok = (not isinstance(v, bool) and isinstance(v, (int, np.integer, float, np.floating))
          and math.isfinite(v) and float(v).is_integer() and v >= 1)
    if not ok:
        raise ConfigError(f"{name} must be a whole number >= 1 (torch threads for mango's compute), got {value!r}; "
                          f"{fix}.")
    return int(v)


def _omp() -> int | None:
    """The first number of ``OMP_NUM_THREADS`` (``4`` or ``4,2``), None when unset or not a count."""
    text = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(text) if text.isdigit() and int(text) >= 1 else None


def choose_threads(threads=None, *, flag: str = "threads=", default=None) -> ThreadChoice:
    """torch's thread count for a run: ``threads`` (a whole number >= 1; ``flag`` names where it was given),
    else ``MANGO_THREADS``, else ``OMP_NUM_THREADS``, else ``default()`` (a :class:`ThreadChoice`) or the
    :func:`policy`.  A :class:`ThreadChoice` is returned as it is; a bad value is refused in one line."""
    if isinstance(threads, ThreadChoice):
        return threads
    if threads is not None:
        fix = "give e.g. 2, or None for mango's policy" if flag == "threads=" else "give e.g. --threads 2"
        n = _whole(threads, flag.rstrip("="), fix)
        return ThreadChoice(n, flag, f"given: {flag} {n}" if flag.startswith("-") else f"given: {flag}{n}")
    env = os.environ.get(ENV)
    if env is not None:
        n = _whole(env, ENV, f"set e.g. {ENV}=2, or unset it for mango's policy")
        return ThreadChoice(n, ENV, f"{ENV}={env}")
    omp = _omp()
    if omp is not None:
        return ThreadChoice(omp, "OMP_NUM_THREADS", f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    return default() if default is not None else policy()


def active() -> ThreadChoice | None:
    """The choice of the innermost open :func:`use_threads` block (None outside one)."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def use_threads(choice: ThreadChoice):
    """torch on ``choice.count`` intra-op threads inside the block; the previous count is restored after,
    also on an exception.  Yields ``choice``."""
    import torch  # a core dependency

    before = torch.get_num_threads()
    if before != choice.count:
        torch.set_num_threads(choice.count)
    _ACTIVE.append(choice)
    try:
        yield choice
    finally:
        _ACTIVE.pop()
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
