"""Optimizer overhead of mango's ``tt`` against the ``protes`` package (jax), one run.

Time per query spent *in the optimizer* (sampling + updates; the objective's own
time is measured and subtracted), budget 10,000, at two settings of the PROTES
paper:

* ``d=64, n=512, k=100, k_top=10``  (a 64-dim grid of 512 levels);
* QTT ``d=64*9, n=2, k=10, k_top=1`` (the same grid as 576 binary digits).
  mango runs it as ``quantize=True`` on the 64 x 512 grid (the identical QTT
  model family: rank-r binary cores, most significant bit first) and also,
  literally, on a 576 x 2 Codebook (which mango runs as its own QTT, its binary
  dimensions grouped nine at a time).

protes is timed as a user lives it: first call in a fresh process, jit
compilation included (and a second call, compiled, for reference).  Both use
rank 5, lr 0.05, one Adam step per update (protes's defaults).  The objective
is a cheap separable function, the same for both.

The machine is shared and its speed drifts by tens of percent within minutes,
so the comparison is repeated in ``--rounds`` fresh processes (each: protes,
jit included, then mango, back to back on the same case) and the median of
the per-round ratios is reported, with every round's numbers.

Run:  python benchmarks/tt_overhead.py [--budget 10000] [--rounds 3] [--quick]
Writes benchmarks/results/tt_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
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


CASES = {  # label: (d, n, k, k_top, extra mango params)
    "d=64 n=512 k=100 k_top=10": (64, 512, 100, 10, {}),
    "QTT d=64*9 n=2 k=10 k_top=1": (576, 2, 10, 1, {"quantize": True}),
}
SAME = dict(rank=5, lr=0.05, k_gd=1, elite="batch", dedup=False)


def one_round(label: str, budget: int, have_protes: bool, extras: bool) -> dict:
    """One case in this (fresh) process: protes first (jit counted), then mango."""
    d, n, k, k_top, extra = CASES[label]
    base = objective(64, 512)  # the same underlying problem in both settings
    if d == 576:  # binary digits -> levels, most significant first
        weights = 2 ** np.arange(8, -1, -1)

        def f(bits):
            return base(np.asarray(bits).reshape(len(bits), 64, 9) @ weights)
    else:
        f = base
    row = {}
    if have_protes:
        row["protes"] = run_protes(d, n, f, budget, k, k_top, fresh=True)
    # mango on the 64 x 512 grid in both settings (the QTT one through quantize=True)
    row["tt"] = run_mango(Codebook(64, 512), base, budget, k=k, k_top=k_top, **SAME, **extra)
    if extras:
        if have_protes:
            row["protes_compiled"] = run_protes(d, n, f, budget, k, k_top, fresh=False)
        if d == 576:
            row["tt_binary_codebook"] = run_mango(Codebook(576, 2), f, budget, k=k, k_top=k_top, **SAME)
        row["tt_defaults_dedup_seen"] = run_mango(Codebook(64, 512), base, budget, k=k, k_top=k_top, rank=5,
                                                  lr=0.05, k_gd=1, **extra)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="fresh-process repetitions (median reported)")
    ap.add_argument("--quick", action="store_true", help="budget 1000, one round (smoke run)")
    ap.add_argument("--no-protes", action="store_true")
    ap.add_argument("--one-round", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    ap.add_argument("--extras", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    budget = 1000 if a.quick else a.budget
    torch.set_num_threads(1)
    have_protes = importlib.util.find_spec("protes") is not None and not a.no_protes
    if a.one_round:
        print(json.dumps(one_round(a.one_round, budget, have_protes, a.extras)))
        return
    if not have_protes:
        print("protes is not installed (pip install 'mango-am[peers]'); timing mango only.")
    rounds = 1 if a.quick else max(1, a.rounds)
    rows = []
    for label in CASES:
        runs = []
        for i in range(rounds):
            cmd = [sys.executable, __file__, "--one-round", label, "--budget", str(budget)]
            cmd += ["--extras"] if i == 0 else []
            cmd += ["--no-protes"] if not have_protes else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            msg = "  ".join(f"{key} {v['seconds']:.2f} s" for key, v in runs[-1].items())
            if have_protes:
                msg += f"  ratio {runs[-1]['tt']['seconds'] / runs[-1]['protes']['seconds']:.3f}"
            print(f"{label:30s} round {i + 1}: {msg}", flush=True)
        row = {"case": label, "budget": budget, "rounds": runs}
        for key in runs[0]:
            secs = [r[key]["seconds"] for r in runs if key in r]
            row[key] = {**runs[0][key], "seconds": float(np.median(secs)), "all_seconds": secs}
        if have_protes:
            ratios = [r["tt"]["seconds"] / r["protes"]["seconds"] for r in runs]
            row["ratio_tt_protes"] = {"median": float(np.median(ratios)), "all": ratios}
            print(f"{label:30s} median ratio tt/protes = {np.median(ratios):.3f} over {len(ratios)} rounds "
                  f"({', '.join(f'{x:.3f}' for x in ratios)})")
        rows.append(row)

    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
            "load_avg_at_end": os.getloadavg(), "python": platform.python_version(), "rounds": rounds}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tt_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# tt optimizer overhead vs protes (time per query, objective excluded)", "",
             f"budget {budget}; {meta['machine']}, {meta['cpus']} CPUs (shared), load avg at end "
             f"{tuple(round(x, 2) for x in meta['load_avg_at_end'])}; {rounds} rounds, each in a fresh process "
             "(protes's jit compile counted every round); seconds are medians over rounds, the ratio is the "
             "median of the per-round ratios (each round's own protes).", "",
             "| case | optimizer | seconds (median) | ms / query | ratio to protes | per round |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        ref = row.get("protes", {}).get("seconds")
        for key, v in row.items():
            if isinstance(v, dict) and "seconds" in v:
                if key == "tt" and "ratio_tt_protes" in row:
                    ratio = f"**{row['ratio_tt_protes']['median']:.3f}**"
                else:
                    ratio = f"{v['seconds'] / ref:.3f}" if ref else "-"
                per = ", ".join(f"{x:.2f}" for x in v["all_seconds"])
                lines.append(f"| {row['case']} | {key} | {v['seconds']:.2f} | {1e3 * v['seconds'] / v['queries']:.3f}"
                             f" | {ratio} | {per} |")
    (RESULTS / "tt_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
