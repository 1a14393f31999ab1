"""Record three runs on one neuron, kill one midway and resume it, then write an HTML report.

The neuron is output unit 3 ("digit 3") of the zoo's ``cnn-digits`` network; stimuli come from
the zoo's VQ-VAE decoder (codes searched by ``ga`` and ``random``) and from Gabor patches
(searched by ``cma``).  Every run is recorded in its own SQLite run store, and the report is
made from the stores alone::

    python examples/report_demo.py --out /tmp/mango-demo
    # then open /tmp/mango-demo/report/index.html
"""

from __future__ import annotations

import argparse
import os

import torch

import mango
from mango import zoo
from mango.generators import ParametricGenerator
from mango.oracles import TorchOracle
from mango.runs.report.html import make_report


class StopAfter(mango.Callback):
    """Simulates a crash after ``n`` batches (the store has committed them)."""

    def __init__(self, n):
        self.n = n

    def on_batch(self, run, batch):
        if batch.index + 1 == self.n and not batch.replayed:
            raise KeyboardInterrupt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="mango-demo")
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    oracle = TorchOracle(zoo.load("cnn-digits", device=args.device), layer="output", unit=3, device=args.device)
    vq = zoo.load_generator("vqvae-digits", device=args.device)
    gabor = ParametricGenerator("gabor", size=(28, 28), background=0.0, mean=0.5, device=args.device)
    stores = []
    for name, gen, opt in (("ga-vqvae", vq, "ga"), ("random-vqvae", vq, "random"), ("cma-gabor", gabor, "cma")):
        path = os.path.join(args.out, f"{name}.sqlite")
        if os.path.exists(path):
            os.remove(path)
        kw = dict(generator=gen, optimizer=opt, budget=args.budget, batch_size=20, seed=0, progress=False,
                  store=path)
        if name == "ga-vqvae":  # interrupted after 10 batches, then resumed from the store
            part = mango.maximize(oracle, callbacks=[StopAfter(10)], **kw)
            print(f"{name}: interrupted after {part.n_queries} queries; resuming")
            res = mango.maximize(oracle, resume=True, **kw)
        else:
            res = mango.maximize(oracle, **kw)
        print(f"{name}: best {res.best_value:.4g} at query {res.best_query} of {res.n_queries}")
        stores.append(path)
    page = make_report(stores, os.path.join(args.out, "report"), top_k=16, title="cnn-digits unit 3: three runs")
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
