"""Atlas benchmark: throughput on 1 and 2 Dask workers, quality by shard size, and a model of scale.

One atlas: every unit of two layers of the colour zoo SNN (``output``, 10 units, and ``lif3``, 128 units;
rate readout) over the colour VQ-VAE's codes, ``ga`` (XDream-style) in each shard, a per-unit budget.

* **Throughput**: the same atlas (the shards the default cuts for 2 workers: ``output`` whole, ``lif3`` in two
  of 64; 2 exchange rounds) on a ``LocalCluster`` of 2 workers and of 1 worker, queries per second of wall
  time (references, pooling and site included).  Target: 2 workers >= 1.7x.
* **Quality**: at the same per-unit budget, on 2 workers, over seeds: the default atlas, one population
  campaign per layer (the separate campaigns a user would run), and shards of 16 without and with the
  exchange rounds; the median normalized value per layer.
* **Scale on paper**: from the measured per-query cost, the per-shard fixed cost and the scheduler's per-task
  overhead, the wall time of an atlas of 4 layers x 512 units on 1-100 workers, and where it stops falling.

Writes ``benchmarks/results/atlas.json`` and ``.md``.

    python benchmarks/atlas.py [--budget-per-unit 50] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

SCOPE = dict(model="zoo:snn-color", layers=["output", "lif3"], units="all", generator="zoo:vqvae-color:codes",
             optimizer="ga", readout="rate")


def run_atlas(out: str, shard_size, workers: int, budget: int, rounds=None, seeds=(0,)):
    import mango

    t0 = time.perf_counter()
    res = mango.atlas(**SCOPE, budget_per_unit=budget, shard_size=shard_size, rounds=rounds, seeds=seeds, out=out,
                      dask="local", workers=workers, log=lambda line: print(f"  {line}", flush=True))
    wall = time.perf_counter() - t0
    layers = {L["name"]: L["summary"][-1] for L in res.summary["layers"]}
    man = json.load(open(os.path.join(out, "atlas.json")))
    budgets = {(s["id"], r): b for s in man["shards"] for r, b in enumerate(s["round_budgets"])}
    return {"shard_size": shard_size, "rounds": man["settings"]["rounds"], "workers": workers, "wall_s": wall,
            "queries": res.queries, "queries_per_s": res.queries / wall,
            "n_shards": len(man["shards"]), "shard_sizes": man["settings"]["shard_sizes"],
            "tasks": [{"id": r["id"], "round": r["round"], "seconds": r["seconds"],
                       "budget": budgets[(r["id"], r["round"])]} for r in res.shards],
            "layers": layers}


def model_scale(per_query: float, fixed: float, overhead: float, ref_s: float, pool_s: float, units=512, layers=4,
                budget=100, workers=(1, 2, 4, 8, 16, 32, 64, 100)) -> list[dict]:
    """Wall time of an atlas of ``layers`` x ``units`` on ``w`` workers with the default shards and exchange.

    Phases: the per-layer references (one task per layer), the shards' rounds (the default cut: about ``w``
    shards in all; two exchange rounds when a layer is split, a barrier per layer between them), the
    per-layer pooling (one task per layer), plus the scheduler's overhead per task.
    """
    from mango.runs.atlas.plan import auto_shard_sizes

    rows = []
    for w in workers:
        size = auto_shard_sizes({f"layer{i}": list(range(units)) for i in range(layers)}, w)["layer0"]
        per_layer = math.ceil(units / size)
        shards = layers * per_layer
        rounds = 2 if per_layer > 1 else 1
        t_task = fixed + per_query * budget * size / rounds
        phases = {"references": math.ceil(layers / w) * ref_s,
                  "shards": rounds * math.ceil(shards / w) * t_task,
                  "pooling": math.ceil(layers / w) * pool_s,
                  "scheduler": (layers * 2 + shards * rounds) * overhead}
        rows.append({"workers": w, "shard_size": size, "shards": shards, "rounds": rounds,
                     "wall_s": sum(phases.values()), "phases": phases,
                     "busy": shards / (math.ceil(shards / w) * w)})
    for r in rows:
        r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
    return rows


ARMS = (  # (label, shard_size, rounds)
    ("auto shards (2 workers), 2 exchange rounds: the default", "auto", None),
    ("one population campaign per layer", 10 ** 6, 1),
    ("shards of 16, no exchange", 16, 1),
    ("shards of 16, 2 exchange rounds", 16, 2),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-per-unit", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the quality comparison")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "atlas"))
    args = ap.parse_args(argv)
    from mango.runs.provenance import describe, provenance

    tmp = tempfile.mkdtemp(prefix="mango-atlas-bench-")
    doc = {"provenance": provenance(), "scope": SCOPE, "budget_per_unit": args.budget_per_unit,
           "command": "python benchmarks/atlas.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    try:
        if not args.skip_throughput:
            runs = {}
            for w in (2, 1):  # the same atlas: the shards the default cuts for 2 workers, 2 rounds
                d = os.path.join(tmp, f"w{w}")
                print(f"throughput: {w} worker(s)", flush=True)
                runs[w] = run_atlas(d, 64, w, args.budget_per_unit, rounds=2)
                if w == 2:  # the demo atlas's site, to look at (not kept in the repository: ~1,300 small files)
                    kept = os.path.join(tempfile.gettempdir(), "mango-atlas-demo-site")
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.copytree(os.path.join(d, "site"), kept)
                    print(f"throughput: the 2-worker atlas's site kept in {kept}", flush=True)
            doc["throughput"] = {str(k): v for k, v in runs.items()}
            doc["speedup_2_vs_1"] = runs[2]["queries_per_s"] / runs[1]["queries_per_s"]
            print(f"throughput: 2 workers {runs[2]['queries_per_s']:.2f} q/s, 1 worker "
                  f"{runs[1]['queries_per_s']:.2f} q/s: {doc['speedup_2_vs_1']:.2f}x", flush=True)
            # the cost model's inputs, from the 1-worker run (no contention): per-query and per-task costs
            b = np.asarray([t["budget"] for t in runs[1]["tasks"]], float)
            s1 = np.asarray([t["seconds"] for t in runs[1]["tasks"]], float)
            slope, icpt = np.polyfit(b, s1, 1)
            doc["cost"] = {"per_query_s": float(slope), "per_shard_fixed_s": float(max(icpt, 0.0)),
                           "reference_s": float(runs[1]["wall_s"] - s1.sum())}
        if not args.skip_quality:
            quality = []
            for label, size, rounds in ARMS:
                for seed in range(args.seeds):
                    d = os.path.join(tmp, f"q-{len(quality)}")
                    print(f"quality: {label}, seed {seed}", flush=True)
                    rec = run_atlas(d, size, 2, args.budget_per_unit, rounds=rounds, seeds=(seed,))
                    rec.update(arm=label, seed=seed)
                    quality.append(rec)
                    shutil.rmtree(d, ignore_errors=True)
            doc["quality"] = quality
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "cost" in doc:
        c = doc["cost"]
        doc["scale"] = model_scale(c["per_query_s"], c["per_shard_fixed_s"], 0.005, 30.0, 30.0)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=1, default=str)
    write_md(doc, args.out + ".md", describe(doc["provenance"]))
    print(f"wrote {args.out}.json, .md")
    return 0


def write_md(doc: dict, path: str, prov: str) -> None:
    L = [f"# Atlas: throughput, quality by shard size, scale", "", f"`{doc['command']}` -- {prov}", "",
         f"Scope: every unit of `output` (10) and `lif3` (128) of `{doc['scope']['model']}` ({doc['scope']['readout']} "
         f"readout) over `{doc['scope']['generator']}`, `{doc['scope']['optimizer']}`, "
         f"{doc['budget_per_unit']} queries per unit, seed 0; LocalCluster, 1 torch thread per worker.", ""]
    if "throughput" in doc:
        L += ["## Throughput", "", "| workers | shards | queries | wall (s) | queries/s |", "|---|---|---|---|---|"]
        for w, r in sorted(doc["throughput"].items()):
            L.append(f"| {w} | {r['n_shards']} | {r['queries']:,} | {r['wall_s']:.1f} | {r['queries_per_s']:.2f} |")
        L += ["", f"2 workers against 1: **{doc['speedup_2_vs_1']:.2f}x** queries per second (target 1.7x).", ""]
    if "quality" in doc:
        L += ["## Quality: the same per-unit budget, 2 workers", "",
              "Median over a layer's units of the normalized value (best value / the unit's max over the natural "
              "images; units whose max is not above 0 have none), per seed, and the mean over seeds.", "",
              "| arm | shards | output: per seed | mean | lif3: per seed | mean | wall (s), mean |",
              "|---|---|---|---|---|---|---|"]
        arms = []
        for r in doc["quality"]:
            if r["arm"] not in arms:
                arms.append(r["arm"])
        for arm in arms:
            rs = [r for r in doc["quality"] if r["arm"] == arm]
            cells = []
            for layer in ("output", "lif3"):
                v = [r["layers"][layer]["median_normalized"] for r in rs]
                cells.append(", ".join(f"{x:.3f}" for x in v))
                cells.append(f"**{np.mean(v):.3f}**")
            L.append(f"| {arm} | {rs[0]['n_shards']} | {' | '.join(cells)} | "
                     f"{np.mean([r['wall_s'] for r in rs]):.1f} |")
        L.append("")
    if "scale" in doc:
        c = doc["cost"]
        L += ["## Scale on paper: 4 layers x 512 units, 100 queries per unit, the default shards", "",
              f"Measured here on one worker: {1000 * c['per_query_s']:.1f} ms per query (this oracle and `ga`), "
              f"{c['per_shard_fixed_s']:.1f} s fixed per shard task (building the model and generator); the two "
              f"layers' references and pooling took {c['reference_s']:.0f} s.  Assumed for 512-unit layers: 30 s "
              "per layer reference, 30 s per layer pooling (reading 51,200 queries x 512 responses, 3,072 PNGs), "
              "5 ms of scheduler overhead per task.", "",
              "| workers | shard size | shards | rounds | references | shards' rounds | pooling | wall | speed-up |",
              "|---|---|---|---|---|---|---|---|---|"]
        for r in doc["scale"]:
            p = r["phases"]
            L.append(f"| {r['workers']} | {r['shard_size']} | {r['shards']} | {r['rounds']} | "
                     f"{p['references']:.0f} s | {p['shards'] / 60:.1f} min | {p['pooling']:.0f} s | "
                     f"{r['wall_s'] / 60:.1f} min | {r['speedup']:.1f}x |")
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    raise SystemExit(main())
