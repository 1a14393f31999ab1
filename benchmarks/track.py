"""Warm-started campaigns across training checkpoints against cold ones, on a zoo SNN trained from scratch.

1. Train ``snn-digits`` from scratch with ``python -m mango.zoo.train snn-digits --epochs E --checkpoints DIR``
   (E + 1 checkpoints: as initialised and after every epoch; the packaged weights are not touched).
2. For each seed, two tracks over the checkpoints (:func:`mango.track`): the 10 output neurons (membrane
   readout) over the VQ-VAE embedding generator (``zoo:vqvae-digits:embedding``), one population campaign of
   ``--budget`` queries per checkpoint:

   * ``warm``: each campaign after the first warm-started from the previous checkpoint's best point per unit;
   * ``cold``: every campaign from scratch.

3. Metric, for every checkpoint after the first: the queries the warm campaign needs to reach the cold
   campaign's final value, per unit and seed (median over units and seeds; the goal is <= half the budget).
   A (unit, seed) the warm campaign never brings to the cold value counts as "not reached" (above the budget).

Each campaign's result is one JSON file under ``--out`` (per-unit best values and best-so-far improvements);
the run stores go under ``--work``.  Rerunning continues (finished campaigns are skipped, an unfinished one is
resumed).  ``--report`` prints a markdown table and writes ``summary.md``; the figure of preferred stimuli
across checkpoints (warm track, first seed) is ``preferred_stimuli.png`` (+ ``best_values.png``).

    python benchmarks/track.py --epochs 5 --seeds 5 --budget 1000           # train, then 2 x 5 tracks
    python benchmarks/track.py --report
    python benchmarks/track.py --epochs 1 --seeds 1 --budget 40 --out /tmp/t --work /tmp/t/work   # a smoke run
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from _tasks import run_tasks

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "snn-digits"
GENERATOR = "zoo:vqvae-digits:embedding"
ARMS = ("warm", "cold")


def checkpoints(args) -> list[str]:
    """The training checkpoints (train first if they are not all there)."""
    d = os.path.join(args.out, "checkpoints")
    want = args.epochs + 1
    files = sorted(glob.glob(os.path.join(d, f"{MODEL}-epoch*.pt")))
    if len(files) < want:
        t0 = time.time()
        cmd = [sys.executable, "-m", "mango.zoo.train", MODEL, "--seed", str(args.train_seed), "--epochs",
               str(args.epochs), "--checkpoints", d, "--out-dir", os.path.join(args.work, "weights")]
        print("training:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(os.path.join(args.out, "training.json"), "w") as f:
            json.dump({"command": " ".join(cmd[1:]), "seconds": round(time.time() - t0, 1), "epochs": args.epochs},
                      f, indent=1)
        files = sorted(glob.glob(os.path.join(d, f"{MODEL}-epoch*.pt")))
    return files[:want]


def _name(arm: str, opt: str, budget: int, seed: int) -> str:
    return f"{arm}-{opt}-b{budget}-s{seed}"


def _improvements(curve: np.ndarray) -> list[list]:
    """A best-so-far curve as ``[[query, value], ...]`` at each improvement (query 0-based)."""
    out, best = [], -np.inf
    for q, v in enumerate(curve):
        if np.isfinite(v) and v > best:
            best = float(v)
            out.append([q, best])
    return out


def run_track(task: tuple) -> str:
    """One track (``(args dict, checkpoint files, arm, seed)``): its campaigns, and one JSON per checkpoint."""
    a, files, arm, seed = task
    name = _name(arm, a["optimizer"], a["budget"], seed)
    paths = [os.path.join(a["out"], f"{name}-c{i:02d}.json") for i in range(len(files))]
    if all(os.path.exists(p) for p in paths):
        return name
    import torch

    import mango

    torch.set_num_threads(1)
    res = mango.track(files, model=f"zoo:{MODEL}", generator=GENERATOR, layer="output", unit="all",
                      readout="membrane", optimizer=a["optimizer"], budget=a["budget"], seed=seed,
                      out=os.path.join(a["work"], name), warm=arm == "warm", report=False, progress=False)
    for path, run in zip(paths, res):
        units = run.units()
        rec = {"arm": arm, "optimizer": a["optimizer"], "budget": a["budget"], "seed": seed, "checkpoint": run.index,
               "label": run.label, "file": os.path.basename(run.checkpoint), "warm_points": run.warm_points,
               "units": [u.name for u in units], "best": [u.best_value for u in units],
               "improvements": [_improvements(u.curve) for u in units], "wall_s": run.result.wall_s,
               "n_queries": run.result.n_queries}
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.replace(path + ".tmp", path)
    return name


def figure(args, files) -> None:
    """The preferred stimuli across checkpoints (warm track of the first seed) into ``--out``."""
    from mango.runs.track.campaign import checkpoint_label
    from mango.runs.track.report import make_track_report

    d = os.path.join(args.work, _name("warm", args.optimizer, args.budget, 0))
    stores = sorted(glob.glob(os.path.join(d, "*.sqlite")))
    if len(stores) != len(files):
        return
    make_track_report(d, stores, [checkpoint_label(f) for f in files],
                      description=f"warm track, seed 0: output neurons of {MODEL} trained from scratch")
    shutil.copy(os.path.join(d, "track_grid.png"), os.path.join(args.out, "preferred_stimuli.png"))
    shutil.copy(os.path.join(d, "track_values.png"), os.path.join(args.out, "best_values.png"))


def _queries_to(improvements: list, target: float) -> float:
    """Queries (1-based count) until the curve first reaches ``target``; inf if never."""
    for q, v in improvements:
        if v >= target:
            return q + 1
    return np.inf


def load(out: str, optimizer: str, budget: int) -> dict:
    """``(arm, seed, checkpoint) -> record`` for the given optimizer and budget."""
    recs = {}
    for path in glob.glob(os.path.join(out, f"*-{optimizer}-b{budget}-s*-c*.json")):
        with open(path) as f:
            r = json.load(f)
        recs[(r["arm"], r["seed"], r["checkpoint"])] = r
    return recs


def _fmt_q(x: float, budget: int) -> str:
    return f"> {budget}" if not np.isfinite(x) else f"{x:.0f}"


def report(out: str, optimizer: str, budget: int) -> str:
    recs = load(out, optimizer, budget)
    pairs = sorted({(s, c) for (arm, s, c) in recs if arm == "warm" and ("cold", s, c) in recs and c > 0})
    lines = [f"### Warm vs cold campaigns across checkpoints: {optimizer}, {budget} queries per checkpoint", "",
             f"10 output neurons of {MODEL} (membrane readout, trained from scratch), {GENERATOR}. Queries the warm "
             "campaign needs to reach the cold campaign's final value, per (unit, seed); median over units and "
             f"seeds (goal: <= {budget // 2}).", ""]
    if not pairs:
        return "\n".join(lines + ["(no finished warm/cold pair yet)"]) + "\n"
    lines += ["| checkpoint | seeds | median queries to cold's final [25%, 75%] | reached | reached by the warm "
              "points alone | warm final >= cold final | median warm - cold final |", "|---|---|---|---|---|---|---|"]
    allq = []
    for c in sorted({c for _, c in pairs}):
        qs, alone, ge, diff = [], [], [], []
        seeds = [s for s, cc in pairs if cc == c]
        for s in seeds:
            w, k = recs[("warm", s, c)], recs[("cold", s, c)]
            for imp, wb, kb in zip(w["improvements"], w["best"], k["best"]):
                q = _queries_to(imp, kb)
                qs.append(q)
                alone.append(q <= w["warm_points"])
                ge.append(wb >= kb)
                diff.append(wb - kb)
        qs = np.array(qs, dtype=float)
        allq += qs.tolist()
        lo, med, hi = np.percentile(qs, [25, 50, 75], method="lower")  # inf (not reached) sorts above every count
        label = recs[("warm", seeds[0], c)]["label"]
        lines.append(f"| {label} | {len(seeds)} | {_fmt_q(med, budget)} [{_fmt_q(lo, budget)}, {_fmt_q(hi, budget)}] "
                     f"| {np.isfinite(qs).mean():.0%} | {np.mean(alone):.0%} | {np.mean(ge):.0%} | "
                     f"{np.median(diff):+.3g} |")
    allq = np.array(allq)
    med = np.percentile(allq, 50, method="lower")
    lines += ["", f"All checkpoints after the first: median {_fmt_q(med, budget)} queries "
                  f"({'meets' if med <= budget / 2 else 'misses'} the goal of <= {budget // 2}); "
                  f"{np.isfinite(allq).mean():.0%} of (unit, seed, checkpoint) reached."]
    walls = [r["wall_s"] for r in recs.values()]
    lines += [f"One campaign (10 units, {budget} queries): median {np.median(walls):.1f} s wall time.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs (epochs + 1 checkpoints; default 5)")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--optimizer", default="cma")
    ap.add_argument("--jobs", type=int, default=1, help="tracks run in this many processes")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "track"))
    ap.add_argument("--work", default=None, help="run stores (default: OUT/stores)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.work = args.work or os.path.join(args.out, "stores")
    os.makedirs(args.out, exist_ok=True)
    if args.report:
        text = report(args.out, args.optimizer, args.budget)
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text)
        print(text)
        return
    files = checkpoints(args)
    if len(files) < 2:
        raise SystemExit(f"need at least 2 checkpoints, have {len(files)}; train with --epochs >= 1.")
    a = {"optimizer": args.optimizer, "budget": args.budget, "out": args.out, "work": args.work}
    todo = [(a, files, arm, s) for s in range(args.seeds) for arm in ARMS]
    run_tasks(run_track, todo, args.jobs)
    figure(args, files)
    print(report(args.out, args.optimizer, args.budget))


if __name__ == "__main__":
    main()
