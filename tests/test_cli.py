import json
import subprocess
import sys
from pathlib import Path

import pytest

from mango.cli.maximize import main


def test_version():
    out = subprocess.run([sys.executable, "-m", "mango.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("mango ")


def test_maximize_test_function_writes_files(tmp_path):
    assert main(["maximize", "--objective", "rastrigin", "--dim", "4", "--budget", "120", "--optimizer", "ga",
                 "--param", "popsize=12", "--out", str(tmp_path), "--no-progress"]) == 0
    d = json.loads((tmp_path / "result.json").read_text())
    assert d["queries"]["used"] == 120 and d["queries"]["budget"] == 120 and d["search"]["optimizer"] == "ga"
    assert d["search"]["optimizer_params"] == {"popsize": 12} and d["target"]["objective"] == "rastrigin"
    lines = (tmp_path / "curve.csv").read_text().splitlines()
    assert lines[0] == "query,value,best_so_far" and len(lines) == 121
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize("args, msg", [
    (["--budget", "0"], "--budget must be >= 1"),
    (["--optimizer", "cmaa"], "Did you mean 'cma'"),
    (["--objective", "codebook", "--optimizer", "cma"], "cannot search a Codebook"),
    (["--param", "sigma0"], "KEY=VALUE"),
])
def test_maximize_errors_are_clean(tmp_path, capsys, args, msg):
    base = ["maximize", "--objective", "sphere", "--out", str(tmp_path), "--no-progress"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_list_optimizers(capsys):
    assert main(["maximize", "--list-optimizers"]) == 0
    names = capsys.readouterr().out.split()
    assert {"random", "cma", "ga", "ng:NGOpt"} <= set(names)


USER_NET = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 3))
'''


def test_maximize_user_model_file_with_weights(tmp_path):
    import torch

    (tmp_path / "my_net.py").write_text(USER_NET)
    ns = {}
    exec(USER_NET, ns)
    net = ns["build"]()
    with torch.no_grad():
        net[0].bias.fill_(0.5)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "o"
    assert main(["maximize", "--model", f"{tmp_path / 'my_net.py'}:build", "--weights", str(tmp_path / "w.pt"),
                 "--layer", "0", "--unit", "2", "--generator", "grating", "--optimizer", "cma", "--budget", "40",
                 "--out", str(out), "--no-progress"]) == 0
    d = json.loads((out / "result.json").read_text())
    assert d["queries"]["used"] == 40 and (out / "best.png").exists()
    assert (d["target"]["layer"], d["target"]["unit"]) == ("0", 2) and d["reference"] is None
    # a wrong layer name is a clean error with close matches
    assert main(["maximize", "--model", f"{tmp_path / 'my_net.py'}:build", "--layer", "O", "--generator",
                 "grating", "--budget", "5", "--out", str(out), "--no-progress"]) == 2


def test_maximize_spikingjelly_zoo_model_out_of_the_box(tmp_path):
    out = tmp_path / "sj"
    assert main(["maximize", "--model", "zoo:sj-digits", "--budget", "24", "--batch-size", "12",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    d = json.loads((out / "result.json").read_text())
    assert d["queries"]["used"] == 24 and (out / "best.png").exists()
    assert d["target"]["layer_resolved"] == "lif3" and "SJDigits" in d["value"]["what"]
    assert d["target"]["readout"] == "rate"  # the SpikingJelly default


def test_maximize_warm_start_from_zoo_digits(tmp_path):
    from mango.runs.store import RunStore

    out, store = tmp_path / "out", tmp_path / "run.sqlite"
    assert main(["maximize", "--model", "zoo:cnn-digits", "--unit", "7", "--generator", "zoo:vqvae-digits:embedding",
                 "--optimizer", "cma", "--budget", "30", "--warm-start", "zoo", "--warm-n", "10",
                 "--out", str(out), "--store", str(store), "--reference", "none", "--quiet"]) == 0
    assert (out / "result.json").exists()
    with RunStore(store, mode="r") as s:
        cfg = s.config
        assert s.n_points() == 30
    assert cfg["warm_start"]["n"] == 10 and cfg["warm_start"]["source"] == "zoo"
    assert main(["maximize", "--warm-start", "zoo", "--warm-n", "30", "--budget", "30", "--objective", "sphere",
                 "--out", str(tmp_path / "o2"), "--quiet"]) == 2


def test_maximize_selectivity_and_direction_from_the_cli(tmp_path):
    base = ["maximize", "--model", "zoo:cnn-digits", "--unit", "7", "--budget", "30", "--reference", "none", "--quiet"]
    assert main(base + ["--among", "0-9", "--selectivity", "difference", "--out", str(tmp_path / "s")]) == 0
    r = json.loads((tmp_path / "s" / "result.json").read_text())
    assert r["target"]["selectivity"] == "difference" and "selectivity of column 7" in r["value"]["what"]
    assert main(base + ["--among", "7,1", "--direction", "1,-1", "--out", str(tmp_path / "d")]) == 0
    r = json.loads((tmp_path / "d" / "result.json").read_text())
    assert "weighted sum" in r["value"]["what"]


@pytest.mark.parametrize("args, msg", [
    (["--selectivity", "difference"], "--among"),
    (["--among", "0-3", "--unit", "7", "--selectivity", "ratio"], "not among"),
    (["--among", "0-3", "--direction", "1,1"], "one each"),
    (["--among", "5-2"], "--among takes"),
    (["--among", "0-12", "--unit", "3"], "out of range"),
])
def test_selectivity_cli_errors(tmp_path, capsys, args, msg):
    base = ["maximize", "--model", "zoo:cnn-digits", "--budget", "10", "--out", str(tmp_path), "--quiet"]
    assert main(base + args) == 2
    assert msg in capsys.readouterr().err


# -- population campaigns (several --unit) ------------------------------------------------------

def _cnn_logits(x):
    """The zoo CNN's output units straight from the network (not through mango's oracle)."""
    import torch

    from mango import zoo

    net = zoo.load("cnn-digits", device="cpu").eval()
    with torch.no_grad():
        return net(torch.as_tensor(x)).numpy()


def test_population_campaign_from_the_cli(tmp_path, monkeypatch, capsys):
    import os
    import sys

    import numpy as np

    from mango.runs.store import RunStore
    from mango.zoo.data import load_digits

    sys.path.insert(0, os.path.dirname(__file__))
    import _schema

    monkeypatch.setenv("MANGO_CACHE", str(tmp_path / "cache"))
    x = load_digits().x_train[::100].numpy()
    np.save(tmp_path / "natural.npy", x)
    out, store = tmp_path / "out", tmp_path / "run.sqlite"
    assert main(["maximize", "--model", "zoo:cnn-digits", "--unit", "0,3,7", "--budget", "40", "--batch-size", "10",
                 "--reference", str(tmp_path / "natural.npy"), "--out", str(out), "--store", str(store),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "result.json").read_text())
    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "result.schema.json").read_text())
    assert _schema.errors(r, schema) == []
    assert r["target"]["units"] == ["output:0", "output:3", "output:7"] and "unit" not in r["target"]
    assert "population campaign" in r["target"]["description"]
    ref = _cnn_logits(x)[:, [0, 3, 7]].max(axis=0)  # each unit's own reference, computed independently
    with RunStore(store, mode="r") as s:
        units = s.result().units()
    for u, rec, m in zip(units, r["units"], ref):
        assert rec["name"] == u.name and rec["best_value"] == pytest.approx(u.best_value)
        assert rec["reference_max"] == pytest.approx(m, rel=1e-5)
        assert rec["normalized"] == pytest.approx(u.best_value / m, rel=1e-5)
        assert f"unit {u.name}  best {u.best_value:.5g}" in printed
    assert r["population"]["median_normalized"] == pytest.approx(np.median([u["normalized"] for u in r["units"]]))
    assert f"population campaign of 3 units: median best {r['population']['median_best_value']:.5g}" in printed
    rows = (out / "units.csv").read_text().splitlines()
    assert rows[0].startswith("name,column,best_value,normalized") and len(rows) == 4
    curve = (out / "curve.csv").read_text().splitlines()
    assert curve[0].endswith("best_so_far[output:7]") and len(curve) == 41
    assert np.load(out / "unit_best_points.npy").shape[0] == 3
    for f in ("units.png", "unit_curves.png", "curve.png"):
        assert (out / f).stat().st_size > 1000


def test_population_campaign_resumes_from_the_cli(tmp_path, monkeypatch):
    import numpy as np

    import mango.oracles.torch as torch_oracle
    from mango.runs.store import RunStore

    base = ["maximize", "--model", "zoo:cnn-digits", "--unit", "all", "--budget", "50", "--batch-size", "10",
            "--reference", "none", "--quiet"]
    assert main(base + ["--store", str(tmp_path / "ref.sqlite"), "--out", str(tmp_path / "o0")]) == 0
    respond = torch_oracle.TorchOracle._respond
    calls = []

    def interrupted_at_the_third_batch(self, x):
        calls.append(len(x))
        if len(calls) == 6:  # 2 calls check the layer (all, then the unit list), 1 the blank image, then batches
            raise KeyboardInterrupt
        return respond(self, x)

    monkeypatch.setattr(torch_oracle.TorchOracle, "_respond", interrupted_at_the_third_batch)
    assert main(base + ["--store", str(tmp_path / "run.sqlite"), "--out", str(tmp_path / "o1")]) == 130
    monkeypatch.setattr(torch_oracle.TorchOracle, "_respond", respond)
    with RunStore(tmp_path / "run.sqlite", mode="r") as s:
        assert s.n_points() == 20
    assert main(["maximize", "--resume", str(tmp_path / "run.sqlite"), "--out", str(tmp_path / "o2"), "--quiet",
                 "--reference", "none"]) == 0
    with RunStore(tmp_path / "ref.sqlite", mode="r") as a, RunStore(tmp_path / "run.sqlite", mode="r") as b:
        qa, qb = a.read_queries(), b.read_queries()
        assert b.status == "finished" and b.n_queries() == 50 and len(b.sessions()) == 2
        assert b.config["targets"] == list(range(10))
    np.testing.assert_array_equal(qa["points"], qb["points"])
    r0 = json.loads((tmp_path / "o0" / "result.json").read_text())
    r2 = json.loads((tmp_path / "o2" / "result.json").read_text())
    assert [u["best_value"] for u in r0["units"]] == [u["best_value"] for u in r2["units"]]
    assert len(r2["units"]) == 10


@pytest.mark.parametrize("args, msg", [
    (["--unit", "0-12"], "valid indices are 0..9"),
    (["--unit", "0-9", "--selectivity", "difference"], "drop --selectivity"),
    (["--unit", "0-9", "--direction", "1,1"], "drop --direction"),
    (["--unit", "0-9", "--among", "0-9"], "Drop --among"),
    (["--unit", "0,on"], "not a unit index"),
    (["--unit", "on"], "names are for the channels of a rig"),
    (["--unit", "0,0"], "more than once"),
    (["--unit", "0-2", "--objective", "sphere"], "Drop --unit"),
])
def test_population_cli_errors(tmp_path, capsys, args, msg):
    base = ["maximize", "--model", "zoo:cnn-digits", "--budget", "10", "--out", str(tmp_path), "--quiet"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "result.json").exists()


def test_one_unit_stays_a_single_unit_campaign(tmp_path):
    out = tmp_path / "o"
    assert main(["maximize", "--model", "zoo:cnn-digits", "--unit", "7-7", "--budget", "20", "--reference", "none",
                 "--out", str(out), "--quiet"]) == 0
    r = json.loads((out / "result.json").read_text())
    assert r["target"]["unit"] == 7 and "units" not in r and (out / "best.png").exists()
