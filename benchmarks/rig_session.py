"""A closed-loop lab session with the rig simulator: mango's synchronous loop against its pipelined loop.

The rig is ``mango rig simulate`` in its own process (one per run, started before the run's clock and stopped
after it, ``--seed`` = the run's seed so a run's Poisson noise is reproducible), on a free port, showing each
stimulus for ``--on-ms 150`` then a ``--off-ms 100`` blank in real time, with Poisson spike counts
(``--noise poisson``) from the zoo's spiking digit network, output unit 3 (``--model zoo:snn-digits --unit 3``),
and a ``--log`` presentation log.  The rig's process gets ``OMP_NUM_THREADS=1`` (it stands for another machine);
mango's process (this one) is left to mango's thread policy (``threads=`` not set).  The oracle is a
:class:`mango.rig.RigOracle` in this process, as ``mango maximize --oracle rig://HOST:PORT`` builds it, composed
with the generator by ``mango.maximize(oracle, generator=G, optimizer="surrogate", budget=..., batch_size=...,
seed=..., pipeline=False|True, store=...)``.

Search spaces: ``784`` -- the zoo VQ-VAE's embedding (``zoo:vqvae-digits:embedding``); ``4096`` -- a fixed,
seeded, randomly initialised VQ-VAE-style decoder (8x8x64 = 4,096-d latent in [-2, 2] -> 1x28x28 images in
[0, 1]: the decoder of ``benchmarks/surrogate_overhead.py`` Part 2 with one output channel, its 32x32 output
centre-cropped to 28x28).  Each (space, batch size, seed) runs synchronously (``pipeline=False``) and pipelined
(``pipeline=True``: the optimizer proposes batch k+1 while the rig presents batch k), interleaved (even seeds
sync first, odd seeds pipelined first), same seed.  One competing CPU-bound process (``while True: pass``) runs
for the whole measurement.

Measures, per run:

* session wall time: ``time.time()`` around the ``mango.maximize`` call (the rig is already up);
* **rig utilization** = time presenting / session wall time.  Presenting, per rig request (a batch, or the head
  and the tail of a batch split by the pipeline lag), runs from the request's first onset to its last offset plus
  the off blank, from the **onset and offset times the rig reports** in its
  replies (the same numbers the run's store records in ``queries.onset/offset``; this script reads them off each
  reply with a thin RigOracle subclass and checks them against the store).  These are the simulator's schedule:
  the first onset is the instant ``present()`` starts on the rig, the following ones add the nominal on and off
  times -- exact for the schedule, since the simulator sleeps until the schedule's end; only a neuron that took
  longer to compute than the whole schedule would end the batch later than reported.  That is checked with the
  ``--log`` lines (``t``: wall time when ``present()`` returned): ``log_lag_max_s`` = the largest log time minus
  the reported end of the batch (onset + the on and off times), which stays at a few ms when the reported times
  are right.  The ``--log`` lines alone cannot give presentation time: they carry one time per batch, its end;
* best value at each query (``result.values``, ``result.queries``): best at the budget (the best of the first
  ``--budget`` queries, also when a pipelined run went on past it);
* time to target: the first ``result.t`` (seconds since the run's start at which the point's batch was recorded)
  at which the run's running best reaches the target, the median over seeds of the sync runs' best at the
  budget (``statistics.median_low`` for an even number of seeds, so that a median run reaches it); never
  reached: infinite.  ``tt_reply_s`` gives the same from the reply's arrival at the client (session clock).
  ``--pipelined-budget N`` lets the pipelined runs go on to N queries, so that a run which has not reached the
  target by the budget still has a time to it (``surrogate`` never reads its budget: the first ``--budget``
  queries of such a run are those of a run told ``--budget``); quality and the sync runs stay at ``--budget``;
* optimizer seconds per query (``result.optimizer_s / result.n_queries``).

Paired summary per (space, batch size): quality = pipelined best / sync best at the budget (ratio of the means
over seeds; per-seed win/tie/loss of pipelined against sync); wall clock to the target = median over seeds of
the pipelined runs' time to target / median of the sync runs'.  Targets (PASS/FAIL): pipelined utilization
>= 95 % (median over seeds, at 784-d and at 4,096-d, each batch size); time to target <= 0.7x the sync loop's;
quality >= 0.97x.

    python benchmarks/rig_session.py [--seeds 3] [--budget 300] [--pipelined-budget N] [--batches 10,40]
                                     [--spaces 784,4096] [--smoke]

``--smoke``: one seed, 20 queries, batches of 5 and 10, both spaces (about 1.5 min with both modes), written to
``rig_session_smoke.{json,md}``.  ``--modes sync`` runs the synchronous loop only (works before
``mango.maximize`` has ``pipeline=``).  Writes ``benchmarks/results/rig_session.json.gz`` (every run's raw numbers,
provenance) and ``.md``.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import math
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _load import start_load, stop_processes  # noqa: E402
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "results")

MODES = ("sync", "pipelined")
TARGET_UTIL = 0.95
TARGET_TIME_RATIO = 0.7
TARGET_QUALITY = 0.97
DECODER_SEED = 0
DECODER_LOGIT_STD = 2.0  # std of the random decoder's pre-sigmoid output over random latents
RIG_START_S = 6.0  # rough start-up of one simulator process (zoo network load), for the estimate only


# -- the 4,096-d generator ---------------------------------------------------------------------------------------

def random_decoder_generator():
    """A VQ-VAE-style decoder with random weights (seed ``DECODER_SEED``): ``[n, 4096]`` (8x8x64) -> ``[n, 1, 28,
    28]`` in [0, 1], as a :class:`mango.generators.ModuleGenerator` over ``Box(4096, -2, 2)``."""
    import torch

    from mango.generators import ModuleGenerator
    from mango.spaces import Box

    class Decoder28(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                torch.nn.ConvTranspose2d(64, 32, 4, 2, 1), torch.nn.ReLU(),   # 8 -> 16
                torch.nn.ConvTranspose2d(32, 16, 4, 2, 1), torch.nn.ReLU(),   # 16 -> 32
                torch.nn.Conv2d(16, 1, 3, padding=1), torch.nn.Sigmoid())

        def forward(self, z):
            return self.net(z.reshape(-1, 64, 8, 8))[:, :, 2:30, 2:30]  # centre crop 32x32 -> 28x28

    with torch.random.fork_rng(devices=[]):  # leave the caller's torch RNG as it was
        torch.manual_seed(DECODER_SEED)
        dec = Decoder28().eval()
        for p in dec.parameters():
            p.requires_grad_(False)
        # torch's default initialisation gives flat grey images (pixel std ~0.004 around 0.5) that the zoo neuron
        # does not answer; rescale the last convolution once, on seeded random latents, so its logits have mean 0
        # and std DECODER_LOGIT_STD (images with contrast, as a trained decoder's)
        z = torch.rand(256, 4096) * 4.0 - 2.0
        last = dec.net[-2]
        h = dec.net[:-1](z.reshape(-1, 64, 8, 8))
        scale = DECODER_LOGIT_STD / float(h.std())
        last.weight.mul_(scale)
        last.bias.mul_(scale).sub_(float(h.mean()) * scale)
    return ModuleGenerator(dec, Box(4096, -2.0, 2.0))


def build_space(dim: int):
    if dim == 784:
        from mango.zoo.build import build_generator

        return build_generator("zoo:vqvae-digits:embedding"), "zoo:vqvae-digits:embedding"
    if dim == 4096:
        return random_decoder_generator(), f"random VQ-VAE-style decoder 8x8x64 -> 1x28x28 (seed {DECODER_SEED})"
    raise SystemExit(f"--spaces: unknown space {dim}; use 784 and/or 4096")


# -- processes ---------------------------------------------------------------------------------------------------

def start_rig(seed: int, log_path: str, err_path: str, on_ms: float, off_ms: float):
    """``mango rig simulate --port 0 ...`` in a subprocess; returns (process, endpoint)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MANGO_THREADS", None)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "mango.cli.rig", "rig", "simulate", "--port", "0", "--model", "zoo:snn-digits",
           "--unit", "3", "--noise", "poisson", "--on-ms", str(on_ms), "--off-ms", str(off_ms), "--seed", str(seed),
           "--log", log_path]
    err = open(err_path, "w")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    err.close()
    ready, _, _ = select.select([p.stdout], [], [], 180)
    line = p.stdout.readline() if ready else ""
    if not line.startswith("listening on"):
        stop_processes([p])
        with open(err_path) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"rig simulator did not start: {line!r}; stderr: {tail}")
    return p, line.split()[-1]


