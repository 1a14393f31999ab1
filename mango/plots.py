"""Figures for a single :class:`~mango.loop.Result` (the CLI's curve.png and best.png).

Reports over run stores (HTML, GIFs, comparisons) live in :mod:`mango.report`.
"""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def top_distinct(result, k: int = 8) -> np.ndarray:
    """Row indices of the ``k`` best distinct points of a result, best first."""
    order = np.argsort(-result.values, kind="stable")
    seen, rows = set(), []
    for i in order:
        if not np.isfinite(result.values[i]):
            continue
        key = np.asarray(result.points[i]).tobytes()
        if key in seen:
            continue
        seen.add(key)
        rows.append(int(i))
        if len(rows) == k:
            break
    return np.array(rows, dtype=np.int64)


def to_images(stimuli) -> np.ndarray:
    """Stimuli ``[n, C, H, W]`` (torch or numpy) -> images ``[n, H, W]`` or ``[n, H, W, 3]`` clipped to [0, 1]."""
    x = stimuli.detach().to("cpu").numpy() if hasattr(stimuli, "detach") else np.asarray(stimuli)
    x = np.asarray(x, dtype=float)
    if x.ndim == 3:
        x = x[:, None]
    x = np.clip(x, 0.0, 1.0) if x.min() >= -1e-6 else (x - x.min()) / (np.ptp(x) + 1e-12)
    return x[:, 0] if x.shape[1] == 1 else np.transpose(x[:, :3], (0, 2, 3, 1))


def save_curve(result, path) -> None:
    """Best-so-far against queries, every response faint behind it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(result.queries, result.values, ".", ms=2, alpha=0.25, color="tab:gray", label="response")
    ax.plot(np.arange(result.n_queries), result.best_so_far(), color="tab:orange", lw=2, label="best so far")
    ax.set_xlabel("queries")
    ax.set_ylabel("objective")
    ax.set_title(f"{result.optimizer}, seed {result.seed}: best {result.best_value:.4g}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_best_stimuli(result, generator, path, top_k: int = 8) -> None:
    """The ``top_k`` best distinct stimuli of a run in one row, each with its value.

    Stimuli are re-decoded from their points with ``generator`` (decoding shows
    nothing to the neuron, so it costs no query).
    """
    rows = top_distinct(result, top_k)
    if len(rows) == 0:
        return
    imgs = to_images(generator(result.points[rows]))
    plt = _plt()
    fig, axes = plt.subplots(1, len(rows), figsize=(1.6 * len(rows), 1.9), dpi=110, squeeze=False)
    for ax, img, i in zip(axes[0], imgs, rows):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(f"{result.values[i]:.3g}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
