"""Optimizer overhead of mango's ``tt`` against the ``protes`` package (jax), one run.

Time per query spent *in the optimizer* (sampling + updates; the objective's own
time is measured and subtracted), budget 10,000, at two settings of the PROTES
paper:

* ``d=64, n=512, k=100, k_top=10``  (a 64-dim grid of 512 levels);
* QTT ``d=64*9, n=2, k=10, k_top=1`` (the same grid as 576 binary digits).
  mango runs it as ``quantize=True`` on the 64 x 512 grid (the identical QTT
  model family: rank-r binary cores, most significant bit first) and also,
  literally, on a 576 x 2 Codebook.

protes is timed as a user lives it: first call in a fresh process, jit
compilation included (and a second call, compiled, for reference).  Both use
rank 5, lr 0.05, one Adam step per update (protes's defaults).  The objective
is a cheap separable function, the same for both.

Run:  python benchmarks/tt_overhead.py [--budget 10000] [--quick]
Writes benchmarks/results/tt_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mango.optimizers import make
from mango.spaces import Codebook

RESULTS = Path(__file__).resolve().parent / "results"


def objective(d: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.integers(n, size=d)

    def f(idx):
        idx = np.asarray(idx)
        return -np.abs(idx - target).sum(axis=1) / n

    return f


class Timed:
    """Wraps an objective and accumulates the time spent inside it."""

    def __init__(self, f):
        self.f, self.t, self.calls, self.best = f, 0.0, 0, -np.inf

    def __call__(self, idx):
        t = time.perf_counter()
        y = self.f(idx)
        self.t += time.perf_counter() - t
        self.calls += len(y)
        self.best = max(self.best, float(np.max(y)))
        return y


def run_mango(space, f, budget, **params):
    opt = make("tt", space, seed=0, **params)
    k = opt.preferred_batch_size
    obj = Timed(f)
    t0 = time.perf_counter()
    while opt.n_told < budget:
        x = opt.ask(min(k, budget - opt.n_told))
        opt.tell(x, obj(x))
    total = time.perf_counter() - t0
    return {"seconds": total - obj.t, "queries": obj.calls, "best": obj.best}


def run_protes(d, n, f, budget, k, k_top, fresh: bool):
    t0 = time.perf_counter()
    import protes  # noqa: F401  (import time counted on the first call)

    obj = Timed(lambda I: f(np.asarray(I)))
    protes.protes(obj, d, n, budget, k=k, k_top=k_top, seed=0, is_max=True)
    total = time.perf_counter() - t0
    return {"seconds": total - obj.t, "queries": obj.calls, "best": obj.best,
            "note": "first call, jit compile + import included" if fresh else "second call, compiled"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="budget 1000 (smoke run)")
    ap.add_argument("--no-protes", action="store_true")
    a = ap.parse_args(argv)
    budget = 1000 if a.quick else a.budget
    torch.set_num_threads(1)
    try:
        import protes  # noqa: F401
        have_protes = not a.no_protes
    except ImportError:
        have_protes = False
        print("protes is not installed (pip install 'mango-am[peers]'); timing mango only.")

    same = dict(rank=5, lr=0.05, k_gd=1, elite="batch", dedup=False)
    cases = [
        ("d=64 n=512 k=100 k_top=10", 64, 512, 100, 10, {}),
        ("QTT d=64*9 n=2 k=10 k_top=1", 576, 2, 10, 1, {"quantize": True}),
    ]
    rows = []
    for label, d, n, k, k_top, extra in cases:
        f_d, f_n = (64, 512)  # the same underlying problem in both settings
        base = objective(f_d, f_n)
        if d == 576:  # binary digits -> levels, most significant first
            weights = 2 ** np.arange(8, -1, -1)

            def f(bits, base=base, weights=weights):
                return base(np.asarray(bits).reshape(len(bits), 64, 9) @ weights)
        else:
            f = base
        row = {"case": label, "budget": budget}
        if have_protes:
            row["protes"] = run_protes(d, n, f, budget, k, k_top, fresh=(len(rows) == 0))
            row["protes_compiled"] = run_protes(d, n, f, budget, k, k_top, fresh=False)
        if d == 576:
            row["tt"] = run_mango(Codebook(64, 512), base, budget, k=k, k_top=k_top, **same, **extra)
            row["tt_binary_codebook"] = run_mango(Codebook(576, 2), f, budget, k=k, k_top=k_top, **same)
        else:
            row["tt"] = run_mango(Codebook(d, n), f, budget, k=k, k_top=k_top, **same, **extra)
        row["tt_defaults_dedup_seen"] = run_mango(
            Codebook(64, 512), base, budget, k=k, k_top=k_top, rank=5, lr=0.05, k_gd=1,
            **extra)
        rows.append(row)
        for key, v in row.items():
            if isinstance(v, dict):
                print(f"{label:30s} {key:24s} {v['seconds']:8.2f} s  {1e3 * v['seconds'] / v['queries']:7.3f} ms/query"
                      f"  best {v['best']:.4f}")
        if have_protes:
            print(f"{label:30s} ratio tt/protes = {row['tt']['seconds'] / row['protes']['seconds']:.3f}"
                  f" (vs compiled protes {row['tt']['seconds'] / row['protes_compiled']['seconds']:.3f})")

    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
            "load_avg_at_end": os.getloadavg(), "python": platform.python_version()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tt_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# tt optimizer overhead vs protes (time per query, objective excluded)", "",
             f"budget {budget}; {meta['machine']}, {meta['cpus']} CPUs (shared), load avg at end {meta['load_avg_at_end']}", "",
             "| case | optimizer | seconds | ms / query | ratio to protes (first call) |", "|---|---|---|---|---|"]
    for row in rows:
        ref = row.get("protes", {}).get("seconds")
        for key, v in row.items():
            if isinstance(v, dict):
                ratio = f"{v['seconds'] / ref:.3f}" if ref else "-"
                lines.append(f"| {row['case']} | {key} | {v['seconds']:.2f} | {1e3 * v['seconds'] / v['queries']:.3f} | {ratio} |")
    (RESULTS / "tt_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