def make_oracle(endpoint: str, timeout: float, meta: dict):
    """A :class:`mango.rig.RigOracle` that also keeps, per request (= batch), the client's send and receive times
    and the onset/offset times and ``present_s`` the rig reported."""
    from mango.rig import RigOracle

    class TimedRigOracle(RigOracle):
        def __init__(self, *a, **kw):
            self.batches: list[dict] = []
            super().__init__(*a, **kw)

        def request(self, stimuli, meta=None):
            t_send = time.time()
            out = super().request(stimuli, meta)
            t_recv = time.time()
            timing = self.last_timing or {}
            self.batches.append({"n": int(np.shape(stimuli)[0]), "sent": t_send, "received": t_recv,
                                 "present_s": timing.get("present_s"),
                                 "onset": [float(t) for t in timing.get("onset_s") or []],
                                 "offset": [float(t) for t in timing.get("offset_s") or []]})
            return out

    return TimedRigOracle(endpoint, timeout=timeout, retries=1, meta=meta)


# -- one run -----------------------------------------------------------------------------------------------------

def pipeline_supported() -> bool:
    import mango

    return "pipeline" in inspect.signature(mango.maximize).parameters


def one_run(gen, dim: int, batch: int, seed: int, mode: str, args, workdir: str) -> dict:
    import mango
    from mango.runs.store import RunStore

    tag = f"d{dim}-b{batch}-s{seed}-{mode}"
    log_path = os.path.join(workdir, tag + ".rig.jsonl")
    err_path = os.path.join(workdir, tag + ".rig.err")
    store_path = os.path.join(workdir, tag + ".sqlite")
    on_s, off_s = args.on_ms / 1000.0, args.off_ms / 1000.0
    timeout = max(30.0, 3.0 * batch * (on_s + off_s) + 10.0)
    kw = {"pipeline": mode == "pipelined"} if pipeline_supported() else {}
    if mode == "pipelined" and not kw:
        raise RuntimeError("mango.maximize has no pipeline= parameter yet")
    rig, endpoint = start_rig(seed, log_path, err_path, args.on_ms, args.off_ms)
    try:
        oracle = make_oracle(endpoint, timeout, {"session": tag})
        try:
            server = dict(oracle.server_info)
            t_start = time.time()
            budget = args.pipelined_budget if mode == "pipelined" and args.pipelined_budget else args.budget
            res = mango.maximize(oracle, generator=gen, optimizer="surrogate", budget=budget, batch_size=batch,
                                 seed=seed, progress=False, store=store_path, **kw)
            t_end = time.time()
            batches = list(oracle.batches)
            client_stats = dict(oracle.stats)
        finally:
            oracle.close()
    finally:
        stop_processes([rig])
    wall = t_end - t_start

    # rig utilization from the reported onset/offset times
    spans, gaps = [], []
    have_times = all(b["onset"] and b["offset"] for b in batches) and bool(batches)
    if have_times:
        ends = [b["offset"][-1] + off_s for b in batches]
        spans = [e - b["onset"][0] for b, e in zip(batches, ends)]
        gaps = [batches[k + 1]["onset"][0] - ends[k] for k in range(len(batches) - 1)]
    presenting = float(sum(spans)) if have_times else float("nan")

    # cross-check: the simulator's log (end of each present()) against the reported ends
    log_t = []
    if os.path.exists(log_path):
        with open(log_path) as f:
            log_t = [json.loads(line)["t"] for line in f if line.strip()]
    log_lag = ([lt - (b["offset"][-1] + off_s) for lt, b in zip(log_t, batches)]
               if have_times and len(log_t) == len(batches) else None)

    # cross-check: the store's onset/offset columns against the replies'
    store_check = None
    try:
        with RunStore(store_path, mode="r") as st:
            q = st.read_queries()
        on_store = np.asarray(q["onset"], dtype=float)
        on_reply = np.concatenate([b["onset"] for b in batches]) if have_times else np.zeros(0)
        store_check = {"rows": int(len(on_store)), "with_times": int(np.isfinite(on_store).sum()),
                       "match_replies": bool(len(on_store) == len(on_reply)
                                             and np.allclose(on_store, on_reply, atol=1e-6, rtol=0))}
    except Exception as exc:  # noqa: BLE001 - a check, not the measurement
        store_check = {"error": f"{type(exc).__name__}: {exc}"}
    for suffix in ("", "-wal", "-shm", "-journal"):  # stores hold every stimulus: ~1-5 MB a run
        if os.path.exists(store_path + suffix):
            os.remove(store_path + suffix)

    values = np.asarray(res.values, dtype=float)
    best_at_budget = float(res.best_so_far()[args.budget - 1])  # the best of the first --budget queries
    best_at_budget = best_at_budget if math.isfinite(best_at_budget) else None
    received = (np.concatenate([np.full(b["n"], b["received"] - t_start) for b in batches])
                if batches else np.zeros(0))
    rec = {
        "space": dim, "batch": batch, "seed": seed, "mode": mode, "endpoint": endpoint,
        "wall_s": wall, "run_wall_s": float(res.wall_s), "presenting_s": presenting,
        "utilization": presenting / wall if have_times else None,
        "first_onset_s": batches[0]["onset"][0] - t_start if have_times else None,
        "tail_s": t_end - (batches[-1]["offset"][-1] + off_s) if have_times else None,
        "gap_median_s": float(np.median(gaps)) if gaps else None,
        "gap_max_s": float(np.max(gaps)) if gaps else None,
        "log_lag_max_s": float(np.max(log_lag)) if log_lag else None,
        "log_lines": len(log_t), "store_check": store_check,
        "pipeline_recorded": res.config.get("pipeline"), "pipeline_lag": res.config.get("pipeline_lag"),
        "n_queries": int(res.n_queries),
        "n_batches": len(batches), "stop_reason": res.stop_reason,
        "run_budget": budget, "best": best_at_budget,
        "best_run": float(res.best_value) if res.best_value is not None else None,
        "optimizer_s": float(res.optimizer_s), "objective_s": float(res.objective_s),
        "optimizer_s_per_query": float(res.optimizer_s) / max(1, int(res.n_queries)),
        "threads": res.threads,
        "values": values.tolist(), "queries": np.asarray(res.queries).tolist(), "t": np.asarray(res.t).tolist(),
        "reply_t": received.tolist() if len(received) == len(values) else None,
        "batches": [{**b, "sent": b["sent"] - t_start, "received": b["received"] - t_start,
                     "onset": [t - t_start for t in b["onset"]], "offset": [t - t_start for t in b["offset"]]}
                    for b in batches],
        "rig_log_t": [t - t_start for t in log_t],
        "client_stats": client_stats, "rig_server_info": server,
    }
    return rec


