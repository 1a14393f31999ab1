"""Export a run store to `NWB <https://www.nwb.org>`_, the format neurophysiology shares data in (DANDI takes only NWB).

>>> from mango.runs.report.export import to_nwb
>>> to_nwb("today.sqlite", "today.nwb")                    # doctest: +SKIP

or ``mango export nwb today.sqlite today.nwb``.  Needs pynwb (``pip install
'mango-am[nwb]'``).  The file holds, read back with ``pynwb.NWBHDF5IO``:

* ``intervals["presentations"]``: one row per evaluated point, in query
  order: ``start_time``/``stop_time`` (the rig's onset and offset where it
  reported them -- column ``rig_times`` -- else the batch's evaluation time on
  mango's clock, split evenly among its stimuli), ``query``, ``batch``,
  ``iteration`` (the optimizer's ask/tell round), ``row``, ``session``, ``reasked``,
  ``value`` (what the optimizer maximized), ``responses`` ``[n, units]`` (one
  column per recorded unit or channel), ``latent_point`` ``[n, dim]`` (the
  generator's input: with the generator it reproduces the stimulus),
  ``stimulus_index`` (into the images below, -1 where the store kept no
  stimulus) and ``stimulus_hash``;
* ``stimulus_template["stimuli"]``: the stimuli the store kept, as images named
  ``query_<query>`` (uint8, 0-255 for [0, 1]; ``[H, W]``, or ``[H, W, 3|4]``
  for colour), in query order; ``stimulus["presented_stimuli"]``: an
  ``IndexSeries`` saying when each of them was shown.  A store written with
  ``stimuli="none"`` (or ``"best"``) has no (or only the improving) images:
  the latent points identify every stimulus;
* ``notes``: JSON with the campaign's configuration, the optimizer, the mango
  version that recorded and the one that exported, the sessions, the units
  and the summary.

``session_start_time`` is the start of the run's first session (or the rig's first onset, if earlier: a rig
clock behind mango's).
"""

from __future__ import annotations

import datetime
import json
import os
import uuid

import numpy as np

from ..._version import __version__
from ...errors import ConfigError
from ..store import RunStore, StoreError

__all__ = ["to_nwb", "INSTALL"]

INSTALL = "pip install 'mango-am[nwb]'"


def _pynwb():
    """The pynwb module, or a one-line ConfigError saying how to install it."""
    try:
        import pynwb
    except ImportError:
        raise ConfigError(f"NWB export needs pynwb, which is not installed: {INSTALL}.") from None
    return pynwb


def _read(store) -> dict:
    """What the export needs from a run store (a path or an open :class:`RunStore`)."""
    own = not isinstance(store, RunStore)
    s = RunStore(store, mode="r") if own else store
    try:
        cfg = s.config
        if cfg is None:
            raise StoreError(f"{s.path!r} holds no run yet (no config written); nothing to export.")
        q = s.read_queries()
        if not len(q["query"]):
            raise StoreError(f"{s.path!r} holds no queries yet; nothing to export.")
        return {"path": s.path, "config": cfg, "queries": q, "batches": s.batches(), "sessions": s.sessions(),
                "units": s.unit_names, "status": s.status, "summary": s.summary, "oracle_stats": s.oracle_stats,
                "stimuli": s.read_stimuli(q["query"][q["has_stimulus"]])}
    finally:
        if own:
            s.close()


