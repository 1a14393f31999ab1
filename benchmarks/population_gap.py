"""Where a population campaign falls short of single-unit campaigns: can its model see their best stimuli?

A population campaign's model (``inception`` with the zoo CNN as backbone) is
fit on the stimuli and responses of the campaign's first ``--budget`` queries
(output group, seed ``--seed``), then asked to predict each output neuron's
response to the best stimuli that ten 1,000-query single-unit ``surrogate``
campaigns found (the runs ``benchmarks/population.py`` wrote: run files or ``runs.jsonl.gz``).  If the
model predicted them high, the population campaign's search would be what
falls short; if it predicts them far below their true values, those stimuli lie
where the campaign's data never went and the model cannot point there.

The readout of several feature layers (and of the raw pixels) is checked.
Prints a table and writes ``population-gap-b<budget>-s<seed>.json`` under ``--out``, and
``population-gap-b<budget>-s<seed>.png``: each neuron's best stimulus from the population campaign (first row)
next to the one its single-unit campaign of the same seed found (second row).

    python benchmarks/population_gap.py --budget 500 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import _runs
from population import GROUPS, setup

LAYERS = ["features.relu1", "features.relu2", "features.relu3", "pixels"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "population"))
    args = ap.parse_args()

    import torch

    import mango
    from mango.optimizers.inception.readout import Backbone, LinearReadout
    from mango.runs.provenance import provenance

    oracle, gen, ref = setup("output")
    k = len(GROUPS["output"]["units"])
    res = mango.maximize(oracle, generator=gen, unit="all", optimizer="inception", budget=args.budget, seed=args.seed,
                         progress=False, backbone="zoo:cnn-digits", backbone_layer="features.relu2")
    pts, vals = res.points, res.unit_values
    singles, units, seeds = [], [], []
    for s in range(5):
        for j in range(k):
            run = _runs.read(args.out, f"output-single-surrogate-s{s}-u{j}.json")
            if run is not None:
                singles.append(np.asarray(list(run["best_points"].values())[0], dtype=float))
                units.append(j)
                seeds.append(s)
    if not singles:
        raise SystemExit(f"no single-unit results under {args.out}; run benchmarks/population.py --arms single first.")
    singles, units, seeds = np.asarray(singles), np.asarray(units), np.asarray(seeds)
    rows = np.arange(len(units))
    actual = oracle(gen(singles))[rows, units] / ref[units]

    def features(p: np.ndarray, layer: str) -> np.ndarray:
        """The features of the readout: the zoo CNN cut at ``layer`` (the campaign's own Backbone), or pixels."""
        net = (lambda x: x.flatten(1)) if layer == "pixels" else Backbone("zoo:cnn-digits", layer)
        with torch.no_grad():
            return np.concatenate([net(gen(p[b:b + 256])).double().cpu().numpy() for b in range(0, len(p), 256)])

    result = {"budget": args.budget, "seed": args.seed, "n_single": len(units),
              "campaign_best": float(np.median(vals.max(0) / ref)), "single_actual": float(actual.mean()),
              "layers": {}, "provenance": provenance()}
    print(f"population campaign after {args.budget} queries (seed {args.seed}): median best "
          f"{result['campaign_best']:.3f}; {len(units)} single-unit best stimuli, actual mean {actual.mean():.3f}")
    print("| features | leave-one-out error | predicted mean | actual mean | correlation |")
    print("|---|---|---|---|---|")
    for layer in LAYERS:
        readout = LinearReadout().fit(features(pts, layer), vals)
        mean, _ = readout.predict(torch.as_tensor(features(singles, layer)))
        pred = readout.to_values(mean.numpy())[rows, units] / ref[units]
        r = {"loo": float(np.median(readout.noise)), "predicted": float(pred.mean()),
             "corr": float(np.corrcoef(pred, actual)[0, 1])}
        result["layers"][layer] = r
        print(f"| {layer} | {r['loo']:.3f} | {r['predicted']:.2f} | {actual.mean():.2f} | {r['corr']:.2f} |")
    path = os.path.join(args.out, f"population-gap-b{args.budget}-s{args.seed}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote", path)
    mine = seeds == args.seed
    if mine.sum() == k:  # the figure: the campaign's best stimuli above the same seed's single-unit ones
        from mango.runs.report.plots import to_images, unit_grid_figure

        best = pts[vals.argmax(0)]
        names = [f"pop {j}" for j in range(k)] + [f"single {j}" for j in units[mine]]
        norm = np.concatenate([vals.max(0) / ref, actual[mine]])  # the single-unit values are already measured
        values = norm * np.concatenate([ref, ref[units[mine]]])
        fig = unit_grid_figure(names, values, list(to_images(gen(np.concatenate([best, singles[mine]])))), norm,
                               title=f"output neurons' best stimuli: population campaign after {args.budget} queries "
                                     f"(top) vs 1,000-query single-unit campaigns (bottom), seed {args.seed}")
        fig.savefig(path[:-len(".json")] + ".png")
        print("wrote", path[:-len(".json")] + ".png")


if __name__ == "__main__":
    main()
