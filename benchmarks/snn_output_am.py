"""The main job, measured: for each output neuron c of a zoo SNN, maximize its response
over the zoo VQ-VAE and ask the zoo CNN (an independent judge) what the best
stimulus is.  Target: at least 8 of 10 classified as c.

    python benchmarks/snn_output_am.py [--model snn-digits|sj-digits] [--budget 1000] [--seed 0]
        [--configs embedding:cma:membrane,codes:ga:membrane,embedding:cma:rate,codes:ga:rate]

``--model``: the snntorch ``snn-digits`` (default) or the SpikingJelly ``sj-digits``.
A config is VIEW:OPTIMIZER:READOUT (VQ-VAE view, optimizer name, SNNOracle readout:
``rate`` = spike count / T, saturates at 1.0; ``membrane`` = mean membrane potential).

Writes benchmarks/results/snn_output_am.json and .png (best stimuli, one row per view);
for ``sj-digits``, sj_output_am.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def run(view: str, optimizer: str, readout: str, budget: int, seed: int, device=None,
        model: str = "snn-digits") -> dict:
    import mango
    from mango import oracles, zoo

    snn = zoo.load(model, device=device)
    cnn = zoo.load("cnn-digits", device=device)
    gen = zoo.load_generator("vqvae-digits", view=view, device=device)
    rows, images = [], []
    for c in range(10):
        t0 = time.time()
        oracle = oracles.SNNOracle(snn, layer="output", unit=c, readout=readout)
        res = mango.maximize(oracle, generator=gen, optimizer=optimizer, budget=budget, seed=seed, progress=False)
        img = gen(res.best_point)
        with torch.no_grad():
            prob = torch.softmax(cnn(img.to(next(cnn.parameters()).device)), 1)[0].cpu()
        rows.append({
            "neuron": c, "best_value": float(res.best_value), "best_query": int(res.best_query),
            "n_queries": int(res.n_queries), "cnn_class": int(prob.argmax()), "cnn_prob_c": float(prob[c]),
            "seconds": round(time.time() - t0, 1),
        })
        images.append(img[0, 0].cpu().numpy())
        print(f"{view:9s} {optimizer} {readout} neuron {c}: best {res.best_value:.3f} (query {res.best_query}) "
              f"CNN says {int(prob.argmax())} (p[c]={float(prob[c]):.2f}) {rows[-1]['seconds']}s", flush=True)
    hits = sum(r["cnn_class"] == r["neuron"] for r in rows)
    return {"model": model, "mode": oracle.mode, "view": view, "optimizer": optimizer, "readout": readout,
            "budget": budget, "seed": seed, "hits_of_10": hits, "rows": rows, "images": images}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="snn-digits", choices=["snn-digits", "sj-digits"],
                   help="zoo SNN: snntorch (snn-digits) or SpikingJelly (sj-digits)")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default="embedding:cma:membrane,codes:ga:membrane,embedding:cma:rate,codes:ga:rate")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for cfg in a.configs.split(","):
        view, opt, readout = cfg.split(":")
        results.append(run(view, opt, readout, a.budget, a.seed, model=a.model))
    stem = "snn_output_am" if a.model == "snn-digits" else "sj_output_am"
    os.makedirs(a.out, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 10, figsize=(12, 1.45 * len(results) + 0.3), squeeze=False)
    for i, r in enumerate(results):
        for c in range(10):
            ax = axes[i, c]
            ax.imshow(r["images"][c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            row = r["rows"][c]
            ax.set_title(f"{c}: CNN {row['cnn_class']}", fontsize=8, color="k" if row["cnn_class"] == c else "r")
        axes[i, 0].set_ylabel(f"{r['view']}\n{r['optimizer']} {r['readout']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, stem + ".png"), dpi=100)
    for r in results:
        del r["images"]
        print(f"{a.model}: {r['view']} view, {r['optimizer']}, {r['readout']} readout, budget {r['budget']}: "
              f"{r['hits_of_10']}/10 best stimuli "
              f"classified as the target neuron's digit by the zoo CNN")
    with open(os.path.join(a.out, stem + ".json"), "w") as f:
        json.dump({"model": a.model, "results": results, "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
