"""Population campaigns against independent single-unit campaigns, on the zoo SNN.

Two groups of units of ``snn-digits`` over the VQ-VAE embedding generator (``--generator`` for another):

* ``output``: the 10 output neurons, membrane readout (as the main job);
* ``hidden``: 16 channels of the second spiking layer ``lif2`` (channels 0-15, rate readout).

A unit's normalized activation is its best value divided by its maximum over
the zoo's training images.  For each seed, three arms:

* ``pop``: one population campaign (``maximize(..., unit="all")``) of ``--budget``
  queries in total;
* ``single``: one single-unit campaign of ``--budget`` queries per unit (K times
  the queries);
* ``split``: one single-unit campaign of ``--budget / K`` queries per unit (the
  population's total budget, split evenly).

Every run is written as one JSON file under ``--out`` (reruns skip what is
there, raw or packed), so the benchmark can be stopped and continued, and run
in ``--jobs`` processes.  ``--report`` prints the table (median per-unit
normalized activation per arm -- per seed, then the mean over seeds with a 95%
bootstrap CI --, ratios, per-unit paired win/tie/loss) and writes
``summary-<group>.md``.  The run files are not kept in git: ``--pack`` adds
them to the directory's ``runs.jsonl.gz`` (the curves as steps, the best points
the reports read; see ``_runs.py``), which the reports read as well.

    python benchmarks/population.py --group output --seeds 5 --optimizer surrogate --jobs 2
    python benchmarks/population.py --group output --report
    python benchmarks/population.py --pack
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import numpy as np

import _runs
from _tasks import run_tasks

GROUPS = {
    "output": {"layer": "output", "units": list(range(10)), "readout": "membrane"},
    "hidden": {"layer": "lif2", "units": list(range(16)), "readout": None},
}
GENERATOR = "zoo:vqvae-digits:embedding"


@functools.lru_cache(maxsize=4)
def setup(group: str, generator: str = GENERATOR):
    """``(oracle of the group's units, generator, reference maxima [K])``."""
    import torch

    from mango.zoo.build import build_generator, build_model, build_unit_oracle
    from mango.zoo.data import load_digits

    torch.set_num_threads(1)
    g = GROUPS[group]
    model = build_model("zoo:snn-digits")
    oracle = build_unit_oracle(model, g["layer"], list(g["units"]), readout=g["readout"])
    gen = build_generator(generator)
    x = load_digits().x_train
    ref = np.concatenate([oracle(x[i:i + 500]) for i in range(0, len(x), 500)]).max(axis=0)
    if not (ref > 0).all():
        raise SystemExit(f"units {np.flatnonzero(ref <= 0).tolist()} of {group} never respond to the training "
                         "images; pick other units.")
    return oracle, gen, ref


def run_name(task: tuple) -> str:
    """The file name of a task's run: ``<group>-<arm>-<optimizer>-s<seed>[-u<unit>].json``."""
    _, group, arm, opt, seed, unit, _, _ = task
    return f"{group}-{arm}-{opt}-s{seed}" + ("" if unit is None else f"-u{unit}") + ".json"


def run_one(task: tuple) -> str:
    """Run one campaign (``(out, group, arm, optimizer, seed, unit, budget, generator)``) and write its JSON;
    skip if its file is there."""
    out, group, arm, opt, seed, unit, budget, generator = task
    path = os.path.join(out, run_name(task))
    if os.path.exists(path):
        return path
    import mango
    from mango.bench.runner import parse_optimizers
    from mango.runs.provenance import provenance

    spec, = parse_optimizers(opt)  # "surrogate[allocation=interleave]": parameters in brackets
    oracle, gen, ref = setup(group, generator)
    t0 = time.perf_counter()
    res = mango.maximize(oracle, generator=gen, unit="all" if unit is None else unit, optimizer=spec.name,
                         budget=budget, seed=seed, progress=False, **spec.kw)
    wall = time.perf_counter() - t0
    if unit is None:
        best = [u.best_value for u in res.units()]
        curves = [(u.curve / r).tolist() for u, r in zip(res.units(), ref)]
        stim = {u.name: None if u.best_point is None else np.asarray(u.best_point).tolist() for u in res.units()}
    else:
        best = [res.best_value]
        curves = [(res.best_so_far() / ref[unit]).tolist()]
        stim = {str(unit): np.asarray(res.best_point).tolist()}
    rec = {"group": group, "generator": generator, "arm": arm, "optimizer": opt, "seed": seed, "unit": unit,
           "budget": budget,
           "best": best, "normalized": (np.asarray(best) / (ref if unit is None else ref[unit])).tolist(),
           "curves": curves, "best_points": stim, "wall_s": wall, "optimizer_s": res.optimizer_s,
           "provenance": provenance()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, path)
    return path


def tasks(args) -> list[tuple]:
    units = GROUPS[args.group]["units"]
    k = len(units)
    out = []
    for s in range(args.seeds):
        for opt in args.optimizer:
            if "pop" in args.arms:
                out.append((args.out, args.group, "pop", opt, s, None, args.budget, args.generator))
            for j in range(k):
                if "split" in args.arms:
                    out.append((args.out, args.group, "split", opt, s, j, args.budget // k, args.generator))
                if "single" in args.arms:
                    out.append((args.out, args.group, "single", opt, s, j, args.budget, args.generator))
    return out


def records(out: str, prefix: str):
    """The run records under ``out`` -- run files and the runs packed in ``runs.jsonl.gz`` -- whose file names
    start with ``prefix``, in name order."""
    yield from _runs.records(out, prefix)


def load(out: str, group: str) -> dict:
    """``(arm, optimizer) -> {seed: per-unit normalized [K]}`` (complete seeds only)."""
    k = len(GROUPS[group]["units"])
    acc: dict = {}
    for r in records(out, group + "-"):
        d = acc.setdefault((r["arm"], r["optimizer"]), {}).setdefault(r["seed"], {})
        if r["unit"] is None:
            d.update(enumerate(r["normalized"]))
        else:
            d[r["unit"]] = r["normalized"][0]
    return {key: {s: np.array([v[j] for j in range(k)]) for s, v in seeds.items() if len(v) == k}
            for key, seeds in acc.items()}


def single_curves(out: str, group: str) -> dict:
    """``(optimizer, seed) -> median over units of the single-unit campaigns' normalized best-so-far, per query``
    (complete seeds only)."""
    k = len(GROUPS[group]["units"])
    acc: dict = {}
    for r in records(out, group + "-single-"):
        acc.setdefault((r["optimizer"], r["seed"]), {})[r["unit"]] = np.asarray(r["curves"][0], dtype=float)
    out_: dict = {}
    for key, curves in acc.items():
        if len(curves) == k:
            n = min(len(c) for c in curves.values())
            out_[key] = np.median(np.stack([curves[j][:n] for j in range(k)]), axis=0)
    return out_


def equivalent_queries(value: float, curve: np.ndarray) -> int | None:
    """The first query count at which a single-unit median curve reaches ``value`` (``None``: not within it)."""
    hit = np.flatnonzero(curve >= value)
    return int(hit[0]) + 1 if hit.size else None


def cnn_agreement(out: str, group: str, generator: str = GENERATOR) -> dict:
    """``(arm, optimizer) -> [per seed: how many of the 10 output neurons' best stimuli the zoo CNN classifies
    as the neuron's digit]`` (output group, population runs)."""
    import torch

    from mango.zoo.build import build_generator, build_model

    cnn = build_model("zoo:cnn-digits")
    gen = build_generator(generator)
    acc: dict = {}
    for r in records(out, group + "-pop-"):
        pts = np.array(list(r["best_points"].values()))  # in target order: unit j is output neuron j
        units = np.arange(len(pts))
        with torch.no_grad():
            pred = cnn(gen(pts)).argmax(1).cpu().numpy()
        acc.setdefault((r["arm"], r["optimizer"]), []).append(int((pred == units).sum()))
    return acc


def report(out: str, group: str, generator: str = GENERATOR) -> str:
    data = load(out, group)
    rng = np.random.default_rng(0)
    lines = [f"### {group}: {len(GROUPS[group]['units'])} units of snn-digits:{GROUPS[group]['layer']} over "
             f"{generator}", "",
             "Median over units of the normalized activation, per seed; mean over seeds [95% bootstrap CI]:", "",
             "| arm | optimizer | seeds | total queries | median per-unit normalized [CI] |", "|---|---|---|---|---|"]
    med = {}
    for (arm, opt), seeds in sorted(data.items()):
        m = np.array([np.median(v) for _, v in sorted(seeds.items())])
        boot = [rng.choice(m, len(m)).mean() for _ in range(2000)]
        med[(arm, opt)] = (m, seeds)
        lines.append(f"| {arm} | {opt} | {len(m)} | | {m.mean():.3f} [{np.percentile(boot, 2.5):.3f}, "
                     f"{np.percentile(boot, 97.5):.3f}] |")
    lines.append("")
    for (arm, opt), (m, seeds) in sorted(med.items()):
        if arm != "pop":
            continue
        for other in ("single", "split"):
            for (a2, o2), (m2, s2) in sorted(med.items()):
                if a2 != other:
                    continue
                common = sorted(set(seeds) & set(s2))
                if not common:
                    continue
                mine = np.array([np.median(seeds[s]) for s in common])
                theirs = np.array([np.median(s2[s]) for s in common])
                a = np.concatenate([seeds[s] for s in common])
                b = np.concatenate([s2[s] for s in common])
                w = int((a > b * 1.01).sum())
                loss = int((a < b * 0.99).sum())
                lines.append(f"pop/{opt} vs {other}/{o2} on seeds {common}: ratio of medians "
                             f"{mine.mean() / theirs.mean():.3f}; per (unit, seed) W/T/L "
                             f"{w}/{len(a) - w - loss}/{loss}")
    curves = single_curves(out, group)
    k = len(GROUPS[group]["units"])
    for (arm, opt), (m, seeds) in sorted(med.items()):
        if arm != "pop":
            continue
        for o2 in sorted({o for o, _ in curves}):
            common = sorted(s for s in seeds if (o2, s) in curves)
            if not common:
                continue
            eq = [equivalent_queries(float(np.median(seeds[s])), curves[(o2, s)]) for s in common]
            shown = ", ".join(f">{len(curves[(o2, s)])}" if q is None else str(q) for q, s in zip(eq, common))
            lines.append(f"pop/{opt} equals {k} single-unit {o2} campaigns of {shown} queries each (seeds {common}; "
                         f"the first query at which their median reaches the population's)")
    if group == "output":
        lines.append("")
        for (arm, opt), counts in sorted(cnn_agreement(out, group, generator).items()):
            lines.append(f"{arm}/{opt}: the zoo CNN classifies {counts} of the 10 output neurons' best stimuli as "
                         "their digit (per seed)")
    from mango.cli.bench import provenance_lines

    lines += ["", "### Provenance", ""] + provenance_lines(list(records(out, group + "-")))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", choices=sorted(GROUPS), default="output")
    ap.add_argument("--optimizer", nargs="+", default=["surrogate"])
    ap.add_argument("--arms", nargs="+", default=["pop", "split", "single"], choices=["pop", "split", "single"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--generator", default=GENERATOR,
                    help=f"the generator every arm searches (default {GENERATOR}); keep one --out per generator")
    ap.add_argument("--out", default=None,
                    help="result directory (default results/population, or results/population/<generator> for "
                         "another generator)")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--pack", action="store_true",
                    help="add the run files under --out to its runs.jsonl.gz (what git keeps) and exit")
    args = ap.parse_args()
    if args.out is None:
        sub = [] if args.generator == GENERATOR else [args.generator.replace("zoo:", "").replace(":", "-")]
        args.out = os.path.join(os.path.dirname(__file__), "results", "population", *sub)
    os.makedirs(args.out, exist_ok=True)
    if args.pack:
        path, n = _runs.write_pack(args.out)
        print(f"wrote {path} ({n} runs)")
        return
    if args.report:
        text = report(args.out, args.group, args.generator)
        print(text)
        with open(os.path.join(args.out, f"summary-{args.group}.md"), "w") as f:
            f.write(text)
        return
    run_tasks(run_one, [t for t in tasks(args) if not _runs.exists(args.out, run_name(t))], args.jobs)


if __name__ == "__main__":
    main()
