"""Campaigns across training checkpoints: how units' preferred stimuli change over training.

:func:`track` (and ``mango track``) runs the same units -- one unit, or several
in a population campaign -- over an ordered list of model checkpoints (files a
``--weights`` option accepts, e.g. the ``NAME-epochEEE.pt`` files of
``python -m mango.zoo.train NAME --checkpoints DIR``).  Each checkpoint gets one
campaign (:func:`mango.maximize`) with its own run store in the output
directory.  Every campaign after the first is **warm-started** from the previous
checkpoint's best points, one per unit: they are shown first, count against the
budget, and (in a population campaign) every unit's optimizer starts from the
history, so each unit starts from its previous best.  ``warm=False``
(``--cold``) runs each campaign from scratch, for comparison.

The same warm start serves "the same neuron recorded on another day":
``warm_from=STORE`` (``--warm-from``) seeds the first campaign with the best
point per unit of an earlier run.

Rerunning the same call continues: finished checkpoints are skipped (their
results read back from their stores), an unfinished one is resumed
(``maximize(store=..., resume=True)``).  The output directory's ``track.json``
records the settings, so a rerun with other settings is refused rather than
mixed in.  At the end a report across checkpoints is written
(:mod:`mango.runs.track.report`).  The command line is :mod:`mango.cli.track`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import ConfigError
from ..result import Result, UnitResult
from .report import make_track_report, unit_bests

__all__ = ["track", "TrackResult", "CheckpointRun", "resolve_checkpoints", "checkpoint_label", "unit_bests",
           "warm_points_from", "read_manifest", "store_name", "MANIFEST"]

MANIFEST = "track.json"
_FORMAT = "mango-track-1"
_EPOCH = re.compile(r"epoch[-_]?(\d+)", re.IGNORECASE)
_SUFFIXES = (".pt", ".pth")


# -- checkpoints ------------------------------------------------------------------
def _epoch(path: str) -> int | None:
    m = _EPOCH.search(os.path.basename(path))
    return None if m is None else int(m.group(1))


def checkpoint_label(path: str | None) -> str:
    """A checkpoint's short name: ``"epoch 3"`` for ``NAME-epoch003.pt``, else the file's stem."""
    if path is None:
        return "model"
    e = _epoch(path)
    return f"epoch {e}" if e is not None else Path(path).stem


def resolve_checkpoints(checkpoints) -> list[str]:
    """The ordered checkpoint files of ``checkpoints``: a list of files, or one directory.

    A directory gives its ``.pt`` / ``.pth`` files sorted by the epoch number in
    their names (``NAME-epochEEE.pt``); every file must carry one, and the files
    of one model only.  A list is taken in the order given: every file must
    exist, none twice, and files that carry epoch numbers must be in training
    order.  Errors name the problem and the fix.
    """
    if checkpoints is None:
        return []
    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [checkpoints]
    paths = [os.fspath(p) for p in checkpoints]
    if not paths:
        raise ConfigError("the checkpoint list is empty; give checkpoint files in training order or a directory of "
                          "NAME-epochEEE.pt files.")
    if len(paths) == 1 and os.path.isdir(paths[0]):
        return _from_directory(paths[0])
    dirs = [p for p in paths if os.path.isdir(p)]
    if dirs:
        raise ConfigError(f"{dirs[0]!r} is a directory; give either one directory of checkpoints or a list of files.")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ConfigError(f"checkpoint file(s) not found: {', '.join(missing[:5])}"
                          + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                          + ". Check the paths (python -m mango.zoo.train NAME --checkpoints DIR writes "
                            "DIR/NAME-epochEEE.pt).")
    real = [os.path.realpath(p) for p in paths]
    dup = sorted({p for p, r in zip(paths, real) if real.count(r) > 1})
    if dup:
        raise ConfigError(f"checkpoint(s) listed more than once: {', '.join(dup)}; list each checkpoint once.")
    epochs = [_epoch(p) for p in paths]
    for a, b, ea, eb in zip(paths, paths[1:], epochs, epochs[1:]):
        if ea is not None and eb is not None and eb <= ea:
            raise ConfigError(f"the checkpoints are not in training order: {b!r} (epoch {eb}) comes after {a!r} "
                              f"(epoch {ea}). List them from the earliest to the latest, or pass their directory "
                              "(sorted by epoch).")
    return paths


def _from_directory(d: str) -> list[str]:
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(_SUFFIXES))
    if not files:
        raise ConfigError(f"no checkpoint files ({', '.join(_SUFFIXES)}) in the directory {d!r}; train with "
                          f"python -m mango.zoo.train NAME --checkpoints {d}.")
    undated = [os.path.basename(f) for f in files if _epoch(f) is None]
    if undated:
        raise ConfigError(f"cannot sort the checkpoints of {d!r} by epoch: {', '.join(undated[:5])} carry no epoch "
                          "number (NAME-epochEEE.pt). Rename them, or list the files in training order.")
    models = sorted({_EPOCH.split(os.path.basename(f))[0].rstrip("-_") for f in files})
    if len(models) > 1:
        raise ConfigError(f"{d!r} holds checkpoints of several models ({', '.join(models)}); list the files of one, "
                          f"e.g. {os.path.join(d, models[0])}-epoch*.pt.")
    files.sort(key=_epoch)
    epochs = [_epoch(f) for f in files]
    if len(set(epochs)) != len(epochs):
        raise ConfigError(f"{d!r} holds two checkpoints of the same epoch; list the files in training order.")
    return files


# -- per-unit bests -----------------------------------------------------------------
def _distinct_rows(points: list) -> np.ndarray | None:
    """The points as rows ``[n, dim]``, repeats dropped (first kept), or None when there is none."""
    rows, seen = [], set()
    for p in points:
        if p is None:
            continue
        key = np.asarray(p).tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(np.asarray(p))
    return np.stack(rows) if rows else None


def warm_points_from(source: Result | str | os.PathLike, unit_names: Sequence[str] | None = None) -> np.ndarray:
    """The best point of each unit of an earlier campaign (a :class:`Result` or a run store): ``[n, dim]``.

    ``unit_names``: keep only these units' points (matched by name, e.g.
    ``"output:3"``); a single-unit store gives its best point whatever its
    name.  Units that share a best point give it once.
    """
    if isinstance(source, (str, os.PathLike)):
        from ..store import RunStore

        if not os.path.isfile(source):
            raise ConfigError(f"--warm-from: no run store at {os.fspath(source)!r}; give the .sqlite file of an "
                              "earlier run (mango maximize --store, or a store of mango track).")
        with RunStore(source, mode="r") as s:
            source = s.result()
    bests = unit_bests(source)
    if unit_names is not None and source.is_population:
        wanted = set(unit_names)
        kept = [u for u in bests if u.name in wanted]
        if not kept:
            raise ConfigError(f"the earlier run's units ({', '.join(u.name for u in bests)}) are none of this "
                              f"campaign's ({', '.join(unit_names)}); warm-start from a run on the same units.")
        bests = kept
    pts = _distinct_rows([u.best_point for u in bests])
    if pts is None:
        raise ConfigError("the earlier run has no best point (no finite value recorded); nothing to warm-start from.")
    return pts


# -- results ---------------------------------------------------------------------
@dataclass
class CheckpointRun:
    """One checkpoint's campaign: its result, store and how it started."""

    index: int
    checkpoint: str | None  # the weights file (None: the model's own weights)
    label: str
    store: str
    result: Result
    warm_points: int  # points it was warm-started from (0: cold)
    status: str  # "ran", "resumed" or "skipped" (finished before this call)

    def units(self) -> list[UnitResult]:
        return unit_bests(self.result)


