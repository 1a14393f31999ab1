"""Is ``surrogate`` invariant to the response's offset?  ``f`` against ``f + offset``, paired over seeds.

A model-based optimizer should see the same problem in ``a * f + b`` as in ``f`` (a > 0): a neuron's
membrane potential, a selectivity difference or a loss can sit anywhere on the real line.  This runs
``surrogate`` on the negated 10-d Rastrigin (``mango.oracles.testfunctions.rastrigin``, values in about
[-400, 0], almost all below -1) and on the same function plus ``--offset`` (default 1,000: all positive),
with the same seeds, and reports the best value reached (offset removed) at each budget, the paired
difference ``best(f + offset) - best(f)`` with a bootstrap 95 % CI, and paired wins/ties/losses.

Before the fix of 2026-12-07 the GP's training set put the best points first with the sentinel
``-1 - y``, which works only while y > -1: past ``max_points`` (800) points the best points fell out of
the model on ``f`` but not on ``f + 1000``.

    python benchmarks/surrogate_offset.py [--seeds 10] [--budget 1200] [--jobs 2] [--tag after]

Writes ``benchmarks/results/surrogate_offset-TAG.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _tasks import run_tasks  # noqa: E402

DIM = 10
CHECKPOINTS = (100, 200, 400, 600, 800, 900, 1000, 1100, 1200)


def run_one(task: tuple) -> str:
    seed, offset, budget, out_dir = task
    import torch

    torch.set_num_threads(1)
    import mango
    from mango.spaces import Box
    from mango.oracles.testfunctions import rastrigin

    f = rastrigin()

    def objective(x):
        return f(x) + offset

    t0 = time.perf_counter()
    res = mango.maximize(objective, Box(DIM, -5.12, 5.12), optimizer="surrogate", budget=budget, seed=seed,
                         progress=False)
    best = np.maximum.accumulate(np.asarray(res.values, float)) - offset
    rec = {"seed": seed, "offset": offset, "budget": budget, "best_curve": best.tolist(),
           "wall_s": time.perf_counter() - t0}
    with open(os.path.join(out_dir, f"s{seed}-o{offset:g}.json"), "w") as fh:
        json.dump(rec, fh)
    return f"seed {seed} offset {offset:g}: best {best[-1]:.3f} ({rec['wall_s']:.0f} s)"


def _boot_ci(d: np.ndarray, rng: np.random.Generator, n: int = 10000) -> tuple[float, float]:
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(out_dir: str, seeds: int, offset: float, budget: int) -> dict:
    rows = []
    rng = np.random.default_rng(0)
    curves = {}
    for s in range(seeds):
        for o in (0.0, offset):
            with open(os.path.join(out_dir, f"s{s}-o{o:g}.json")) as fh:
                curves[s, o] = np.asarray(json.load(fh)["best_curve"])
    for b in [c for c in CHECKPOINTS if c <= budget]:
        a = np.array([curves[s, 0.0][b - 1] for s in range(seeds)])
        c = np.array([curves[s, offset][b - 1] for s in range(seeds)])
        d = c - a
        tie = np.abs(d) <= 1e-2 * np.maximum(np.abs(a), 1.0)
        lo, hi = _boot_ci(d, rng)
        rows.append({"budget": b, "median_f": float(np.median(a)), "median_f_offset": float(np.median(c)),
                     "mean_diff": float(d.mean()), "ci95": [lo, hi],
                     "wins_offset": int(((d > 0) & ~tie).sum()), "ties": int(tie.sum()),
                     "wins_f": int(((d < 0) & ~tie).sum())})
    return {"rows": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=1200)
    ap.add_argument("--offset", type=float, default=1000.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tag", default="after")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    args = ap.parse_args(argv)
    out_dir = os.path.join(args.results, f"surrogate_offset-{args.tag}")
    os.makedirs(out_dir, exist_ok=True)
    todo = [(s, o, args.budget, out_dir) for s in range(args.seeds) for o in (0.0, args.offset)
            if not os.path.exists(os.path.join(out_dir, f"s{s}-o{o:g}.json"))]
    run_tasks(run_one, todo, jobs=args.jobs)
    summary = summarize(out_dir, args.seeds, args.offset, args.budget)
    try:
        from mango.runs.provenance import provenance
        prov = provenance()
    except ImportError:  # an older checkout (the "before" run)
        import subprocess

        import mango
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(mango.__file__),
                                capture_output=True, text=True).stdout.strip()
        prov = {"mango": mango.__version__, "git_commit": commit or None}
    summary.update({"problem": f"rastrigin-{DIM} (negated, values < 0) vs + {args.offset:g}", "seeds": args.seeds,
                    "budget": args.budget, "optimizer": "surrogate (defaults)", "torch_threads": 1,
                    "provenance": prov})
    with open(os.path.join(args.results, f"surrogate_offset-{args.tag}.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    lines = [f"# surrogate on f and f + {args.offset:g} ({args.tag}; commit {prov.get('git_commit')})", "",
             f"10-d negated Rastrigin, {args.seeds} seeds, paired; diff = best(f + offset) - best(f), "
             "offset removed; tie within 1 %.", "",
             "| budget | median f | median f + offset | mean diff [95 % CI] | W/T/L (offset / tie / f) |",
             "|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['budget']} | {r['median_f']:.3f} | {r['median_f_offset']:.3f} | {r['mean_diff']:+.3f} "
                     f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {r['wins_offset']}/{r['ties']}/{r['wins_f']} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.results, f"surrogate_offset-{args.tag}.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
