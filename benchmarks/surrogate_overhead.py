"""Time the ``surrogate`` optimizer spends per query, by history size, and how it scales with the generator.

Part 1 (lab rig budget): on the lab problem ``snn-out3@vqemb`` (the zoo VQ-VAE's 784-d embedding),
the optimizer is given a history of H evaluated points (random points of the space, their true
values) and then proposes batches of 10; the median time of ``ask(10)`` + ``tell`` over the batches,
divided by 10, is its time per query at that history.  H = 100, 1,000, 3,000.  Target: at most
0.25 s per query (a rig shows 2-5 stimuli per second).

Part 2 (size of real generators): a randomly initialised VQ-VAE-style decoder of CIFAR size
(8x8x64 = 4,096 latent dims -> 3x32x32 images) and a random CNN unit as the neuron; ``surrogate``
against ``cma`` and ``random`` at 300 queries (same seeds), with time per query.

Writes ``benchmarks/results/surrogate_overhead.json`` and ``.md``.

    python benchmarks/surrogate_overhead.py [--histories 100,1000,3000] [--batches 5] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import mango
from mango.generators import ModuleGenerator
from mango.oracles import TorchOracle
from mango.spaces import Box

HERE = os.path.dirname(os.path.abspath(__file__))


def per_query_time(histories, batches: int, suite: str = "lab", name: str = "snn-out3@vqemb") -> list[dict]:
    from mango.bench import suites
    from mango.bench.problems import objective_for_run

    problem = {p.name: p for p in suites.get(suite)}[name]
    objective, built = objective_for_run(problem, 0)
    rows = []
    for h in histories:
        opt = mango.optimizers.make("surrogate", built.space, seed=0, batch_size=10)
        opt.connect(generator=objective.generator)
        x = opt.ask(h)  # the random design, then h - 10 more random points: a history of h points
        opt.tell(x, objective.evaluate(x)[0])
        times = []
        for _ in range(batches):
            t = time.perf_counter()
            p = opt.ask(10)
            t_ask = time.perf_counter() - t
            v = objective.evaluate(p)[0]
            t = time.perf_counter()
            opt.tell(p, v)
            times.append(t_ask + time.perf_counter() - t)
        rows.append({"history": h, "s_per_query_median": float(np.median(times)) / 10,
                     "s_per_query_mean": float(np.mean(times)) / 10,
                     "s_per_query_max": float(np.max(times)) / 10, "batches": batches})
        print(f"history {h:5d}: {rows[-1]['s_per_query_median'] * 1000:.0f} ms/query (median of {batches} "
              f"batches of 10; mean {rows[-1]['s_per_query_mean'] * 1000:.0f}, max "
              f"{rows[-1]['s_per_query_max'] * 1000:.0f}; the mean includes the batches that refit the "
              "hyperparameters)", flush=True)
    return rows


class _Decoder(torch.nn.Module):
    """A VQ-VAE-style decoder of CIFAR size with random weights: [n, 4096] -> [n, 3, 32, 32]."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(64, 32, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.ConvTranspose2d(32, 16, 4, 2, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 3, 3, padding=1), torch.nn.Sigmoid())

    def forward(self, z):
        return self.net(z.reshape(-1, 64, 8, 8))


def cifar_scaling(seeds: int, budget: int) -> list[dict]:
    torch.manual_seed(0)
    gen = ModuleGenerator(_Decoder().eval(), Box(4096, -2.0, 2.0))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(16, 32, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(32 * 10 * 10, 10)).eval()
    oracle = TorchOracle(net, layer="output", unit=4)
    rows = []
    for name in ("surrogate", "cma", "random"):
        for seed in range(seeds):
            t = time.perf_counter()
            res = mango.maximize(oracle, generator=gen, optimizer=name, budget=budget, seed=seed, progress=False)
            rows.append({"optimizer": name, "seed": seed, "best": float(res.best_value),
                         "optimizer_s_per_query": res.optimizer_s / res.n_queries,
                         "wall_s": time.perf_counter() - t})
            print(f"cifar-size {name:9s} seed {seed}: best {res.best_value:.3f}, "
                  f"{rows[-1]['optimizer_s_per_query'] * 1000:.0f} ms/query", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--histories", default="100,1000,3000")
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--problem", default="lab:snn-out3@vqemb",
                    help="SUITE:NAME of the problem part 1 times (e.g. spikes:snnc-out3@cvqemb, 4,096-d)")
    ap.add_argument("--no-scaling", action="store_true", help="skip part 2")
    ap.add_argument("--out", default=None, help="default results/surrogate_overhead (results/surrogate_overhead_"
                    "SUITE when --problem is not the lab's)")
    args = ap.parse_args()
    suite, _, name = args.problem.partition(":")
    out = args.out or os.path.join(HERE, "results", "surrogate_overhead" + ("" if suite == "lab" else f"_{suite}"))
    torch.set_num_threads(args.threads)
    timing = per_query_time([int(h) for h in args.histories.split(",")], args.batches, suite, name)
    scaling = [] if args.no_scaling else cifar_scaling(args.seeds, args.budget)
    from mango.runs.provenance import provenance
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "torch_threads":
            args.threads, "python": platform.python_version(), "torch": torch.__version__,
            "mango": mango.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "problem": args.problem, "provenance": provenance()}
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "per_query": timing, "cifar_size": scaling}, f, indent=2)
    lines = ["# surrogate: optimizer time per query, and a CIFAR-size generator", "",
             f"`python benchmarks/surrogate_overhead.py` -- {meta['date']}, {meta['machine']}, torch threads "
             f"{args.threads}, torch {meta['torch']}, mango commit {(meta['provenance'].get('git_commit') or '?')[:7]}.", "",
             f"## Time per query by history ({name}, batches of 10; target <= 250 ms)", "",
             "| history | ms/query (median) | ms/query (mean) | ms/query (max) |", "|---|---|---|---|"]
    lines += [f"| {r['history']} | {r['s_per_query_median'] * 1000:.0f} | {r['s_per_query_mean'] * 1000:.0f} | "
              f"{r['s_per_query_max'] * 1000:.0f} |" for r in timing]
    if scaling:
        lines += ["", f"## CIFAR-size random generator (4,096-d latent, 3x32x32 images), {args.budget} queries", "",
                  "| optimizer | best value per seed | median | ms/query (median) |", "|---|---|---|---|"]
    for opt_name in ("surrogate", "cma", "random") if scaling else ():
        rs = [r for r in scaling if r["optimizer"] == opt_name]
        per_seed = ", ".join(f"{r['best']:.3f}" for r in rs)
        lines.append(f"| {opt_name} | {per_seed} | "
                     f"{np.median([r['best'] for r in rs]):.3f} | "
                     f"{np.median([r['optimizer_s_per_query'] for r in rs]) * 1000:.0f} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
