"""``atlas``: every unit of one or more layers, as shards of population campaigns on a Dask cluster or a process pool.

The driver checks the scope where it runs (model, layers, units, generator),
cuts the units into shards (:mod:`mango.runs.atlas.plan`), and submits one
task per layer (its natural-image reference) and one per shard
(:func:`mango.runs.atlas.shard.run_shard`) to the executor: ``dask="local"``
(a ``LocalCluster``), a scheduler's address, or a local process pool.  Only
specs and paths cross the wire; every worker builds the model and the generator
itself.  Each shard writes its own run stores in the atlas directory, so:

* a worker killed mid-shard loses nothing: Dask hands the task to another
  worker, which resumes the shard's store (no query lost or repeated);
* re-running the same call resumes the atlas: finished shards are skipped,
  unfinished ones resume;
* a task that fails (a spec a worker cannot build, say) stops the atlas at
  once with the worker's error, and what was recorded stays.

Every shard records every unit of its layer (reading more units of a network
costs nothing per stimulus), and when a layer's shards are done a task pools
them (:func:`mango.runs.atlas.shard.run_layer`): each unit's best is taken over
every stimulus shown for the layer, as in one population campaign over the
whole layer, while the searches run in parallel.

While it runs, a progress line per finished shard and a periodic overall line
(queries done, queries per second, time left) go to ``log``; the shards' stores
can be followed live with ``mango watch ATLAS_DIR``.  At the end the site is
written (:mod:`mango.runs.atlas.site`).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ...errors import ConfigError, MangoError
from . import plan as _plan
from .plan import FORMAT, check_manifest, plan_shards, read_manifest, write_manifest
from .plan import slug
from .shard import run_layer, run_reference, run_shard

__all__ = ["atlas", "AtlasResult", "shard_progress"]


@dataclass
class AtlasResult:
    """What :func:`atlas` did: the atlas directory, its site, and the shards' outcomes."""

    out: str
    site: str | None
    shards: list = field(default_factory=list)  # [{"id", "status", "queries", "seconds"}]
    queries: int = 0  # queries run by this call (skipped shards not counted)
    wall_s: float = 0.0
    summary: dict | None = None

    @property
    def queries_per_s(self) -> float:
        """Queries this call ran per second of its wall time."""
        return self.queries / self.wall_s if self.wall_s > 0 else 0.0

    def __repr__(self) -> str:
        return (f"AtlasResult({len(self.shards)} shard rounds, {self.queries} queries in {self.wall_s:.1f} s, "
                f"out={self.out!r})")


def _layer_units(model, layers, units, input_shape, oracle_kw) -> dict:
    """``{layer: [unit indices]}`` from ``units`` (``"all"``, a list for every layer, or a dict per layer)."""
    from ...zoo.build import layer_units

    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ConfigError("layers is empty; name at least one layer (e.g. layers=['output']).")
    if isinstance(units, dict):
        extra = [k for k in units if k not in layers]
        if extra:
            raise ConfigError(f"units names layer(s) {extra} that are not in layers {layers}.")
    out = {}
    for layer in layers:
        try:
            every = layer_units(model, layer, input_shape=input_shape, **oracle_kw)
        except MangoError:
            raise
        except Exception as exc:  # noqa: BLE001 - a layer the network does not have, in one line
            raise ConfigError(f"layer {layer!r} cannot be read from the model ({type(exc).__name__}: {exc}).") from None
        want = units.get(layer, "all") if isinstance(units, dict) else units
        if isinstance(want, str) and want == "all":
            out[layer] = every
            continue
        try:
            want = [int(u) for u in want]
        except (TypeError, ValueError):
            raise ConfigError(f"units must be 'all', a list of indices or {{layer: list}}, got {want!r}.") from None
        bad = [u for u in want if not 0 <= u < len(every)]
        if bad:
            raise ConfigError(f"layer {layer!r} has {len(every)} units (0..{len(every) - 1}); {bad} are not among "
                              "them.")
        out[layer] = want
    return out


