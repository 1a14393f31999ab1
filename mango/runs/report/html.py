"""Visual reports of runs, from their run stores alone.

:func:`make_report` (and ``mango report RUN.sqlite [more runs] --out DIR``)
writes, for each run,

* ``convergence_<i>.png`` -- best value so far against queries, every response
  faint behind it, resumes marked;
* ``topk_<i>.png`` -- the top-k *distinct* stimuli as an image grid, each with
  its value (when the store holds stimuli);
* ``evolution_<i>.gif`` -- the best stimulus over the run, one frame per
  improvement;

and for a population campaign (several units, one run) ``units_<i>.png`` (each
unit's best stimulus, titled with its name and best value, normalized when the
run recorded the unit's reference) and ``unit_curves_<i>.png`` (each unit's
best so far); for several runs ``compare.png`` (their convergence curves in one
figure and their final best values), plus ``index.html``: a self-contained page (all
images embedded as base64) with everything above, a summary table, the top-k
queries and each run's config.  Only the store is read: no generator, oracle
or model is needed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..._version import __version__
from ...errors import ConfigError
from ..outdir import check_out_dir
from .plots import pyplot
from ..store import RunStore
from ..words import objective_text, reference_of, space_text, value_label

__all__ = ["make_report", "RunData", "load_run", "convergence_figure", "compare_figure", "topk_figure",
           "evolution_gif", "topk_distinct", "units_figure", "unit_curves_figure", "save_png",
           "img_tag", "PAGE_CSS"]


@dataclass
class RunData:
    """What a report needs of one run, read from its store."""

    path: str
    label: str
    config: dict
    status: str
    budget: int
    n_queries: int
    queries: np.ndarray
    values: np.ndarray
    points: np.ndarray
    responses: np.ndarray | None
    unit_names: list
    hashes: list
    has_stimulus: np.ndarray
    sessions: list
    summary: dict | None
    stimuli: dict = field(default_factory=dict)  # query -> float32 [C, H, W]
    #: a population campaign's units (:class:`mango.runs.result.UnitResult`, best stimulus None when not stored)
    units: list | None = None

    @property
    def unit_references(self) -> list:
        """A population campaign's reference per unit (a dict with ``max``, or None), as the CLI recorded them."""
        refs = list((self.config.get("metadata") or {}).get("unit_references") or [])
        n = len(self.units or [])
        return [r if isinstance(r, dict) and isinstance(r.get("max"), (int, float)) else None
                for r in (refs + [None] * n)[:n]]

    @property
    def best_index(self) -> int | None:
        finite = np.isfinite(self.values)
        return int(np.flatnonzero(finite)[np.argmax(self.values[finite])]) if finite.any() else None

    def best_so_far(self) -> np.ndarray:
        v = np.where(np.isfinite(self.values), self.values, -np.inf)
        out = np.maximum.accumulate(v) if len(v) else v
        return np.where(np.isfinite(out), out, np.nan)


def load_run(store: RunStore | str | os.PathLike, index: int = 0) -> RunData:
    """Read one run (and the stimuli a report shows) from its store."""
    s = store if isinstance(store, RunStore) else RunStore(store, mode="r")
    cfg = s.config
    if cfg is None:
        raise ConfigError(f"{s.path!r} holds no run yet (no config written); nothing to report.")
    q = s.read_queries()
    label = f"{cfg.get('optimizer')} seed={cfg.get('seed')} ({os.path.basename(s.path)})"
    run = RunData(path=s.path, label=label, config=cfg, status=s.status, budget=int(cfg.get("budget", 0)),
                  n_queries=s.n_queries(), queries=q["query"], values=q["values"], points=q["points"],
                  responses=q["responses"], unit_names=s.unit_names, hashes=q["stimulus_hash"],
                  has_stimulus=q["has_stimulus"], sessions=s.sessions(), summary=s.summary)
    wanted = set(q["query"][q["has_stimulus"]].tolist())
    # only the stimuli a report can show: the improvements (GIF) and the best distinct ones (grid)
    improving = _improvements(run)
    top = np.argsort(-np.where(np.isfinite(run.values), run.values, -np.inf), kind="stable")[:512]
    need = {int(run.queries[i]) for i in np.concatenate([improving, top]).astype(int)} & wanted
    run.stimuli = s.read_stimuli(sorted(need))
    if cfg.get("targets") is not None:
        run.units = s.result().units()
    if not isinstance(store, RunStore):
        s.close()
    return run


