"""Run the README's commands as a new user would and diff what they print against the README's sample outputs.

For each ``bash`` block of README.md that holds one ``mango`` command and is followed by a sample output block
(the main job, the population campaign), the command runs as written -- in a fresh temporary directory, with
a fresh reference cache (``MANGO_CACHE``), from a fresh ``git clone`` of the repository (``--clone``: committed
code only) or from the working tree (default) -- and the numbers of its output are compared with the sample's:

* values (the reference maximum, best values, normalized values, medians): within ``--value-tol`` (relative,
  default 0.10: a different thread count or BLAS changes the search's floating-point path);
* times and rates (seconds, queries/s): within a factor ``1 + --time-tol`` either way (default 1.0, i.e. half
  to twice: they depend on the machine and its load, which are written down with the results);
* counts (queries used): exactly.

The thread setting is the README's (``OMP_NUM_THREADS=1`` unless ``--threads``); the load average before and
after each command is recorded.  Results: ``benchmarks/results/readme_check.json`` and ``.md``; exit status 1
when a number is out of tolerance.

    python benchmarks/readme_check.py                       # every command with a sample (tens of minutes)
    python benchmarks/readme_check.py --only main            # the main job only
    python benchmarks/readme_check.py --clone --only main    # from a fresh clone of the committed code
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (name, pattern, kind): kind "value" (relative tolerance), "time" (factor), "exact", "info" (reported only)
NUMBERS = [
    ("reference max", r"unit's max ([-\d.]+) over", "value"),
    ("reference time", r"computed in ([\d.]+) s", "time"),
    ("progress rate", r"([\d.]+) queries/s", "time"),
    ("best value", r"^best value ([-\d.e+]+)", "value"),
    ("best normalized", r"= ([-\d.]+) x the best natural image", "value"),
    ("best query", r"at query (\d+) \(0-based\)", "info"),
    ("first unit best", r"^\s+unit \S+\s+best ([-\d.e+]+)", "value"),
    ("first unit normalized", r"^\s+unit \S+\s+best [-\d.e+]+ = ([-\d.]+) x", "value"),
    ("median best", r"median best ([-\d.e+]+)", "value"),
    ("median normalized", r"= ([-\d.]+) x each unit's best natural image", "value"),
    ("queries used", r"(\d+) of \d+ queries \(", "exact"),
    ("wall time", r"queries \([a-z ]+\), ([\d.]+) s;", "time"),
]


def readme_samples(text: str) -> list[dict]:
    """``[{"command", "sample"}]``: each one-command ``bash`` block followed by an output block."""
    out = []
    blocks = list(re.finditer(r"```(\w*)\n(.*?)```", text, flags=re.S))
    for i, b in enumerate(blocks[:-1]):
        lines = [ln for ln in b.group(2).splitlines() if ln.strip()]
        nxt = blocks[i + 1]
        if b.group(1) == "bash" and len(lines) == 1 and lines[0].startswith("mango ") and nxt.group(1) == "":
            out.append({"command": re.sub(r"\s+#.*$", "", lines[0]).strip(), "sample": nxt.group(2)})
    return out


def numbers(text: str) -> dict:
    """The first match of each of :data:`NUMBERS` in ``text`` (line by line)."""
    found = {}
    for line in text.splitlines():
        for name, pattern, kind in NUMBERS:
            m = re.search(pattern, line)
            if m and name not in found:
                found[name] = (float(m.group(1)), kind)
    return found


def compare(sample: str, actual: str, value_tol: float, time_tol: float) -> list[dict]:
    want, got = numbers(sample), numbers(actual)
    rows = []
    for name, (w, kind) in want.items():
        g = got.get(name, (None, kind))[0]
        if g is None:
            ok = False
        elif kind == "value":
            ok = abs(g - w) <= value_tol * abs(w)
        elif kind == "time":
            ok = w > 0 and g > 0 and 1 / (1 + time_tol) <= g / w <= 1 + time_tol
        elif kind == "exact":
            ok = g == w
        else:
            ok = True
        rows.append({"number": name, "kind": kind, "readme": w, "run": g, "ok": bool(ok)})
    return rows


def run_command(command: str, source: str | None, threads: str, keep_cache: bool) -> dict:
    """Run ``command`` (``mango ...``) in a fresh directory; ``source``: a checkout to import mango from."""
    with tempfile.TemporaryDirectory(prefix="mango-readme-") as cwd:
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        if not keep_cache:
            env["MANGO_CACHE"] = os.path.join(cwd, "cache")
        if source:
            env["PYTHONPATH"] = source
        argv = [sys.executable, "-m", "mango.cli"] + shlex.split(command)[1:]
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
    return {"command": command, "returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr,
            "wall_s": round(wall, 1), "load_before": [round(x, 2) for x in load0],
            "load_after": [round(x, 2) for x in load1]}


def write_md(rec: dict, path: str) -> None:
    lines = ["# README commands against the README's samples", "",
             f"Source: {rec['source']}; OMP_NUM_THREADS={rec['threads']}; machine: {rec['machine']}; "
             f"tolerance: values within {rec['value_tol']:.0%}, times within a factor {1 + rec['time_tol']:g}.", ""]
    if rec.get("note"):
        lines += [rec["note"], ""]
    for c in rec["commands"]:
        lines += [f"## `{c['command']}`", "",
                  f"Exit status {c['returncode']}, {c['wall_s']} s; load average (1, 5, 15 min) before "
                  f"{c['load_before']}, after {c['load_after']}.", "",
                  "| number | README | this run | within tolerance |", "|---|---|---|---|"]
        lines += [f"| {r['number']} | {r['readme']:g} | {'–' if r['run'] is None else format(r['run'], 'g')} | "
                  f"{'yes' if r['ok'] else 'NO'} |" for r in c["comparison"]]
        lines += ["", "Output (stderr, then stdout):", "", "```", (c["stderr"] + c["stdout"]).strip(), "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clone", action="store_true", help="run from a fresh git clone (committed code only)")
    ap.add_argument("--only", default=None,
                    help="comma-separated: main (the main job), population (the population campaign)")
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS for the commands (default: the README's, 1)")
    ap.add_argument("--value-tol", type=float, default=0.10)
    ap.add_argument("--time-tol", type=float, default=1.0)
    ap.add_argument("--keep-cache", action="store_true", help="use the usual reference cache (not a fresh one)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "readme_check.json"))
    a = ap.parse_args(argv)
    with open(os.path.join(ROOT, "README.md")) as f:
        samples = readme_samples(f.read())
    names = {"main": lambda c: c == "mango maximize", "population": lambda c: "--unit" in c}
    if a.only:
        want = a.only.split(",")
        samples = [s for s in samples if any(names[w](s["command"]) for w in want)]
    with tempfile.TemporaryDirectory(prefix="mango-clone-") as tmp:
        source = None
        if a.clone:
            source = os.path.join(tmp, "mango")
            subprocess.run(["git", "clone", "--quiet", ROOT, source], check=True)
        commit = subprocess.run(["git", "-C", source or ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        rec = {"source": f"git clone of {ROOT} at {commit}" if a.clone else f"working tree of {ROOT} (HEAD {commit})",
               "threads": a.threads, "value_tol": a.value_tol, "time_tol": a.time_tol,
               "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
               "created": time.strftime("%Y-%m-%d %H:%M:%S"), "commands": []}
        for s in samples:
            print(f"running: {s['command']}", file=sys.stderr, flush=True)
            r = run_command(s["command"], source, a.threads, a.keep_cache)
            r["comparison"] = compare(s["sample"], r["stderr"] + r["stdout"], a.value_tol, a.time_tol)
            rec["commands"].append(r)
            for row in r["comparison"]:
                print(f"  {row['number']:<22} README {row['readme']:<10g} run {row['run']!s:<10} "
                      f"{'ok' if row['ok'] else 'OUT OF TOLERANCE'}", file=sys.stderr)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=1)
    write_md(rec, os.path.splitext(a.out)[0] + ".md")
    print(f"wrote {a.out}", file=sys.stderr)
    bad = [r for c in rec["commands"] for r in c["comparison"] if not r["ok"]]
    failed = [c for c in rec["commands"] if c["returncode"] != 0]
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
