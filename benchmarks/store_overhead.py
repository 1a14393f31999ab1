"""Cost of recording a run in a RunStore, and of resuming it.

Runs the same campaign (random search / cma on a 10-d sphere, batches of 10) without a store and
with stores of different durability and stimulus settings, side by side, and measures the
resume time of a finished and of a half-finished run.  Writes
``benchmarks/results/store_overhead.json`` and ``.md``.

    python benchmarks/store_overhead.py [--budget 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch

import mango
from mango.spaces import Box
from mango.store import RunStore

HERE = os.path.dirname(os.path.abspath(__file__))


class ImageObjective:
    """Sphere value plus a 1x28x28 stimulus per point (what a generator would produce)."""

    unit_names = ["u"]

    def __init__(self, dim):
        self.dim = dim

    def evaluate(self, points):
        x = np.asarray(points, dtype=float)
        v = -np.sum((x - 0.3) ** 2, axis=1)
        img = torch.sigmoid(torch.as_tensor(x[:, :1, None, None] * np.ones((1, 1, 28, 28))).float())
        return v, {"responses": v[:, None], "stimuli": img}


def sphere(x):
    return -np.sum((np.asarray(x) - 0.3) ** 2, axis=1)


def timed(fn, repeats=3):
    best = np.inf
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    d = tempfile.mkdtemp()
    space = Box(10)
    B, bs = args.budget, args.batch
    rows = []

    def campaign(objective, store=None, opt="random", **store_kw):
        path = None
        if store is not None:
            path = os.path.join(d, f"r{time.perf_counter_ns()}.sqlite")
            store = RunStore(path, **store_kw)
        res = mango.maximize(objective, space, optimizer=opt, budget=B, batch_size=bs, seed=0, progress=False,
                             store=store)
        if store is not None:
            store.close()
        return res, path

    cases = [
        ("no store", sphere, None, {}),
        ("store, synchronous=FULL", sphere, True, {}),
        ("store, synchronous=NORMAL", sphere, True, {"synchronous": "NORMAL"}),
        ("no store, 28x28 stimuli", ImageObjective(10), None, {}),
        ("store FULL, 28x28 stimuli='all'", ImageObjective(10), True, {"stimuli": "all"}),
        ("store FULL, 28x28 stimuli='best'", ImageObjective(10), True, {"stimuli": "best"}),
    ]
    base = {}
    campaign(sphere), campaign(ImageObjective(10))  # warm-up (imports, caches)
    for name, obj, store, kw in cases:
        secs, (res, path) = timed(lambda: campaign(obj, store, **kw))
        assert res.n_queries == B
        size = os.path.getsize(path) if path else 0
        key = "img" if "stimuli" in name else "plain"
        if store is None:
            base[key] = secs
        rows.append({"case": name, "seconds": secs, "queries_per_s": B / secs,
                     "overhead_ms_per_batch": 1000 * (secs - base[key]) / (B / bs) if store else 0.0,
                     "slowdown": secs / base[key], "file_bytes_per_query": size / B})
        print(f"{name:36s} {secs:7.3f} s  {B / secs:9.0f} q/s  x{secs / base[key]:.2f}"
              + (f"  +{rows[-1]['overhead_ms_per_batch']:.2f} ms/batch  {size / B:.0f} B/query" if store else ""))

    # resume: a finished cma run (replays the history) and a half-finished one
    path = os.path.join(d, "cma.sqlite")
    t = time.perf_counter()
    ref = mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False, store=path)
    full_s = time.perf_counter() - t
    resume_s, res = timed(lambda: mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0,
                                                 progress=False, store=path, resume=True))
    assert np.array_equal(res.points, ref.points)
    half = os.path.join(d, "half.sqlite")

    class Stop(Exception):
        pass

    class StopAt(mango.Callback):
        def on_batch(self, run, batch):
            if batch.index == B // bs // 2 and not batch.replayed:
                raise Stop

    try:
        mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False, store=half,
                       callbacks=[StopAt()])
    except Stop:
        pass
    t = time.perf_counter()
    res2 = mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False,
                          store=half, resume=True)
    half_s = time.perf_counter() - t
    assert np.array_equal(res2.points, ref.points) and np.array_equal(res2.values, ref.values)
    resume = {"cma_full_run_with_store_s": full_s, "resume_finished_run_s": resume_s,
              "resume_half_run_and_finish_s": half_s, "identical_history": True}
    print(f"cma run with store {full_s:.3f} s; resume of the finished run {resume_s:.3f} s; "
          f"resume at half + finish {half_s:.3f} s (history identical)")

    out = {"budget": B, "batch_size": bs, "dim": 10, "machine": platform.platform(),
           "python": platform.python_version(), "sqlite": __import__("sqlite3").sqlite_version,
           "cases": rows, "resume": resume}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "store_overhead.json"), "w") as f:
        json.dump(out, f, indent=2)
    lines = ["# RunStore overhead", "", f"`python benchmarks/store_overhead.py --budget {B} --batch {bs}` "
             f"(10-d sphere, random search, best of 3; {platform.platform()}, SQLite {out['sqlite']})", "",
             "| case | s | queries/s | slowdown | overhead ms/batch | file bytes/query |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['seconds']:.3f} | {r['queries_per_s']:.0f} | x{r['slowdown']:.2f} | "
                     f"{r['overhead_ms_per_batch']:.2f} | {r['file_bytes_per_query']:.0f} |")
    lines += ["", f"Resume (cma, {B} queries): full run with store {full_s:.3f} s; resuming the finished run "
              f"{resume_s:.3f} s; resuming at half-way and finishing {half_s:.3f} s; histories identical.", ""]
    with open(os.path.join(HERE, "results", "store_overhead.md"), "w") as f:
        f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
