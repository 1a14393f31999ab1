"""Summary of a `spikes` run of `run_suite.py`: mean over problems of the median normalized value per optimizer, the
`surrogate` / best-other ratio and paired win/tie/loss per (problem, seed), at each budget.

    python benchmarks/spikes_summary.py [OUT_DIR]   (default benchmarks/results/spikes_prelim; writes OUT_DIR/summary.json)

cma cannot search a Codebook, so it enters the win/tie/loss counts on the continuous problems only and is left out
of the best-other choice (which needs every problem).
"""
import collections
import json
import os
import sys

import numpy as np

from mango.bench.record import read_jsonl

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                         "spikes_prelim")
recs = read_jsonl(OUT)  # results.jsonl.gz (kept in git) and/or results.jsonl
val = collections.defaultdict(dict)   # (problem, opt, budget) -> {seed: normalized}
for r in recs:
    for row in r["rows"]:
        val[(row["problem"], r["optimizer"], row["budget"])][row["seed"]] = row["normalized"]
probs = sorted({k[0] for k in val}); opts = sorted({k[1] for k in val})
out = {}
for b in (100, 300):
    means = {}
    for o in opts:
        meds = [np.median(list(val[(p, o, b)].values())) for p in probs if (p, o, b) in val]
        if len(meds) == len(probs):
            means[o] = float(np.mean(meds))
    # cma cannot search a Codebook: its mean over the 7 continuous problems, with the best other's on those 7
    s = means.pop("surrogate"); best = max(means, key=means.get)
    wtl = {}
    for o in opts:
        if o == "surrogate": continue
        w = t = l = 0
        for p in probs:
            if (p, o, b) not in val: continue
            for seed, v in val[(p, o, b)].items():
                sv = val[(p, "surrogate", b)][seed]
                w += sv > v + 1e-12; l += sv < v - 1e-12; t += abs(sv - v) <= 1e-12
        wtl[o] = (w, t, l)
    out[b] = dict(surrogate=s, best_other=best, best_other_mean=means[best], ratio=s / means[best], wtl=wtl, means=means)
    print(b, "surrogate %.3f" % s, "best other", best, "%.3f" % means[best], "ratio %.2f" % (s / means[best]))
    print("   all-10 means:", {k: round(v, 3) for k, v in means.items()})
    print("   w/t/l:", wtl)
json.dump(out, open(OUT + "/summary.json", "w"), indent=1)