@dataclass
class TrackResult:
    """Per-checkpoint results of :func:`track`, in training order (iterable, indexable)."""

    out: str
    runs: list[CheckpointRun]
    report: str | None = None  # the report page (index.html), when written
    settings: dict = field(default_factory=dict)
    n_checkpoints: int = 0  # how many the track has (more than ``runs`` when a campaign stopped early)

    @property
    def complete(self) -> bool:
        """Whether every checkpoint's campaign has finished."""
        return len(self.runs) == self.n_checkpoints and all(
            r.result.stop_reason.startswith("budget") for r in self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i) -> CheckpointRun:
        return self.runs[i]

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.runs[0].units()] if self.runs else []

    def best_values(self) -> np.ndarray:
        """Each unit's best value at each checkpoint: ``[n_checkpoints, n_units]`` (NaN: none finite)."""
        return np.array([[np.nan if u.best_value is None else u.best_value for u in r.units()] for r in self.runs],
                        dtype=float).reshape(len(self.runs), -1)

    def __repr__(self) -> str:
        return f"TrackResult({len(self.runs)} checkpoints, units {self.unit_names}, out={self.out!r})"


# -- the campaigns ----------------------------------------------------------------
def _parse_units(unit):
    """``unit`` as given -> ``"all"``, an int or a list of ints."""
    if isinstance(unit, str) and unit == "all":
        return "all"
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        return int(unit)
    try:
        units = [int(u) for u in unit]
    except (TypeError, ValueError):
        units = None
    if isinstance(unit, str) or units is None or any(u != v for u, v in zip(units, unit)):
        raise ConfigError(f"unit must be an index, a list of indices or 'all', got {unit!r}.")
    return units


