"""Side-by-side tables for ``surrogate`` against its peers, from ``mango bench`` result directories.

For each suite given: per budget, every optimizer's mean over problems of the median (over seeds)
normalized activation, with a 95% bootstrap CI (seeds resampled within each problem), on the
problems that optimizer and ``surrogate`` both ran; the ratio to the best other optimizer; paired
per-(problem, seed) win/tie/loss of ``surrogate`` against each peer (a tie: within 1%) with a
Wilcoxon signed-rank p; per-problem medians; with ``--reach AT:WITHIN``, the problems on which ``surrogate`` reaches
the best other optimizer's median at AT queries within WITHIN queries; and each optimizer's median time per query.

    python benchmarks/surrogate_compare.py lab=benchmarks/results/surrogate/lab-full+benchmarks/results/surrogate/lab-sur-v3 \\
        lab-heldout=benchmarks/results/surrogate/heldout-v2+benchmarks/results/surrogate/heldout-sur-v3 \\
        --out benchmarks/results/surrogate/compare-full.md

Several directories may be joined for one suite with ``+`` (e.g. a TuRBO run capped at a smaller budget); a run
in a later directory replaces the same (problem, optimizer, seed) of an earlier one.  ``DIR@LABEL`` names the
optimizer of every run in DIR ``LABEL``, so two versions of one optimizer compare side by side, paired by
(problem, seed): ``lab=.../lab-sur-v3@surrogate-v3+.../lab-sur-v4``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses

import numpy as np

from mango.bench.record import RunRecord, read_jsonl


def load(dirs: str) -> list[RunRecord]:
    """The runs that ran in ``DIR[@LABEL][+DIR[@LABEL]...]`` (every line of each ``results.jsonl.gz`` and
    ``results.jsonl``, typed; ``@LABEL`` renames the runs' optimizer)."""
    recs = []
    for d in dirs.split("+"):
        d, _, label = d.partition("@")
        got = read_jsonl(d)
        if label:
            got = [dataclasses.replace(r, optimizer=label) for r in got]
        recs += got
    return [r for r in recs if not r.skipped]


def table(name: str, recs: list[RunRecord], me: str = "surrogate", n_boot: int = 2000,
          reach: tuple[int, int] | None = None) -> list[str]:
    val = collections.defaultdict(dict)  # (optimizer, budget) -> {(problem, seed): normalized}
    secs = collections.defaultdict(list)
    for r in recs:
        for row in r["rows"]:
            val[(r["optimizer"], row["budget"])][(r["problem"], r["seed"])] = row["normalized"]
            if row["queries"]:
                secs[r["optimizer"]].append(row["optimizer_s"] / row["queries"])
    opts = sorted({o for o, _ in val}, key=lambda o: (o != me, o))
    budgets = sorted({b for _, b in val})
    problems = sorted({p for d in val.values() for p, _ in d})
    rng = np.random.default_rng(0)
    out = [f"### {name}: {len(problems)} problems ({', '.join(problems)})", ""]
    for b in budgets:
        mine = val.get((me, b), {})
        out += [f"**{b} queries.** Mean over problems of the median normalized activation (95% bootstrap CI), "
                f"on the problems both ran; `{me}`'s paired win/tie/loss per (problem, seed) (tie: within 1%), "
                "Wilcoxon signed-rank p:", "",
                f"| optimizer | problems | its score [CI] | {me}'s score on them | ratio | W/T/L | p |",
                "|---|---|---|---|---|---|---|"]
        best_other = None
        for o in opts:
            d = val.get((o, b), {})
            if not d:
                continue
            probs = sorted({p for p, _ in d} & {p for p, _ in mine})
            if not probs:
                continue

            def score(dd, boot=False):
                meds = []
                for p in probs:
                    v = np.array([x for (q, _), x in dd.items() if q == p])
                    if boot:
                        v = rng.choice(v, len(v))
                    meds.append(np.median(v))
                return float(np.mean(meds))

            s_o, s_me = score(d), score(mine)
            ci = np.percentile([score(d, True) for _ in range(n_boot)], [2.5, 97.5])
            keys = sorted(set(d) & set(mine))
            w = sum(mine[k] > d[k] * 1.01 + 1e-12 for k in keys)
            l_ = sum(mine[k] < d[k] * 0.99 - 1e-12 for k in keys)
            p = ""
            if o != me and len(keys) >= 6:
                from scipy.stats import wilcoxon

                diff = np.array([mine[k] - d[k] for k in keys])
                p = f"{wilcoxon(diff).pvalue:.3g}" if np.any(diff != 0) else "1"
            out.append(f"| {o} | {len(probs)} | {s_o:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {s_me:.3f} | "
                       f"{s_me / s_o:.2f} | " + (f"{w}/{len(keys) - w - l_}/{l_} | {p} |" if o != me else "- | - |"))
            if o != me and len(probs) == len({q for q, _ in mine}) and (best_other is None or s_o > best_other[1]):
                best_other = (o, s_o)
        if best_other:
            out += ["", f"Best other optimizer on all {len({q for q, _ in mine})} problems: {best_other[0]} "
                        f"({best_other[1]:.3f}); {me} / best other = "
                        f"{np.mean([np.median([x for (q, _), x in mine.items() if q == p]) for p in {q for q, _ in mine}]) / best_other[1]:.2f}."]
        out += ["", "Per problem (median over seeds):", "",
                "| problem | " + " | ".join(o for o in opts if val.get((o, b))) + " |",
                "|---|" + "---|" * sum(1 for o in opts if val.get((o, b)))]
        for p in problems:
            cells = []
            for o in opts:
                d = val.get((o, b))
                if not d:
                    continue
                v = [x for (q, _), x in d.items() if q == p]
                cells.append(f"{np.median(v):.3f}" if v else "n/a")
            out.append(f"| {p} | " + " | ".join(cells) + " |")
        out.append("")
    if reach:
        out += reach_table(recs, val, me, problems, *reach)
    out += ert_table(recs, opts, problems)
    out += ["Optimizer time per query (median over runs and budgets, this machine, 1 torch thread):", "",
            "| optimizer | ms/query |", "|---|---|"]
    out += [f"| {o} | {1000 * np.median(secs[o]):.1f} |" for o in opts if secs[o]]
    return out + [""]


def reach_table(recs: list[RunRecord], val: dict, me: str, problems: list[str], at: int, within: int,
                share: float = 0.8) -> list[str]:
    """Per problem: the queries ``me`` needs (median over seeds of the first query at which a run's recommendation
    reaches it; a run that never does: inf) to reach the best other optimizer's median normalized value at ``at``
    queries, and whether that is within ``within``; then on how many problems it is, against ``share``."""
    others = sorted({o for o, b in val if b == at and o != me})
    if not others or not val.get((me, at)):
        return []
    out = [f"Queries `{me}` needs to reach the best other optimizer's median at {at} queries (median over seeds of "
           f"each run's first query at or above it; inf: not within the run), within {within}?", "",
           "| problem | best other at " + str(at) + " | its median | " + f"{me} needs | within {within} |",
           "|---|---|---|---|---|"]
    hits = n = 0
    for p in problems:
        meds = {o: float(np.median(v)) for o in others
                if (v := [x for (q, _), x in val[(o, at)].items() if q == p])}
        runs = [r for r in recs if r["problem"] == p and r["optimizer"] == me]
        if not meds or not runs:
            continue
        best = max(meds, key=meds.get)
        target = meds[best]
        need = []
        for r in runs:
            q = [q for q, v in zip(r["curve_q"], r["curve_n"]) if v >= target - 1e-12]
            need.append(q[0] if q else np.inf)
        m = float(np.median(need))
        ok = m <= within
        hits, n = hits + ok, n + 1
        out.append(f"| {p} | {best} | {target:.3f} | {m:.0f} | {'yes' if ok else 'no'} |")
    out += ["", f"Within {within} queries on {hits} of {n} problems ({100 * hits / max(n, 1):.0f} %; "
                f"target: at least {100 * share:.0f} %).", ""]
    return out


def ert_table(recs: list[RunRecord], opts: list[str], problems: list[str], frac: float = 0.9) -> list[str]:
    """Expected running time (queries) to reach ``frac`` of the best normalized value any run found on the
    problem: queries spent by all runs (the whole budget for runs that never got there) / successful runs.
    An optimizer run once per budget (budget-aware) is counted by its runs told the largest budget."""
    best = {p: max((max(r["curve_n"]) for r in recs if r["problem"] == p and r["curve_n"]), default=np.nan)
            for p in problems}
    out = [f"ERT to {frac:g} x the best value found on the problem by any run (queries; inf: no run got there):",
           "", "| problem | target | " + " | ".join(opts) + " |", "|---|---|" + "---|" * len(opts)]
    for p in problems:
        cells = []
        for o in opts:
            runs = [r for r in recs if r["problem"] == p and r["optimizer"] == o]
            if runs:  # a budget-aware optimizer ran once per budget: its runs told the largest one
                top = max(max(r["budgets"]) for r in runs)
                runs = [r for r in runs if max(r["budgets"]) == top]
            if not runs:
                cells.append("n/a")
                continue
            spent, hits = 0, 0
            for r in runs:
                hit = [q for q, v in zip(r["curve_q"], r["curve_n"]) if v >= frac * best[p]]
                spent += hit[0] if hit else r["n_queries"]
                hits += bool(hit)
            cells.append(f"{spent / hits:.0f}" if hits else "inf")
        out.append(f"| {p} | {frac * best[p]:.3f} | " + " | ".join(cells) + " |")
    return out + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="+", help="NAME=DIR[+DIR...]")
    ap.add_argument("--out", default=None)
    ap.add_argument("--me", default="surrogate", help="the optimizer label the others are compared with "
                                                     "(default %(default)s), e.g. 'surrogate[warm_start=zoo;warm_n=20]'")
    ap.add_argument("--seeds", type=int, default=None, help="only seeds 0..N-1 (to compare runs with as many seeds)")
    ap.add_argument("--reach", default=None, metavar="AT:WITHIN",
                    help="also: on which problems the compared optimizer reaches the best other's median at AT "
                         "queries within WITHIN queries (the spikes suite's criterion: 1000:333)")
    args = ap.parse_args()
    lines = []
    for spec in args.suites:
        name, dirs = spec.split("=", 1)
        recs = [r for r in load(dirs) if args.seeds is None or r["seed"] < args.seeds]
        reach = tuple(int(x) for x in args.reach.split(":")) if args.reach else None
        lines += table(name, recs, me=args.me, reach=reach)
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
