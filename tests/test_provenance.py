"""Results carry their provenance (issue 30): mango's version and git commit, package versions, thread counts --
in ``mango.runs.provenance``, in every ``result.json`` and in every benchmark record and report."""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mango
from mango.runs import provenance as prov_mod
from mango.runs.provenance import OPTIONAL_PACKAGES, PACKAGES, describe, git_state, provenance

sys.path.insert(0, os.path.dirname(__file__))
import _schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "result.schema.json").read_text())
HAS_GIT = shutil.which("git") is not None


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _head() -> str | None:
    if not HAS_GIT or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _check(prov: dict) -> None:
    """``prov`` is this process's provenance: version, commit, packages, threads."""
    assert prov["mango"] == mango.__version__
    assert prov["git_commit"] == _head()
    assert prov["git_dirty"] is None if prov["git_commit"] is None else isinstance(prov["git_dirty"], bool)
    assert set(PACKAGES) <= set(prov["packages"])
    for name in PACKAGES + OPTIONAL_PACKAGES:
        assert prov["packages"].get(name) == _installed(name)
    chosen = prov["threads"].get("chosen")  # a run's record: the count mango set for it (mango.runs.threads)
    assert prov["threads"]["torch"] == (torch.get_num_threads() if chosen is None else chosen["count"])


def test_provenance_names_version_commit_packages_and_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    prov = provenance()
    _check(prov)
    assert prov["python"].count(".") == 2
    assert prov["threads"]["OMP_NUM_THREADS"] == "3" and prov["threads"]["MKL_NUM_THREADS"] is None
    assert all(name in prov["packages"] for name in OPTIONAL_PACKAGES if _installed(name))
    assert all(name not in prov["packages"] for name in OPTIONAL_PACKAGES if not _installed(name))
    json.dumps(prov)  # plain data
    line = describe(prov)
    assert f"mango {mango.__version__}" in line and "OMP_NUM_THREADS=3" in line
    assert f"torch {_installed('torch')}" in line and "MKL_NUM_THREADS" not in line
    assert (prov["git_commit"][:7] in line) if prov["git_commit"] else ("not a git checkout" in line)


def test_no_commit_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    # not a checkout
    assert git_state(str(tmp_path)) == (None, None)
    # an installed copy inside some other repository's tree (a virtualenv in a checkout) is not that checkout
    if HAS_GIT:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        (tmp_path / "site").mkdir()
        assert git_state(str(tmp_path / "site")) == (None, None)
    # git missing: no commit, no crash
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setattr(prov_mod, "_checkout_root", lambda: str(tmp_path / "elsewhere"))
    prov = provenance()
    assert prov["git_commit"] is None and prov["git_dirty"] is None and prov["mango"] == mango.__version__
    assert "not a git checkout" in describe(prov)


def test_result_json_carries_provenance(tmp_path):
    from mango.cli.maximize import main

    assert main(["maximize", "--objective", "sphere", "--dim", "3", "--budget", "8", "--optimizer", "random",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    rec = json.loads((tmp_path / "result.json").read_text())
    assert _schema.errors(rec, SCHEMA) == []
    _check(rec["provenance"])
    v = rec["versions"]  # the mango-result/1 block, read off the same provenance
    assert v == {"mango": mango.__version__, "python": rec["provenance"]["python"],
                 "numpy": rec["provenance"]["packages"]["numpy"], "torch": rec["provenance"]["packages"]["torch"]}
    missing = dict(rec)
    del missing["provenance"]
    assert "missing required key 'provenance'" in " ".join(_schema.errors(missing, SCHEMA))


class _InProcess(cf.Executor):
    """Runs each task at submit, in this process."""

    def submit(self, fn, *args, **kwargs):
        fut = cf.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_bench_records_and_report_carry_provenance(tmp_path):
    from mango.bench.problems import Problem
    from mango.bench.runner import load_records, run_benchmark

    sphere = Problem.make("sphere-3", "function", fn="sphere", dim=3)
    codebook = Problem.make("codebook-4", "function", fn="codebook", dim=4)
    threads = torch.get_num_threads()
    try:  # the runner sets one torch thread per worker: here, this process
        recs = run_benchmark([sphere, codebook], "random,cma", 1, [10], tmp_path, executor=_InProcess(),
                             progress=False)
        lines = [json.loads(t) for t in (tmp_path / "results.jsonl").read_text().splitlines()]
        for d in lines:
            _check(d["provenance"])
    finally:
        torch.set_num_threads(threads)
    assert len(lines) == 4 and any(d.get("skipped") for d in lines)  # the skipped run too
    assert all(r.provenance == r["provenance"] for r in recs)
    # kept compressed: results.jsonl.gz reads as the plain file did; older runs without provenance still load
    old = {k: v for k, v in lines[0].items() if k != "provenance"}
    with gzip.open(tmp_path / "results.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(d) + "\n" for d in [old] + lines[1:]))
    os.remove(tmp_path / "results.jsonl")
    back = load_records(tmp_path)
    assert sorted(r.key for r in back) == sorted(r.key for r in recs) and back[0].provenance is None
    assert "provenance" not in back[0].to_dict() and back[1].to_dict() == lines[1]
    pytest.importorskip("pandas")
    from mango.cli.bench import write_outputs

    text = write_outputs(back, str(tmp_path), command="mango bench test")
    assert f"Report written by: {describe()}." in text
    assert f"- 3 runs: {describe(lines[1]['provenance'])}" in text
    assert "- 1 run: not recorded" in text
