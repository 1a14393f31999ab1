"""The report of a track (:mod:`mango.track`): units' best stimuli and values across checkpoints.

:func:`make_track_report` reads the checkpoints' run stores alone (no model or
generator is needed) and writes, in the track's output directory,

* ``track_grid.png`` -- rows = units, columns = checkpoints: each unit's best
  stimulus at each checkpoint, titled with its value;
* ``track_values.png`` -- each unit's best value against the checkpoint;
* ``index.html`` -- a self-contained page (images embedded) with both figures,
  the values table and each checkpoint's campaign;
* ``track.md`` -- the same as markdown (figures linked).

:func:`unit_bests` -- a campaign's best per unit, for one unit or a population --
is shared with :mod:`mango.track`.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from dataclasses import dataclass

import numpy as np

from ..._version import __version__
from ...errors import ConfigError
from ..report.plots import pyplot, to_images
from ..report.html import PAGE_CSS, img_tag, save_png
from ..result import Result, UnitResult
from ..store import RunStore

__all__ = ["make_track_report", "unit_bests", "TrackColumn", "load_columns", "grid_figure", "values_figure"]


def unit_bests(result: Result) -> list[UnitResult]:
    """Each unit's best of a campaign: :meth:`Result.units` for a population, one entry for a single unit."""
    if result.is_population:
        return result.units()
    name = result.unit_names[0] if len(result.unit_names) == 1 else "value"
    return [UnitResult(name=name, column=0, best_value=result.best_value, best_point=result.best_point,
                       best_query=result.best_query, best_stimulus=result.best_stimulus,
                       curve=result.best_so_far())]


@dataclass
class TrackColumn:
    """One checkpoint of a report: its label, store, and each unit's best."""

    label: str
    store: str
    units: list[UnitResult]
    n_queries: int
    budget: int
    warm_points: int
    status: str
    wall_s: float


def load_columns(stores, labels) -> list[TrackColumn]:
    """Read each checkpoint's store (read-only) into a :class:`TrackColumn`."""
    if len(stores) != len(labels):
        raise ConfigError(f"{len(stores)} stores but {len(labels)} labels; give one label per checkpoint.")
    cols = []
    for path, label in zip(stores, labels):
        with RunStore(path, mode="r") as s:
            res = s.result()
            status = s.status
        warm = int(((res.config or {}).get("warm_start") or {}).get("n", 0))
        cols.append(TrackColumn(label, os.fspath(path), unit_bests(res), res.n_queries, res.budget, warm, status,
                                res.wall_s))
    return cols


def _values(cols: list[TrackColumn]) -> np.ndarray:
    """``[n_units, n_checkpoints]`` best values (NaN: none finite)."""
    return np.array([[np.nan if u.best_value is None else u.best_value for u in c.units] for c in cols],
                    dtype=float).reshape(len(cols), -1).T


def grid_figure(cols: list[TrackColumn]):
    """Rows = units, columns = checkpoints: each unit's best stimulus, titled with its value."""
    plt = pyplot()
    names = [u.name for u in cols[0].units]
    k, n = len(names), len(cols)
    fig, axes = plt.subplots(k, n, figsize=(1.25 * n + 0.9, 1.3 * k + 0.6), dpi=100, squeeze=False)
    for j, c in enumerate(cols):
        for i, u in enumerate(c.units):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if u.best_stimulus is None:
                ax.text(0.5, 0.5, "no stimulus\nstored", ha="center", va="center", fontsize=6,
                        transform=ax.transAxes)
            else:
                img = to_images(np.asarray(u.best_stimulus)[None])[0]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            v = "–" if u.best_value is None else f"{u.best_value:.3g}"
            ax.set_title(f"{c.label}\n{v}" if i == 0 else v, fontsize=7)
            if j == 0:
                ax.set_ylabel(u.name, fontsize=7)
    fig.suptitle("best stimulus of each unit (rows) at each checkpoint (columns), with its value", fontsize=8)
    fig.tight_layout()
    return fig