def _batch_times(q: dict, batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Each point's interval from mango's records (Unix s): its batch's evaluation, which ended about when the
    batch was written, split evenly among the batch's points in order."""
    start, stop = np.empty(len(q["query"])), np.empty(len(q["query"]))
    by_batch = {b["batch"]: b for b in batches}
    for b, rows in _rows_by_batch(q["batch"]).items():
        meta = by_batch[b]
        step = max(float(meta["objective_s"]), 0.0) / len(rows)
        t0 = float(meta["wall_time"]) - step * len(rows)
        start[rows] = t0 + step * np.arange(len(rows))
        stop[rows] = start[rows] + step
    return start, stop


def _rows_by_batch(batch: np.ndarray) -> dict[int, np.ndarray]:
    return {int(b): np.flatnonzero(batch == b) for b in np.unique(batch)}


def _session_start(data: dict) -> float:
    """The start of the run's first session (Unix s), or the first time the rig reported if that is earlier."""
    q = data["queries"]
    starts = [s["started"] for s in data["sessions"]] or [float(np.min(q["wall_time"]))]
    onsets = q["onset"][np.isfinite(q["onset"])]
    return float(min(starts + ([float(onsets.min())] if len(onsets) else [])))


def _times(data: dict, t0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """start, stop (seconds from ``t0``), whether each is the rig's, and how the table's description says so."""
    q = data["queries"]
    rig = np.isfinite(q["onset"]) & np.isfinite(q["offset"])
    start, stop = _batch_times(q, data["batches"])
    start, stop = np.where(rig, q["onset"], start) - t0, np.where(rig, q["offset"], stop) - t0
    batch_text = ("the batch's evaluation time on mango's clock (from the end of the batch, as recorded, back by "
                  "its evaluation time), split evenly among the batch's stimuli in order: approximate")
    if rig.all():
        how = "the rig's onset and offset of each stimulus (as it reported them; Unix clock)"
    elif not rig.any():
        how = f"no rig times were recorded: {batch_text}"
    else:
        how = f"the rig's onset and offset where rig_times is true; elsewhere {batch_text}"
    return start, stop, rig, how


def _image(name: str, stim: np.ndarray):
    """One stored stimulus (float ``[C, H, W]`` in [0, 1]) as an NWB image of uint8, or None (not 1, 3 or 4
    channels)."""
    from pynwb.image import GrayscaleImage, RGBAImage, RGBImage

    data = np.rint(np.clip(stim, 0.0, 1.0) * 255.0).astype(np.uint8)
    kinds = {1: GrayscaleImage, 3: RGBImage, 4: RGBAImage}
    if data.ndim != 3 or data.shape[0] not in kinds:
        return None
    data = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    return kinds[stim.shape[0]](name=name, data=data, description="a stimulus mango showed: uint8, 0-255 for "
                                "[0, 1], rows x columns (H x W)")


def _add_stimuli(nwb, data: dict, start: np.ndarray) -> np.ndarray:
    """Add the stored stimuli (images named by query) and when each was shown; return each row's image index
    (-1: no stored stimulus)."""
    from pynwb.base import ImageReferences, Images
    from pynwb.image import IndexSeries

    q = data["queries"]
    width = max(6, len(str(int(q["query"].max()))))
    index = np.full(len(q["query"]), -1, dtype=np.int64)
    images = []
    for i, query in enumerate(q["query"]):
        stim = data["stimuli"].get(int(query))
        img = None if stim is None else _image(f"query_{int(query):0{width}d}", stim)
        if img is not None:
            index[i] = len(images)
            images.append(img)
    if not images:
        return index
    container = Images(name="stimuli", images=images, order_of_images=ImageReferences(
        name="order_of_images", data=images), description=(
        f"the stimuli the run store kept ({len(images)} of {len(index)} points), one image per query, named "
        "query_<query>, in query order; the presentations table's stimulus_index points here, and its "
        "latent_point identifies every stimulus"))
    nwb.add_stimulus_template(container)
    shown = index >= 0
    nwb.add_stimulus(IndexSeries(name="presented_stimuli", data=index[shown].astype(np.uint32), unit="N/A",
                                 indexed_images=container, timestamps=start[shown],
                                 description="when each stored stimulus was shown (its presentation's start_time)"))
    return index


def _add_presentations(nwb, data: dict, start, stop, rig, how: str, stimulus_index: np.ndarray) -> None:
    from pynwb.epoch import TimeIntervals

    q = data["queries"]
    units = data["units"]
    table = TimeIntervals(name="presentations", description=(
        f"one row per evaluated point (a stimulus shown; a point the oracle repeats spans its first onset to its "
        f"last offset), in query order. start_time/stop_time: {how}."))
    columns = [
        ("query", "mango's query index (0-based; a point repeated k times uses k queries from here)", q["query"]),
        ("batch", "the batch the point was evaluated in", q["batch"]),
        ("iteration", "the optimizer iteration (ask/tell round) that proposed the point; one per batch", q["batch"]),
        ("row", "the point's position in its batch", q["row"]),
        ("session", "the mango session (start or resume; see notes) that recorded the point", _sessions(data)),
        ("reasked", "true where the point's batch had been asked by an earlier session that ended before its "
                    "responses were recorded (it may have been shown then too): shown again here", _reasked(data)),
        ("value", "the value the optimizer maximized (NaN: a lost response)", q["values"]),
        ("rig_times", "true where start_time/stop_time are the rig's reported onset/offset", rig),
        ("latent_point", "the point in the generator's latent space (the stimulus's parameters)", q["points"]),
        ("stimulus_index", "index into stimulus_template['stimuli'] (-1: the store kept no image)", stimulus_index),
        ("stimulus_hash", "content hash of the stimulus (sha256 of its float32 values; empty: none)",
         [h or "" for h in q["stimulus_hash"]]),
    ]
    if q["responses"] is not None:
        columns.insert(5, ("responses", f"the recorded responses, one column per unit/channel: "
                                        f"{json.dumps(units)}", q["responses"]))
    for name, description, _ in columns:
        table.add_column(name=name, description=description)
    for i in range(len(q["query"])):
        table.add_row(start_time=float(start[i]), stop_time=float(stop[i]),
                      **{name: _cell(values[i]) for name, _, values in columns})
    nwb.add_time_intervals(table)


def _sessions(data: dict) -> np.ndarray:
    """The session id of each row's batch (-1 where the store has none)."""
    of = {b["batch"]: -1 if b["session"] is None else int(b["session"]) for b in data["batches"]}
    return np.array([of.get(int(b), -1) for b in data["queries"]["batch"]], dtype=np.int64)


def _reasked(data: dict) -> np.ndarray:
    """Whether each row's batch was re-asked after an interrupted session (False where the store does not say)."""
    of = {b["batch"]: bool(b.get("reasked", False)) for b in data["batches"]}
    return np.array([of.get(int(b), False) for b in data["queries"]["batch"]], dtype=bool)


def _cell(v):
    """One table cell as pynwb takes it (numpy scalars to Python, arrays kept)."""
    if isinstance(v, np.ndarray):
        return v
    return v.item() if isinstance(v, np.generic) else v


def _notes(data: dict, how: str) -> str:
    cfg = data["config"]
    return json.dumps({
        "format": "mango-nwb-1", "exported_by": f"mango {__version__}",
        "recorded_by": (cfg.get("versions") or {}).get("mango"), "optimizer": cfg.get("optimizer"),
        "units": data["units"], "status": data["status"], "times": how, "store": os.path.abspath(data["path"]),
        "sessions": data["sessions"], "summary": data["summary"], "oracle_stats": data["oracle_stats"],
        "config": cfg,
    }, default=str, sort_keys=True)


def _nwbfile(pynwb, data: dict, how: str, t0: float, fields: dict):
    cfg = data["config"]
    q = data["queries"]
    desc = (f"mango closed-loop activation maximization: optimizer {cfg.get('optimizer')}, {len(q['query'])} "
            f"points ({int(cfg.get('budget', 0))} query budget), units {', '.join(data['units']) or '-'}")
    base = {"session_description": desc, "identifier": str(uuid.uuid4()),
            "session_start_time": datetime.datetime.fromtimestamp(t0, tz=datetime.timezone.utc),
            "experiment_description": desc, "notes": _notes(data, how),
            "keywords": ["mango", "activation maximization", "closed loop"]}
    fields = dict(fields)
    if isinstance(fields.get("subject"), dict):
        fields["subject"] = _subject(pynwb, fields["subject"])
    try:
        return pynwb.NWBFile(**{**base, **fields})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build the NWB file with the fields given ({str(exc)[:200]}); pass pynwb.NWBFile "
                          "arguments such as experimenter=, lab=, institution=, subject=.") from None


def _subject(pynwb, fields: dict):
    """A ``pynwb.file.Subject`` from a dict such as ``{"subject_id": "m01", "species": "Mus musculus", "sex": "F",
    "age": "P90D"}``."""
    try:
        return pynwb.file.Subject(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build the NWB subject from {sorted(fields)} ({str(exc)[:200]}); use "
                          "pynwb.file.Subject fields such as subject_id, species, sex, age (ISO 8601, e.g. P90D), "
                          "description.") from None


def _check_out(out: str, overwrite: bool) -> None:
    if os.path.isdir(out):
        raise ConfigError(f"{out!r} is a directory; give the path of the NWB file to write, e.g. {out}/run.nwb.")
    if os.path.exists(out) and not overwrite:
        raise ConfigError(f"{out!r} exists; give another path, or overwrite it (--overwrite, overwrite=True).")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ConfigError(f"cannot write {out!r}: the folder {folder!r} does not exist or is not writable.")


def to_nwb(store, out: str | os.PathLike, *, overwrite: bool = False, **nwbfile_fields) -> str:
    """Write the run in ``store`` (a run store path or an open :class:`~mango.runs.store.RunStore`) as an NWB file.

    Parameters
    ----------
    store : the run store written by ``maximize(..., store=PATH)`` / ``mango maximize --store PATH``.
    out : the ``.nwb`` file to write (written whole to a temporary file first, then moved into place).
    overwrite : replace ``out`` if it exists (default: refuse).
    **nwbfile_fields : more ``pynwb.NWBFile`` arguments (``experimenter=``, ``lab=``, ``institution=``, ...),
        or replacements for mango's (``session_description=``, ``identifier=``, ...).  ``subject=`` takes a
        ``pynwb.file.Subject`` or a dict of its fields: a recorded animal's ``subject_id``, ``species``, ``sex``
        and ``age`` are what DANDI and the NWB inspector ask for, and only the lab knows them (mango writes
        no subject of its own).

    Returns
    -------
    The path written.  See the module documentation for what the file holds.
    """
    pynwb = _pynwb()
    out = os.fspath(out)
    _check_out(out, overwrite)
    data = _read(store)
    t0 = _session_start(data)
    start, stop, rig, how = _times(data, t0)
    nwb = _nwbfile(pynwb, data, how, t0, nwbfile_fields)
    index = _add_stimuli(nwb, data, start)
    _add_presentations(nwb, data, start, stop, rig, how, index)
    folder, name = os.path.split(os.path.abspath(out))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp.nwb")
    try:
        with pynwb.NWBHDF5IO(tmp, "w") as io:
            io.write(nwb)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out
