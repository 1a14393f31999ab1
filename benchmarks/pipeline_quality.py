"""Quality at equal queries, pipelined against synchronous loop, in process: what ``rig_session.py`` measures without
the rig's clock.

A run's history does not depend on timing (the pipelined loop's order of asks and tells is fixed by the budget and
the batch size), so the best value at the budget of a ``rig_session.py`` run is reproduced exactly by the same run
in process: the same generator (``rig_session.build_space``), the simulator's neuron
(``mango.rig.simulator.build_oracle``: the zoo SNN's output unit 3, Poisson counts, seeded like the rig's), the same
optimizer, budget, batch size and seed.  A run takes seconds instead of 75 s of presentation, so variants can be
compared quickly:

* ``sync``: the synchronous loop;
* ``pipelined``: the pipelined loop (``surrogate`` conditions its GP on the pending batch);
* ``pipelined-nofant``: the pipelined loop with the conditioning on pending points switched off (to tell what the
  lag costs from what the conditioning does).

Reports the best value at the budget per seed, the ratio of means against ``sync`` and paired win/tie/loss.  Writes
``benchmarks/results/pipeline_quality.{json,md}``.

    python benchmarks/pipeline_quality.py [--space 4096] [--batch 40] [--budget 300] [--seeds 5]
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

VARIANTS = ("sync", "pipelined", "pipelined-nofant")


def one_run(gen, variant: str, batch: int, budget: int, seed: int) -> dict:
    import mango
    from mango.optimizers.surrogate import gp as gplib
    from mango.rig.simulator import build_oracle

    real = gplib.fantasize
    if variant == "pipelined-nofant":
        gplib.fantasize = lambda model, Xp: model
    try:
        oracle = build_oracle("zoo:snn-digits", None, 3, noise="poisson", seed=seed)
        t = time.perf_counter()
        res = mango.maximize(oracle, generator=gen, optimizer="surrogate", budget=budget, batch_size=batch, seed=seed,
                             progress=False, pipeline=variant != "sync", threads=1)
        wall = time.perf_counter() - t
    finally:
        gplib.fantasize = real
    return {"variant": variant, "seed": seed, "best": float(res.best_value), "n_queries": int(res.n_queries),
            "wall_s": round(wall, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=int, default=4096, choices=[784, 4096])
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "pipeline_quality"))
    args = ap.parse_args(argv)
    from rig_session import build_space

    from mango.runs.provenance import describe, provenance

    gen, what = build_space(args.space)
    runs = []
    for seed in range(args.seeds):
        for variant in VARIANTS:
            r = one_run(gen, variant, args.batch, args.budget, seed)
            runs.append(r)
            print(f"{variant:17s} seed {seed}: best {r['best']:.3f} ({r['wall_s']:.1f} s)", flush=True)
    by = {v: np.array([r["best"] for r in runs if r["variant"] == v]) for v in VARIANTS}
    summary = {}
    for v in VARIANTS[1:]:
        d = by[v] - by["sync"]
        summary[v] = {"ratio_of_means": float(by[v].mean() / by["sync"].mean()),
                      "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
    rec = {"benchmark": "pipeline_quality", "space": args.space, "generator": what, "batch": args.batch,
           "budget": args.budget, "seeds": args.seeds, "runs": runs, "summary": summary,
           "means": {v: float(by[v].mean()) for v in VARIANTS}, "provenance": provenance()}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    lines = [f"# Quality at equal queries: pipelined against synchronous loop, in process", "",
             f"`python benchmarks/pipeline_quality.py --space {args.space} --batch {args.batch} --budget "
             f"{args.budget} --seeds {args.seeds}`: `surrogate` on {what}, the zoo SNN's output unit 3 with Poisson "
             f"counts as `mango rig simulate` gives them, {args.budget} queries in batches of {args.batch}, 1 thread; "
             "the best value at the budget (the same numbers as `rig_session.py`'s runs of these seeds).", "",
             "| variant | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean | vs sync (w/t/l) |",
             "|---|" + "---:|" * (args.seeds + 2)]
    for v in VARIANTS:
        vs = "" if v == "sync" else (f"{summary[v]['ratio_of_means']:.3f} ({summary[v]['wins']}/{summary[v]['ties']}/"
                                     f"{summary[v]['losses']})")
        lines.append(f"| {v} | " + " | ".join(f"{x:.0f}" for x in by[v]) + f" | {by[v].mean():.1f} | {vs} |")
    lines += ["", f"Provenance: {describe(rec['provenance'])}.", ""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
