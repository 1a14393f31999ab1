"""The atlas: sharding, resume after a killed shard or worker, fail-fast worker errors, the CLI, watch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mango
from mango.errors import ConfigError, MangoError
from mango.runs.atlas.plan import atlas_stores, auto_shard_sizes, plan_shards, round_budgets, shard_budget

# the smallest real atlas: the digit SNN, two layers, a few units, cma, a handful of queries per unit
SMALL = dict(model="zoo:snn-digits", layers=["output", "lif1"], units=[0, 1, 2], generator="zoo:vqvae-digits:embedding",
             optimizer="cma", budget_per_unit=6, shard_size=2, reference=None)


def _queries(store: str) -> list[int]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return [int(q) for (q,) in con.execute("SELECT query FROM queries ORDER BY query")]
    finally:
        con.close()


def _check_exact(out: str) -> None:
    """Every shard's stores hold exactly its budget: each round's store its round budget, each query once."""
    man = json.load(open(os.path.join(out, "atlas.json")))
    stores = atlas_stores(out)
    for sh in man["shards"]:
        mine = [p for p in stores if f"{os.sep}{sh['id']}{os.sep}" in p]
        n_ckpt = len(man["checkpoint_labels"])  # one store per round and checkpoint, round by round
        assert len(mine) == len(sh["round_budgets"]) * n_ckpt
        for store, budget in zip(mine, [b for b in sh["round_budgets"] for _ in range(n_ckpt)]):
            assert _queries(store) == list(range(budget)), (store, budget)
        assert sum(sh["round_budgets"]) == sh["budget"]


@given(layers=st.dictionaries(st.sampled_from(["a", "b.c", "d"]), st.integers(1, 70), min_size=1),
       size=st.integers(1, 40), n_seeds=st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_sharding_covers_every_unit_exactly_once(layers, size, n_seeds):
    scope = {name: list(range(n)) for name, n in layers.items()}
    shards = plan_shards(scope, size, seeds=range(n_seeds))
    for seed in range(n_seeds):
        for name, units in scope.items():
            mine = [sh for sh in shards if sh.layer == name and sh.seed == seed]
            got = [u for sh in mine for u in sh.units]
            assert sorted(got) == units  # every unit, once
            sizes = [len(sh.units) for sh in mine]
            assert max(sizes) <= size and max(sizes) - min(sizes) <= 1  # even shards, none over the size
    assert len({sh.id for sh in shards}) == len(shards)


def test_auto_shards_fill_the_workers_with_the_fewest_shards():
    scope = {"output": list(range(10)), "lif3": list(range(128))}
    assert auto_shard_sizes(scope, 1) == {"output": 10, "lif3": 128}  # one campaign per layer
    assert auto_shard_sizes(scope, 2) == {"output": 10, "lif3": 64}
    sizes = auto_shard_sizes(scope, 16)
    assert len(plan_shards(scope, sizes)) in range(15, 19)
    assert round_budgets(100, 2, 5) == [50, 50] and round_budgets(101, 3, 5) == [33, 33, 35]
    with pytest.raises(ConfigError, match="cannot be cut into 2 rounds"):
        round_budgets(20, 2, 10)


def test_plan_errors_are_one_line():
    with pytest.raises(ConfigError, match="shard_size"):
        plan_shards({"a": [0]}, 0)
    with pytest.raises(ConfigError, match="twice"):
        plan_shards({"a": [0, 0]}, 2)
    with pytest.raises(ConfigError, match="budget_per_unit"):
        shard_budget(3, None, None)
    assert shard_budget(3, 10, None) == 30 and shard_budget(3, None, 50) == 50


def test_atlas_runs_resumes_and_refuses_other_settings(tmp_path):
    out = str(tmp_path / "atlas")
    res = mango.atlas(**SMALL, out=out, workers=2, site=False)
    assert sorted({r["id"] for r in res.shards}) == ["lif1-000", "lif1-001", "output-000", "output-001"]
    assert sorted(r["round"] for r in res.shards) == [0] * 4 + [1] * 4  # two exchange rounds by default
    assert res.queries == 3 * 6 * 2
    _check_exact(out)
    # pooling: a unit's best is over every query of its layer, at least its own shard's best
    layer = json.load(open(os.path.join(out, "layers", "output.json")))
    from mango.runs.store import RunStore

    own = {}
    for store in atlas_stores(out):
        if f"{os.sep}output-" in store:
            with RunStore(store, mode="r") as s:
                q = s.read_queries()
            assert q["responses"].shape[1] == 3  # every unit of the layer recorded in every shard
            for c in range(3):
                own[c] = max(own.get(c, -1e300), float(q["responses"][:, c].max()))
    assert [u["checkpoints"][0]["best_value"] for u in layer["units"]] == [own[0], own[1], own[2]]
    # the second round started from the layer's bests: its first queries are those points
    doc = json.load(open(os.path.join(out, "shards", "output-000", "r1", "shard.json")))
    assert doc["warm_points"] == 2
    again = mango.atlas(**SMALL, out=out, workers=2, site=False)  # finished shards are skipped
    assert {r["status"] for r in again.shards} == {"skipped"} and again.queries == 0
    auto = {k: v for k, v in SMALL.items() if k != "shard_size"}  # the automatic cut, pinned once made
    out2 = str(tmp_path / "auto")
    first = mango.atlas(**auto, out=out2, workers=2, site=False)
    assert len({r["id"] for r in first.shards}) == 2  # two layers, two workers: a shard each
    later = mango.atlas(**auto, out=out2, workers=1, site=False)  # resumed on one worker: the same plan
    assert {r["status"] for r in later.shards} == {"skipped"}
    with pytest.raises(ConfigError, match="other settings.*budget_per_unit"):
        mango.atlas(**{**SMALL, "budget_per_unit": 7}, out=out, workers=2, site=False)


def test_scope_errors_before_any_worker(tmp_path):
    with pytest.raises(ConfigError, match="layer 'nope'"):
        mango.atlas(**{**SMALL, "layers": ["nope"]}, out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match=r"has 10 units \(0..9\)"):
        mango.atlas(**{**SMALL, "units": [3, 12]}, out=str(tmp_path / "a"))
    assert not os.path.exists(tmp_path / "a" / "shards")


BAD_ON_WORKERS = '''
import multiprocessing
from mango.zoo import load


def build():
    if multiprocessing.parent_process() is not None:  # a worker process
        raise RuntimeError("this model cannot be built here: missing CUDA driver")
    return load("snn-digits")
'''


def test_a_spec_that_fails_on_a_worker_stops_the_atlas_with_its_error(tmp_path):
    path = tmp_path / "bad_model.py"
    path.write_text(BAD_ON_WORKERS)
    t0 = time.monotonic()
    with pytest.raises(MangoError, match="failed on its worker.*missing CUDA driver"):
        mango.atlas(**{**SMALL, "model": f"{path}:build"}, out=str(tmp_path / "atlas"), workers=2, site=False)
    assert time.monotonic() - t0 < 120  # fails fast: no retry loop, no hang


def _wait_mid_shard(out: str, deadline: float) -> str:
    """Poll the stores until one is part-way through its round; returns its path."""
    from mango.runs.store import RunStore

    while time.monotonic() < deadline:
        if os.path.isfile(os.path.join(out, "atlas.json")):
            man = json.load(open(os.path.join(out, "atlas.json")))
            budgets = [b for sh in man["shards"] for b in sh["round_budgets"]]
            for store, budget in zip(atlas_stores(out), budgets):
                if os.path.isfile(store):
                    try:
                        with RunStore(store, mode="r") as s:
                            n = s.n_queries()
                    except MangoError:
                        continue
                    if 0 < n < budget:
                        return store
        time.sleep(0.05)
    raise AssertionError("no shard was seen part-way")


SLOW_SHARD = dict(SMALL, layers=["output"], units=[0, 1, 2, 3], shard_size=2, budget_per_unit=60,
                  optimizer="random")


def test_resume_after_a_killed_shard(tmp_path):
    """The whole atlas process (driver and workers) is SIGKILLed mid-shard; rerunning completes it exactly."""
    out = str(tmp_path / "atlas")
    cmd = [sys.executable, "-m", "mango.cli", "atlas", "--model", "zoo:snn-digits", "--layer", "output",
           "--unit", "0-3", "--shard-size", "2", "--budget-per-unit", "60", "--optimizer", "random",
           "--batch-size", "2", "--reference", "none", "--workers", "1", "--out", out, "--progress-every", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_mid_shard(out, time.monotonic() + 300)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    res = mango.atlas(**SLOW_SHARD, batch_size=2, out=out, workers=1, site=False)
    assert "ran" in {r["status"] for r in res.shards}
    _check_exact(out)


@pytest.mark.slow
def test_dask_worker_killed_mid_shard_the_atlas_completes_exactly(tmp_path):
    dd = pytest.importorskip("dask.distributed")
    out = str(tmp_path / "atlas")
    with dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        box = {}

        def run():
            try:
                box["res"] = mango.atlas(**SLOW_SHARD, batch_size=2, out=out, dask=cluster.scheduler_address)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                box["err"] = exc

        t = threading.Thread(target=run)
        t.start()
        store = _wait_mid_shard(out, time.monotonic() + 300)
        from mango.runs.store import RunStore

        deadline = time.monotonic() + 60
        holders = []
        while not holders and time.monotonic() < deadline:
            with RunStore(store, mode="r") as s:
                holders = s.holders()
        assert holders, "the shard's writer was not found"
        os.kill(int(holders[0]["pid"]), signal.SIGKILL)  # the Dask worker writing this shard
        t.join(timeout=600)
        assert not t.is_alive() and "err" not in box, box.get("err")
    _check_exact(out)
    assert os.path.isfile(box["res"].site)


def test_cli_atlas_site_and_watch(tmp_path):
    out = str(tmp_path / "atlas")
    cmd = [sys.executable, "-m", "mango.cli", "atlas", "--model", "zoo:snn-digits", "--layer", "output",
           "--unit", "0-2", "--budget-per-unit", "6", "--optimizer", "cma", "--shard-size", "2", "--out", out,
           "--workers", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "site written" in r.stdout and os.path.isfile(os.path.join(out, "site", "index.html"))
    summary_pages = os.listdir(os.path.join(out, "site"))
    assert "layer-output.html" in summary_pages and "unit-output-2.html" in summary_pages
    r = subprocess.run(cmd[:-2] + ["--workers", "1", "--budget-per-unit", "7"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode != 0 and "other settings" in r.stderr and "Traceback" not in r.stderr
    from mango.runs.report.watch.server import make_server

    stores = atlas_stores(out)
    assert len(stores) == 4 and all(os.path.isfile(s) for s in stores)  # 2 shards x 2 rounds
    srv = make_server(stores, port=0, site_dir=os.path.join(out, "site"))
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    try:
        page = urllib.request.urlopen(srv.url + "atlas/index.html", timeout=30).read().decode()
        assert "output" in page
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(srv.url + "atlas/..%2f..%2fatlas.json", timeout=30)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(srv.url + "atlas/nothing.html", timeout=30)
    finally:
        srv.shutdown()
        srv.server_close()


def test_atlas_over_checkpoints_shows_units_across_training(tmp_path):
    import torch

    from mango.zoo import load

    model = load("snn-digits")
    paths = []
    for epoch, scale in ((1, 0.5), (2, 1.0)):  # two "checkpoints": the trained weights, and them halved
        p = tmp_path / f"snn-digits-epoch{epoch:03d}.pt"
        torch.save({k: v * scale if v.is_floating_point() else v for k, v in model.state_dict().items()}, p)
        paths.append(str(p))
    out = str(tmp_path / "atlas")
    kw = {**SMALL, "layers": ["output"], "units": [0, 1], "shard_size": 1, "reference": "auto"}
    with pytest.raises(ConfigError, match="rounds > 1.*checkpoints"):
        mango.atlas(**kw, checkpoints=paths, rounds=2, out=out)
    res = mango.atlas(**kw, checkpoints=paths, out=out, workers=2)
    _check_exact(out)
    assert res.summary["checkpoints"] == ["epoch 1", "epoch 2"]
    for unit in res.summary["layers"][0]["units"]:
        assert [c["best_value"] is not None for c in unit["checkpoints"]] == [True, True]
        assert all(c["normalized"] is not None and c["best_png"] for c in unit["checkpoints"])
    page = open(os.path.join(out, "site", "layer-output.html")).read()
    assert "epoch 1" in page and "epoch 2" in page
