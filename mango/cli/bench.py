"""``mango bench``: run a suite and write results.csv, results.jsonl, report.md and figures."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from ..errors import ConfigError

__all__ = ["add_subparser", "run", "write_outputs", "provenance_lines"]


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``mango``'s CLI."""
    p = subparsers.add_parser(
        "bench", help="compare optimizers by query count on a benchmark suite",
        description="Run problems x optimizers x seeds; each run executes the largest budget once and is read "
                    "at every smaller budget (anytime). Finished runs in --out are skipped (resume).")
    from ..bench.suites import SUITES

    p.add_argument("--suite", default="quick",
                   help=f"suite name: {', '.join(SUITES)} (default quick)")
    p.add_argument("--problems", default=None, help="comma-separated subset of the suite's problem names")
    p.add_argument("--optimizers", default=None,
                   help="comma-separated optimizers, parameters in brackets: "
                        "'random,cma,ng:NGOpt,protes[k=10;k_top=1]' (default: the suite's list)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds per (problem, optimizer) (default 5)")
    p.add_argument("--budgets", default="300,1000,3000", help="comma-separated query budgets (default 300,1000,3000)")
    p.add_argument("--out", default=None, help="output directory (required, except with --list)")
    p.add_argument("--workers", type=int, default=2, help="parallel runs (default 2)")
    p.add_argument("--threads", metavar="N",
                   help="torch threads per worker (default: $MANGO_THREADS, else $OMP_NUM_THREADS, else 1: workers "
                        "run side by side)")
    p.add_argument("--dask", default=None, metavar="ADDRESS|local",
                   help="run on a Dask cluster (scheduler address) or a LocalCluster ('local')")
    p.add_argument("--device", default=None, help="torch device for oracles/generators (default: cuda if available)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished runs")
    p.add_argument("--report-only", action="store_true", help="only rebuild report.md and figures from --out")
    p.add_argument("--list", action="store_true", help="list the suite's problems and exit")
    p.set_defaults(func=run)
    return p


def _budgets(text: str) -> list[int]:
    try:
        b = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--budgets must be comma-separated integers like 300,1000,3000, got {text!r}.")
    if not b or min(b) < 1:
        raise ConfigError(f"--budgets must be positive integers, got {text!r}.")
    return b


def _default_device():
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def provenance_lines(records) -> list[str]:
    """Markdown lines that say what wrote a report (:func:`mango.runs.provenance.describe`) and what ran its
    ``records``: each distinct provenance with its number of runs (runs recorded before records carried one
    are counted apart)."""
    from ..runs.provenance import describe

    counts: dict[str, int] = {}
    for r in records:
        prov = r.get("provenance")
        key = describe(prov) if prov else "not recorded (runs written before records carried their provenance)"
        counts[key] = counts.get(key, 0) + 1
    lines = [f"Report written by: {describe()}.", "", "Runs' provenance:", ""]
    return lines + [f"- {n} run{'s' if n != 1 else ''}: {k}" for k, n in counts.items()] + [""]


def write_outputs(records, out: str, command: str | None = None, order=None) -> str:
    """Write ``report.md``, ``anytime.png`` and ``ecdf.png`` into ``out``; return the report text.

    ``order``: optimizer labels in display order."""
    from ..bench import metrics, plots

    text = metrics.markdown_report(records, order=order)
    plots.save_figures(records, out)
    head = ["# mango bench report", ""]
    if command:
        head += ["Command: `" + command + "`", ""]
    head += [f"Runs: {len(records)}. Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}.", ""]
    head += provenance_lines(records)
    head += ["![anytime](anytime.png)", "", "![ecdf](ecdf.png)", ""]
    text = "\n".join(head) + text
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text


def run(args) -> int:
    """Entry point of ``mango bench``."""
    from ..bench import suites
    from ..bench.runner import load_records, run_benchmark

    problems = suites.get(args.suite)
    if args.problems:
        want = [s.strip() for s in args.problems.split(",") if s.strip()]
        names = [p.name for p in problems]
        bad = [w for w in want if w not in names]
        if bad:
            from ..errors import UnknownNameError

            raise UnknownNameError("problem", bad[0], names, note=f"(suite {args.suite!r})")
        problems = [p for p in problems if p.name in want]
    if args.list:
        for p in problems:
            print(p.name, json.dumps(p.to_dict()))
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required: the directory for the results (e.g. --out bench-out/); "
                          "only --list runs without it.")
    from ..runs.outdir import check_out_dir

    check_out_dir(args.out, "--out")
    from ..bench.runner import parse_optimizers

    optimizers = args.optimizers or suites.DEFAULT_OPTIMIZERS.get(args.suite, "random,cma")
    order = [o.label for o in parse_optimizers(optimizers)]
    if args.report_only:
        records = load_records(args.out)
        if not records:
            raise ConfigError(f"no results in {args.out!r}: run without --report-only first.")
    else:
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}.")
        from ..runs.threads import ThreadChoice, choose_threads

        threads = choose_threads(args.threads, flag="--threads",
                                 default=lambda: ThreadChoice(1, "policy", "one per worker: workers run side by side"))
        t0 = time.time()
        records = run_benchmark(problems, optimizers, args.seeds, _budgets(args.budgets), args.out,
                                workers=args.workers, dask=args.dask, device=args.device or _default_device(),
                                resume=not args.no_resume, threads=threads.count)
        print(f"{len(records)} runs in {args.out} ({time.time() - t0:.0f} s)", file=sys.stderr)
    text = write_outputs(records, args.out, command="mango bench " + " ".join(sys.argv[2:]), order=order)
    print(text)
    return 0