def _improvements(run: RunData) -> np.ndarray:
    """Indices of points that raised the best value so far."""
    best = -np.inf
    out = []
    for i, v in enumerate(run.values):
        if np.isfinite(v) and v > best:
            best = v
            out.append(i)
    return np.asarray(out, dtype=int)


def topk_distinct(run: RunData, k: int = 16, with_stimulus: bool = True) -> list[int]:
    """Row indices of the ``k`` best points with distinct stimuli (by hash; by point without stimuli).

    With stimuli, near-copies are skipped as well (:func:`mango.runs.report.plots.pick_distinct`, shared with best.png).
    """
    from .plots import pick_distinct

    order = np.argsort(-np.where(np.isfinite(run.values), run.values, -np.inf), kind="stable")
    if with_stimulus:
        order = [i for i in order if int(run.queries[i]) in run.stimuli]

    def key(i):
        return run.hashes[i] if run.hashes[i] is not None else run.points[i].tobytes()

    image = (lambda i: run.stimuli[int(run.queries[i])]) if with_stimulus else None
    return pick_distinct(order, run.values, key, k, image=image)


# -- figures ----------------------------------------------------------------------
def _to_image(stim: np.ndarray) -> tuple[np.ndarray, str | None]:
    """``[C, H, W]`` in [0, 1] -> an array imshow draws, and a colormap."""
    if stim.shape[0] == 3:
        return np.transpose(stim, (1, 2, 0)), None
    return stim[0], "gray"


