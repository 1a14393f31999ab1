"""Run a benchmark script's independent tasks, in order or in ``jobs`` processes (shared by the scripts here)."""

from __future__ import annotations


def run_tasks(fn, todo: list, jobs: int = 1) -> None:
    """Call ``fn`` on every task (spawned processes when ``jobs > 1``), printing what each returns as it ends."""
    if jobs > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(jobs) as pool:
            for out in pool.imap_unordered(fn, todo):
                print(out, flush=True)
    else:
        for t in todo:
            print(fn(t), flush=True)