def shard_progress(atlas_dir: str, shards: Sequence[dict]) -> list[int]:
    """Queries recorded so far by each shard (over its rounds' and checkpoints' stores), read without
    disturbing the writers."""
    from ..store import RunStore
    from .plan import atlas_stores

    stores = atlas_stores(atlas_dir) or []
    done = []
    for sh in shards:
        n = 0
        prefix = os.path.join(atlas_dir, "shards", sh["id"]) + os.sep
        for path in stores:
            if path.startswith(prefix) and os.path.isfile(path):
                try:
                    with RunStore(path, mode="r") as s:
                        n += s.n_queries()
                except MangoError:  # created this instant, no schema yet
                    pass
        done.append(n)
    return done


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def atlas(model: str = "zoo:snn-digits", layers: str | Sequence[str] = ("output",), units="all", *,
          generator: str = "zoo:vqvae-digits:embedding", optimizer: str = "surrogate",
          budget_per_unit: int | None = None, shard_budget: int | None = None, shard_size: int | str | None = "auto",
          seeds: Sequence[int] = (0,), checkpoints=None, out: str | os.PathLike = "mango-atlas",
          rounds: int | None = None, dask: str | None = None, workers: int = 2, readout: str | None = None,
          num_steps: int | None = None,
          reference: str | None = "auto", batch_size: int | None = None, warm: bool = True, device=None,
          threads: int = 1, log: Callable[[str], None] | None = None, log_every: float = 10.0, site: bool = True,
          executor=None, **optimizer_params) -> AtlasResult:
    """Map every unit of ``layers`` of ``model``: population campaigns in shards, on a cluster, then a site.

    Parameters
    ----------
    model : ``zoo:NAME`` or ``FILE.py:FACTORY`` (built on every worker from this spec).
    layers : layer names (``"output"`` or dotted module names).
    units : ``"all"``, a list of indices (for every layer), or ``{layer: "all" | [indices]}``.
    generator : a generator spec (:func:`mango.zoo.build.build_generator`).
    optimizer, batch_size, **optimizer_params : each shard's population campaign (:func:`mango.maximize`).
    budget_per_unit : each unit's share: a shard of K units runs ``K * budget_per_unit`` queries; or
    shard_budget : one budget per shard, shared by its units (give one of the two).
    shard_size : the most units per shard; default ``"auto"``: the fewest shards that keep every worker
        busy (:func:`~mango.runs.atlas.plan.auto_shard_sizes`).
    rounds : exchange rounds of the layers cut into several shards (default 2 when one is, else 1; 1 with
        ``checkpoints``): each such shard's budget is cut into ``rounds`` parts, and after each part every
        shard of the layer starts each of its units from that unit's best stimulus anywhere in the layer so
        far.  A layer in one shard runs as one population campaign.
    seeds : campaign seeds; each seed maps every unit (the site shows a unit's best seed).
    checkpoints : checkpoint files or a directory (as :func:`mango.track`): each shard runs over them in
        training order, warm-started from the previous checkpoint (``warm``), and the site shows every unit
        across training.
    out : the atlas directory: ``atlas.json``, ``references/``, ``shards/ID/`` (run stores), ``site/``.
    dask : ``"local"`` (a ``LocalCluster`` of ``workers`` processes) or a scheduler address
        (``tcp://host:8786``); None: a local process pool of ``workers``.
    readout, num_steps : spiking networks (as ``mango maximize``).
    reference : natural images that normalize values: ``"auto"`` (a zoo model's own images), a directory of
        images or a ``.npy``, or None.
    device : torch device on the workers.  threads : torch threads per worker task (1: workers side by side).
    log : a function taking progress lines (the CLI prints them); ``log_every`` seconds between overall lines.
    site : write the static site at the end (``out/site/index.html``).
    executor : any ``concurrent.futures``-style executor to use instead of ``dask`` / ``workers``.

    Returns
    -------
    AtlasResult
    """
    from ..track.campaign import checkpoint_label, resolve_checkpoints
    from ...zoo.build import build_generator, build_model, default_readout, spiking_framework

    t0 = time.perf_counter()
    say = log or (lambda line: None)
    out = os.path.abspath(os.fspath(out))
    paths = [os.path.abspath(p) for p in resolve_checkpoints(checkpoints)]
    # the scope is checked here, before any worker starts: a typo fails in one line, not on every worker
    gen = build_generator(generator, device=device) if isinstance(generator, str) else None
    if gen is None:
        raise ConfigError("generator must be a spec string (e.g. 'zoo:vqvae-digits:embedding'): each worker "
                          "builds it itself; objects are not sent across the wire.")
    if not isinstance(model, str):
        raise ConfigError("model must be a spec string (zoo:NAME or FILE.py:FACTORY): each worker builds it "
                          "itself; weights are not sent across the wire.")
    probe = build_model(model, paths[0] if paths else None, device=device)
    framework = spiking_framework(probe)
    oracle_kw = {"device": device}
    if framework:
        readout = readout or default_readout(framework)
        oracle_kw.update(readout=readout, num_steps=num_steps)
    elif readout or num_steps:
        raise ConfigError(f"readout / num_steps apply to spiking networks only; {model} has no spiking layers.")
    shape = tuple(getattr(gen, "output_shape", ()) or ())
    scope = _layer_units(probe, layers, units, shape, oracle_kw)
    seeds = [int(x) for x in seeds]
    auto = shard_size in (None, "auto")
    # an atlas that exists keeps its plan: the automatic cut and rounds are read back, not recomputed for
    # today's workers (resuming on fewer or more workers continues the same shards)
    old = read_manifest(out) if os.path.isdir(out) else None
    kept = old["settings"] if old is not None and old["settings"].get("shard_size") == "auto" and auto else None
    if kept is not None and kept.get("layers") == scope:
        size = dict(kept["shard_sizes"])
        rounds = kept["rounds"] if rounds is None else rounds
    else:
        size = (_plan.auto_shard_sizes(scope, _n_workers(dask, workers, executor), len(seeds)) if auto else
                {layer: shard_size for layer in scope})
    shards = plan_shards(scope, size, seeds)
    budgets = {sh.id: _plan.shard_budget(len(sh.units), budget_per_unit, shard_budget) for sh in shards}
    split = any(sum(1 for sh in shards if sh.layer == layer and sh.seed == seeds[0]) > 1 for layer in scope)
    if rounds is None:
        rounds = 2 if split and not paths else 1
    if int(rounds) != rounds or rounds < 1:
        raise ConfigError(f"rounds must be a whole number >= 1, got {rounds!r}.")
    if rounds > 1 and paths:
        raise ConfigError("rounds > 1 (exchange between shards) is not available with checkpoints: each shard "
                          "runs its checkpoints in sequence, warm-started from the previous one. Use rounds=1.")
    n_split = {layer: sum(1 for sh in shards if sh.layer == layer and sh.seed == seeds[0]) for layer in scope}
    # the exchange serves split layers only: a layer in one shard runs as one population campaign
    per_round = {sh.id: _plan.round_budgets(budgets[sh.id], rounds if n_split[sh.layer] > 1 else 1, len(sh.units))
                 for sh in shards}
    from ..provenance import provenance

    settings = {"model": model, "layers": scope, "generator": generator, "optimizer": optimizer,
                "optimizer_params": dict(optimizer_params), "budget_per_unit": budget_per_unit,
                "shard_budget": shard_budget, "shard_size": "auto" if shard_size in (None, "auto") else shard_size,
                "shard_sizes": size, "rounds": int(rounds), "seeds": seeds,
                "checkpoints": paths, "readout": readout, "num_steps": num_steps, "reference": reference,
                "batch_size": batch_size, "warm": bool(warm)}
    manifest = {"format": FORMAT, "settings": settings,
                "checkpoint_labels": [checkpoint_label(p) for p in paths] or ["model"],
                "shards": [{**sh.to_dict(), "budget": budgets[sh.id], "round_budgets": per_round[sh.id]}
                           for sh in shards],
                "provenance": provenance()}
    os.makedirs(out, exist_ok=True)
    check_manifest(out, old, manifest)
    write_manifest(out, manifest)
    common = {"atlas_dir": out, "model": model, "readout": readout, "num_steps": num_steps, "device": device,
              "threads": threads, "checkpoints": paths or None}
    ref_tasks = [{**common, "layer": layer, "units": u, "reference": reference, "input_shape": list(shape)}
                 for layer, u in scope.items()]
    peers = {(sh.layer, sh.seed): [p.id for p in shards if p.layer == sh.layer and p.seed == sh.seed]
             for sh in shards}
    shard_tasks = [[{**common, "shard": {**sh.to_dict()}, "round": r, "round_budgets": per_round[sh.id],
                     "peers": peers[(sh.layer, sh.seed)],
                     "record": scope[sh.layer], "generator": generator, "optimizer": optimizer,
                     "optimizer_params": dict(optimizer_params), "budget": per_round[sh.id][r],
                     "batch_size": batch_size, "warm": bool(warm)} for sh in shards if r < len(per_round[sh.id])]
                   for r in range(rounds)]
    layer_tasks = {layer: {**common, "layer": layer, "units": u, "generator": generator,
                           "rounds": rounds if n_split[layer] > 1 else 1,
                           "shards": [sh for sh in manifest["shards"] if sh["layer"] == layer],
                           "n_checkpoints": max(1, len(paths))} for layer, u in scope.items()}
    total = sum(budgets.values()) * max(1, len(paths))
    say(f"atlas: {sum(len(u) for u in scope.values())} units of {len(scope)} layer(s) in {len(shards)} shards "
        f"(at most {max(size.values())} units)"
        + (f", {rounds} exchange rounds in split layers" if rounds > 1 else "")
        + f", {total:,} queries in all; "
        + (f"Dask {dask}" if dask else "the given executor" if executor is not None else
           f"a process pool of {workers}") + f"; {out}")
    results, ran = _execute(ref_tasks, shard_tasks, layer_tasks, manifest["shards"], out, dask, workers, executor,
                            say, log_every, total)
    wall = time.perf_counter() - t0
    res = AtlasResult(out, None, results, queries=ran, wall_s=wall)
    if site:
        from .site import write_site
        from .summary import collect

        res.summary = collect(out)
        res.site = os.fspath(write_site(res.summary, os.path.join(out, "site")))
        say(f"atlas: site written: {res.site}")
    res.wall_s = time.perf_counter() - t0
    return res