def convergence_figure(run: RunData, ax=None):
    """Best so far against queries, every value faint behind; resumes as dotted lines."""
    plt = pyplot()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    finite = np.isfinite(run.values)
    ax.scatter(run.queries[finite], run.values[finite], s=6, alpha=0.25, color="tab:gray", lw=0,
               label="every response")
    if (~finite).any():
        lo = np.nanmin(run.values[finite]) if finite.any() else 0.0
        ax.scatter(run.queries[~finite], np.full((~finite).sum(), lo), marker="x", s=12, color="tab:red",
                   alpha=0.6, label="non-finite")
    if len(run.values):
        ax.step(np.append(run.queries, run.n_queries), np.append(run.best_so_far(), run.best_so_far()[-1]),
                where="post", color="tab:blue", lw=2, label="best so far")
    for s in run.sessions[1:]:
        ax.axvline(s["n_queries_start"], color="tab:orange", ls=":", lw=1.2)
    if len(run.sessions) > 1:
        ax.plot([], [], color="tab:orange", ls=":", label="resumed")
    ref = reference_of(run.config)
    if ref:
        ax.axhline(ref["max"], color="tab:green", ls="--", lw=1.3, label=f"best natural image ({ref['max']:.4g})")
    ax.set_xlim(0, max(run.budget, run.n_queries, 1))
    ax.set_xlabel("queries")
    ax.set_ylabel(value_label(run.config.get("objective")))
    ax.set_title(run.label, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if fig is not None:
        fig.tight_layout()
    return fig


def compare_figure(runs: list[RunData]):
    """Several runs' convergence curves in one figure, and their final best values."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]})
    colors = plt.get_cmap("tab10")
    finals = []
    for i, r in enumerate(runs):
        c = colors(i % 10)
        if len(r.values):
            bsf = r.best_so_far()
            ax.step(np.append(r.queries, r.n_queries), np.append(bsf, bsf[-1]), where="post", color=c, lw=1.8,
                    label=r.label)
            finals.append(np.nanmax(bsf) if np.isfinite(bsf).any() else np.nan)
        else:
            finals.append(np.nan)
    ax.set_xlabel("queries")
    ax.set_ylabel("best so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    neurons = {_neuron_key(r.config.get("objective")) for r in runs}
    ax.set_title("runs compared" + ("" if len(neurons) == 1 else " (note: different neurons or objectives)"),
                 fontsize=10)
    y = np.arange(len(runs))
    for yi, f in zip(y, finals):
        if np.isfinite(f):
            bx.plot([f], [yi], "o", ms=9, color=colors(yi % 10))
            bx.annotate(f"{f:.4g}", (f, yi), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8)
    bx.set_yticks(y, [f"run {i + 1}" for i in range(len(runs))], fontsize=8)
    bx.set_ylim(len(runs) - 0.4, -0.6)
    fin = np.asarray(finals, dtype=float)
    if np.isfinite(fin).any():
        lo, hi = np.nanmin(fin), np.nanmax(fin)
        pad = 0.15 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 1e-3)
        bx.set_xlim(lo - pad, hi + pad)
    bx.set_xlabel("final best value")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _neuron_key(objective) -> str:
    """What identifies the neuron of a run: the oracle and unit when recorded, else the whole objective."""
    if isinstance(objective, dict) and "oracle" in objective:
        objective = {"oracle": objective["oracle"], "unit": objective.get("unit")}
    return json.dumps(objective, sort_keys=True, default=str)


def topk_figure(run: RunData, k: int = 16):
    """The top-k distinct stored stimuli as a grid titled with rank, query and value (None without stimuli)."""
    rows = topk_distinct(run, k)
    if not rows:
        return None
    plt = pyplot()
    n = len(rows)
    cols = min(n, 8)
    nr = -(-n // cols)
    fig, axes = plt.subplots(nr, cols, figsize=(1.6 * cols, 2.0 * nr + 0.3), dpi=110, squeeze=False,
                             layout="constrained")
    for a in axes.flat:
        a.axis("off")
    for rank, (i, a) in enumerate(zip(rows, axes.flat), 1):
        img, cmap = _to_image(run.stimuli[int(run.queries[i])])
        a.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"#{rank} q{int(run.queries[i])}\n{run.values[i]:.4g}", fontsize=7)
    fig.suptitle(f"top {n} distinct stimuli: {run.label}", fontsize=9)
    return fig


def evolution_gif(run: RunData, path: str | os.PathLike | None = None, size: int = 160,
                  max_frames: int = 60) -> bytes | None:
    """An animated GIF of the best stimulus over the run (one frame per improvement); None without stimuli."""
    from PIL import Image, ImageDraw

    rows = [i for i in _improvements(run) if int(run.queries[i]) in run.stimuli]
    if not rows:
        return None
    if len(rows) > max_frames:  # keep the first and last, evenly in between
        pick = np.unique(np.linspace(0, len(rows) - 1, max_frames).round().astype(int))
        rows = [rows[j] for j in pick]
    frames = []
    for i in rows:
        stim = run.stimuli[int(run.queries[i])]
        arr = np.rint(np.clip(stim, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(arr.transpose(1, 2, 0) if arr.shape[0] == 3 else arr[0])
        img = img.convert("RGB")
        scale = max(1, size // max(img.size))
        img = img.resize((img.size[0] * scale, img.size[1] * scale), Image.NEAREST)
        w = max(img.size[0], 150)
        canvas = Image.new("RGB", (w, img.size[1] + 30), "white")
        canvas.paste(img, ((w - img.size[0]) // 2, 0))
        ImageDraw.Draw(canvas).text((4, img.size[1] + 3), f"query {int(run.queries[i])}\nvalue {run.values[i]:.4g}",
                                    fill="black")
        frames.append(canvas)
    buf = io.BytesIO()
    durations = [500] * (len(frames) - 1) + [2000]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


# -- HTML -------------------------------------------------------------------------
def save_png(fig, path) -> bytes:
    """Write ``fig`` as a PNG to ``path``, close it, and return the PNG's bytes (for :func:`img_tag`)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return data


def img_tag(data: bytes, mime: str, alt: str) -> str:
    """An ``<img>`` with the image embedded (base64): a page that needs no other file."""
    return (f'<img alt="{html.escape(alt)}" src="data:{mime};base64,'
            f'{base64.b64encode(data).decode("ascii")}">')


def _fmt(v, digits: int = 6) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{float(v):.{digits}g}"
    return html.escape(str(v))


PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;
color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}
.sub{color:#666;margin-top:4px} img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5} td.l,th.l{text-align:left} pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:.8em;
max-height:420px} .status-finished{color:#1a7f37;font-weight:600} .status-running,.status-error,.status-interrupted
{color:#b35900;font-weight:600} .flex{display:flex;gap:20px;align-items:flex-start;flex-wrap:wrap}
figure{margin:0} figcaption{font-size:.85em;color:#555} .warn{color:#b35900}
"""


def make_report(stores, out_dir: str | os.PathLike, top_k: int = 16, title: str | None = None) -> str:
    """Write figures, GIFs and a self-contained ``index.html`` for one or more runs; return the HTML's path.

    ``stores`` is a path, a :class:`~mango.runs.store.RunStore`, or a list of them
    (several runs on one neuron are compared in one figure).
    """
    if int(top_k) != top_k or top_k < 1:
        raise ConfigError(f"top_k must be an integer >= 1, got {top_k!r}.")
    out_dir = os.fspath(out_dir)
    check_out_dir(out_dir, "out_dir")
    os.makedirs(out_dir, exist_ok=True)
    if isinstance(stores, (str, os.PathLike, RunStore)):
        stores = [stores]
    runs = [load_run(s, i) for i, s in enumerate(stores)]  # paths are opened read-only and closed again
    if not runs:
        raise ConfigError("make_report needs at least one run store.")
    title = title or ("mango run report" if len(runs) == 1 else f"mango report: {len(runs)} runs")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='sub'>generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by mango {__version__} "
             f"from {len(runs)} run store(s)</p>"]
    # overview table
    parts.append("<table><tr><th class='l'>run</th><th class='l'>file</th><th class='l'>optimizer</th><th>seed</th>"
                 "<th>queries / budget</th><th>best value</th><th>÷ best natural image</th><th>best at query</th>"
                 "<th class='l'>status</th>"
                 "<th>sessions</th></tr>")
    for i, r in enumerate(runs, 1):
        b = r.best_index
        parts.append(
            f"<tr><td class='l'><a href='#run{i}'>run {i}</a></td><td class='l'>{html.escape(os.path.basename(r.path))}"
            f"</td><td class='l'>{_fmt(r.config.get('optimizer'))}</td><td>{_fmt(r.config.get('seed'))}</td>"
            f"<td>{r.n_queries} / {r.budget}</td><td>{_fmt(None if b is None else r.values[b])}</td>"
            f"<td>{_norm_cell(r, b)}</td>"
            f"<td>{'–' if b is None else int(r.queries[b])}</td>"
            f"<td class='l status-{html.escape(r.status)}'>{_status_text(r.status)}</td>"
            f"<td>{len(r.sessions)}</td></tr>")
    parts.append("</table>")
    if len(runs) > 1:
        data = save_png(compare_figure(runs), os.path.join(out_dir, "compare.png"))
        parts.append("<h2>Runs compared</h2>" + img_tag(data, "image/png", "runs compared"))
    for i, r in enumerate(runs, 1):
        parts.append(_run_section(r, i, out_dir, int(top_k)))
    parts.append("</body></html>")
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def _status_text(status: str) -> str:
    return {"running": "running (or killed: resume it)", "new": "not started"}.get(status, status)


def _run_section(r: RunData, i: int, out_dir: str, top_k: int) -> str:
    out = [f"<h2 id='run{i}'>Run {i}: {html.escape(r.label)}</h2>"]
    data = save_png(convergence_figure(r), os.path.join(out_dir, f"convergence_{i}.png"))
    out.append("<div class='flex'><figure>" + img_tag(data, "image/png", "convergence") +
               "<figcaption>best value so far against queries; every response in grey"
               + ("; dashed: the unit's best response to a natural image" if reference_of(r.config) else "")
               + ("; dotted: resumed here" if len(r.sessions) > 1 else "") + "</figcaption></figure>")
    gif = evolution_gif(r, os.path.join(out_dir, f"evolution_{i}.gif"))
    if gif is not None:
        out.append("<figure>" + img_tag(gif, "image/gif", "best stimulus over the run") +
                   "<figcaption>best stimulus over the run<br>(one frame per improvement)</figcaption></figure>")
    out.append("</div>")
    fig = topk_figure(r, top_k)
    if fig is not None:
        data = save_png(fig, os.path.join(out_dir, f"topk_{i}.png"))
        n_img = int(r.has_stimulus.sum())
        note = "" if n_img == len(r.values) else f" (the store kept {n_img} of {len(r.values)} stimuli)"
        out.append("<h3>Top distinct stimuli</h3>" + img_tag(data, "image/png", "top stimuli") +
                   f"<p class='sub'>ranked by objective value; duplicates and near-copies removed{note}</p>")
    else:
        out.append("<p class='sub'>No stimuli were stored for this run (plain function objective or "
                   "stimuli='none'); the best points are listed below.</p>")
    out.append(_topk_table(r, top_k))
    if r.units:
        out.append(_population_section(r, i, out_dir))
    out.append(f"<h3>Summary</h3><table>{_kv_rows(_summary_rows(r))}</table>")
    if r.sessions:
        out.append("<table><tr><th>session</th><th class='l'>started (UTC)</th><th class='l'>status</th>"
                   "<th>queries at start</th><th>at end</th><th>pid</th></tr>")
        for s in r.sessions:
            started = _dt.datetime.fromtimestamp(s["started"], _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            out.append(f"<tr><td>{s['id']}</td><td class='l'>{started}</td><td class='l'>{_fmt(s['status'])}</td>"
                       f"<td>{s['n_queries_start']}</td><td>{_fmt(s['n_queries_end'])}</td><td>{s['pid']}</td></tr>")
        out.append("</table>")
    cfg = json.dumps(r.config, indent=2, sort_keys=True, default=str)
    out.append(f"<details><summary>Config</summary><pre>{html.escape(cfg)}</pre></details>")
    return "\n".join(out)


def units_figure(r: RunData):
    """A population campaign's grid: each unit's best stimulus titled with its name and best value (normalized
    when its reference is known); a unit whose best stimulus was not stored gets a cell saying so."""
    from .plots import unit_grid_figure

    refs = r.unit_references
    values = [u.best_value for u in r.units]
    normalized = [None if (ref is None or v is None) else v / ref["max"] for v, ref in zip(values, refs)]
    return unit_grid_figure([u.name for u in r.units], values, [u.best_stimulus for u in r.units], normalized,
                            title=f"each unit's best stimulus: {r.label}")


def unit_curves_figure(r: RunData):
    """A population campaign's per-unit best-so-far curves (one line per unit, small multiples above 10 units)."""
    from . import plots

    return plots.unit_curves_figure([u.name for u in r.units], [u.curve for u in r.units],
                                    [None if ref is None else ref["max"] for ref in r.unit_references],
                                    title=f"best so far, per unit: {r.label}")


def _population_section(r: RunData, i: int, out_dir: str) -> str:
    """The units of a population campaign: their best stimuli, their curves and a table."""
    from .plots import SMALL_MULTIPLES_ABOVE

    refs = r.unit_references
    k = len(r.units)
    grid = save_png(units_figure(r), os.path.join(out_dir, f"units_{i}.png"))
    curves = save_png(unit_curves_figure(r), os.path.join(out_dir, f"unit_curves_{i}.png"))
    missing = [u.name for u in r.units if u.best_stimulus is None]
    note = ("" if not missing else f"; the store did not keep the best stimulus of {len(missing)} of the {k} units "
            f"({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}): their cells say so")
    rows = []
    for u, ref in zip(r.units, refs):
        norm = "–" if (ref is None or u.best_value is None) else f"{u.best_value / ref['max']:.3g}"
        rows.append(f"<tr><td class='l'>{html.escape(u.name)}</td><td>{u.column}</td><td>{_fmt(u.best_value)}</td>"
                    f"<td>{norm}</td><td>{'–' if u.best_query is None else u.best_query}</td>"
                    f"<td class='l'>{'stored' if u.best_stimulus is not None else 'not stored'}</td></tr>")
    med = [u.best_value for u in r.units if u.best_value is not None]
    bases = list((r.config.get("metadata") or {}).get("unit_baselines") or [])
    below = [u.name for u, b in zip(r.units, bases) if u.best_value is not None and u.best_value < b]
    below_note = ("" if not below else f"<p class='warn'>{len(below)} of the {k} units end below their response to "
                  f"a blank image: {html.escape(', '.join(below))}</p>")
    return (f"<h3>Population campaign: {k} units</h3><p class='sub'>one run, one budget shared by the units; each "
            "unit's best is its own (the value column above is the mean over the units)"
            + (f"; median of the units' bests {np.median(med):.4g}" if med else "") + "</p>" + below_note
            + "<figure>" + img_tag(grid, "image/png", "each unit's best stimulus")
            + f"<figcaption>each unit's best stimulus, titled with the unit and its best value{note}</figcaption>"
            + "</figure><figure>" + img_tag(curves, "image/png", "best so far, per unit")
            + "<figcaption>each unit's best value so far against the queries of the run"
            + ("" if k <= SMALL_MULTIPLES_ABOVE else " (one panel per unit)") + "</figcaption></figure>"
            + "<details><summary>Units</summary><table><tr><th class='l'>unit</th><th>column</th><th>best value</th>"
            + "<th>÷ its best natural image</th><th>best at query</th><th class='l'>best stimulus</th></tr>"
            + "".join(rows) + "</table></details>")


def _norm_cell(r: RunData, b) -> str:
    ref = reference_of(r.config)
    return "–" if (ref is None or b is None) else f"{r.values[b] / ref['max']:.3g}"


def _summary_rows(r: RunData) -> list[tuple[str, str]]:
    b = r.best_index
    wall = max([float(t) for t in ([] if r.summary is None else [r.summary.get("wall_s", 0.0)])], default=0.0)
    rows = [("status", _status_text(r.status)), ("queries", f"{r.n_queries} of {r.budget}"),
            ("points evaluated", str(len(r.values))),
            ("best value", _fmt(None if b is None else r.values[b])),
            ("best at query", "–" if b is None else str(int(r.queries[b]))),
            ("optimizer", " ".join([str(r.config.get("optimizer"))] + [
                f"{k}={v}" for k, v in (r.config.get("optimizer_params") or {}).items()])),
            ("seed", str(r.config.get("seed"))), ("batch size", str(r.config.get("batch_size"))),
            ("space", space_text(r.config.get("space"))),
            ("objective", objective_text(r.config.get("objective"))),
            ("units recorded (layer:unit)", ", ".join(map(str, r.unit_names)) or "–")]
    ref = reference_of(r.config)
    if ref:
        rows.insert(4, ("best / best natural image", "–" if b is None else f"{r.values[b] / ref['max']:.3g}"))
        rows.insert(5, ("reference", f"max {ref['max']:.4g}, {ref.get('percentile', 99):g}th percentile "
                                     f"{ref.get('percentile_value', float('nan')):.4g} over {ref.get('images')}"))
    base = (r.config.get("metadata") or {}).get("baseline")
    if base is not None:
        below = b is not None and r.values[b] < base
        rows.append(("response to a blank image", _fmt(base) + (" -- the best value found is below it" if below
                                                               else "")))
    target = ((r.config.get("metadata") or {}).get("target") or {}).get("description")
    if target:
        rows.insert(0, ("maximized", target))
    if wall:
        rows.append(("wall time (s)", f"{wall:.3g}"))
    return rows


def _kv_rows(rows) -> str:
    return "".join(f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{html.escape(v)}</td></tr>" for k, v in rows)


def _topk_table(r: RunData, k: int) -> str:
    rows = topk_distinct(r, k, with_stimulus=False)
    if not rows:
        return ""
    dims = min(r.points.shape[1], 8)
    units = list(r.unit_names) if r.responses is not None and len(r.unit_names) == r.responses.shape[1] else (
        [str(j) for j in range(r.responses.shape[1])] if r.responses is not None else [])
    units = units[:6]
    head = ("<tr><th>rank</th><th>query</th><th>value</th>" + "".join(f"<th>r_{html.escape(u)}</th>" for u in units)
            + "".join(f"<th>x{j}</th>" for j in range(dims)) + ("<th>…</th>" if r.points.shape[1] > dims else "")
            + "</tr>")
    body = []
    for rank, i in enumerate(rows, 1):
        cells = [str(rank), str(int(r.queries[i])), _fmt(r.values[i])]
        cells += [_fmt(r.responses[i, j], 4) for j in range(len(units))]
        cells += [_fmt(r.points[i, j], 4) for j in range(dims)]
        if r.points.shape[1] > dims:
            cells.append("")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<details><summary>Top {len(rows)} distinct points</summary><table>{head}{''.join(body)}</table></details>"
