"""How far single-unit ``surrogate`` campaigns climb from a population campaign's best points.

A population campaign of the output group (``benchmarks/population.py``) ends with one best point per output
neuron.  For each neuron this script runs one single-unit ``surrogate`` campaign of ``--budget`` more queries,
warm-started from that point (``maximize(..., warm_start=[point])``, the point's query counted), and prints the
median normalized best-so-far over the neurons: is the population optimizer's plateau a local maximum, and what
does climbing from it cost?

    python benchmarks/population_handover.py --seed 0 --budget 200

writes ``results/population/handover-<source optimizer>-s<seed>-b<budget>.json`` (per-unit curves).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import _runs
import population

SOURCE = "inception[backbone=zoo:cnn-digits;backbone_layer=features.relu2;warm_start=zoo;warm_n=50]"
OUT = os.path.join(os.path.dirname(__file__), "results", "population")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=200, help="queries per unit after the hand-over")
    ap.add_argument("--source", default=SOURCE, help="the population run's optimizer (default %(default)s)")
    args = ap.parse_args()
    import mango
    from mango.runs.provenance import provenance

    src = os.path.join(OUT, f"output-pop-{args.source}-s{args.seed}.json")
    start = _runs.read(OUT, os.path.basename(src))  # the run file, or the run packed in runs.jsonl.gz
    if start is None:
        raise SystemExit(f"no population run {src}; run benchmarks/population.py --group output --arms pop "
                         f"--optimizer {args.source!r} first.")
    oracle, gen, ref = population.setup("output")
    curves = []
    for u, point in enumerate(start["best_points"].values()):
        res = mango.maximize(oracle, generator=gen, unit=u, optimizer="surrogate", budget=args.budget,
                             seed=args.seed, progress=False, warm_start=np.array([point]))
        curves.append(res.best_so_far() / ref[u])
        print(f"unit {u}: {start['normalized'][u]:.3f} -> {curves[-1][-1]:.3f}", flush=True)
    med = np.median(np.stack(curves), axis=0)
    marks = sorted({1, 25, 50, 100, args.budget} & set(range(1, args.budget + 1)))
    print("median normalized best-so-far at " + ", ".join(f"{k}: {med[k - 1]:.3f}" for k in marks))
    path = os.path.join(OUT, f"handover-{args.source}-s{args.seed}-b{args.budget}.json")
    with open(path, "w") as f:
        json.dump({"source": src, "seed": args.seed, "budget": args.budget, "start": start["normalized"],
                   "curves": [c.tolist() for c in curves], "median": med.tolist(), "provenance": provenance()}, f)
    print("wrote", path)


if __name__ == "__main__":
    main()
