"""Metrics over benchmark records (as returned by :func:`mango.bench.run_benchmark`).

Two normalizations of a value ``v`` of a problem:

* ``normalized`` -- ``(v - ref_low) / (ref_max - ref_low)`` with the problem's
  reference (zoo neurons: activation / max response over the training images;
  test functions: 0 = mean of random points, 1 = optimum); computed by the runner.
* ``rel_best`` -- ``(v - ref_low) / (best_ever - ref_low)``, ``best_ever`` being
  the best value any run of the benchmark found on the problem (1 = the best
  known).  Targets for ERT and the ECDF are levels of ``rel_best``.

Values at a budget are *anytime*: what a run had after that many queries.
Medians come with percentile-bootstrap confidence intervals (seeded).
Expected running time (ERT, as in COCO): for a target, the queries spent by all
runs (a failed run counts its whole budget) divided by the number of runs that
reached it; ``inf`` when none did.  The ECDF (COCO / IOHprofiler style) is, for
each query count ``q``, the fraction of (problem, target, seed) triples whose
target was reached within ``q`` queries.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["ran", "rows", "common_problems", "problem_groups", "best_ever", "add_rel_best", "bootstrap_median_ci",
           "summary", "per_problem", "hitting_times",
           "ert", "ecdf", "timing", "winners", "markdown_report", "DEFAULT_TARGETS"]

DEFAULT_TARGETS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def _pd():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover
        raise ConfigError("benchmark tables need pandas: pip install 'mango-am[bench]'.") from exc
    return pd


def ran(records: Sequence[dict]) -> list[dict]:
    """The records of runs that ran (not ``skipped`` as incompatible)."""
    return [r for r in records if not r.get("skipped")]


def rows(records: Sequence[dict]):
    """One DataFrame row per run and budget, with ``rel_best`` added."""
    pd = _pd()
    records = ran(records)
    if not records:
        raise ConfigError("no benchmark records: run the benchmark first (results.jsonl is empty).")
    df = pd.DataFrame([r for rec in records for r in rec["rows"]])
    return add_rel_best(df, records)


def best_ever(records: Sequence[dict]) -> dict[str, float]:
    """Best (recommendation) value found on each problem across all runs."""
    records = ran(records)
    out: dict[str, float] = {}
    for rec in records:
        vals = [v for v in rec["curve_v"] if v is not None and math.isfinite(v)]
        if vals:
            out[rec["problem"]] = max(out.get(rec["problem"], -math.inf), max(vals))
    return out


def _ref_low(records) -> dict[str, float]:
    return {rec["problem"]: float(rec["ref_low"]) for rec in records}


def _rel(v, low, best):
    d = best - low
    if not d > 0:
        return np.where(np.asarray(v) >= best, 1.0, 0.0)
    return (np.asarray(v, float) - low) / d


def add_rel_best(df, records):
    """Add the column ``rel_best`` (value relative to the best ever found on the problem)."""
    be, low = best_ever(records), _ref_low(records)
    df = df.copy()
    df["rel_best"] = [float(_rel(v, low[p], be.get(p, v))) for p, v in zip(df["problem"], df["best_value"])]
    return df


def bootstrap_median_ci(x, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """``(median, low, high)``: the median and its percentile-bootstrap ``1 - alpha`` interval."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    return float(np.median(x)), float(np.quantile(meds, alpha / 2)), float(np.quantile(meds, 1 - alpha / 2))


def common_problems(df) -> list[str]:
    """Problems on which every optimizer in ``df`` has results (the fair ground for pooled tables)."""
    opts = set(df["optimizer"])
    per = df.groupby("problem")["optimizer"].agg(lambda s: set(s))
    return [p for p in dict.fromkeys(df["problem"]) if per[p] >= opts]


def summary(df, column: str = "normalized", seed: int = 0):
    """Per optimizer and budget: median of ``column`` over all (problem, seed) runs, with a 95% bootstrap CI."""
    pd = _pd()
    out = []
    for (opt, b), g in df.groupby(["optimizer", "budget"], sort=False):
        med, lo, hi = bootstrap_median_ci(g[column].to_numpy(), seed=seed)
        out.append({"optimizer": opt, "budget": int(b), "median": med, "ci_low": lo, "ci_high": hi, "n": len(g)})
    return pd.DataFrame(out)


def per_problem(df, budget: int | None = None, column: str = "normalized"):
    """Problems x optimizers: median of ``column`` over seeds at ``budget`` (default: the largest)."""
    b = int(df["budget"].max()) if budget is None else int(budget)
    g = df[df["budget"] == b]
    if g.empty:
        raise ConfigError(f"no results at budget {b}; budgets present: {sorted(df['budget'].unique().tolist())}.")
    return g.pivot_table(index="problem", columns="optimizer", values=column, aggfunc="median", sort=False)


