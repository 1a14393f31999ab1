"""Quality of mango's ``tt`` against the ``protes`` package and random search.

Functions with a known optimum where TT structure matters (all maximized):

* ``separable``   d=64, n=16: sum of per-dimension costs (optimum 0);
* ``lowrank``     d=32, n=8: a product of per-dimension factors in [0.5, 1] (optimum 1);
* ``needle``      d=64, n=4: minus the L1 distance to a target, +1 exactly at it (optimum 1);
* ``codebook``    d=64, n=512: separable over 512 unordered codes (a VQ-VAE-sized codebook).

Optimizers, 10 seeds each, budget 10,000, best value recorded at 300, 1,000,
3,000 and 10,000 queries (from one run each):

* ``random``;
* ``protes``: the reference package with its own settings (k=100, k_top=10, r=5, lr=0.05);
* ``tt[protes]``: mango's tt at exactly those settings (elite from the batch, no dedup);
* ``tt[k100]``: mango's tt with the same k and k_top, elite from everything seen, dedup;
* ``tt``: mango's defaults (tuned for lab budgets of 300-3,000 queries);

and at the paper's QTT settings (every mode of ``n = 2^q`` levels as ``q`` binary
digits, most significant first; k=10, k_top=1, r=5, lr=0.05), the setting of the
second case of ``tt_overhead.py``:

* ``protes[qtt]``: the reference package on the ``d q`` binary digits;
* ``tt[qtt]``: mango's tt at exactly those settings (``quantize=True``, elite from the batch, no dedup);
* ``tt[qtt/seen]``: the same with mango's elite from everything seen and dedup.

Run:  python benchmarks/tt_quality.py [--seeds 10] [--budget 10000] [--problems a,b]
Writes benchmarks/results/tt_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mango.optimizers import make
from mango.spaces import Codebook

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINTS = (300, 1000, 3000, 10000)


def problem(name: str, seed: int = 0):
    rng = np.random.default_rng(1000 + seed)
    if name == "separable":
        d, n = 64, 16
        cost = rng.random((d, n))
        cost -= cost.min(axis=1, keepdims=True)
        return d, n, (lambda x: -cost[np.arange(d)[None, :], x].sum(axis=1) / d), 0.0
    if name == "codebook":
        d, n = 64, 512
        cost = rng.random((d, n))
        cost -= cost.min(axis=1, keepdims=True)
        return d, n, (lambda x: -cost[np.arange(d)[None, :], x].sum(axis=1) / d), 0.0
    if name == "lowrank":
        d, n = 32, 8
        a = rng.uniform(0.5, 0.95, (d, n))
        a[np.arange(d), rng.integers(n, size=d)] = 1.0
        return d, n, (lambda x: np.prod(a[np.arange(d)[None, :], x], axis=1)), 1.0
    if name == "needle":
        d, n = 64, 4
        target = rng.integers(n, size=d)

        def f(x):
            dist = np.abs(x - target).sum(axis=1) / (d * (n - 1))
            return -dist + (dist == 0)
        return d, n, f, 1.0
    raise KeyError(name)


class Recorder:
    def __init__(self, f, budget):
        self.f, self.budget, self.n, self.best, self.at = f, budget, 0, -np.inf, {}

    def __call__(self, x):
        x = np.asarray(x)
        y = np.asarray(self.f(x), dtype=float)
        for i, v in enumerate(y):
            self.n += 1
            self.best = max(self.best, float(v))
            if self.n in CHECKPOINTS:
                self.at[self.n] = self.best
        return y


def run_mango(d, n, f, budget, seed, params):
    rec = Recorder(f, budget)
    opt = make("tt", Codebook(d, n), seed=seed, **params)
    k = opt.preferred_batch_size
    while opt.n_told < budget:
        x = opt.ask(min(k, budget - opt.n_told))
        opt.tell(x, rec(x))
    return rec.at


def run_random(d, n, f, budget, seed):
    rec = Recorder(f, budget)
    sp = Codebook(d, n)
    rng = np.random.default_rng(seed)
    while rec.n < budget:
        rec(sp.sample(min(1000, budget - rec.n), rng))
    return rec.at


def run_protes(d, n, f, budget, seed, qtt: bool = False):
    import protes

    if not qtt:
        rec = Recorder(f, budget)
        protes.protes(lambda I: rec(np.asarray(I)), d, n, budget, k=100, k_top=10, seed=seed, is_max=True)
        return rec.at
    q = int(round(np.log2(n)))
    if 2 ** q != n:
        raise ValueError(f"protes[qtt] needs n = 2^q levels, got n = {n}")
    weights = 2 ** np.arange(q - 1, -1, -1)  # binary digits -> levels, most significant first
    rec = Recorder(lambda bits: f(np.asarray(bits).reshape(len(bits), d, q) @ weights), budget)
    protes.protes(lambda I: rec(np.asarray(I)), d * q, 2, budget, k=10, k_top=1, seed=seed, is_max=True)
    return rec.at


CONFIGS = {
    "random": None,
    "protes": None,
    "tt[protes]": dict(k=100, k_top=10, rank=5, lr=0.05, k_gd=1, elite="batch", dedup=False),
    "tt[k100]": dict(k=100, k_top=10, rank=5, lr=0.05, k_gd=1),
    "tt": {},
    "protes[qtt]": None,
    "tt[qtt]": dict(quantize=True, k=10, k_top=1, rank=5, lr=0.05, k_gd=1, elite="batch", dedup=False),
    "tt[qtt/seen]": dict(quantize=True, k=10, k_top=1, rank=5, lr=0.05, k_gd=1),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--problems", default="separable,lowrank,needle,codebook")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default="tt_quality")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    configs = a.configs.split(",")
    try:
        import protes  # noqa: F401
    except ImportError:
        configs = [c for c in configs if not c.startswith("protes")]
        print("protes not installed: pip install 'mango-am[peers]'")
    res = {}
    for pname in a.problems.split(","):
        res[pname] = {}
        for cname in configs:
            rows, t0 = [], time.perf_counter()
            for seed in range(a.seeds):
                d, n, f, opt_value = problem(pname, seed)
                if cname == "random":
                    at = run_random(d, n, f, a.budget, seed)
                elif cname.startswith("protes"):
                    at = run_protes(d, n, f, a.budget, seed, qtt=cname == "protes[qtt]")
                else:
                    at = run_mango(d, n, f, a.budget, seed, CONFIGS[cname])
                rows.append([at.get(c, np.nan) for c in CHECKPOINTS])
            arr = np.array(rows)
            res[pname][cname] = {"best": arr.tolist(), "median": np.nanmedian(arr, axis=0).tolist(),
                                 "optimum": opt_value, "seconds": time.perf_counter() - t0}
            med = " ".join(f"{m:9.4f}" for m in res[pname][cname]["median"])
            print(f"{pname:10s} {cname:12s} median best at {CHECKPOINTS}: {med}  ({time.perf_counter() - t0:.0f}s)",
                  flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{a.out}.json").write_text(json.dumps(
        {"checkpoints": CHECKPOINTS, "seeds": a.seeds, "budget": a.budget, "configs": {
            c: CONFIGS.get(c) for c in configs}, "results": res}, indent=1))
    write_markdown(a.out)


def write_markdown(out: str) -> None:
    """``{out}.md`` from ``{out}.json``: the table of median best values."""
    data = json.loads((RESULTS / f"{out}.json").read_text())
    lines = [f"# tt quality: median best value over {data['seeds']} seeds, budget {data['budget']:,} "
             "(maximized; optimum in brackets)", "",
             "Produced by `python benchmarks/tt_quality.py` in one run (raw per-seed values in the .json).", "",
             "tt[protes] = mango tt at protes's settings (k=100, k_top=10, r=5, lr=0.05, k_gd=1, elite from the "
             "batch, no dedup); tt[k100] = the same k, k_top, r, lr, k_gd with mango's elite from all seen points "
             "and dedup; tt = mango's defaults (rank=5, k=20, k_top=5, lr=0.1, k_gd=2, elite=seen, dedup).", "",
             "QTT (the paper's setting, each mode of n = 2^q levels as q binary digits): protes[qtt] = protes on the "
             "d*q binary digits with k=10, k_top=1 (r=5, lr=0.05); tt[qtt] = mango tt quantize=True at exactly those "
             "settings; tt[qtt/seen] = the same with mango's elite from all seen points and dedup.", "",
             "| problem | optimizer | " + " | ".join(f"@{c}" for c in data["checkpoints"]) + " |",
             "|---|---|" + "---|" * len(data["checkpoints"])]
    for pname, byc in data["results"].items():
        for cname, r in byc.items():
            lines.append(f"| {pname} [{r['optimum']:g}] | {cname} | " + " | ".join(f"{m:.4f}" for m in r["median"]) + " |")
    lines += paired_table(data)
    (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


PAIRS = (("tt[protes]", "protes"), ("tt[k100]", "protes"), ("tt[qtt]", "protes[qtt]"), ("tt[qtt/seen]", "protes[qtt]"))


def paired_table(data) -> list[str]:
    """mango against the reference at the last checkpoint, seed by seed (the same problem instance):
    wins / ties / losses, the median difference, and a two-sided Wilcoxon signed-rank p-value."""
    from scipy.stats import wilcoxon

    last = data["checkpoints"][-1]
    lines = ["", f"Paired by seed (each seed is one problem instance) at {last:,} queries: mango minus the reference; "
             "W/T/L = seeds where mango's best is higher / equal / lower; p = two-sided Wilcoxon signed-rank test "
             "(ties dropped; '-' when every seed ties).", "",
             "| problem | mango | reference | median difference | W/T/L | p |", "|---|---|---|---|---|---|"]
    for pname, byc in data["results"].items():
        for mine, ref in PAIRS:
            if mine not in byc or ref not in byc:
                continue
            a = np.array(byc[mine]["best"], dtype=float)[:, -1]
            b = np.array(byc[ref]["best"], dtype=float)[:, -1]
            diff = a - b
            w, t, l_ = int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())
            p = f"{wilcoxon(a, b).pvalue:.3f}" if w + l_ > 0 else "-"
            lines.append(f"| {pname} | {mine} | {ref} | {np.median(diff):+.4f} | {w}/{t}/{l_} | {p} |")
    return lines


if __name__ == "__main__":
    main()
