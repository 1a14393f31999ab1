"""Round-trip overhead of the mango-rig protocol over loopback.

A `mango rig serve` process with a no-op ``present`` (``mango.rig.simulator:null_present``)
answers batches of 28x28 float32 images; the client is a :class:`mango.rig.RigOracle`.
Overhead per batch = round trip minus the in-process cost of the same no-op present.
Targets (issue 7): <= 2 ms per batch of 32 images, >= 2,000 stimuli/s.

    python benchmarks/rig_latency.py [--rounds 1000]

Writes benchmarks/results/rig_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")


def start_server(extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "mango.cli.rig", "rig", "serve", "--module",
                          "mango.rig.simulator:null_present", "--address", "tcp://127.0.0.1:0", "--timeout", "600",
                          *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    ready, _, _ = select.select([p.stdout], [], [], 60)
    line = p.stdout.readline() if ready else ""
    if not line.startswith("listening on"):
        p.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return p, line.split()[-1]


def measure(oracle, batch: int, rounds: int, as_tensor: bool = False) -> dict:
    import torch

    x = np.random.default_rng(0).random((batch, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x)
    call = (lambda: oracle(xt)) if as_tensor else (lambda: oracle.request(x))
    for _ in range(min(50, rounds)):
        call()
    t = np.empty(rounds)
    for i in range(rounds):
        t0 = time.perf_counter()
        call()
        t[i] = time.perf_counter() - t0
    from mango.rig.simulator import null_present

    t_local = np.empty(200)
    for i in range(200):
        t0 = time.perf_counter()
        null_present(x)
        t_local[i] = time.perf_counter() - t0
    med = float(np.median(t))
    return {"batch": batch, "rounds": rounds, "input": "torch" if as_tensor else "numpy",
            "payload_bytes": int(x.nbytes),
            "rtt_median_ms": 1e3 * med, "rtt_p90_ms": 1e3 * float(np.percentile(t, 90)),
            "rtt_p99_ms": 1e3 * float(np.percentile(t, 99)), "rtt_mean_ms": 1e3 * float(t.mean()),
            "present_local_ms": 1e3 * float(np.median(t_local)),
            "overhead_median_ms": 1e3 * (med - float(np.median(t_local))),
            "stimuli_per_s": batch / med, "stimuli_per_s_mean": batch / float(t.mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1000)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from mango.rig import RigOracle, write_keypair

    rows = []
    proc, endpoint = start_server()
    try:
        with RigOracle(endpoint, timeout=5.0, retries=0) as oracle:
            for batch in (1, 32, 256):
                rows.append({"curve": False, **measure(oracle, batch, args.rounds if batch <= 32 else args.rounds // 4)})
            rows.append({"curve": False, **measure(oracle, 32, args.rounds, as_tensor=True)})
    finally:
        proc.kill()
        proc.wait()
    keys = tempfile.mkdtemp()
    pub, sec = write_keypair(keys, "server")
    proc, endpoint = start_server(["--curve-secret", sec])
    try:
        with RigOracle(endpoint, timeout=5.0, retries=0, server_public_key=pub) as oracle:
            rows.append({"curve": True, **measure(oracle, 32, args.rounds)})
    finally:
        proc.kill()
        proc.wait()

    main_row = next(r for r in rows if r["batch"] == 32 and not r["curve"] and r["input"] == "numpy")
    summary = {
        "target_overhead_ms": 2.0, "target_stimuli_per_s": 2000,
        "overhead_ms_batch32": main_row["overhead_median_ms"], "stimuli_per_s_batch32": main_row["stimuli_per_s"],
        "overhead_ratio_to_target": main_row["overhead_median_ms"] / 2.0,
        "throughput_ratio_to_target": main_row["stimuli_per_s"] / 2000,
        "meets_targets": bool(main_row["overhead_median_ms"] <= 2.0 and main_row["stimuli_per_s"] >= 2000),
    }
    result = {"benchmark": "rig_latency", "rows": rows, "summary": summary,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rig_latency.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = ["# rig_latency: mango-rig round trip over loopback (no-op present)", "",
             f"{result['when']}, Python {platform.python_version()}, {os.cpu_count()} CPUs (shared). "
             "Separate server process; RigOracle client; 28x28 float32 images.", "",
             "| CURVE | input | batch | payload KiB | median RTT ms | p90 ms | p99 ms | overhead ms | stimuli/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {'on' if r['curve'] else 'off'} | {r['input']} | {r['batch']} | {r['payload_bytes'] / 1024:.1f} | "
                     f"{r['rtt_median_ms']:.3f} | {r['rtt_p90_ms']:.3f} | {r['rtt_p99_ms']:.3f} | "
                     f"{r['overhead_median_ms']:.3f} | {r['stimuli_per_s']:,.0f} |")
    lines += ["", f"Targets: overhead <= 2 ms per batch of 32 -> measured {summary['overhead_ms_batch32']:.3f} ms "
              f"({summary['overhead_ratio_to_target']:.2f}x the budget); >= 2,000 stimuli/s -> measured "
              f"{summary['stimuli_per_s_batch32']:,.0f} ({summary['throughput_ratio_to_target']:.1f}x the target). "
              f"Meets targets: {summary['meets_targets']}.", ""]
    with open(os.path.join(OUT, "rig_latency.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0 if summary["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