# -- analysis ----------------------------------------------------------------------------------------------------

def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else float("nan")


def _median_low(xs):
    return float(statistics.median_low(xs)) if xs else float("nan")


def time_to(values, times, target) -> float:
    """First time at which the running best of ``values`` reaches ``target`` (inf: never)."""
    if times is None or not len(values):
        return math.inf
    best = np.fmax.accumulate(np.where(np.isfinite(values), values, -np.inf))
    hit = np.flatnonzero(best >= target)
    return float(times[hit[0]]) if hit.size else math.inf


def summarize(runs: list[dict], spaces, batches) -> list[dict]:
    cells = []
    for dim in spaces:
        for bs in batches:
            cell = {"space": dim, "batch": bs}
            by = {m: sorted((r for r in runs if r["space"] == dim and r["batch"] == bs and r["mode"] == m),
                            key=lambda r: r["seed"]) for m in MODES}
            sync = by["sync"]
            target = _median_low([r["best"] for r in sync]) if sync else float("nan")
            cell["target"] = target
            for m, rs in by.items():
                for r in rs:
                    r["tt_s"] = time_to(np.asarray(r["values"]), np.asarray(r["t"]), target)
                    r["tt_reply_s"] = time_to(np.asarray(r["values"]),
                                              None if r["reply_t"] is None else np.asarray(r["reply_t"]), target)
                cell[m] = None if not rs else {
                    "runs": len(rs), "utilization": _median([r["utilization"] for r in rs]),
                    "utilization_min": min((r["utilization"] for r in rs if r["utilization"] is not None),
                                           default=float("nan")),
                    "wall_s": _median([r["wall_s"] for r in rs]), "best": _median([r["best"] for r in rs]),
                    "best_mean": float(np.mean([r["best"] for r in rs])),
                    "tt_s": _median_low([r["tt_s"] for r in rs]),
                    "tt_reply_s": _median_low([r["tt_reply_s"] for r in rs]),
                    "optimizer_ms_per_query": 1e3 * _median([r["optimizer_s_per_query"] for r in rs]),
                    "gap_median_s": _median([r["gap_median_s"] for r in rs]),
                    "log_lag_max_s": max((r["log_lag_max_s"] for r in rs if r["log_lag_max_s"] is not None),
                                         default=None)}
            pairs = [(s, p) for s in sync for p in by["pipelined"] if p["seed"] == s["seed"]]
            if pairs:
                sm = float(np.mean([s["best"] for s, _ in pairs]))
                pm = float(np.mean([p["best"] for _, p in pairs]))
                tt_s, tt_p = cell["sync"]["tt_s"], cell["pipelined"]["tt_s"]
                cell["paired"] = {
                    "pairs": len(pairs), "quality_ratio": pm / sm if sm else float("nan"),
                    "wins": sum(p["best"] > s["best"] for s, p in pairs),
                    "ties": sum(p["best"] == s["best"] for s, p in pairs),
                    "losses": sum(p["best"] < s["best"] for s, p in pairs),
                    "time_ratio": (tt_p / tt_s) if math.isfinite(tt_s) and tt_s > 0 else float("nan"),
                    "wall_ratio": cell["pipelined"]["wall_s"] / cell["sync"]["wall_s"]}
                u = cell["pipelined"]["utilization"]
                pr = cell["paired"]
                cell["pass"] = {"utilization": bool(u >= TARGET_UTIL),
                                "time_to_target": bool(pr["time_ratio"] <= TARGET_TIME_RATIO),
                                "quality": bool(pr["quality_ratio"] >= TARGET_QUALITY)}
            cells.append(cell)
    return cells