def hitting_times(records: Sequence[dict], targets: Sequence[float] = DEFAULT_TARGETS):
    """One row per (run, target): ``queries`` to first reach ``rel_best >= target`` (inf = never) and
    ``spent`` (the queries the run used until then, or its whole budget)."""
    pd = _pd()
    records = ran(records)
    be, low = best_ever(records), _ref_low(records)
    out = []
    for rec in records:
        p = rec["problem"]
        q = np.asarray(rec["curve_q"], float)
        rel = _rel(np.asarray(rec["curve_v"], float), low[p], be.get(p, math.inf)) if len(q) else np.zeros(0)
        for t in targets:
            hit = np.flatnonzero(rel >= t - 1e-12)
            first = float(q[hit[0]]) if len(hit) else math.inf
            out.append({"problem": p, "optimizer": rec["optimizer"], "seed": rec["seed"], "target": float(t),
                        "queries": first, "spent": first if math.isfinite(first) else float(rec["n_queries"])})
    return pd.DataFrame(out)


def ert(records: Sequence[dict], targets: Sequence[float] = DEFAULT_TARGETS):
    """Expected running time per (problem, optimizer, target); failures count their whole budget."""
    pd = _pd()
    ht = hitting_times(records, targets)
    out = []
    for (p, o, t), g in ht.groupby(["problem", "optimizer", "target"], sort=False):
        succ = int(np.isfinite(g["queries"]).sum())
        out.append({"problem": p, "optimizer": o, "target": t, "runs": len(g), "successes": succ,
                    "ert": float(g["spent"].sum() / succ) if succ else math.inf})
    return pd.DataFrame(out)


def ecdf(records: Sequence[dict], targets: Sequence[float] = DEFAULT_TARGETS, queries: Sequence[int] | None = None):
    """Per optimizer, the fraction of (problem, target, seed) triples solved within ``q`` queries.

    Returns ``(q, {optimizer: fractions})``; ``q`` defaults to a log-spaced grid up to the largest budget.
    """
    ht = hitting_times(records, targets)
    if queries is None:
        qmax = max(rec["n_queries"] for rec in ran(records))
        queries = np.unique(np.round(np.logspace(0, math.log10(max(qmax, 1)), 200)).astype(int))
    q = np.asarray(queries)
    out = {}
    for o, g in ht.groupby("optimizer", sort=False):
        h = np.sort(g["queries"].to_numpy())
        out[o] = np.searchsorted(h, q, side="right") / len(h)
    return q, out


def timing(records: Sequence[dict]):
    """Per optimizer: median optimizer seconds and oracle seconds per query over runs."""
    records = ran(records)
    pd = _pd()
    df = pd.DataFrame([{"optimizer": r["optimizer"], "opt_ms": 1e3 * r["optimizer_s"] / max(r["n_queries"], 1),
                        "oracle_ms": 1e3 * r["oracle_s"] / max(r["n_queries"], 1),
                        "wall_s": r["wall_s"]} for r in records])
    return df.groupby("optimizer", sort=False).median()


def winners(df, column: str = "normalized"):
    """Per budget: optimizers ranked by the mean over problems of their median ``column`` over seeds.

    Only problems every optimizer ran count (:func:`common_problems`).

    Returns rows ``budget, best, score, second, second_score, ratio`` (best / second).
    """
    pd = _pd()
    df = df[df["problem"].isin(common_problems(df))]
    out = []
    for b, g in df.groupby("budget"):
        m = g.groupby(["problem", "optimizer"])[column].median().unstack("optimizer")
        score = m.mean(axis=0).sort_values(ascending=False)
        row = {"budget": int(b), "best": score.index[0], "score": float(score.iloc[0])}
        if len(score) > 1:
            row.update(second=score.index[1], second_score=float(score.iloc[1]),
                       ratio=float(score.iloc[0] / score.iloc[1]) if score.iloc[1] else math.inf)
        out.append(row)
    return pd.DataFrame(out)


def _f(x, nd=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{nd}f}"


def problem_groups(df) -> list[tuple[list[str], list[str], list[int]]]:
    """Problems grouped by (optimizers that ran them, budgets): ``[(problems, optimizers, budgets)]``.

    Pooled tables are only fair within a group: same optimizers, same budgets.
    """
    key = {}
    for p, g in df.groupby("problem", sort=False):
        k = (tuple(sorted(set(g["optimizer"]))), tuple(sorted(g["budget"].unique().tolist())))
        key.setdefault(k, []).append(p)
    return [(probs, list(o), list(b)) for (o, b), probs in key.items()]


