"""An atlas's plan: which units, cut into which shards, and the manifest that pins it.

Small pure functions.  A **shard** is one population campaign: a handful of
units of one layer that share one budget (every query gives every unit's
response) and one run store per checkpoint.  :func:`plan_shards` cuts each
layer's units into shards of at most ``shard_size`` units, as even as the
count allows (a layer of 138 units and a size of 16 gives nine shards of 15 or
16, not eight of 16 and one of 10), so that no worker is left with a tail.

The manifest (``atlas.json`` in the atlas directory) records the settings and
the shards.  Re-running an atlas reads it: the same settings continue the atlas
(finished shards are skipped, unfinished ones resume from their stores), other
settings are refused rather than mixed in.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass

from ...errors import ConfigError

__all__ = ["Shard", "plan_shards", "auto_shard_sizes", "round_budgets", "shard_budget", "slug", "read_manifest",
           "write_manifest", "check_manifest", "atlas_stores", "MANIFEST", "FORMAT"]

MANIFEST = "atlas.json"
FORMAT = "mango-atlas-1"


@dataclass(frozen=True)
class Shard:
    """One population campaign of the atlas: ``units`` (indices) of ``layer``, run with ``seed``."""

    id: str
    layer: str
    units: tuple
    seed: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"] = list(self.units)
        return d


def slug(text: str) -> str:
    """A file-name-safe form of a layer name (``classifier.fc1`` -> ``classifier.fc1``, ``a/b c`` -> ``a_b_c``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return s or "layer"


def _split(units: list[int], size: int) -> list[list[int]]:
    """``units`` cut into ``ceil(n / size)`` consecutive pieces whose sizes differ by at most one."""
    n = len(units)
    k = max(1, math.ceil(n / size))
    base, extra = divmod(n, k)
    out, i = [], 0
    for j in range(k):
        m = base + (1 if j < extra else 0)
        out.append(units[i:i + m])
        i += m
    return out


def auto_shard_sizes(layers: dict, workers: int, n_seeds: int = 1) -> dict:
    """Per layer, the largest shard size that still keeps ``workers`` busy: the fewest shards that fill them.

    A unit's result improves with the size of its shard at the same per-unit budget (every unit sees every
    query of its shard, and is warm-started from them: ``benchmarks/atlas.py``), while throughput only needs
    enough shards for the workers.  So each layer gets a share of ``workers`` shards (per seed) in
    proportion to its units, at least one.
    """
    total = sum(len(u) for u in layers.values()) * max(1, int(n_seeds))
    out = {}
    for name, units in layers.items():
        n = len(units)
        k = max(1, min(n, round(int(workers) * n / total))) if total else 1
        out[name] = math.ceil(n / k)
    return out


def plan_shards(layers: dict, shard_size, seeds=(0,)) -> list[Shard]:
    """Every unit of every layer, once per seed, in shards of at most ``shard_size`` units.

    Parameters
    ----------
    layers : ``{layer name: [unit indices]}`` in the order the atlas shows them.
    shard_size : the most units one shard (one population campaign) holds; one number, or one per layer
        (``{layer: size}``, e.g. :func:`auto_shard_sizes`).
    seeds : the campaign seeds; each seed gets its own shards.

    Returns
    -------
    list of :class:`Shard`, ids ``LAYER-SSS`` (``LAYER-SSS-sN`` for seeds after the first
    when several seeds are given), layer by layer.
    """
    sizes = dict(shard_size) if isinstance(shard_size, dict) else {name: shard_size for name in layers}
    for v in sizes.values():
        if int(v) != v or int(v) < 1:
            raise ConfigError(f"shard_size must be a whole number >= 1, got {v!r}.")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct whole numbers, at least one; got {seeds!r}.")
    if not layers:
        raise ConfigError("an atlas needs at least one layer (e.g. layers=['output']).")
    slugs = {}
    shards = []
    for layer, units in layers.items():
        units = [int(u) for u in units]
        if not units:
            raise ConfigError(f"layer {layer!r} has no units to map.")
        if len(set(units)) != len(units):
            raise ConfigError(f"layer {layer!r} lists a unit twice: {units}.")
        s = slug(layer)
        if s in slugs:
            raise ConfigError(f"layers {slugs[s]!r} and {layer!r} have the same file name {s!r}; rename one.")
        slugs[s] = layer
        for seed in seeds:
            tail = "" if len(seeds) == 1 else f"-s{seed}"
            for j, piece in enumerate(_split(units, int(sizes[layer]))):
                shards.append(Shard(f"{s}-{j:03d}{tail}", layer, tuple(piece), seed))
    return shards


def shard_budget(n_units: int, budget_per_unit: int | None, shard_budget: int | None) -> int:
    """A shard's query budget: ``budget_per_unit`` times its units, or the shared ``shard_budget``."""
    if (budget_per_unit is None) == (shard_budget is None):
        raise ConfigError("give one of budget_per_unit (each unit's share: a shard of K units gets K times it) "
                          "or shard_budget (one budget per shard, shared by its units), not both or neither.")
    b = budget_per_unit * n_units if budget_per_unit is not None else shard_budget
    if int(b) != b or b < 1:
        raise ConfigError(f"the budget must be a positive whole number of queries, got {b!r}.")
    return int(b)


def round_budgets(budget: int, rounds: int, n_units: int) -> list[int]:
    """A shard's budget cut into ``rounds`` exchange rounds (the last takes the remainder).

    Every round after the first starts by showing each of the shard's units its best stimulus so far, so it
    needs more than ``n_units`` queries.
    """
    rounds = int(rounds)
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds!r}.")
    base = budget // rounds
    out = [base] * rounds
    out[-1] += budget - base * rounds
    if rounds > 1 and min(out[1:]) <= n_units:
        raise ConfigError(f"a shard of {n_units} units with {budget} queries cannot be cut into {rounds} rounds: "
                          f"each round after the first shows every unit its best stimulus first ({n_units} "
                          "queries) and needs more than that. Raise the budget, or use rounds=1.")
    return out


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The manifest of the atlas in ``out`` (None when there is none)."""
    from ..outdir import read_manifest as read

    return read(out, MANIFEST, FORMAT, "atlas")


def check_manifest(out: str, old: dict | None, new: dict) -> None:
    """Refuse to continue the atlas in ``out`` with other settings, naming each difference."""
    from ..outdir import settings_diffs

    diffs = settings_diffs(old, new)
    if diffs:
        raise ConfigError(f"{out!r} holds an atlas with other settings ({'; '.join(diffs)}). Rerun with the "
                          "recorded settings to continue it, or give another directory.")


def write_manifest(out: str, doc: dict) -> None:
    """Write ``out/atlas.json`` atomically."""
    from ..outdir import write_manifest as write

    write(out, MANIFEST, doc)


def atlas_stores(path: str | os.PathLike) -> list[str] | None:
    """Every run store an atlas directory has or will have (shard by shard), or None when ``path`` is no atlas."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    man = read_manifest(path)
    if man is None:
        return None
    from ..track.campaign import store_name

    ckpts = man["settings"].get("checkpoints") or [None]
    return [os.path.join(path, "shards", sh["id"], f"r{r}", store_name(i, c)) for sh in man["shards"]
            for r in range(len(sh.get("round_budgets") or [0])) for i, c in enumerate(ckpts)]
