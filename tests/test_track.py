"""Campaigns across training checkpoints (mango.track, ``mango track``): runs, resume, warm start, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mango
from mango.cli.maximize import main
from mango.errors import ConfigError
from mango.runs.store import RunStore
from mango.runs.track.campaign import resolve_checkpoints, warm_points_from
from mango.zoo import models as M

BUDGET = 40


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Three checkpoints of the zoo SNN's architecture (random weights, one seed each), as training writes them."""
    d = tmp_path_factory.mktemp("ckpts")
    for e in range(3):
        torch.manual_seed(e)
        torch.save(M.SNNDigits().state_dict(), d / f"snn-digits-epoch{e:03d}.pt")
    return d


def _distinct_bests(run) -> np.ndarray:
    rows, seen = [], set()
    for u in run.units():
        if u.best_point.tobytes() not in seen:
            seen.add(u.best_point.tobytes())
            rows.append(u.best_point)
    return np.stack(rows)


def test_track_runs_warm_starts_and_skips_finished(ckpts, tmp_path):
    out = tmp_path / "track"
    lines = []
    res = mango.track(ckpts, unit=range(5), budget=BUDGET, out=out, log=lines.append)
    assert len(res) == 3 and res.complete and [r.status for r in res] == ["ran"] * 3
    assert res.labels == ["epoch 0", "epoch 1", "epoch 2"] and len(res.unit_names) == 5
    assert res.best_values().shape == (3, 5) and np.isfinite(res.best_values()).all()
    assert res[0].warm_points == 0
    for prev, run in zip(res.runs, res.runs[1:]):
        warm = _distinct_bests(prev)
        assert run.warm_points == len(warm)
        np.testing.assert_array_equal(run.result.points[:len(warm)], warm)  # the first queries are prev's bests
        assert run.result.n_queries == BUDGET  # the warm points count against the budget
    for name in ("index.html", "track.md", "track_grid.png", "track_values.png", "track.json"):
        assert (out / name).stat().st_size > 100
    assert "epoch 2" in (out / "track.md").read_text() and len(lines) == 3
    # rerun: everything finished, nothing is queried again
    sessions = [len(RunStore(r.store, mode="r").sessions()) for r in res]
    again = mango.track(ckpts, unit=range(5), budget=BUDGET, out=out)
    assert [r.status for r in again] == ["skipped"] * 3
    np.testing.assert_array_equal(again.best_values(), res.best_values())
    assert [len(RunStore(r.store, mode="r").sessions()) for r in again] == sessions


class _StopAt:
    """Ctrl-C in the ``campaign``-th campaign after ``batches`` batches."""

    def __init__(self, campaign: int, batches: int):
        self.campaign, self.batches, self.started = campaign, batches, -1

    def on_start(self, run):
        self.started += 1

    def on_batch(self, run, batch):
        if self.started == self.campaign and batch.index + 1 == self.batches:
            raise KeyboardInterrupt

    def on_end(self, run):
        pass


def test_track_resumes_an_unfinished_checkpoint(ckpts, tmp_path):
    whole = mango.track(ckpts, unit=[1, 3], budget=BUDGET, out=tmp_path / "whole", report=False)
    part = mango.track(ckpts, unit=[1, 3], budget=BUDGET, out=tmp_path / "part", callbacks=[_StopAt(1, 2)],
                       report=False)
    assert len(part) == 2 and not part.complete and part[1].result.stop_reason == "interrupted"
    rest = mango.track(ckpts, unit=[1, 3], budget=BUDGET, out=tmp_path / "part", report=False)
    assert [r.status for r in rest] == ["skipped", "resumed", "ran"] and rest.complete
    for a, b in zip(whole, rest):  # the resumed track ends with the history of the uninterrupted one
        np.testing.assert_array_equal(a.result.points, b.result.points)
        np.testing.assert_array_equal(a.result.unit_values, b.result.unit_values)


def test_cold_track_and_settings_mismatch(ckpts, tmp_path):
    files = sorted(str(p) for p in ckpts.glob("*.pt"))[:2]
    cold = mango.track(files, unit=2, budget=BUDGET, out=tmp_path / "t", warm=False, report=False)
    assert [r.warm_points for r in cold] == [0, 0] and not cold[0].result.is_population
    assert cold[1].result.config["warm_start"] is None
    with pytest.raises(ConfigError, match="other settings.*warm: recorded False, now True"):
        mango.track(files, unit=2, budget=BUDGET, out=tmp_path / "t", report=False)
    warm = mango.track(files, unit=2, budget=BUDGET, out=tmp_path / "w", report=False)
    assert warm[1].warm_points == 1
    np.testing.assert_array_equal(warm[1].result.points[0], warm[0].result.best_point)


