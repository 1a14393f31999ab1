"""Competing CPU-bound processes for the benchmarks that measure mango on a busy machine, and a clean stop.

``rig_session.py`` and ``threads_load.py`` load the machine with :func:`start_load` (a busy loop in each of
``n`` processes) and end it, and any other child process, with :func:`stop_processes`.
"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["start_load", "stop_processes"]


def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes (a busy loop each)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_processes(procs) -> None:
    """Terminate ``procs``, then kill those still running after 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
