"""A CNN unit over gratings: find its preferred grating, then measure its tuning curves.

1. mango searches the grating parameters (orientation, spatial frequency, phase,
   contrast, aperture size, position) for the stimulus that drives one channel of
   the zoo CNN's second conv layer (at the image centre) hardest (CMA-ES, a few hundred queries).
2. Around the best grating it sweeps orientation and spatial frequency, the
   classic tuning-curve experiment, and draws both curves with the best stimulus.

    python examples/cnn_gratings_tuning.py [--layer features.conv2] [--unit 7] [--budget 300] [--out DIR]

Writes DIR/tuning.png and DIR/tuning.json (default DIR: ./cnn_gratings_out).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layer", default="features.conv2")
    p.add_argument("--unit", type=int, default=7)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="cnn_gratings_out")
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mango
    from mango import zoo
    from mango.generators import ParametricGenerator
    from mango.oracles import TorchOracle

    cnn = zoo.load("cnn-digits", device=a.device)
    oracle = TorchOracle(cnn, layer=a.layer, unit=a.unit, spatial="center", input_shape=(1, 28, 28))
    gen = ParametricGenerator("grating", device=a.device)  # grey screen, gratings in a soft aperture
    res = mango.maximize(oracle, generator=gen, optimizer="cma", budget=a.budget, seed=a.seed, progress=False)
    best = gen.params(res.best_point)
    print(f"best response {res.best_value:.4f} after {res.n_queries} queries; grating: "
          + ", ".join(f"{k}={float(v[0]):.3g}" for k, v in best.items()))

    def sweep(name, values):
        pts = np.repeat(np.asarray(res.best_point, dtype=float)[None], len(values), 0)
        pts[:, gen.param_names.index(name)] = values
        return oracle(gen(pts))[:, 0]

    lo, hi = gen.ranges["orientation"]
    oris = np.linspace(lo, hi, 37)[:-1]
    fl, fh = gen.ranges["frequency"]
    freqs = np.geomspace(fl, fh, 25)
    r_ori, r_freq = sweep("orientation", oris), sweep("frequency", freqs)
    pref_ori = float(oris[int(np.argmax(r_ori))])

    os.makedirs(a.out, exist_ok=True)
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.4))
    ax[0].imshow(gen(res.best_point)[0, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    ax[0].set_title(f"best grating ({res.n_queries} queries)")
    ax[0].axis("off")
    ax[1].plot(np.degrees(oris), r_ori, "o-", ms=3)
    ax[1].axvline(math.degrees(float(best["orientation"][0])), color="r", lw=0.8)
    ax[1].set_xlabel("orientation (deg)")
    ax[1].set_ylabel(f"{a.layer}[{a.unit}] response")
    ax[1].set_title("orientation tuning")
    ax[2].semilogx(freqs, r_freq, "o-", ms=3)
    ax[2].axvline(float(best["frequency"][0]), color="r", lw=0.8)
    ax[2].set_xticks([0.5, 1, 2, 4, 8])
    ax[2].set_xticklabels(["0.5", "1", "2", "4", "8"])
    ax[2].minorticks_off()
    ax[2].set_xlabel("spatial frequency (cycles / image)")
    ax[2].set_title("spatial-frequency tuning")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "tuning.png"), dpi=110)
    out = {
        "layer": a.layer, "unit": a.unit, "budget": a.budget, "seed": a.seed,
        "best_value": float(res.best_value), "n_queries": int(res.n_queries),
        "best_params": {k: float(v[0]) for k, v in best.items()},
        "orientation_deg": np.degrees(oris).tolist(), "orientation_response": r_ori.tolist(),
        "frequency": freqs.tolist(), "frequency_response": r_freq.tolist(),
        "preferred_orientation_deg": math.degrees(pref_ori),
        "sweep_max_over_best": float(max(r_ori.max(), r_freq.max()) / res.best_value) if res.best_value else None,
    }
    with open(os.path.join(a.out, "tuning.json"), "w") as f:
        json.dump(out, f, indent=1)
    depth = float(r_ori.max() - r_ori.min())
    out["orientation_tuning_depth"] = depth
    with open(os.path.join(a.out, "tuning.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"preferred orientation {math.degrees(pref_ori):.0f} deg; orientation tuning depth (max - min) "
          f"{depth:.3f} vs best {res.best_value:.3f}; wrote {a.out}/tuning.png")
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
