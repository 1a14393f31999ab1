"""The first hour of a new user (issue 15): the main job's outputs, references, progress, exit codes, zoo info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mango.cli.maximize import main

sys.path.insert(0, os.path.dirname(__file__))
import _schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "result.schema.json").read_text())


def _independent_membrane_max(images, unit: int = 3) -> float:
    """Max over images of output neuron ``unit``'s mean membrane potential, straight from the network
    (its own time loop, not mango's oracle)."""
    from mango import zoo

    net = zoo.load("snn-digits", device="cpu")
    best = -np.inf
    with torch.no_grad():
        for i in range(0, len(images), 500):
            _, mem = net(images[i:i + 500])  # [T, B, 10]
            best = max(best, float(mem.mean(0)[:, unit].max()))
    return best


@pytest.fixture
def ref_npy(tmp_path):
    from mango.zoo.data import load_digits

    x = load_digits().x_train[::100].numpy()  # 40 images of all classes (the training images are sorted by class)
    path = tmp_path / "natural.npy"
    np.save(path, x)
    return path, x


def test_main_job_with_user_reference(tmp_path, ref_npy, monkeypatch, capsys):
    path, x = ref_npy
    monkeypatch.setenv("MANGO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["maximize", "--budget", "40", "--reference", str(path), "--out", str(out), "--store",
            str(tmp_path / "run.sqlite"), "--no-progress"]
    assert main(argv) == 0
    cap = capsys.readouterr()
    rec = json.loads((out / "result.json").read_text())
    assert _schema.errors(rec, SCHEMA) == []
    assert (out / "result.json").stat().st_size < 10_000
    ref_max = _independent_membrane_max(torch.as_tensor(x))
    assert rec["reference"]["max"] == pytest.approx(ref_max, rel=1e-5)
    assert rec["reference"]["n_images"] == 40
    assert rec["best"]["normalized"] == pytest.approx(rec["best"]["value"] / ref_max, rel=1e-5)
    # the user's words, units, indexing, versions
    t = rec["target"]
    assert (t["layer"], t["layer_resolved"], t["unit"], t["readout"], t["num_steps"]) == ("output", "lif3", 3,
                                                                                         "membrane", 20)
    assert "mean membrane potential" in rec["value"]["what"] and "20 time steps" in rec["value"]["what"]
    assert rec["queries"]["indexing"].startswith("0-based") and rec["versions"]["torch"] == torch.__version__
    # the best point's sidecar reproduces the best value
    pt = np.load(out / rec["best"]["point_file"], allow_pickle=False)
    assert pt.shape == (784,)
    from mango import zoo
    from mango.oracles import SNNOracle

    gen = zoo.load_generator("vqvae-digits", view="embedding", device="cpu")
    o = SNNOracle(zoo.load("snn-digits", device="cpu"), layer="output", unit=3, readout="membrane")
    assert float(np.asarray(o(gen(pt[None])))[0, 0]) == pytest.approx(rec["best"]["value"], rel=1e-5)
    # the end-of-run line carries the normalized value
    assert f"= {rec['best']['normalized']:.3g} x the best natural image" in cap.out
    # computed once, then read from the cache
    assert "computed in" in cap.err and list((tmp_path / "cache" / "references").glob("*.json"))
    assert main(argv[:-5] + ["--out", str(tmp_path / "out2"), "--no-progress"]) == 0
    assert "(cached:" in capsys.readouterr().err
    # the report shows the reference and the summary in words
    from mango.runs.report.html import make_report

    page = Path(make_report(tmp_path / "run.sqlite", tmp_path / "rep")).read_text()
    assert "best natural image" in page and "continuous box of 784 dimensions" in page
    assert "mean membrane potential" in page and "{&quot;kind&quot;" not in page.split("<details>")[0]


def test_reference_errors_are_one_line(tmp_path, capsys):
    base = ["maximize", "--budget", "5", "--out", str(tmp_path), "--no-progress"]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 5, 5), np.float32))
    for extra, msg in ((["--reference", str(bad)], "must be [n, 1, 28, 28]"),
                       (["--reference", str(tmp_path / "nope")], "neither"),
                       (["--objective", "sphere", "--reference", str(bad)], "not to --objective")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and err.count("\n") == 1


def test_test_function_result_has_no_reference(tmp_path):
    assert main(["maximize", "--objective", "sphere", "--dim", "3", "--budget", "30", "--out", str(tmp_path),
                 "--quiet"]) == 0
    rec = json.loads((tmp_path / "result.json").read_text())
    assert _schema.errors(rec, SCHEMA) == [] and rec["reference"] is None and rec["best"]["normalized"] is None
    assert "test function" in rec["reference_note"]


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    args = ["maximize", "--objective", "rastrigin", "--dim", "4", "--budget", "300", "--batch-size", "10",
            "--optimizer", "random", "--out", str(tmp_path)]
    assert main(args + ["--progress-every", "0.000001"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "queries/s" in ln]
    assert len(lines) >= 10 and all("ETA" in ln and "best" in ln for ln in lines)
    assert lines[-1].startswith("mango: 300/300 queries (100%)")
    assert main(args + ["--progress-every", "0.000001", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


INTERRUPTING_NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 4:
            raise KeyboardInterrupt
        return self.fc(x.flatten(1))

def build():
    torch.manual_seed(0)
    return Net().eval()
'''


def test_ctrl_c_saves_the_partial_result_and_exits_130(tmp_path, capsys):
    (tmp_path / "net.py").write_text(INTERRUPTING_NET)
    out = tmp_path / "o"
    rc = main(["maximize", "--model", f"{tmp_path / 'net.py'}:build", "--layer", "fc", "--unit", "1",
               "--generator", "zoo:gan-digits", "--batch-size", "5", "--budget", "100", "--out", str(out),
               "--no-progress"])
    assert rc == 130
    rec = json.loads((out / "result.json").read_text())
    assert rec["queries"]["stop_reason"] == "interrupted" and 0 < rec["queries"]["used"] < 100
    assert "interrupted" in capsys.readouterr().err
    assert "own model" in rec["reference_note"]


def test_zoo_list_whole_and_info(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "..." not in out and "conf>" not in out and "held-out accuracy" in out and "mango zoo info" in out
    assert main(["zoo", "info", "snn-digits"]) == 0
    info = capsys.readouterr().out
    assert "T = 20 steps" in info and "lif3" in info and "retrain: python -m mango.zoo.train snn-digits" in info
    assert main(["zoo", "info", "snn-digit"]) == 2
    assert "Did you mean 'snn-digits'" in capsys.readouterr().err


@pytest.mark.slow
def test_default_main_job(tmp_path):
    """`mango maximize` exactly as the README runs it: result.json < 10 KB, valid, normalized by the zoo reference."""
    env = dict(os.environ)
    # as the README runs it, but progress every second: on a quiet machine with a cached reference the whole
    # job can end before the default 10 s, and then no progress line is due at all
    r = subprocess.run([sys.executable, "-m", "mango.cli", "maximize", "--out", str(tmp_path / "mango-out"),
                        "--progress-every", "1"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "mango-out"
    size = (out / "result.json").stat().st_size
    rec = json.loads((out / "result.json").read_text())
    assert size < 10_000 and _schema.errors(rec, SCHEMA) == []
    assert rec["queries"] == {**rec["queries"], "used": 1000, "budget": 1000, "stop_reason": "budget"}
    from mango.zoo.data import load_digits

    ref_max = _independent_membrane_max(load_digits().x_train)
    assert rec["reference"]["max"] == pytest.approx(ref_max, rel=1e-5)
    assert rec["best"]["normalized"] == pytest.approx(rec["best"]["value"] / ref_max, rel=1e-5)
    assert rec["best"]["normalized"] > 1.0  # the main job drives the neuron beyond any training image
    for f in ("best_point.npy", "curve.csv", "curve.png", "best.png"):
        assert (out / f).stat().st_size > 0
    # stderr is a pipe here: progress comes as lines, not a bar
    assert "queries/s" in r.stderr and "\r" not in r.stderr
    print(f"\nresult.json: {size} bytes; best {rec['best']['value']:.4g} = {rec['best']['normalized']:.3g} x "
          f"best natural image; {rec['timing']['wall_s']:.1f} s")


def test_rig_timeout_error_names_the_cli_option(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["maximize", "--oracle", f"rig://127.0.0.1:{port}", "--rig-timeout", "0.2", "--rig-retries", "0",
                 "--budget", "5", "--out", str(tmp_path), "--no-progress"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mango: error:")]
    assert len(err) == 1 and "--rig-timeout SECONDS" in err[0]
