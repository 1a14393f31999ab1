"""Maximize a hidden unit of the bundled spiking network over the VQ-VAE's embedding space.

    python examples/snn_hidden_unit.py [--channel 5] [--budget 600] [--out snn-hidden]

Reads channel ``--channel`` of the second LIF layer (``lif2``: mean membrane potential over space and
time), searches with CMA-ES, and saves the best stimuli and the convergence curve.
"""

import argparse
from pathlib import Path

import mango
from mango import zoo
from mango.oracles import SNNOracle
from mango.runs.report.plots import save_best_stimuli, save_curve

p = argparse.ArgumentParser()
p.add_argument("--channel", type=int, default=5)
p.add_argument("--budget", type=int, default=600)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="snn-hidden")
args = p.parse_args()

snn = zoo.load("snn-digits")
oracle = SNNOracle(snn, layer="lif2", unit=args.channel, readout="membrane")
gen = zoo.load_generator("vqvae-digits", view="embedding")
res = mango.maximize(oracle, generator=gen, optimizer="cma", budget=args.budget, seed=args.seed)

out = Path(args.out)
out.mkdir(exist_ok=True)
save_curve(res, out / "curve.png")
save_best_stimuli(res, gen, out / "best.png")
res.to_json(out / "result.json")
print(f"lif2 channel {args.channel}: best {res.best_value:.4g} at query {res.best_query}/{res.n_queries}; "
      f"first batch best {res.values[:res.batch.tolist().count(0)].max():.4g}; wrote {out}/")
