"""The main job on a busy machine: mango's thread policy against torch's default threads (issue 32, item 2).

Runs a short main-job-like campaign (``mango maximize --budget 200 --reference none --quiet``: the zoo SNN's
output neuron 3 over the VQ-VAE's embedding, ``surrogate``) on a quiet machine and with ``--load`` competing
CPU-bound processes (``while True: pass``), each with mango's policy (no ``--threads``) and with torch's
default thread count (``--threads D``, D = ``torch.get_num_threads()`` of a fresh process), the conditions
interleaved ``--reps`` times.  Every run gets an environment without ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``MANGO_THREADS``.  Reports each run's wall time (the process, start to exit) and the run's own time
(``result.json`` ``timing.wall_s``), the slowdown under load of each setting, and the best values: runs on the
same thread count must give the same value whatever the load (float sums are ordered by the thread count, not
by the load).  Writes ``benchmarks/results/threads_load.json`` and ``.md``.

    python benchmarks/threads_load.py [--budget 200] [--load 2] [--reps 1] [--wait-for /tmp/lab_done]
        [--reference none|auto] [--only policy] [--out PATH]

The README's main job exactly (``mango maximize``, 1,000 queries, the reference of the zoo's images, computed
once and cached before the timed runs) with mango's policy only::

    python benchmarks/threads_load.py --budget 1000 --reference auto --only policy --out benchmarks/results/main_job_load
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _load import start_load, stop_processes  # noqa: E402
ROOT = os.path.dirname(HERE)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MANGO_THREADS")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def torch_default_threads() -> int:
    """torch's intra-op thread count in a fresh process without the thread variables."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=_env(),
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def run_job(budget: int, threads: int | None, timeout: float, reference: str = "none") -> dict:
    """One ``mango maximize`` run; its wall time, its own time, best value and the thread choice it recorded."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "mango.cli", "maximize", "--budget", str(budget), "--reference", reference,
               "--quiet", "--out", out] + ([] if threads is None else ["--threads", str(threads)])
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
        with open(os.path.join(out, "result.json")) as f:
            rec = json.load(f)
    return {"process_s": round(wall, 2), "run_s": rec["timing"]["wall_s"], "best_value": rec["best"]["value"],
            "threads": rec["provenance"]["threads"]["chosen"], "load_1min_before": round(load_before, 2)}


def _median(rows, key):
    return float(np.median([r[key] for r in rows])) if rows else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--load", type=int, default=2, help="competing CPU-bound processes (default 2)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it is abandoned")
    ap.add_argument("--wait-for", metavar="FILE", help="start only once FILE exists (another job is done)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "threads_load"))
    ap.add_argument("--reference", default="none", help="--reference of the runs (auto: the README's main job; its "
                    "reference is computed and cached by an untimed run first)")
    ap.add_argument("--only", choices=["policy"], help="time mango's policy only, not torch's default")
    args = ap.parse_args(argv)
    if args.wait_for:
        while not os.path.exists(args.wait_for):
            time.sleep(10)
    from mango.runs.provenance import provenance
    from mango.runs.threads import policy

    default = torch_default_threads()
    settings = {"policy": None} if args.only == "policy" else {"policy": None, "torch default": default}
    if args.reference != "none":  # compute and cache the reference before anything is timed
        run_job(10, None, args.timeout, args.reference)
    load_before = os.getloadavg()
    runs = []
    for rep in range(args.reps):
        for load in (0, args.load):
            procs = start_load(load)
            try:
                for name, threads in settings.items():
                    r = run_job(args.budget, threads, args.timeout, args.reference)
                    r.update(setting=name, load=load, rep=rep)
                    runs.append(r)
                    print(f"load {load}, {name:13s} (threads={r['threads']['count']}): {r['process_s']:7.1f} s "
                          f"(run {r['run_s']:.1f} s), best {r['best_value']:.6g}", flush=True)
            finally:
                stop_processes(procs)
    summary = []
    for name in settings:
        quiet = [r for r in runs if r["setting"] == name and r["load"] == 0]
        busy = [r for r in runs if r["setting"] == name and r["load"] == args.load]
        summary.append({"setting": name, "threads": quiet[0]["threads"]["count"],
                        "quiet_s": _median(quiet, "process_s"), "loaded_s": _median(busy, "process_s"),
                        "quiet_run_s": _median(quiet, "run_s"), "loaded_run_s": _median(busy, "run_s"),
                        "same_value_under_load": len({r["best_value"] for r in quiet + busy}) == 1})
    for s in summary:
        s["slowdown"] = s["loaded_s"] / s["quiet_s"]
        s["run_slowdown"] = s["loaded_run_s"] / s["quiet_run_s"]
    rec = {"benchmark": "threads_load", "budget": args.budget, "load_processes": args.load, "reps": args.reps,
           "command": f"mango maximize --budget {args.budget} --reference {args.reference} --quiet"
                      + ("" if args.only else f" [--threads {default}]"),
           "cores": len(os.sched_getaffinity(0)), "policy": policy().to_dict(), "torch_default_threads": default,
           "load_average_before": [round(x, 2) for x in load_before], "runs": runs, "summary": summary,
           "provenance": provenance()}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    lines = ["# The main job under load: mango's thread policy against torch's default threads", "",
             f"`{rec['command']}`, {args.budget} queries, on {rec['cores']} cores (load average before "
             f"{load_before[0]:.2f}); loaded: {args.load} competing CPU-bound processes; median of {args.reps} "
             f"rep(s), interleaved. Quiet: none of this script's load processes; other jobs on the machine are not "
             f"stopped (see the load average before each run). Policy: {rec['policy']['count']} thread(s) "
             f"({rec['policy']['why']}); torch's default: {default}. Times: the process, start to exit (the run's "
             f"own time in brackets).", "",
             "| threads | count | quiet (s) | loaded (s) | slowdown | same best value quiet and loaded |",
             "|---|---:|---:|---:|---:|---|"]
    for s in summary:
        lines.append(f"| {s['setting']} | {s['threads']} | {s['quiet_s']:.1f} ({s['quiet_run_s']:.1f}) | "
                     f"{s['loaded_s']:.1f} ({s['loaded_run_s']:.1f}) | {s['slowdown']:.2f}x "
                     f"({s['run_slowdown']:.2f}x) | {'yes' if s['same_value_under_load'] else 'no'} |")
    from mango.runs.provenance import describe

    lines += ["", "Runs in order (the load average is the machine's, 1 min, before each run: it shows other jobs "
              "sharing the machine):", ""]
    lines += [f"- rep {r['rep']}, load {r['load']}, {r['setting']}: {r['process_s']:.1f} s (run {r['run_s']:.1f} s), "
              f"best {r['best_value']:.6g}, load average before {r['load_1min_before']:.2f}" for r in runs]
    lines += ["", f"Provenance: {describe(rec['provenance'])}.", ""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
