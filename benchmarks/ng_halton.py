"""Ask/tell time of nevergrad's scrambled Halton/Hammersley searches: plain nevergrad against mango's ``ng:`` wrapper.

nevergrad's scrambled samplers redraw one random permutation per dimension
(of sizes up to the ``d``-th prime) on every sample; mango's wrapper keeps
them (``mango/optimizers/nevergrad_opt.py``, bit-identical samples).  Three
modes, each timed in a fresh process:

* ``nevergrad``: the method built and asked with nevergrad alone (mango's
  wrapper never used in the process);
* ``mango``: the same method through ``mango.optimizers.make("ng:<name>")``;
* ``nevergrad_after_mango``: a mango ``ng:`` optimizer is built and asked
  first, then the plain nevergrad run is timed in the same process.  It must
  be as slow as ``nevergrad``: mango's speed-up may not reach nevergrad users
  outside mango's wrapper.

Spaces: a 784-d Box (an MNIST image) and a 7x7 Codebook of 128 codes (a
VQ-VAE grid: 6,272 softmax weights in nevergrad).  Each ask+tell pair is
timed: the first (which builds the sampler and, in mango's wrapper, draws the
kept permutations) and the mean of the later ones are reported.  The machine is
shared: the numbers are medians over ``--rounds`` processes.

Run:  python benchmarks/ng_halton.py [--rounds 3] [--quick]
Writes benchmarks/results/ng_halton.{json,md}.
(``ng_halton-before.*``: the same run of commit 7794ba1, which patched nevergrad process-wide.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 1000
MODES = ("nevergrad", "mango", "nevergrad_after_mango")
CASES = {  # label: (space, method, asks)
    "box784 ScrHammersleySearch": ("box784", "ScrHammersleySearch", 20),
    "box784 ScrHaltonSearch": ("box784", "ScrHaltonSearch", 20),
    "box784 Portfolio": ("box784", "Portfolio", 24),
    "codebook7x7x128 ScrHammersleySearch": ("codebook", "ScrHammersleySearch", 4),
}


def _space(kind: str):
    from mango.spaces import Box, Codebook

    return Box(784, 0.0, 1.0) if kind == "box784" else Codebook((7, 7), 128)


def _value(x) -> float:
    return float(np.sum(np.asarray(x, float) ** 2) % 7.0)


def run_nevergrad(kind: str, method: str, asks: int) -> list[float]:
    """nevergrad alone, built as mango's wrapper builds it (bounded Array / deterministic Choice)."""
    import nevergrad as ng

    if kind == "box784":
        param = ng.p.Array(shape=(784,), lower=0.0, upper=1.0)
    else:
        param = ng.p.Choice(list(range(128)), repetitions=49, deterministic=True)
    param.random_state = np.random.RandomState(0)
    opt = ng.optimizers.registry[method](parametrization=param, budget=BUDGET, num_workers=1)
    out = []
    for _ in range(asks):
        t0 = time.perf_counter()
        cand = opt.ask()
        opt.tell(cand, _value(cand.value))
        out.append(time.perf_counter() - t0)
    return out


def run_mango(kind: str, method: str, asks: int) -> list[float]:
    from mango.optimizers import make

    opt = make(f"ng:{method}", _space(kind), seed=0, budget=BUDGET)
    out = []
    for _ in range(asks):
        t0 = time.perf_counter()
        x = opt.ask(1)
        opt.tell(x, np.array([_value(x)]))
        out.append(time.perf_counter() - t0)
    return out


def one(label: str, mode: str) -> dict:
    kind, method, asks = CASES[label]
    if mode == "nevergrad":
        t = run_nevergrad(kind, method, asks)
    elif mode == "mango":
        t = run_mango(kind, method, asks)
    else:
        run_mango(kind, method, 2)
        t = run_nevergrad(kind, method, asks)
    return {"first_s": t[0], "rest_s": float(np.mean(t[1:])), "seconds": float(np.sum(t))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="fresh-process repetitions (median reported)")
    ap.add_argument("--quick", action="store_true", help="one round, the Box cases only (smoke run)")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. -before)")
    ap.add_argument("--one", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)  # internal
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(*a.one)))
        return
    rounds = 1 if a.quick else max(1, a.rounds)
    labels = [k for k in CASES if not (a.quick and k.startswith("codebook"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for label in labels:
        row = {"case": label, "asks": CASES[label][2]}
        for mode in MODES:
            runs = []
            for _ in range(rounds):
                out = subprocess.run([sys.executable, __file__, "--one", label, mode], check=True,
                                     capture_output=True, text=True, env=env).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            row[mode] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            row[mode]["rounds"] = runs
            later = ", ".join(f"{1e3 * r['rest_s']:.1f}" for r in runs)
            print(f"{label:38s} {mode:22s} first ask {1e3 * row[mode]['first_s']:8.1f} ms, later asks "
                  f"{1e3 * row[mode]['rest_s']:8.1f} ms (rounds: {later})", flush=True)
        rows.append(row)

    import nevergrad

    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "nevergrad": nevergrad.__version__, "budget": BUDGET, "rounds": rounds,
            "load_avg_at_end": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ng_halton{a.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# nevergrad scrambled Halton/Hammersley: ask/tell time, plain nevergrad vs mango's wrapper", "",
             f"nevergrad {meta['nevergrad']}, budget {BUDGET}; {meta['machine']}, {meta['cpus']} CPUs (shared), "
             f"load avg at end {tuple(round(x, 2) for x in meta['load_avg_at_end'])}; ms per ask+tell: the first "
             f"(which builds the sampler) and the mean of the later ones, median of {rounds} fresh processes.  "
             "`nevergrad_after_mango`: plain nevergrad timed after a mango `ng:` optimizer ran in the same process "
             "(must match `nevergrad`).", "",
             "| case | asks | " + " | ".join(f"{m} first / later" for m in MODES) + " | later: nevergrad / mango |",
             "|---|---|" + "---|" * len(MODES) + "---|"]
    for row in rows:
        cells = [f"{1e3 * row[m]['first_s']:.0f} / {1e3 * row[m]['rest_s']:.1f}" for m in MODES]
        ratio = row["nevergrad"]["rest_s"] / row["mango"]["rest_s"]
        lines.append(f"| {row['case']} | {row['asks']} | " + " | ".join(cells) + f" | {ratio:.1f}x |")
    (RESULTS / f"ng_halton{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
