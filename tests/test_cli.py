import json
import subprocess
import sys

import pytest

from mango.cli import main


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
    from mango.store import RunStore

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
