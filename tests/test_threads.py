"""The thread policy (issue 32, item 2): mango sets torch's intra-op thread count for a run -- ``threads=`` /
``--threads``, else ``MANGO_THREADS``, else ``OMP_NUM_THREADS``, else the usable cores less one, at most 8 --
restores it after, shows it in the progress line and records it in ``result.json``.  No test here reads a
clock: speed is left to ``benchmarks/threads_load.py``."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

import _schema
import mango
from mango.runs import threads as thr
from mango.cli.maximize import main
from mango.errors import ConfigError
from mango.runs.provenance import provenance
from mango.spaces import Box

SCHEMA = json.loads((pathlib.Path(__file__).parents[1] / "docs" / "result.schema.json").read_text())
SPACE = Box(dim=3)


@pytest.fixture(autouse=True)
def _no_thread_env(monkeypatch):
    """Neither override set (the test command sets OMP_NUM_THREADS); torch's count restored after each test."""
    monkeypatch.delenv("MANGO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class _Counting:
    """An objective that notes torch's thread count at every call."""

    def __init__(self, fail_at: int | None = None):
        self.seen: list[int] = []
        self.fail_at = fail_at

    def __call__(self, x):
        self.seen.append(torch.get_num_threads())
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise RuntimeError("the oracle broke")
        return -np.sum(np.asarray(x) ** 2, axis=1)


def _run(**kw):
    f = _Counting()
    res = mango.maximize(f, SPACE, optimizer="random", budget=30, batch_size=10, progress=False, **kw)
    return f, res


@pytest.mark.parametrize("cores, count", [(1, 1), (2, 1), (3, 2), (6, 5), (9, 8), (64, 8)])
def test_policy_leaves_a_core_and_caps(monkeypatch, cores, count):
    monkeypatch.setattr(thr, "usable_cores", lambda: (cores, "CPU affinity"))
    choice = thr.choose_threads()
    assert (choice.count, choice.source) == (count, "policy")
    assert f"{cores} usable core" in choice.why


def test_policy_reads_the_affinity_and_a_container_quota(monkeypatch):
    monkeypatch.setattr(thr.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(thr, "_cgroup_quota", lambda: None)
    assert thr.usable_cores() == (16, "CPU affinity")
    monkeypatch.setattr(thr, "_cgroup_quota", lambda: 2.5)  # docker --cpus 2.5
    n, how = thr.usable_cores()
    assert n == 3 and "quota" in how
    assert thr.policy().count == 2


def test_the_choice_is_honoured_during_the_run_and_restored_after(monkeypatch):
    monkeypatch.setattr(thr, "usable_cores", lambda: (4, "CPU affinity"))
    torch.set_num_threads(2)
    f, res = _run()
    assert set(f.seen) == {3} and res.threads == {"count": 3, "source": "policy", "why": thr.policy().why}
    assert torch.get_num_threads() == 2
    f, res = _run(threads=1)
    assert set(f.seen) == {1} and res.threads["source"] == "threads=" and torch.get_num_threads() == 2


def test_restored_after_an_error():
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="the oracle broke"):
        mango.maximize(_Counting(fail_at=2), SPACE, optimizer="random", budget=30, batch_size=10, progress=False,
                       threads=1)
    assert torch.get_num_threads() == 2


def test_overrides_in_order(monkeypatch):
    monkeypatch.setattr(thr, "usable_cores", lambda: (8, "CPU affinity"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    f, res = _run()
    assert set(f.seen) == {2} and res.threads["source"] == "OMP_NUM_THREADS"
    monkeypatch.setenv("MANGO_THREADS", "1")
    f, res = _run()
    assert set(f.seen) == {1} and res.threads == {"count": 1, "source": "MANGO_THREADS", "why": "MANGO_THREADS=1"}
    f, res = _run(threads=3)
    assert set(f.seen) == {3} and res.threads["source"] == "threads="


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two", float("nan")])
def test_bad_threads_are_refused_in_one_line(bad):
    with pytest.raises(ConfigError) as e:
        _run(threads=bad)
    assert "threads must be a whole number >= 1" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bad", ["0", "abc", "", "1.5"])
def test_bad_mango_threads_is_refused_in_one_line(monkeypatch, capsys, tmp_path, bad):
    monkeypatch.setenv("MANGO_THREADS", bad)
    with pytest.raises(ConfigError, match="MANGO_THREADS must be a whole number >= 1.*unset it"):
        _run()
    assert main(["maximize", "--objective", "sphere", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mango: error: MANGO_THREADS must be") and "\n" not in err


@pytest.mark.parametrize("value, msg", [("0", "--threads must be >= 1"), ("two", "takes a whole number")])
def test_bad_threads_flag_is_refused_in_one_line(capsys, tmp_path, value, msg):
    try:
        code = main(["maximize", "--objective", "sphere", "--out", str(tmp_path), "--no-progress", "--threads", value])
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "Traceback" not in err and "\n" not in err


def _cli(tmp_path, *extra, budget: int = 20) -> dict:
    assert main(["maximize", "--objective", "sphere", "--dim", "3", "--budget", str(budget), "--optimizer",
                 "random", "--out", str(tmp_path), "--progress-every", "1e-9", *extra]) == 0
    return json.loads((tmp_path / "result.json").read_text())


def test_result_json_and_progress_line_carry_the_choice(monkeypatch, capsys, tmp_path):
    torch.set_num_threads(2)
    rec = _cli(tmp_path / "flag", "--threads", "1")
    assert _schema.errors(rec, SCHEMA) == []
    th = rec["provenance"]["threads"]
    assert th["torch"] == 1 and th["chosen"] == {"count": 1, "source": "--threads", "why": "given: --threads 1"}
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "queries/s" in ln]
    assert lines and all("queries/s on 1 thread, ETA" in ln for ln in lines)
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("MANGO_THREADS", "3")
    rec = _cli(tmp_path / "env")
    assert rec["provenance"]["threads"]["chosen"]["source"] == "MANGO_THREADS"
    assert rec["provenance"]["threads"]["torch"] == 3 and "on 3 threads" in capsys.readouterr().err
    rec = _cli(tmp_path / "both", "--threads", "2")  # the flag beats the variable
    assert rec["provenance"]["threads"]["chosen"]["source"] == "--threads"
    monkeypatch.delenv("MANGO_THREADS")
    monkeypatch.setattr(thr, "usable_cores", lambda: (4, "CPU affinity"))
    rec = _cli(tmp_path / "policy")
    assert rec["provenance"]["threads"]["chosen"] == thr.policy().to_dict()
    chosen = dict(rec["provenance"]["threads"]["chosen"])
    del rec["provenance"]["threads"]["chosen"]
    assert "missing required key 'chosen'" in " ".join(_schema.errors(rec, SCHEMA))
    rec["provenance"]["threads"]["chosen"] = dict(chosen, source="load")
    assert "not in" in " ".join(_schema.errors(rec, SCHEMA))


def test_a_resume_keeps_the_recorded_threads_unless_given(tmp_path, capsys):
    store = str(tmp_path / "run.sqlite")
    rec = _cli(tmp_path / "a", "--threads", "2", "--store", store)
    assert rec["provenance"]["threads"]["chosen"]["count"] == 2
    assert main(["maximize", "--resume", store, "--budget", "30", "--no-progress"]) == 0
    rec = json.loads((tmp_path / "a" / "result.json").read_text())
    assert rec["queries"]["used"] == 30 and rec["provenance"]["threads"]["chosen"]["source"] == "--threads"
    assert rec["provenance"]["threads"]["torch"] == 2
    assert main(["maximize", "--resume", store, "--budget", "40", "--threads", "1", "--no-progress"]) == 0
    rec = json.loads((tmp_path / "a" / "result.json").read_text())
    assert rec["queries"]["used"] == 40 and rec["provenance"]["threads"]["torch"] == 1


def test_provenance_inside_a_run_names_the_choice():
    choice = thr.ThreadChoice(1, "threads=", "given: threads=1")
    assert "chosen" not in provenance()["threads"]
    with thr.use_threads(choice):
        inside = provenance()["threads"]
    assert inside["chosen"] == choice.to_dict() and inside["torch"] == 1
    assert "chosen" not in provenance()["threads"]


def test_bench_threads_flag_is_checked(tmp_path, capsys):
    assert main(["bench", "--suite", "quick", "--out", str(tmp_path / "b"), "--threads", "0"]) == 2
    assert "--threads must be a whole number >= 1" in capsys.readouterr().err
