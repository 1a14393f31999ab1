"""The examples run as users run them (small budgets)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(args, cwd):
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
def test_byo_snntorch(tmp_path):
    out = _run([str(EXAMPLES / "byo_snntorch.py")], tmp_path)
    assert "cma: best membrane" in out


@pytest.mark.slow
def test_snn_hidden_unit(tmp_path):
    out = _run([str(EXAMPLES / "snn_hidden_unit.py"), "--budget", "60", "--out", "o"], tmp_path)
    assert "lif2 channel 5" in out and (tmp_path / "o" / "best.png").exists()


@pytest.mark.slow
def test_byo_spikingjelly(tmp_path):
    out = _run([str(EXAMPLES / "byo_spikingjelly.py")], tmp_path)
    assert "sn2:2 (loop mode, T=16)    cma: best rate" in out and "sn1:5" in out