def values_figure(cols: list[TrackColumn]):
    """Each unit's best value against the checkpoint."""
    plt = pyplot()
    vals = _values(cols)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(cols) + 3.5), 4.0), dpi=110)
    x = np.arange(len(cols))
    cmap = plt.get_cmap("tab10" if len(vals) <= 10 else "tab20")
    for i, u in enumerate(cols[0].units):
        ax.plot(x, vals[i], "o-", ms=4, lw=1.4, color=cmap(i % cmap.N), label=u.name)
    ax.set_xticks(x, [c.label for c in cols], rotation=30 if len(cols) > 6 else 0, fontsize=8)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("best value of the campaign")
    ax.set_title("each unit's best value across checkpoints", fontsize=10)
    ax.grid(alpha=0.3)
    if len(vals) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def _cell(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.4g}"


def _table_rows(cols: list[TrackColumn]) -> tuple[list[str], list[list[str]]]:
    """The values table: header and one row per unit, then each checkpoint's campaign."""
    head = ["unit"] + [c.label for c in cols]
    vals = _values(cols)
    rows = [[u.name] + [_cell(v) for v in vals[i]] for i, u in enumerate(cols[0].units)]
    rows.append(["median"] + [_cell(float(np.nanmedian(vals[:, j])) if np.isfinite(vals[:, j]).any() else None)
                              for j in range(len(cols))])
    rows.append(["warm-start points"] + [str(c.warm_points) for c in cols])
    rows.append(["queries / budget"] + [f"{c.n_queries} / {c.budget}" for c in cols])
    rows.append(["status"] + [c.status for c in cols])
    rows.append(["wall time (s)"] + [f"{c.wall_s:.1f}" for c in cols])
    rows.append(["store"] + [os.path.basename(c.store) for c in cols])
    return head, rows


def make_track_report(out_dir, stores, labels, title: str | None = None, description: str = "") -> str:
    """Write the figures, ``index.html`` and ``track.md`` of a track into ``out_dir``; return the HTML's path.

    ``stores``: the checkpoints' run stores in training order, ``labels``
    their names (e.g. ``"epoch 3"``); ``description`` a line under the title.
    """
    out_dir = os.fspath(out_dir)
    cols = load_columns(stores, labels)
    if not cols:
        raise ConfigError("a track report needs at least one checkpoint's store.")
    if len({len(c.units) for c in cols}) != 1:
        raise ConfigError("the checkpoints' campaigns track different numbers of units; report one track at a time.")
    os.makedirs(out_dir, exist_ok=True)
    title = title or f"mango track: {len(cols[0].units)} unit(s) over {len(cols)} checkpoint(s)"
    grid = save_png(grid_figure(cols), os.path.join(out_dir, "track_grid.png"))
    curve = save_png(values_figure(cols), os.path.join(out_dir, "track_values.png"))
    head, rows = _table_rows(cols)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
            f"<p class='sub'>{html.escape(description)}</p>" if description else "",
            f"<p class='sub'>generated {when} by mango {__version__} from {len(cols)} run store(s)</p>",
            "<h2>Best stimulus per unit and checkpoint</h2>", img_tag(grid, "image/png", "best stimuli"),
            "<h2>Best value per unit and checkpoint</h2>", img_tag(curve, "image/png", "best values"),
            "<h2>Values</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    page += ["<tr>" + "".join(f"<td{' class=l' if j == 0 else ''}>{html.escape(c)}</td>" for j, c in enumerate(r))
             + "</tr>" for r in rows]
    page.append("</table></body></html>")
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(page))
    md = [f"# {title}", "", *([description, ""] if description else []),
          "![best stimulus of each unit at each checkpoint](track_grid.png)", "",
          "![best value of each unit across checkpoints](track_values.png)", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    with open(os.path.join(out_dir, "track.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    return path
