"""Figures from benchmark records: anytime curves per problem family, and the ECDF."""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from . import metrics

__all__ = ["anytime_curves", "ecdf_plot", "save_figures"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _curve_on_grid(rec: dict, q: np.ndarray) -> np.ndarray:
    qs, vs = np.asarray(rec["curve_q"]), np.asarray(rec["curve_n"], float)
    if len(vs) == 0:
        return np.full(len(q), np.nan)
    j = np.searchsorted(qs, q, side="right") - 1
    out = np.where(j >= 0, vs[np.clip(j, 0, None)], np.nan)
    return np.where(q <= rec["n_queries"], out, np.nan)


def anytime_curves(records: Sequence[dict], path: str | None = None):
    """Median (line) and interquartile range (band) over the runs of each problem family of the
    normalized recommendation value against queries (log axis); one panel per family."""
    plt = _plt()
    records = metrics.ran(records)
    fams: dict[str, list] = {}
    for r in records:
        fams.setdefault(r["problem_spec"].get("family") or r["problem_spec"]["kind"], []).append(r)
    n = len(fams)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    opts = list(dict.fromkeys(r["optimizer"] for r in records))
    colors = {o: plt.cm.tab10(i % 10) for i, o in enumerate(opts)}
    for ax, (fam, recs) in zip(axes.flat, fams.items()):
        qmax = max(r["n_queries"] for r in recs)
        q = np.unique(np.round(np.logspace(0, math.log10(max(qmax, 2)), 120)).astype(int))
        for o in opts:
            rs = [r for r in recs if r["optimizer"] == o]
            if not rs:
                continue
            # average over the family's problems of each seed's curve, then quantiles over (problem, seed)
            m = np.vstack([_curve_on_grid(r, q) for r in rs])
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(m, axis=0)
                    lo, hi = np.nanquantile(m, 0.25, axis=0), np.nanquantile(m, 0.75, axis=0)
            ax.plot(q, med, label=o, color=colors[o])
            ax.fill_between(q, lo, hi, color=colors[o], alpha=0.15)
        ax.set_xscale("log")
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("queries")
        ax.set_ylabel("normalized value")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    # every optimizer, including those absent from the first panel (e.g. continuous ones on a Codebook)
    axes.flat[0].legend(handles=[Line2D([], [], color=colors[o], label=o) for o in opts], fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def ecdf_plot(records: Sequence[dict], path: str | None = None, targets=metrics.DEFAULT_TARGETS):
    """ECDF of queries to reach targets (fractions of the best ever found), COCO style."""
    plt = _plt()
    q, fr = metrics.ecdf(records, targets)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (o, f) in enumerate(fr.items()):
        ax.step(q, f, where="post", label=o, color=plt.cm.tab10(i % 10))
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("queries")
    ax.set_ylabel("fraction of (problem, target, seed) reached")
    ax.set_title("ECDF, targets = " + ", ".join(f"{t:g}" for t in targets) + " x best ever", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def save_figures(records: Sequence[dict], out: str) -> list[str]:
    """Write ``anytime.png`` and ``ecdf.png`` to ``out``; return their paths."""
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, "anytime.png"), os.path.join(out, "ecdf.png")]
    anytime_curves(records, paths[0])
    ecdf_plot(records, paths[1])
    return paths
