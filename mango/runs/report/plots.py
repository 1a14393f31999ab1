"""Figures for a single :class:`~mango.runs.loop.Result` (the CLI's curve.png and best.png).

Reports over run stores (HTML, GIFs, comparisons) live in :mod:`mango.runs.report.html`.
"""

from __future__ import annotations

import textwrap

import numpy as np


def pyplot():
    """matplotlib's pyplot on the Agg backend (figures are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def top_distinct(result, k: int = 8) -> np.ndarray:
    """Row indices of the ``k`` best distinct points of a result, best first."""
    return np.array(pick_distinct(np.argsort(-result.values, kind="stable"), result.values,
                                  lambda i: np.asarray(result.points[i]).tobytes(), k), dtype=np.int64)


# two stimuli whose mean absolute pixel difference (pixels in [0, 1]) is below this look alike: late in a
# CMA-ES run on the zoo VQ-VAE the 40 best stimuli differ from the best by 0.06-0.09, all the same "3"
MIN_IMAGE_DIFF = 0.1


def pick_distinct(order, values, key, k: int, image=None, min_diff: float = MIN_IMAGE_DIFF) -> list[int]:
    """Walk the rows in ``order`` (best first) and keep up to ``k`` distinct ones.

    A row is skipped when its value is not finite, when ``key(row)`` was seen
    (the same point or stimulus hash), or -- when ``image(row)`` gives its
    stimulus as an array in [0, 1] -- when it differs from a kept stimulus by
    less than ``min_diff`` mean absolute pixel difference (a near-copy: late in
    a run the best points are small variations of one stimulus).  Used by
    best.png and by the report's top-k grid.
    """
    seen, rows, kept = set(), [], []
    for i in order:
        i = int(i)
        if not np.isfinite(values[i]):
            continue
        kk = key(i)
        if kk in seen:
            continue
        seen.add(kk)
        if image is not None:
            img = np.asarray(image(i), dtype=float)
            if any(img.shape == o.shape and np.mean(np.abs(img - o)) < min_diff for o in kept):
                continue
            kept.append(img)
        rows.append(i)
        if len(rows) == k:
            break
    return rows


def to_images(stimuli) -> np.ndarray:
    """Stimuli ``[n, C, H, W]`` (torch or numpy) -> images ``[n, H, W]`` or ``[n, H, W, 3]`` clipped to [0, 1]."""
    x = stimuli.detach().to("cpu").numpy() if hasattr(stimuli, "detach") else np.asarray(stimuli)
    x = np.asarray(x, dtype=float)
    if x.ndim == 3:
        x = x[:, None]
    x = np.clip(x, 0.0, 1.0) if x.min() >= -1e-6 else (x - x.min()) / (np.ptp(x) + 1e-12)
    return x[:, 0] if x.shape[1] == 1 else np.transpose(x[:, :3], (0, 2, 3, 1))


def _objective_desc(result):
    return (getattr(result, "config", None) or {}).get("objective")


def save_curve(result, path, reference: dict | None = None) -> None:
    """Best-so-far against queries, every response faint behind it.

    The y axis is named after the unit and readout; ``reference`` (default: the
    one recorded in the run's metadata, see :mod:`mango.runs.natural.reference`) is drawn as
    a horizontal "best natural image" line, and the title gives the best value
    normalized by it.
    """
    from ..words import reference_of, value_label

    ref = reference if reference is not None else reference_of(getattr(result, "config", None))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(result.queries, result.values, ".", ms=2, alpha=0.25, color="tab:gray", label="response")
    ax.plot(np.arange(result.n_queries), result.best_so_far(), color="tab:orange", lw=2, label="best so far")
    title = f"{result.optimizer}, seed {result.seed}: best {result.best_value:.4g}"
    if ref:
        ax.axhline(ref["max"], color="tab:blue", ls="--", lw=1.3,
                   label=f"best natural image ({ref['max']:.4g})")
        if ref.get("percentile_value") is not None:
            ax.axhline(ref["percentile_value"], color="tab:blue", ls=":", lw=1,
                       label=f"{ref.get('percentile', 99):g}th percentile of natural images")
        if result.best_value is not None:
            title += f" = {result.best_value / ref['max']:.3g} x best natural image"
    ax.set_xlabel("queries (stimuli shown)")
    ax.set_ylabel(value_label(_objective_desc(result)))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_best_stimuli(result, generator, path, top_k: int = 8, reference: dict | None = None) -> None:
    """The ``top_k`` best distinct stimuli of a run in one row, each with its value.

    Stimuli are re-decoded from their points with ``generator`` (decoding shows
    nothing to the neuron, so it costs no query); near-copies are skipped
    (:func:`pick_distinct`).  With a reference, each value is also given as a
    multiple of the best natural image's.
    """
    from ..words import reference_of

    ref = reference if reference is not None else reference_of(getattr(result, "config", None))
    finite = np.flatnonzero(np.isfinite(result.values))
    order = finite[np.argsort(-result.values[finite], kind="stable")][:512]
    if len(order) == 0:
        return
    imgs = to_images(generator(result.points[order]))
    pos = {int(i): j for j, i in enumerate(order)}
    rows = pick_distinct(order, result.values, lambda i: np.asarray(result.points[i]).tobytes(), top_k,
                         image=lambda i: imgs[pos[i]])
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(1.6 * len(rows), 2.1), dpi=110, squeeze=False)
    for rank, (ax, i) in enumerate(zip(axes[0], rows), 1):
        img = imgs[pos[i]]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        t = f"#{rank} q{int(result.queries[i])}\n{result.values[i]:.3g}"
        if ref:
            t += f" ({result.values[i] / ref['max']:.2f}x)"
        ax.set_title(t, fontsize=7)
        ax.axis("off")
    fig.suptitle(f"top {len(rows)} distinct stimuli (near-copies skipped)"
                 + ("; (Nx) = value / best natural image" if ref else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- population campaigns: one cell / one curve per unit (the CLI's units.png and unit_curves.png, the report) --
SMALL_MULTIPLES_ABOVE = 10  # more units than this: one small panel per unit instead of one line each


def _cell_image(stim) -> np.ndarray:
    """One stimulus (``[C, H, W]``, ``[H, W]``, torch or numpy) as an image imshow draws."""
    x = stim.detach().to("cpu").numpy() if hasattr(stim, "detach") else np.asarray(stim)
    return to_images(np.asarray(x, dtype=float)[None])[0]


def unit_grid_figure(names, values, images, normalized=None, title: str = "each unit's best stimulus"):
    """A grid with one cell per unit: its best stimulus, titled with its name and best value.

    ``images[j]`` is the unit's best stimulus, or ``None`` when it is not known
    (not stored): the cell says so.  ``normalized[j]`` (value / the unit's best
    natural image), when given and not None, follows the value as ``(N x)``.
    """
    plt = pyplot()
    k = len(names)
    cols = min(k, 8 if k <= 16 else 10)
    rows = -(-k // cols)
    text = title + ("; (Nx) = value / the unit's best natural image" if normalized is not None
                    and any(x is not None for x in normalized) else "")
    width = 1.55 * cols
    text = textwrap.fill(text, width=int(width * 15))  # ~15 characters per inch at 8 pt: a few units' title wraps
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.85 * rows + 0.25 + 0.15 * (text.count("\n") + 1)),
                             dpi=110, squeeze=False, layout="constrained")
    for a in axes.flat:
        a.axis("off")
    for j, a in enumerate(axes.flat[:k]):
        v = values[j]
        n = None if normalized is None else normalized[j]
        t = f"{names[j]}\n" + ("no value" if v is None or not np.isfinite(v) else f"{v:.4g}")
        if n is not None and np.isfinite(n):
            t += f" ({n:.2f}x)"
        if images[j] is None:
            a.text(0.5, 0.5, "best stimulus\nnot stored", ha="center", va="center", fontsize=7, color="tab:gray",
                   transform=a.transAxes)
        else:
            img = _cell_image(images[j])
            a.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(t, fontsize=7)
    fig.suptitle(text, fontsize=8)
    return fig


def unit_curves_figure(names, curves, reference_max=None, title: str = "best so far, per unit"):
    """Each unit's best-so-far curve against queries: one line per unit, or one small panel per unit above
    :data:`SMALL_MULTIPLES_ABOVE` units.  With a reference maximum for every unit the curves are normalized
    (1 = the unit's best natural image)."""
    plt = pyplot()
    k = len(names)
    refs = list(reference_max or [])
    norm = len(refs) == k and all(r is not None and r > 0 for r in refs)
    ys = [np.asarray(c, dtype=float) / (refs[j] if norm else 1.0) for j, c in enumerate(curves)]
    ylabel = "best so far / unit's best natural image" if norm else "best so far"
    if k <= SMALL_MULTIPLES_ABOVE:
        fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
        colors = plt.get_cmap("tab10")
        for j, y in enumerate(ys):
            ax.plot(np.arange(len(y)), y, lw=1.5, color=colors(j % 10), label=str(names[j]))
        if norm:
            ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xlabel("queries (shared by all units)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", ncol=2)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return fig
    cols = min(k, 6)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.5 * rows + 0.6), dpi=110, squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for a in axes.flat[k:]:
        a.axis("off")
    for j, (a, y) in enumerate(zip(axes.flat, ys)):
        a.plot(np.arange(len(y)), y, lw=1.2, color="tab:blue")
        if norm:
            a.axhline(1.0, color="k", ls="--", lw=0.6)
        a.set_title(str(names[j]), fontsize=7)
        a.tick_params(labelsize=6)
        a.grid(alpha=0.3)
    fig.suptitle(f"{title} ({ylabel}; x: queries shared by all units)", fontsize=8)
    return fig


def save_unit_figures(result, generator, out_dir, unit_references=None) -> dict:
    """A population campaign's ``units.png`` (each unit's best stimulus) and ``unit_curves.png``; returns
    their file names (keys ``units_png``, ``unit_curves_png``).

    Best stimuli are the run's own (kept during the run), else decoded from the
    units' best points with ``generator`` (decoding costs no query).
    """
    import os

    units = result.units()
    refs = list(unit_references or [None] * len(units))
    maxes = [None if r is None else r["max"] for r in refs]
    names = [u.name for u in units]
    files = {}
    plt = pyplot()
    fig = unit_curves_figure(names, [u.curve for u in units], maxes,
                             title=f"{result.optimizer}, seed {result.seed}: best so far, per unit")
    fig.savefig(os.path.join(out_dir, "unit_curves.png"))
    plt.close(fig)
    files["unit_curves_png"] = "unit_curves.png"
    images = [u.best_stimulus for u in units]
    missing = [j for j, u in enumerate(units) if images[j] is None and u.best_point is not None]
    if missing and generator is not None:
        decoded = generator(np.stack([np.asarray(units[j].best_point) for j in missing]))
        for i, j in enumerate(missing):
            images[j] = decoded[i]
    if any(im is not None for im in images):
        values = [u.best_value for u in units]
        normalized = [None if (m is None or v is None) else v / m for v, m in zip(values, maxes)]
        fig = unit_grid_figure(names, values, images, normalized,
                               title=f"each unit's best stimulus ({result.optimizer}, seed {result.seed})")
        fig.savefig(os.path.join(out_dir, "units.png"))
        plt.close(fig)
        files["units_png"] = "units.png"
    return files
