"""Cost of recording a run in a RunStore, and of resuming it; and whether watching it live slows it down.

Runs the same campaign (random search / cma on a 10-d sphere, batches of 10) without a store and
with stores of different durability and stimulus settings, side by side, and measures the
resume time of a finished and of a half-finished run.  Writes
``benchmarks/results/store_overhead.json`` and ``.md``.

Then the writer with a live dashboard: a ``mango watch`` server process over the store being
written and a client process polling it every 0.5 s like the page does (``/api/state`` with the
rows it already has, and the best stimulus image), against the same writer with no dashboard,
repetitions interleaved.  Writes ``benchmarks/results/store_overhead_watch.json`` and ``.md``.

    python benchmarks/store_overhead.py [--budget 3000] [--watch-only] [--watch-budget 10000 --watch-reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import mango
from mango.spaces import Box
from mango.runs.store import RunStore

HERE = os.path.dirname(os.path.abspath(__file__))


class ImageObjective:
    """Sphere value plus a 1x28x28 stimulus per point (what a generator would produce)."""

    unit_names = ["u"]

    def __init__(self, dim):
        self.dim = dim

    def evaluate(self, points):
        x = np.asarray(points, dtype=float)
        v = -np.sum((x - 0.3) ** 2, axis=1)
        img = torch.sigmoid(torch.as_tensor(x[:, :1, None, None] * np.ones((1, 1, 28, 28))).float())
        return v, {"responses": v[:, None], "stimuli": img}


def sphere(x):
    return -np.sum((np.asarray(x) - 0.3) ** 2, axis=1)


def timed(fn, repeats=3):
    best = np.inf
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# the dashboard's client: polls like the page (the rows it has, then the best stimulus) every INTERVAL s
_POLLER = r"""
import json, signal, sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
polls, seen, images, t_read = 0, 0, 0, []
gens, ns = {}, {}
def stop(*_):
    print(json.dumps({"polls": polls, "max_n_queries": seen, "images": images,
                      "mean_poll_ms": 1000 * sum(t_read) / max(1, len(t_read))}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
first = True
while True:
    t = time.perf_counter()
    q = "g=%d&n=%d" % (gens.get(0, -1), ns.get(0, 0))
    doc = json.load(urllib.request.urlopen(url + "api/state?" + q, timeout=10))
    polls += 1
    for r in doc["runs"]:
        if "label" in r:
            if r["generation"] != gens.get(0):
                gens[0], ns[0] = r["generation"], 0
            ns[0] = (0 if r["since"] == 0 else ns[0]) + len(r["q"])
            seen = max(seen, r["n_queries"])
            if r["best_query"] is not None:
                urllib.request.urlopen(url + "stimulus/0/%d/%d.png" % (r["generation"], r["best_query"]),
                                       timeout=10).read()
                images += 1
    t_read.append(time.perf_counter() - t)
    if first:
        print("READY", flush=True)
        first = False
    time.sleep(max(0.0, interval - (time.perf_counter() - t)))
"""


class BatchTimer(mango.Callback):
    """Wall time between consecutive batches (the writer's per-batch time: ask, evaluate, write, commit)."""

    def __init__(self):
        self.stamps = []

    def on_batch(self, run, batch):
        self.stamps.append(time.perf_counter())

    def per_batch(self) -> np.ndarray:
        return np.diff(self.stamps)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_overhead(d: str, budget: int, bs: int, reps: int, interval: float = 0.5) -> dict:
    """The writer's per-batch time with and without a live dashboard polling its store every ``interval`` s."""
    env = dict(os.environ)
    obj = ImageObjective(10)
    space = Box(10)

    def write(path):
        timer = BatchTimer()
        t = time.perf_counter()
        res = mango.maximize(obj, space, optimizer="random", budget=budget, batch_size=bs, seed=0, progress=False,
                             store=RunStore(path, stimuli="all"), callbacks=[timer])
        secs = time.perf_counter() - t
        assert res.n_queries == budget
        return secs, timer.per_batch()

    write(os.path.join(d, "warm.sqlite"))
    runs = {"without": [], "with": []}
    polls = []
    for rep in range(reps):
        for case in ("without", "with") if rep % 2 == 0 else ("with", "without"):
            path = os.path.join(d, f"w{rep}{case}.sqlite")
            server = poller = None
            if case == "with":
                server = subprocess.Popen([sys.executable, "-m", "mango.cli", "watch", path, "--port", "0"],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                url = server.stdout.readline().split(" at ")[1].split()[0]
                poller = subprocess.Popen([sys.executable, "-c", _POLLER, url, str(interval)], stdout=subprocess.PIPE,
                                          text=True, env=env)
                assert poller.stdout.readline().strip() == "READY"
            try:
                cpu0 = [_cpu_s(p.pid) for p in (server, poller)] if server is not None else None
                secs, per = write(path)
                if cpu0 is not None:
                    cpu = [_cpu_s(p.pid) - c for p, c in zip((server, poller), cpu0)]
            finally:
                if poller is not None:
                    time.sleep(2 * interval + 0.5)  # more polls: the dashboard sees the end of the run
                    poller.send_signal(signal.SIGTERM)
                    stats = json.loads(poller.communicate(timeout=30)[0].strip().splitlines()[-1])
                    stats["server_cpu_s_per_s"], stats["client_cpu_s_per_s"] = cpu[0] / secs, cpu[1] / secs
                    polls.append(stats)
                    server.terminate()
                    server.communicate(timeout=30)
            runs[case].append({"seconds": secs, "batches": len(per) + 1, "mean_ms": 1000 * float(per.mean()),
                               "median_ms": 1000 * float(np.median(per)), "p90_ms": 1000 * float(np.percentile(per, 90))})
            print(f"  rep {rep} {case:8s} dashboard: {secs:6.2f} s, per batch mean {runs[case][-1]['mean_ms']:.3f} ms, "
                  f"median {runs[case][-1]['median_ms']:.3f} ms" + (f", {polls[-1]['polls']} polls saw "
                                                                    f"{polls[-1]['max_n_queries']} queries"
                                                                    if case == "with" else ""))
    out = {"budget": budget, "batch_size": bs, "interval_s": interval, "reps": reps, "runs": runs, "polls": polls}
    for k in ("mean_ms", "median_ms"):
        a = np.median([r[k] for r in runs["without"]])
        b = np.median([r[k] for r in runs["with"]])
        out[f"without_{k}"], out[f"with_{k}"], out[f"ratio_{k}"] = float(a), float(b), float(b / a)
        # each repetition's pair (run back to back): the median of the with/without ratios
        out[f"paired_ratio_{k}"] = float(np.median([w[k] / o[k] for w, o in zip(runs["with"], runs["without"])]))
    out["server_cpu_s_per_s"] = float(np.mean([p["server_cpu_s_per_s"] for p in polls]))
    out["client_cpu_s_per_s"] = float(np.mean([p["client_cpu_s_per_s"] for p in polls]))
    return out


def write_watch_results(res: dict) -> None:
    res = {**res, "machine": platform.platform(), "python": platform.python_version(),
           "sqlite": __import__("sqlite3").sqlite_version}
    with open(os.path.join(HERE, "results", "store_overhead_watch.json"), "w") as f:
        json.dump(res, f, indent=2)
    B, bs, reps = res["budget"], res["batch_size"], res["reps"]
    lines = ["# RunStore writer with a live dashboard (`mango watch`)", "",
             f"`python benchmarks/store_overhead.py --watch-only --watch-budget {B} --watch-reps {reps}`: random "
             f"search, 10-d, batches of {bs}, 28x28 stimuli stored (stimuli='all', synchronous=FULL), {B} queries "
             f"per run; with the dashboard: a `mango watch` server process over the store being written and a client "
             f"process polling it every {res['interval_s']} s like the page (the rows it lacks, then the best "
             f"stimulus PNG); {reps} repetitions of each, interleaved; {res['machine']}, SQLite {res['sqlite']}.", "",
             "| dashboard | per-batch time, mean (ms) | per-batch time, median (ms) | runs |", "|---|---|---|---|"]
    for case in ("without", "with"):
        lines.append(f"| {case} | {res[case + '_mean_ms']:.3f} | {res[case + '_median_ms']:.3f} | "
                     + ", ".join(f"{r['seconds']:.2f} s" for r in res["runs"][case]) + " |")
    lines += ["", f"With the dashboard / without (median over repetitions): mean per-batch time "
              f"x{res['ratio_mean_ms']:.3f}, median per-batch time x{res['ratio_median_ms']:.3f}; median of the "
              f"back-to-back pairs' ratios: x{res['paired_ratio_mean_ms']:.3f} (mean), "
              f"x{res['paired_ratio_median_ms']:.3f} (median). The issue's bound: within 10 %, x0.90 to x1.10.", "",
              f"CPU used while the writer ran: the `mango watch` server {100 * res['server_cpu_s_per_s']:.1f} % of "
              f"one core, the polling client {100 * res['client_cpu_s_per_s']:.1f} %. The store is opened "
              "read-only (SQLite mode=ro): the dashboard takes no lock, so what it can cost the writer is CPU "
              "time on a shared machine, not waiting.", "",
              "Polls during the runs (each saw the run's end): " + ", ".join(
                  f"{p['polls']} polls / {p['max_n_queries']} queries (mean {p['mean_poll_ms']:.1f} ms a poll)"
                  for p in res["polls"]) + ".", ""]
    with open(os.path.join(HERE, "results", "store_overhead_watch.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--watch-budget", type=int, default=10000, help="queries per run with/without the dashboard")
    ap.add_argument("--watch-reps", type=int, default=5)
    ap.add_argument("--watch-only", action="store_true", help="only the writer with/without a live dashboard")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    d = tempfile.mkdtemp()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    if args.watch_only:
        write_watch_results(watch_overhead(d, args.watch_budget, args.batch, args.watch_reps))
        return 0
    space = Box(10)
    B, bs = args.budget, args.batch
    rows = []

    def campaign(objective, store=None, opt="random", **store_kw):
        path = None
        if store is not None:
            path = os.path.join(d, f"r{time.perf_counter_ns()}.sqlite")
            store = RunStore(path, **store_kw)
        res = mango.maximize(objective, space, optimizer=opt, budget=B, batch_size=bs, seed=0, progress=False,
                             store=store)
        if store is not None:
            store.close()
        return res, path

    cases = [
        ("no store", sphere, None, {}),
        ("store, synchronous=FULL", sphere, True, {}),
        ("store, synchronous=NORMAL", sphere, True, {"synchronous": "NORMAL"}),
        ("no store, 28x28 stimuli", ImageObjective(10), None, {}),
        ("store FULL, 28x28 stimuli='all'", ImageObjective(10), True, {"stimuli": "all"}),
        ("store FULL, 28x28 stimuli='best'", ImageObjective(10), True, {"stimuli": "best"}),
    ]
    base = {}
    campaign(sphere), campaign(ImageObjective(10))  # warm-up (imports, caches)
    for name, obj, store, kw in cases:
        secs, (res, path) = timed(lambda: campaign(obj, store, **kw))
        assert res.n_queries == B
        size = os.path.getsize(path) if path else 0
        key = "img" if "stimuli" in name else "plain"
        if store is None:
            base[key] = secs
        rows.append({"case": name, "seconds": secs, "queries_per_s": B / secs,
                     "overhead_ms_per_batch": 1000 * (secs - base[key]) / (B / bs) if store else 0.0,
                     "slowdown": secs / base[key], "file_bytes_per_query": size / B})
        print(f"{name:36s} {secs:7.3f} s  {B / secs:9.0f} q/s  x{secs / base[key]:.2f}"
              + (f"  +{rows[-1]['overhead_ms_per_batch']:.2f} ms/batch  {size / B:.0f} B/query" if store else ""))

    # resume: a finished cma run (replays the history) and a half-finished one
    path = os.path.join(d, "cma.sqlite")
    t = time.perf_counter()
    ref = mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False, store=path)
    full_s = time.perf_counter() - t
    resume_s, res = timed(lambda: mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0,
                                                 progress=False, store=path, resume=True))
    assert np.array_equal(res.points, ref.points)
    half = os.path.join(d, "half.sqlite")

    class Stop(Exception):
        pass

    class StopAt(mango.Callback):
        def on_batch(self, run, batch):
            if batch.index == B // bs // 2 and not batch.replayed:
                raise Stop

    try:
        mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False, store=half,
                       callbacks=[StopAt()])
    except Stop:
        pass
    t = time.perf_counter()
    res2 = mango.maximize(sphere, space, optimizer="cma", budget=B, batch_size=bs, seed=0, progress=False,
                          store=half, resume=True)
    half_s = time.perf_counter() - t
    assert np.array_equal(res2.points, ref.points) and np.array_equal(res2.values, ref.values)
    resume = {"cma_full_run_with_store_s": full_s, "resume_finished_run_s": resume_s,
              "resume_half_run_and_finish_s": half_s, "identical_history": True}
    print(f"cma run with store {full_s:.3f} s; resume of the finished run {resume_s:.3f} s; "
          f"resume at half + finish {half_s:.3f} s (history identical)")

    out = {"budget": B, "batch_size": bs, "dim": 10, "machine": platform.platform(),
           "python": platform.python_version(), "sqlite": __import__("sqlite3").sqlite_version,
           "cases": rows, "resume": resume}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "store_overhead.json"), "w") as f:
        json.dump(out, f, indent=2)
    lines = ["# RunStore overhead", "", f"`python benchmarks/store_overhead.py --budget {B} --batch {bs}` "
             f"(10-d sphere, random search, best of 3; {platform.platform()}, SQLite {out['sqlite']})", "",
             "| case | s | queries/s | slowdown | overhead ms/batch | file bytes/query |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['seconds']:.3f} | {r['queries_per_s']:.0f} | x{r['slowdown']:.2f} | "
                     f"{r['overhead_ms_per_batch']:.2f} | {r['file_bytes_per_query']:.0f} |")
    lines += ["", f"Resume (cma, {B} queries): full run with store {full_s:.3f} s; resuming the finished run "
              f"{resume_s:.3f} s; resuming at half-way and finishing {half_s:.3f} s; histories identical.", ""]
    with open(os.path.join(HERE, "results", "store_overhead.md"), "w") as f:
        f.write("\n".join(lines))
    print("writer with a live dashboard polling every 0.5 s:")
    write_watch_results(watch_overhead(d, args.watch_budget, bs, args.watch_reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