def _layer_width(model, layer: str, generator, **oracle_kw) -> int:
    """How many units ``layer`` has: its output's first non-batch dimension, on one generated stimulus."""
    from ...zoo.build import build_unit_oracle

    probe = build_unit_oracle(model, layer, 0, **oracle_kw)
    probe(generator(generator.space.sample(1, seed=0)))
    shape = probe.readout.checked_shape or ()
    return int(shape[0]) if shape else 1


class _Target:
    """Builds the oracle of the tracked units for each checkpoint (same model spec, layer, units and readout)."""

    def __init__(self, model: str, generator, layer: str, unit, readout, num_steps, device, record=None):
        from ...zoo.build import build_model, build_unit_oracle, default_readout, spiking_framework

        self.spec, self.generator, self.layer, self.device = model, generator, layer, device
        probe = build_model(model, None, device=device)
        framework = spiking_framework(probe)
        self.oracle_kw: dict = {"device": device}
        if framework:
            self.oracle_kw.update(readout=readout or default_readout(framework), num_steps=num_steps)
        elif readout or num_steps:
            raise ConfigError(f"readout / num_steps apply to spiking networks only; {model} has no spiking layers.")
        unit = _parse_units(unit)
        self.single = isinstance(unit, int)
        self.units = list(range(_layer_width(probe, layer, generator, **self.oracle_kw))) if unit == "all" else (
            [unit] if self.single else unit)
        # the units the oracle reads (and the stores record): the tracked ones, or a superset of them
        self.record = list(self.units) if record is None else [int(u) for u in record]
        missing = [u for u in self.units if u not in self.record]
        if missing:
            raise ConfigError(f"record={self.record} must include every tracked unit; {missing} are not in it.")
        names = build_unit_oracle(probe, layer, self.record, **self.oracle_kw).unit_names
        self.unit_names = [names[self.record.index(u)] for u in self.units]

    def settings(self) -> dict:
        out = {"model": self.spec, "layer": self.layer, "units": self.units, "single": self.single,
               "readout": self.oracle_kw.get("readout"), "num_steps": self.oracle_kw.get("num_steps")}
        if self.record != self.units:
            out["record"] = self.record
        return out

    def model(self, checkpoint: str | None):
        from ...zoo.build import build_model

        return build_model(self.spec, checkpoint, device=self.device)

    def oracle(self, checkpoint: str | None):
        from ...zoo.build import build_unit_oracle

        return build_unit_oracle(self.model(checkpoint), self.layer, self.record, **self.oracle_kw)

    @property
    def maximize_unit(self):
        """The ``unit=`` of maximize: the tracked units' columns among the units the oracle reads."""
        cols = [self.record.index(u) for u in self.units]
        return cols[0] if self.single else cols