def _plain(x):
    """``x`` as strict JSON: non-finite floats (a target never reached, a missing median) become None."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _f(x, fmt="{:.1f}", none="-"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return none
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return fmt.format(x)


def _pct(x):
    return None if x is None else 100 * x


def _pf(ok) -> str:
    return "PASS" if ok else "FAIL"


def markdown(rec: dict) -> list[str]:
    a = rec["settings"]
    lines = ["# rig_session: a closed-loop session with the rig simulator, synchronous vs pipelined loop"
             + (" (SMOKE)" if a["smoke"] else ""), "",
             f"`{rec['command']}` -- {rec['when']}, {rec['machine']['cores']} cores, "
             f"{a['load']} competing CPU-bound process(es); load average before {rec['load_average_before'][0]:.2f}.",
             f"Rig: `mango rig simulate --on-ms {a['on_ms']:g} --off-ms {a['off_ms']:g} --noise poisson "
             f"--model zoo:snn-digits --unit 3 --seed SEED` (own process, OMP_NUM_THREADS=1), RigOracle client in "
             f"this process; optimizer `surrogate`, budget {a['budget']}"
             + (f" (pipelined runs go on to {a['pipelined_budget']} queries for the time to target; their best at "
                f"the budget is read at query {a['budget']})" if a.get("pipelined_budget") else "")
             + f", seeds {a['seeds']}, mango's thread policy "
             f"(threads {rec['mango_threads']}).  Utilization: time presenting (first onset to last offset + blank, "
             "per rig request, from the times the rig reports) / session wall time.  Time to target: the run's "
             "`result.t` when its running best first reaches the sync runs' median best at the budget "
             "(median_low over seeds; `never`: not reached).", ""]
    for c in rec["summary"]:
        lines += [f"## {c['space']}-d ({rec['spaces'][str(c['space'])]}), batches of {c['batch']}", "",
                  f"Target value (sync median best at {a['budget']}): {_f(c['target'], '{:.3f}')}", "",
                  "| loop | runs | utilization (median, min) | wall s | best at budget (median) | time to target s "
                  "| optimizer ms/query | median gap between rig requests s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m in MODES:
            s = c.get(m)
            if not s:
                lines.append(f"| {m} | 0 | - | - | - | - | - | - |")
                continue
            lines.append(f"| {m} | {s['runs']} | {_f(100 * s['utilization'], '{:.1f}')} %, "
                         f"{_f(100 * s['utilization_min'], '{:.1f}')} % | {_f(s['wall_s'])} | "
                         f"{_f(s['best'], '{:.3f}')} "
                         f"| {_f(s['tt_s'])} | {_f(s['optimizer_ms_per_query'], '{:.0f}')} "
                         f"| {_f(s['gap_median_s'], '{:.2f}')} |")
        if c.get("paired"):
            p = c["paired"]
            lines += ["", f"Paired over {p['pairs']} seed(s): quality (pipelined / sync best, ratio of means) "
                      f"{p['quality_ratio']:.3f}, pipelined wins/ties/losses {p['wins']}/{p['ties']}/{p['losses']}; "
                      f"time to target pipelined / sync {_f(p['time_ratio'], '{:.2f}')}x; "
                      f"wall time pipelined / sync {p['wall_ratio']:.2f}x."]
        lines.append("")
        lines.append("Runs: " + "; ".join(
            f"seed {r['seed']} {r['mode']}: {r['wall_s']:.1f} s, util {_f(_pct(r['utilization']))} %, "
            f"best {r['best']:.3f}, t->target {_f(r.get('tt_s'))} s"
            for r in rec["runs"] if r["space"] == c["space"] and r["batch"] == c["batch"]) + ".")
        lines.append("")
    if rec["failed_runs"] or rec["interrupted"]:
        lines += ["## Incomplete", ""] + [f"- {f['space']}-d batch {f['batch']} seed {f['seed']} {f['mode']}: "
                                          f"{f['error']}" for f in rec["failed_runs"]]
        if rec["interrupted"]:
            lines.append("- interrupted (Ctrl-C): later runs missing")
        lines.append("")
    lines += ["## Targets", ""]
    paired = [c for c in rec["summary"] if c.get("pass")]
    if not paired:
        lines.append("No paired (sync + pipelined) runs: targets not evaluated.")
    for c in paired:
        p, s = c["paired"], c["pipelined"]
        lines.append(f"- {c['space']}-d, batch {c['batch']}: utilization pipelined {100 * s['utilization']:.1f} % "
                     f"(>= {100 * TARGET_UTIL:.0f} %) {_pf(c['pass']['utilization'])}; time to target "
                     f"{_f(p['time_ratio'], '{:.2f}')}x (<= {TARGET_TIME_RATIO}x) {_pf(c['pass']['time_to_target'])}; "
                     f"quality {p['quality_ratio']:.3f}x (>= {TARGET_QUALITY}x) {_pf(c['pass']['quality'])}")
    if paired:
        lines += ["", f"All targets: {_pf(all(all(c['pass'].values()) for c in paired))}"]
    checks = [r for r in rec["runs"] if not (r["store_check"] or {}).get("match_replies")]
    lags = [r["log_lag_max_s"] for r in rec["runs"] if r["log_lag_max_s"] is not None]
    lines += ["", "Checks: largest rig-log end minus reported batch end "
              f"{_f(max(lags) * 1e3 if lags else None)} ms; "
              f"store onsets equal the replies' in {len(rec['runs']) - len(checks)}/{len(rec['runs'])} runs.", "",
              f"Provenance: {rec['provenance_line']}.", ""]
    return lines


# -- main --------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; the issue's full run: 5)")
    ap.add_argument("--budget", type=int, default=None, help="queries per run (default 300)")
    ap.add_argument("--pipelined-budget", type=int, default=None,
                    help="queries per pipelined run, >= --budget (default: --budget): time to target for runs that "
                         "reach it after the budget; quality is read at --budget")
    ap.add_argument("--batches", default=None, help="batch sizes (default 10,40)")
    ap.add_argument("--spaces", default="784,4096")
    ap.add_argument("--modes", default="sync,pipelined", help="sync and/or pipelined (default both)")
    ap.add_argument("--load", type=int, default=1, help="competing CPU-bound processes (default 1)")
    ap.add_argument("--on-ms", type=float, default=150.0)
    ap.add_argument("--off-ms", type=float, default=100.0)
    ap.add_argument("--smoke", action="store_true", help="1 seed, budget 20, batches 5,10 (unless given): a few "
                    "seconds per run, written to rig_session_smoke.*")
    ap.add_argument("--out", default=None, help="output stem (default benchmarks/results/rig_session[_smoke])")
    args = ap.parse_args(argv)
    for name, full, smoke in (("seeds", 3, 1), ("budget", 300, 20), ("batches", "10,40", "5,10")):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    out = args.out or os.path.join(OUT, "rig_session_smoke" if args.smoke else "rig_session")
    if args.pipelined_budget is not None and args.pipelined_budget < args.budget:
        raise SystemExit(f"--pipelined-budget {args.pipelined_budget} is below --budget {args.budget}: give a "
                         "number >= the budget (or leave it out)")
    spaces = [int(s) for s in args.spaces.split(",") if s.strip()]
    batches = [int(s) for s in args.batches.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES) or not modes:
        raise SystemExit(f"--modes: choose from {MODES}")
    for v in ("MANGO_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(v):
            print(f"warning: {v}={os.environ[v]} is set: mango takes its thread count from it, not from its policy",
                  file=sys.stderr)

    from mango.runs.provenance import describe, provenance
    from mango.runs.threads import policy

    if "pipelined" in modes and not pipeline_supported():
        raise SystemExit("mango.maximize has no pipeline= parameter yet; run with --modes sync")

    n_cells = len(spaces) * len(batches) * args.seeds
    n_runs = n_cells * len(modes)
    present_s = args.budget * (args.on_ms + args.off_ms) / 1000.0
    low = n_runs * (present_s + RIG_START_S) / 60  # every run keeps the rig 100 % busy
    high = n_cells * ((present_s / 0.95 + RIG_START_S) * ("pipelined" in modes)
                      + (present_s / 0.5 + RIG_START_S) * ("sync" in modes)) / 60  # sync at 50 %
    print(f"{n_runs} runs ({len(spaces)} spaces x {len(batches)} batch sizes x {args.seeds} seeds x {len(modes)} "
          f"modes), each presenting {args.budget} stimuli ({present_s:.0f} s of rig time): estimate {low:.1f} min "
          f"(rig always busy) to {high:.1f} min (sync loop keeps the rig 50 % busy), plus "
          f"{RIG_START_S:.0f} s of simulator start-up per run included", flush=True)

    gens, space_names = {}, {}
    for dim in spaces:
        gens[dim], space_names[str(dim)] = build_space(dim)
    prov = provenance()
    load_before = os.getloadavg()
    runs: list[dict] = []
    t_all = time.time()
    workdir = tempfile.mkdtemp(prefix="rig_session_")
    failed: list[dict] = []
    interrupted = False
    load = start_load(args.load)
    try:
        for seed in range(args.seeds):
            for dim in spaces:
                for bs in batches:
                    order = modes if seed % 2 == 0 else modes[::-1]
                    for mode in order:
                        try:
                            r = one_run(gens[dim], dim, bs, seed, mode, args, workdir)
                        except KeyboardInterrupt:
                            raise
                        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                            failed.append({"space": dim, "batch": bs, "seed": seed, "mode": mode,
                                           "error": f"{type(exc).__name__}: {exc}"})
                            print(f"{dim:4d}-d batch {bs:2d} seed {seed} {mode:9s}: FAILED: {failed[-1]['error']}",
                                  flush=True)
                            continue
                        runs.append(r)
                        print(f"{dim:4d}-d batch {bs:2d} seed {seed} {mode:9s}: {r['wall_s']:6.1f} s, utilization "
                              f"{_f(_pct(r['utilization']))} %, best "
                              f"{r['best']:.3f}, optimizer {1e3 * r['optimizer_s_per_query']:.0f} ms/query, "
                              f"{r['n_batches']} rig requests", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: writing the runs done so far", flush=True)
    finally:
        stop_processes(load)
    summary = summarize(runs, spaces, batches)
    threads = sorted({json.dumps(r["threads"], sort_keys=True) for r in runs})
    rec = {
        "benchmark": "rig_session",
        "command": "python benchmarks/rig_session.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"seeds": args.seeds, "budget": args.budget, "pipelined_budget": args.pipelined_budget,
                     "batches": batches, "spaces": spaces,
                     "modes": modes, "load": args.load, "on_ms": args.on_ms, "off_ms": args.off_ms,
                     "smoke": args.smoke, "optimizer": "surrogate",
                     "rig": "mango rig simulate --model zoo:snn-digits --unit 3 --noise poisson (OMP_NUM_THREADS=1)"},
        "spaces": space_names, "pipeline_supported": pipeline_supported(),
        "targets": {"utilization": TARGET_UTIL, "time_ratio": TARGET_TIME_RATIO, "quality": TARGET_QUALITY},
        "mango_threads": [json.loads(t)["count"] if t != "null" else None for t in threads],
        "thread_policy": policy().to_dict(),
        "machine": {"python": platform.python_version(), "cores": len(os.sched_getaffinity(0)),
                    "platform": platform.platform()},
        "load_average_before": [round(x, 2) for x in load_before], "total_s": time.time() - t_all,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "interrupted": interrupted, "failed_runs": failed, "summary": summary, "runs": runs,
        "provenance": prov, "provenance_line": describe(prov),
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with gzip.open(out + ".json.gz", "wt") as f:  # every run's curves: 1.7 MB as text, gzipped for git
        json.dump(_plain(rec), f, indent=1, allow_nan=False)
        f.write("\n")
    lines = markdown(rec)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}.json.gz and {out}.md (rig logs in {workdir})")
    paired = [c for c in summary if c.get("pass")]
    if failed or interrupted:
        return 2
    return 0 if not paired or all(all(c["pass"].values()) for c in paired) else 1


if __name__ == "__main__":
    sys.exit(main())
