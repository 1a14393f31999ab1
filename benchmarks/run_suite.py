"""Run a benchmark suite and write benchmarks/RESULTS.md (or another file) with the exact
command, machine, provenance (mango's commit, package versions, threads), the tables and the figures.

    python benchmarks/run_suite.py --suite lab --seeds 3 --budgets 100,300,1000,3000 \
        --out benchmarks/results/lab --results benchmarks/RESULTS.md

Everything after the script's own options is passed to ``mango bench`` (see
``mango bench --help``); the run resumes from ``--out`` when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=None, help="markdown file to write (e.g. benchmarks/RESULTS.md)")
    ap.add_argument("--note", default="", help="text (markdown) for the closing note, or @FILE")
    ap.add_argument("--command", default=None,
                    help="the command(s) to state in the results file (default: this invocation), e.g. when "
                         "the results were produced by several invocations and this one only writes the report")
    args, rest = ap.parse_known_args(argv)
    from mango.cli import bench as bench_cli
    from mango.bench import metrics
    from mango.bench.runner import load_records
    from mango.cli.maximize import build_parser

    bargs = build_parser().parse_args(["bench"] + rest)
    rc = bench_cli.run(bargs)
    if rc or not args.results:
        return rc
    t1 = datetime.datetime.now(datetime.timezone.utc)
    records = load_records(bargs.out)
    rel = os.path.relpath(bargs.out, os.path.dirname(os.path.abspath(args.results)))
    note = args.note
    if note.startswith("@"):
        with open(note[1:]) as f:
            note = f.read()
    ran = metrics.ran(records)
    from mango.bench.runner import parse_optimizers

    order = [o.label for o in parse_optimizers(bargs.optimizers)] if bargs.optimizers else None
    lines = [
        "# mango benchmark results", "",
        "Command: " + (args.command or
                       f"`python benchmarks/run_suite.py {' '.join(argv if argv is not None else sys.argv[1:])}`"),
        "",
        f"Report written {t1:%Y-%m-%d %H:%M} UTC from {len(ran)} runs "
        f"(summed wall time of the runs: {sum(r['wall_s'] for r in ran) / 60:.0f} min on {bargs.workers} "
        f"worker{'s' if bargs.workers != 1 else ''}).", "",
        f"Machine: {_cpu()}, {os.cpu_count()} cores (shared with other jobs during the run), no GPU; "
        f"{platform.platform()}, Python {platform.python_version()}.", "",
        *bench_cli.provenance_lines(records),
        "Each run is seeded from (problem, optimizer, seed), executes the largest budget once and is read at "
        "every smaller budget (anytime). Values are the activation of the unit for the run's recommendation "
        "(the point with the best observed value; under noise its noiseless activation), divided by the "
        "unit's maximum over the zoo's training images (`normalized`), or by the best value any run found on "
        "the problem (`rel_best`). Raw results: "
        f"[{rel}/results.csv]({rel}/results.csv), per-run curves in `{rel}/results.jsonl`.", "",
        "## Problems", "",
    ]
    probs = {}
    for r in records:
        probs.setdefault(r["problem"], (r["problem_spec"], r["ref_max"]))
    lines += ["| problem | kind | parameters | noise | reference max |", "|---|---|---|---|---|"]
    for name, (spec, ref) in probs.items():
        params = ", ".join(f"{k}={v}" for k, v in spec["params"].items())
        lines.append(f"| {name} | {spec['kind']} | {params} | {spec['noise']} | {ref:.4g} |")
    lines += ["", "## Figures", "", f"![anytime]({rel}/anytime.png)", "", f"![ecdf]({rel}/ecdf.png)", "",
              "## Tables", "", metrics.markdown_report(records, order=order)]
    if note:
        lines += ["## Conclusion", "", note, ""]
    with open(args.results, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