def store_name(index: int, checkpoint: str | None) -> str:
    """The run store of the ``index``-th checkpoint's campaign: ``NNN-STEM.sqlite`` (``000-model.sqlite``)."""
    stem = "model" if checkpoint is None else re.sub(r"[^A-Za-z0-9._-]+", "_", Path(checkpoint).stem)
    return f"{index:03d}-{stem}.sqlite"


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The settings a track recorded in ``out/track.json`` (None when there is none)."""
    from ..outdir import read_manifest as read

    return read(out, MANIFEST, _FORMAT, "track")


def _check_manifest(out: str, old: dict | None, new: dict) -> None:
    """Refuse to continue a track in ``out`` with other settings (a new checkpoint at the end is fine)."""
    from ..outdir import settings_diffs

    if old is None:
        return
    diffs = settings_diffs(old, new)
    before = [c["path"] for c in old["checkpoints"]]
    now = [c["path"] for c in new["checkpoints"]]
    if now[:len(before)] != before[:len(now)]:
        diffs.append(f"checkpoints: recorded {[os.path.basename(p or 'model') for p in before]}, now "
                     f"{[os.path.basename(p or 'model') for p in now]}")
    if diffs:
        raise ConfigError(f"{out!r} holds a track with other settings ({'; '.join(diffs)}). Rerun with the recorded "
                          "settings to continue it, or give another output directory.")


def track(checkpoints=None, *, model: str = "zoo:snn-digits", generator="zoo:vqvae-digits:embedding",
          layer: str = "output", unit="all", readout: str | None = None, num_steps: int | None = None,
          optimizer: str = "cma", budget: int = 1000, batch_size: int | None = None, seed: int | None = 0,
          out: str | os.PathLike = "mango-track", warm: bool = True, warm_from=None, device=None,
          progress: bool | None = False, callbacks: Sequence = (), report: bool = True, log=None,
          record=None, **optimizer_params) -> TrackResult:
    """Run the same units over each checkpoint in turn, each campaign warm-started from the previous one's bests.

    Parameters
    ----------
    checkpoints : checkpoint files in training order, or a directory of
        ``NAME-epochEEE.pt`` files (see :func:`resolve_checkpoints`); ``None``:
        one campaign on the model's own weights (e.g. with ``warm_from``).
    model : ``zoo:NAME`` or ``FILE.py:FACTORY`` (see :func:`mango.zoo.build.build_model`);
        each checkpoint is loaded into it as its weights.
    generator : a generator spec (:func:`mango.zoo.build.build_generator`) or object.
    layer, unit : the units: an index (a single-unit campaign), a list or
        ``range`` of indices (a population campaign), or ``"all"`` (every unit
        of the layer; the CLI also takes ``0-9`` and ``0,2,5``).
    readout, num_steps : spiking networks (default readout as the CLI's).
    optimizer, budget, batch_size, seed, **optimizer_params : each campaign's
        (:func:`mango.maximize`); warm-start points count against ``budget``.
    out : output directory: ``track.json``, one run store per checkpoint
        (``NNN-STEM.sqlite``) and the report.
    warm : warm-start each campaign after the first from the previous
        checkpoint's best point per unit (``False``: every campaign cold).
    warm_from : a run store (or :class:`Result`) of an earlier run: the first
        campaign starts from its best point per unit; or the points themselves (an array ``[n, dim]``).
    progress, callbacks : passed to every campaign.
    report : write the report across checkpoints (:mod:`mango.runs.track.report`).
    log : a function taking one line per checkpoint (the CLI prints them).
    record : unit indices of ``layer`` the oracle reads and the stores record, a superset of the tracked
        units (default: the tracked units).  Reading more units costs a network nothing extra per stimulus;
        :func:`mango.atlas` has every shard record its whole layer, so that each unit's best is taken over
        every stimulus the atlas showed.

    Returns
    -------
    TrackResult : one :class:`CheckpointRun` per checkpoint.
    """
    from ...zoo.build import build_generator
    from ..loop import maximize
    from ..store import RunStore

    paths: list = resolve_checkpoints(checkpoints) or [None]
    out = os.fspath(out)
    gen = build_generator(generator, device=device) if isinstance(generator, str) else generator
    target = _Target(model, gen, layer, unit, readout, num_steps, device, record)
    for p in paths:  # every checkpoint must fit the architecture before any campaign runs
        if p is not None:
            target.model(p)
    if isinstance(warm_from, np.ndarray):  # the points themselves (e.g. an atlas's exchange between shards)
        first_warm = np.asarray(warm_from)
        if first_warm.ndim != 2 or first_warm.shape[1] != gen.space.dim:
            raise ConfigError(f"warm_from points must be an array [n, {gen.space.dim}], got shape "
                              f"{list(first_warm.shape)}.")
    else:
        first_warm = None if warm_from is None else warm_points_from(warm_from, target.unit_names)
    settings = {**target.settings(),
                "generator": generator if isinstance(generator, str) else _describe(gen),
                "optimizer": optimizer, "optimizer_params": dict(optimizer_params), "budget": budget,
                "batch_size": batch_size, "seed": seed, "warm": bool(warm),
                "warm_from": None if warm_from is None else (
                    os.path.abspath(warm_from) if isinstance(warm_from, (str, os.PathLike)) else
                    f"{len(first_warm)} given points" if isinstance(warm_from, np.ndarray) else "a Result")}
    manifest = {"format": _FORMAT, "settings": settings,
                "checkpoints": [{"path": None if p is None else os.path.abspath(p), "label": checkpoint_label(p),
                                 "store": store_name(i, p)} for i, p in enumerate(paths)]}
    os.makedirs(out, exist_ok=True)
    _check_manifest(out, read_manifest(out), manifest)
    from ..outdir import write_manifest

    write_manifest(out, MANIFEST, manifest)
    say = log or (lambda line: None)
    runs: list[CheckpointRun] = []
    prev: Result | None = None
    for i, (p, entry) in enumerate(zip(paths, manifest["checkpoints"])):
        store = os.path.join(out, entry["store"])
        head = f"checkpoint {i + 1}/{len(paths)} ({entry['label']})"
        status = _status(store)
        if status == "finished":
            with RunStore(store, mode="r") as s:
                res = s.result()
            runs.append(CheckpointRun(i, p, entry["label"], store, res, _warm_n(res), "skipped"))
            say(f"{head}: finished earlier, skipped ({store})")
            prev = res
            continue
        points = first_warm if i == 0 else (warm_points_from(prev) if warm else None)
        res = maximize(target.oracle(p), generator=gen, unit=target.maximize_unit, optimizer=optimizer,
                       budget=budget, batch_size=batch_size, seed=seed, store=store, resume=status != "new",
                       warm_start=points, progress=progress, callbacks=callbacks,
                       metadata={"track": {"index": i, "checkpoint": entry["path"], "label": entry["label"],
                                           "units": target.units, "layer": layer, "model": model}},
                       **optimizer_params)
        run = CheckpointRun(i, p, entry["label"], store, res, 0 if points is None else len(points),
                            "ran" if status == "new" else "resumed")
        runs.append(run)
        say(f"{head}: {_summary_line(run)}")
        if not res.stop_reason.startswith("budget"):
            say(f"{head}: stopped ({res.stop_reason}); rerun the same command to continue")
            break
        prev = res
    result = TrackResult(out, runs, settings=settings, n_checkpoints=len(paths))
    if report and runs:
        result.report = make_track_report(out, [r.store for r in runs], [r.label for r in runs],
                                          description=_description(settings))
    return result


def _description(s: dict) -> str:
    units = s["units"]
    what = (f"unit {units[0]}" if s["single"] else f"units {units[0]}-{units[-1]}" if units == list(
        range(units[0], units[-1] + 1)) else f"units {units}")
    return (f"{what} of layer {s['layer']!r} of {s['model']}" + (f" ({s['readout']} readout)" if s["readout"] else "")
            + f" over {s['generator'] if isinstance(s['generator'], str) else 'a generator'}; {s['optimizer']}, "
            f"{s['budget']} queries per checkpoint, seed {s['seed']}; "
            + ("each campaign warm-started from the previous checkpoint's best point per unit" if s["warm"] else
               "every campaign cold (no warm start)")
            + (f"; the first from {os.path.basename(s['warm_from'])}" if s["warm_from"] else ""))


def _describe(gen) -> str:
    d = gen.describe() if hasattr(gen, "describe") else {"type": type(gen).__name__}
    return json.dumps(d, sort_keys=True, default=str)


def _status(store: str) -> str:
    """``"new"`` (no store yet), ``"finished"``, or the store's status of an unfinished run."""
    from ..store import RunStore

    if not os.path.exists(store):
        return "new"
    with RunStore(store, mode="r") as s:
        return s.status if s.config is not None else "empty"


def _warm_n(res: Result) -> int:
    return int(((res.config or {}).get("warm_start") or {}).get("n", 0))


def _summary_line(run: CheckpointRun) -> str:
    res = run.result
    vals = np.array([np.nan if u.best_value is None else u.best_value for u in run.units()], dtype=float)
    best = (f"best {vals[0]:.4g}" if len(vals) == 1 else
            f"median best over {len(vals)} units {np.nanmedian(vals):.4g}") if np.isfinite(vals).any() else "no value"
    warm = f"warm-started from {run.warm_points} point(s)" if run.warm_points else "cold start"
    return (f"{best}; {warm}; {res.n_queries} of {res.budget} queries, {res.wall_s:.1f} s"
            + ("" if run.status == "ran" else f" ({run.status})") + f" -> {run.store}")