def test_checkpoint_list_errors(ckpts, tmp_path):
    files = sorted(str(p) for p in ckpts.glob("*.pt"))
    with pytest.raises(ConfigError, match="not found: .*nope.pt"):
        resolve_checkpoints([files[0], str(tmp_path / "nope.pt")])
    with pytest.raises(ConfigError, match="not in training order.*epoch 0.*comes after.*epoch 2"):
        resolve_checkpoints([files[2], files[0]])
    with pytest.raises(ConfigError, match="more than once"):
        resolve_checkpoints([files[0], files[0]])
    with pytest.raises(ConfigError, match="empty"):
        resolve_checkpoints([])
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(ConfigError, match="no checkpoint files"):
        resolve_checkpoints(d)
    for e in (2, 10, 1):  # sorted by epoch number, not by name
        (d / f"net-epoch{e}.pt").write_bytes(b"")
    assert [p.rsplit("epoch", 1)[1] for p in resolve_checkpoints(d)] == ["1.pt", "2.pt", "10.pt"]
    (d / "final.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="final.pt carry no epoch number"):
        resolve_checkpoints(d)


def test_checkpoint_of_another_architecture_is_a_clear_error(ckpts, tmp_path, capsys):
    bad = tmp_path / "cnn-epoch005.pt"
    torch.save(M.CNNDigits().state_dict(), bad)
    files = sorted(str(p) for p in ckpts.glob("*.pt"))[:1] + [str(bad)]
    with pytest.raises(ConfigError, match="do not fit SNNDigits"):
        mango.track(files, budget=BUDGET, out=tmp_path / "t")
    assert not (tmp_path / "t").exists()  # checked before any campaign runs
    assert main(["track", "--checkpoints", *files, "--budget", "40", "--out", str(tmp_path / "t"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "do not fit SNNDigits" in err and "Traceback" not in err
    assert main(["track", "--checkpoints", files[0], "--unit", "3-1", "--out", str(tmp_path / "t")]) == 2
    assert "--unit takes" in capsys.readouterr().err


def test_cli_track_and_warm_from(ckpts, tmp_path, capsys):
    files = sorted(str(p) for p in ckpts.glob("*.pt"))[:2]
    out = tmp_path / "cli"
    assert main(["track", "--checkpoints", *files, "--unit", "0,4,7", "--budget", "30", "--param", "sigma0=0.3",
                 "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "checkpoint 2/2 (epoch 1)" in text and "warm-started from" in text and "track.md" in text
    doc = json.loads((out / "track.json").read_text())
    assert doc["settings"]["units"] == [0, 4, 7] and doc["settings"]["optimizer_params"] == {"sigma0": 0.3}
    # the same units recorded "another day": one campaign on the last checkpoint, from the first track's bests
    last = doc["checkpoints"][-1]["store"]
    prev = warm_points_from(out / last)
    assert main(["track", "--checkpoints", files[1], "--unit", "0,4,7", "--budget", "30", "--warm-from",
                 str(out / last), "--out", str(tmp_path / "day2"), "--no-progress"]) == 0
    stores = sorted((tmp_path / "day2").glob("*.sqlite"))
    assert len(stores) == 1
    with RunStore(stores[0], mode="r") as s:
        res = s.result()
    np.testing.assert_array_equal(res.points[:len(prev)], prev)
    # units not in the earlier run: a clear error
    assert main(["track", "--unit", "9", "--budget", "30", "--warm-from", str(out / last),
                 "--out", str(tmp_path / "day3"), "--no-progress"]) == 2


def test_all_units_of_the_layer_and_bad_units(ckpts, tmp_path):
    files = sorted(str(p) for p in ckpts.glob("*.pt"))[:1]
    res = mango.track(files, budget=30, out=tmp_path / "all", report=False)  # unit="all": the 10 output neurons
    assert res.settings["units"] == list(range(10)) and res[0].result.targets == list(range(10))
    with pytest.raises(ConfigError, match="unit 12 is out of range"):
        mango.track(files, unit=[0, 12], budget=30, out=tmp_path / "bad")
    with pytest.raises(ConfigError, match="unit must be an index"):
        mango.track(files, unit="0-9", budget=30, out=tmp_path / "bad")