def _n_workers(dask, workers: int, executor) -> int:
    """How many workers the tasks will run on: a remote Dask cluster's count, else ``workers``."""
    if dask and dask != "local" and executor is None:
        try:
            from dask.distributed import Client

            with Client(dask, timeout="30s") as c:
                return max(1, len(c.scheduler_info().get("workers", {})))
        except Exception:  # noqa: BLE001 - the run itself reports an unreachable cluster
            return max(1, int(workers))
    return max(1, int(workers))


def _execute(ref_tasks, shard_tasks, layer_tasks, shards, out, dask, workers, executor, say, log_every, total):
    """Run the reference tasks, the shards round by round (a (layer, seed)'s next round once its previous one
    is done), and each layer's pooling once its last round is done; returns (shard outcomes, queries run).
    Stops at the first failure."""
    close = None
    if executor is None:
        from ...bench.runner import make_executor

        executor, close = make_executor(workers, dask)
    results, ran = [], 0
    start = time.perf_counter()
    base = sum(shard_progress(out, shards))
    try:
        futs = {executor.submit(run_reference, t): ("reference", t["layer"]) for t in ref_tasks}
        futs.update({executor.submit(run_shard, t): ("shard", t) for t in shard_tasks[0]})
        pending = set(futs)
        group = lambda t: (t["shard"]["layer"], t["shard"]["seed"])  # noqa: E731
        left = {}  # (layer, seed, round) -> shards not done yet
        for r, tasks in enumerate(shard_tasks):
            for t in tasks:
                left[group(t) + (r,)] = left.get(group(t) + (r,), 0) + 1
        layer_left = {layer: sum(1 for t in shard_tasks[0] if t["shard"]["layer"] == layer) for layer in layer_tasks}
        fresh = {layer: False for layer in layer_tasks}
        n_done, n_tasks, last = 0, sum(len(t) for t in shard_tasks), time.perf_counter()
        while pending:
            done, pending = cf.wait(pending, timeout=min(log_every, 2.0), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                kind, what = futs[fut]
                name = what if isinstance(what, str) else what["shard"]["id"]
                try:
                    r = fut.result()
                except Exception as exc:  # noqa: BLE001 - the worker's error, named, and the atlas stops
                    for f in pending:
                        f.cancel()
                    raise MangoError(f"atlas: the {kind} task {name!r} failed on its worker: "
                                     f"{type(exc).__name__}: {exc} (what finished is kept in {out}; fix the cause "
                                     "and rerun the same command to continue)") from exc
                if kind == "shard":
                    n_done += 1
                    results.append(r)
                    ran += r["queries"] if r["status"] == "ran" else 0
                    layer, rnd = what["shard"]["layer"], what["round"]
                    fresh[layer] |= r["status"] == "ran"
                    n_rounds = len(what["round_budgets"])
                    say(f"atlas: shard {name}" + (f" round {rnd + 1}/{n_rounds}" if n_rounds > 1 else "")
                        + (" finished" if r["status"] == "ran" else " finished earlier, skipped")
                        + (f": {r['queries']:,} queries in {r['seconds']:.0f} s" if r["status"] == "ran" else "")
                        + f" ({n_done}/{n_tasks})")
                    key = group(what) + (rnd,)
                    left[key] -= 1
                    if left[key] == 0 and rnd + 1 < n_rounds:  # the exchange: the group's next round
                        for t in shard_tasks[rnd + 1]:
                            if group(t) == group(what):
                                f = executor.submit(run_shard, t)
                                futs[f] = ("shard", t)
                                pending.add(f)
                    if rnd + 1 == n_rounds:
                        layer_left[layer] -= 1
                        pooled = os.path.join(out, "layers", f"{slug(layer)}.json")
                        if layer_left[layer] == 0 and (fresh[layer] or not os.path.isfile(pooled)):
                            f = executor.submit(run_layer, layer_tasks[layer])
                            futs[f] = ("layer", layer)
                            pending.add(f)
                elif kind == "layer":
                    say(f"atlas: layer {name} pooled: each unit's best over all its shards' queries "
                        f"({r['seconds']:.0f} s)")
                elif r.get("source"):
                    say(f"atlas: reference of layer {name}: {r['source']} ({r['seconds']:.0f} s)")
            now = time.perf_counter()
            if pending and now - last >= log_every:
                last = now
                counts = shard_progress(out, shards)
                q = sum(counts)
                rate = (q - base) / (now - start) if now > start else 0.0
                eta = f", about {_fmt_s((total - q) / rate)} left" if rate > 0 else ""
                running = [f"{sh['id']} {c}/{sh['budget']}" for sh, c in zip(shards, counts) if 0 < c < sh["budget"]]
                say(f"atlas: {n_done}/{n_tasks} shard rounds, {q:,}/{total:,} queries ({100 * q / total:.0f}%), "
                    f"{rate:.1f} queries/s{eta}" + (f"; running: {', '.join(running)}" if running else ""))
    finally:
        if close is not None:
            close()
    return results, ran