def _pooled(df, opts, budgets, seed, lines):
    for col, title in (("normalized", "activation / reference max (zoo: max over the training images; "
                                      "test functions: 0 = random, 1 = optimum)"),
                       ("rel_best", "value / best ever found on the problem across all runs")):
        s = summary(df, col, seed=seed)
        lines += [f"Median {title}, over all (problem, seed) runs, [95% bootstrap CI]:", "",
                  "| optimizer | " + " | ".join(f"{b} queries" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for o in opts:
            cells = []
            for b in budgets:
                r = s[(s["optimizer"] == o) & (s["budget"] == b)]
                cells.append("–" if r.empty else f"{_f(r['median'].iloc[0])} [{_f(r['ci_low'].iloc[0])}, "
                                                 f"{_f(r['ci_high'].iloc[0])}]")
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    w = winners(df)
    lines += ["Winner per budget (mean over problems of the median normalized value over seeds):", "",
              "| budget | best | score | runner-up | score | ratio |", "|---|---|---|---|---|---|"]
    for _, r in w.iterrows():
        lines.append(f"| {r['budget']} | {r['best']} | {_f(r['score'])} | {r.get('second', '–')} | "
                     f"{_f(r.get('second_score'))} | {_f(r.get('ratio'), 2)} |")
    lines.append("")


def markdown_report(records: Sequence[dict], targets: Sequence[float] = DEFAULT_TARGETS, seed: int = 0,
                    order: Sequence[str] | None = None) -> str:
    """Markdown tables: pooled medians with CIs and winners per group of comparable problems,
    per-problem medians at every budget, ERT, and time per query.  ``order``: optimizer labels in
    the order to show them (default: order of appearance)."""
    full = rows(records)
    seen = list(dict.fromkeys(full["optimizer"]))
    opts_all = [o for o in (order or []) if o in seen] + [o for o in seen if o not in (order or [])]
    lines = []
    groups = problem_groups(full)
    groups = [(probs, [o for o in opts_all if o in opts], budgets) for probs, opts, budgets in groups]
    for i, (probs, opts, budgets) in enumerate(groups):
        lines += [f"### Pooled over {', '.join(probs)}" + (f" (group {i + 1} of {len(groups)}: problems run by "
                                                           "the same optimizers at the same budgets)"
                                                           if len(groups) > 1 else ""), ""]
        _pooled(full[full["problem"].isin(probs)], opts, budgets, seed, lines)
    for b in sorted(full["budget"].unique().tolist()):
        pp = per_problem(full, b)
        g = full[full["budget"] == b]
        counts = g.pivot_table(index="problem", columns="optimizer", values="normalized", aggfunc="count")
        n_max = int(counts.max().max())
        lines += [f"### Per problem at {b} queries: median normalized value over seeds", "",
                  f"Over {n_max} seeds; (n=…) marks cells with fewer finished runs.", "",
                  "| problem | " + " | ".join(opts_all) + " |", "|---|" + "---|" * len(opts_all)]
        for p, r in pp.iterrows():
            best = np.nanmax(r.to_numpy(dtype=float))
            cells = []
            for o in opts_all:
                c = ("**" + _f(r.get(o)) + "**") if r.get(o) == best else _f(r.get(o))
                n = counts.loc[p].get(o) if o in counts.columns else None
                if n is not None and np.isfinite(n) and 0 < int(n) < n_max:
                    c += f" (n={int(n)})"
                cells.append(c)
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        lines.append("")
    e = ert(records, targets)
    lines += ["### Expected running time (queries) to reach a fraction of the best ever found", "",
              "Per cell: the median over problems of the per-problem ERT (failed runs count their whole "
              "budget; ∞ when the optimizer reached the target on at most half of the problems), and "
              "(successful runs / runs).", ""]
    for probs, opts, budgets in groups:
        if len(groups) > 1:
            lines += [f"Problems {', '.join(probs)} (budget {budgets[-1]}):", ""]
        lines += ["| optimizer | " + " | ".join(f"≥{t:g}" for t in targets) + " |", "|---|" + "---|" * len(targets)]
        eg = e[e["problem"].isin(probs)]
        for o in opts:
            cells = []
            for t in targets:
                g = eg[(eg["optimizer"] == o) & (eg["target"] == t)]
                med = float(np.median(g["ert"].to_numpy())) if len(g) else math.nan
                cells.append(f"{_f(med, 0)} ({int(g['successes'].sum())}/{int(g['runs'].sum())})")
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    tm = timing(records).reindex(opts_all)
    lines += ["### Time per query (median over runs)", "", "| optimizer | optimizer ms/query | oracle ms/query | "
              "wall s/run |", "|---|---|---|---|"]
    for o in opts_all:
        r = tm.loc[o]
        lines.append(f"| {o} | {_f(r['opt_ms'], 3)} | {_f(r['oracle_ms'], 3)} | {_f(r['wall_s'], 1)} |")
    lines.append("")
    skipped = sorted({(r["problem"], r["optimizer"], r["skipped"]) for r in records if r.get("skipped")})
    if skipped:
        lines += ["Not run (–): " + "; ".join(f"{o} on {p} ({why})" for p, o, why in skipped) + ".", ""]
    return "\n".join(lines)
