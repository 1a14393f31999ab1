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


def one_run(gen, variant: str, batch: int, budget: int, seed: int, at=()) -> dict:
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
    running = np.maximum.accumulate(np.asarray(res.values, float))
    return {"variant": variant, "seed": seed, "best": float(res.best_value), "n_queries": int(res.n_queries),
            "wall_s": round(wall, 2), "best_at": {str(n): float(running[n - 1]) for n in at if n <= len(running)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=int, default=4096, choices=[784, 4096])
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--at", default="", help="also report the best at these query counts (comma-separated; "
                    "surrogate is budget-blind, so a prefix of a longer run is the run of that budget)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}; sync first")
    ap.add_argument("--out", default=None, help="result path without extension (default: "
                    "results/pipeline_quality_SPACE_bBATCH_nBUDGET)")
    args = ap.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    if not variants or variants[0] != "sync" or any(v not in VARIANTS for v in variants):
        ap.error(f"--variants must start with sync and name only {VARIANTS}")
    at = sorted({int(x) for x in args.at.split(",") if x} | {args.budget})
    if at[0] < 1 or at[-1] > args.budget:
        ap.error("--at must be query counts between 1 and --budget")
    out = args.out or os.path.join(HERE, "results", f"pipeline_quality_{args.space}_b{args.batch}_n{args.budget}")
    from rig_session import build_space

    from mango.runs.provenance import describe, provenance

    gen, what = build_space(args.space)
    runs = []
    for seed in range(args.seeds):
        for variant in variants:
            r = one_run(gen, variant, args.batch, args.budget, seed, at)
            runs.append(r)
            print(f"{variant:17s} seed {seed}: best {r['best']:.3f} ({r['wall_s']:.1f} s)", flush=True)
    by, summary = {}, {}
    for n in at:
        by[n] = {v: np.array([r["best_at"][str(n)] for r in runs if r["variant"] == v]) for v in variants}
        summary[str(n)] = {}
        for v in variants[1:]:
            d = by[n][v] - by[n]["sync"]
            summary[str(n)][v] = {"ratio_of_means": float(by[n][v].mean() / by[n]["sync"].mean()),
                                  "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
    rec = {"benchmark": "pipeline_quality", "space": args.space, "generator": what, "batch": args.batch,
           "budget": args.budget, "at": at, "seeds": args.seeds, "variants": list(variants), "runs": runs,
           "summary": summary, "means": {str(n): {v: float(by[n][v].mean()) for v in variants} for n in at},
           "provenance": provenance()}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    lines = [f"# Quality at equal queries: pipelined against synchronous loop, in process", "",
             f"`python benchmarks/pipeline_quality.py --space {args.space} --batch {args.batch} --budget "
             f"{args.budget} --seeds {args.seeds}`: `surrogate` on {what}, the zoo SNN's output unit 3 with Poisson "
             f"counts as `mango rig simulate` gives them, {args.budget} queries in batches of {args.batch}, 1 thread; "
             "the best value after n queries (at the budget: the same numbers as `rig_session.py`'s runs of these "
             "seeds and budget).", "",
             "| n | variant | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean | vs sync (w/t/l) |",
             "|---:|---|" + "---:|" * (args.seeds + 2)]
    for n in at:
        for v in variants:
            sm = summary[str(n)].get(v)
            vs = "" if sm is None else f"{sm['ratio_of_means']:.3f} ({sm['wins']}/{sm['ties']}/{sm['losses']})"
            lines.append(f"| {n} | {v} | " + " | ".join(f"{x:.0f}" for x in by[n][v]) +
                         f" | {by[n][v].mean():.1f} | {vs} |")
    lines += ["", f"Provenance: {describe(rec['provenance'])}.", ""]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
