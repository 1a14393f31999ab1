"""How a population run store grows: bytes per query, and where they go (issue 33).

Runs a population campaign of ``--units`` output neurons of a zoo network over the VQ-VAE's 784-d embedding
(the README's population setting; the optimizer defaults to mango's default, ``surrogate``) with a run store,
then reads the store: its size on disk after the run, the bytes of the queries' own rows (point, responses,
stimulus), and the bytes of the optimizer checkpoints.  Run it at two budgets to see whether the store grows with
queries or with queries x checkpoints.

Target (issue 33): the store grows by under 2 KB per query on top of the queries' own rows (a 784-d float64 point
is 6,272 bytes, its 28x28 stimulus 784 and ten responses 80: these are the data, kept whole), for a 784-d point and
10 units; measured as the growth per query from one budget to the next (a run's fixed costs -- the schema, the
config, the first pages -- are left out).

    python benchmarks/store_size.py --budgets 50,100 --label after       # writes benchmarks/results/store_size.json
    PYTHONPATH=/path/to/old/checkout python benchmarks/store_size.py --label before

Results are merged into ``benchmarks/results/store_size.json`` by label and summarized in ``store_size.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_OVERHEAD = 2048  # bytes per query beyond the queries' own rows


def _commit(path: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def measure(budget: int, units: int, optimizer: str, model: str, params: dict, seed: int = 0) -> dict:
    """One campaign with a store; the store's size and what it holds."""
    import mango
    from mango.zoo.build import build_generator, build_model, build_unit_oracle

    gen = build_generator("zoo:vqvae-digits:embedding", device="cpu")
    net = build_model(model, device="cpu")
    oracle = build_unit_oracle(net, "output", list(range(units)), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.sqlite")
        t0 = time.perf_counter()
        res = mango.maximize(oracle, generator=gen, unit="all", optimizer=optimizer, budget=budget, batch_size=10,
                             seed=seed, store=path, progress=False, **params)
        wall = time.perf_counter() - t0
        size = os.path.getsize(path) + sum(os.path.getsize(path + s) for s in ("-wal", "-shm")
                                           if os.path.exists(path + s))
        con = sqlite3.connect(path)
        rows = con.execute("SELECT COALESCE(SUM(LENGTH(point)), 0), COALESCE(SUM(LENGTH(responses)), 0), "
                           "COALESCE(SUM(LENGTH(stimulus)), 0), COUNT(*) FROM queries").fetchone()
        ck = con.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(state)), 0), COALESCE(MAX(LENGTH(state)), 0) "
                         "FROM checkpoints").fetchone()
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        page = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
    n = res.n_queries
    own = rows[0] + rows[1] + rows[2]
    return {"budget": budget, "queries": n, "units": units, "dim": res.space.dim, "optimizer": optimizer,
            "params": params, "model": model, "wall_s": round(wall, 1), "store_bytes": size,
            "bytes_per_query": round(size / n), "own_row_bytes_per_query": round(own / n),
            "overhead_per_query": round((size - own) / n),
            "checkpoints_kept": ck[0], "checkpoint_bytes_kept": ck[1], "largest_checkpoint_bytes": ck[2],
            "free_pages_bytes": free * page, "file_pages_bytes": pages * page}


def write_md(results: dict, path: str) -> None:
    lines = ["# Population run store size (issue 33)", "",
             f"Target: the store grows by under {TARGET_OVERHEAD} bytes per query beyond the queries' own point, "
             "responses and stimulus bytes (measured from one budget to the next), for a 784-d point and 10 units. "
             "`before`: the code before issue 33 (every checkpoint held the optimizer's whole history, ten times "
             "in a population campaign); `after`: checkpoints hold the history by reference.", "",
             "| label | commit | optimizer | queries | store | bytes/query | own rows/query | overhead/query "
             "| growth/query since the previous budget (overhead) | largest checkpoint | checkpoints kept "
             "| meets target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rec in results.items():
        prev = None
        for r in rec["runs"]:
            growth, ok = "–", None  # one budget alone mixes the run's fixed costs into its bytes per query
            if prev is not None and r["queries"] > prev["queries"]:
                g = (r["store_bytes"] - prev["store_bytes"]) / (r["queries"] - prev["queries"])
                g_over = g - r["own_row_bytes_per_query"]
                growth = f"{g:,.0f} ({g_over:,.0f})"
                ok = g_over < TARGET_OVERHEAD
            lines.append(f"| {label} | {rec.get('commit') or '?'} | {r['optimizer']} | {r['queries']} | "
                         f"{r['store_bytes'] / 1e6:.2f} MB | {r['bytes_per_query']:,} | "
                         f"{r['own_row_bytes_per_query']:,} | {r['overhead_per_query']:,} | {growth} | "
                         f"{r['largest_checkpoint_bytes'] / 1e3:.0f} KB | {r['checkpoints_kept']} | "
                         f"{'–' if ok is None else 'yes' if ok else 'no'} |")
            prev = r
    lines += ["", "Machine: " + next(iter(results.values()))["machine"], ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", default="50,100", help="comma-separated budgets (default %(default)s)")
    ap.add_argument("--units", type=int, default=10)
    ap.add_argument("--optimizer", default="surrogate")
    ap.add_argument("--model", default="zoo:cnn-digits",
                    help="the oracle (default %(default)s: fast; the store does not depend on it)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="optimizer parameter (e.g. n_candidates=200 to spend less time; the state's size does "
                         "not depend on it)")
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "store_size.json"))
    a = ap.parse_args(argv)
    params = {}
    for item in a.param:
        k, v = item.split("=", 1)
        try:
            params[k] = json.loads(v)
        except json.JSONDecodeError:
            params[k] = v
    import mango

    runs = []
    for b in [int(x) for x in a.budgets.split(",")]:
        r = measure(b, a.units, a.optimizer, a.model, params)
        print(json.dumps(r), flush=True)
        runs.append(r)
    results = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            results = json.load(f)
    results[a.label] = {"runs": runs, "mango": mango.__version__, "mango_path": os.path.dirname(mango.__file__),
                        "commit": _commit(os.path.dirname(mango.__file__)),
                        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
                                   f", OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
                        "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    write_md(results, os.path.splitext(a.out)[0] + ".md")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
