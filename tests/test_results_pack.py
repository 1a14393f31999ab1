"""The population benchmarks' packed runs (``benchmarks/_runs.py``, issue 30): what git keeps reads back as the
run files held it -- curves exactly, best points where a report reads them -- and a run file wins over its pack."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _runs  # noqa: E402


def _run(group: str, arm: str, unit, seed: int = 0, n: int = 50) -> dict:
    rng = np.random.default_rng(seed)
    k = 1 if unit is not None else 3
    curves = [np.maximum.accumulate(rng.normal(size=n)).tolist() for _ in range(k)]
    curves[0][:2] = [float("nan"), float("nan")]  # a unit that responded late
    return {"group": group, "arm": arm, "optimizer": "surrogate", "seed": seed, "unit": unit, "budget": n,
            "best": [c[-1] for c in curves], "normalized": [c[-1] for c in curves], "curves": curves,
            "best_points": {str(j): rng.normal(size=4).tolist() for j in range(k)}, "wall_s": 1.0}


def _write(path: Path, rec: dict) -> None:
    path.write_text(json.dumps(rec))


def test_steps_round_trip_exactly():
    for curve in ([], [1.0], [float("nan"), float("nan"), 0.5, 0.5, 2.0], [-np.inf, -1.0, -1.0]):
        back = _runs.from_steps(_runs.to_steps(curve))
        assert np.array_equal(np.asarray(back), np.asarray(curve, dtype=float), equal_nan=True)
    assert _runs.to_steps([1.0, 1.0, 1.0, 2.0]) == {"n": 4, "q": [0, 3], "v": [1.0, 2.0]}


def test_pack_keeps_what_reports_read_and_reads_back(tmp_path):
    runs = {"output-pop-surrogate-s0.json": _run("output", "pop", None),
            "output-single-surrogate-s0-u1.json": _run("output", "single", 1),
            "output-split-surrogate-s0-u1.json": _run("output", "split", 1),
            "hidden-pop-surrogate-s0.json": _run("hidden", "pop", None, seed=1)}
    for name, rec in runs.items():
        _write(tmp_path / name, rec)
    (tmp_path / "summary-output.md").write_text("a summary")
    path, n = _runs.write_pack(str(tmp_path))
    assert n == 4 and os.path.basename(path) == _runs.PACK
    first = Path(path).read_bytes()
    assert _runs.write_pack(str(tmp_path))[1] == 4 and Path(path).read_bytes() == first  # deterministic
    with gzip.open(path, "rt") as f:
        assert "curves" not in json.loads(f.readline())  # steps, not one value per query
    for name in runs:
        os.remove(tmp_path / name)
    for name, rec in runs.items():
        back = _runs.read(str(tmp_path), name)
        for a, b in zip(rec["curves"], back["curves"]):
            assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
        assert {k: v for k, v in back.items() if k not in ("curves", "best_points")} == \
            {k: v for k, v in rec.items() if k not in ("curves", "best_points")}
        assert ("best_points" in back) == (name in ("output-pop-surrogate-s0.json",
                                                     "output-single-surrogate-s0-u1.json"))
    assert [r["arm"] for r in _runs.records(str(tmp_path), "output-")] == ["pop", "single", "split"]
    assert _runs.exists(str(tmp_path), "hidden-pop-surrogate-s0.json") and _runs.read(str(tmp_path), "x.json") is None
    # a run file (a rerun) replaces its packed run, for the readers and in the next pack
    again = _run("output", "pop", None, seed=5)
    _write(tmp_path / "output-pop-surrogate-s0.json", again)
    assert next(_runs.records(str(tmp_path), "output-pop-"))["best"] == again["best"]
    _runs.write_pack(str(tmp_path))
    os.remove(tmp_path / "output-pop-surrogate-s0.json")
    assert _runs.read(str(tmp_path), "output-pop-surrogate-s0.json")["best"] == again["best"]
