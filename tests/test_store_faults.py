"""Fault injection: campaigns killed with SIGKILL at random moments, then resumed.

Each trial starts ``tests/_campaign.py`` in a subprocess (a deterministic
objective, a store file), kills it with SIGKILL after a random delay, resumes
the run (in-process, or in further subprocesses that are killed again) and
checks: every query index 0..budget-1 recorded exactly once (zero lost, zero
duplicated), the budget exact, nothing recorded was evaluated again, and the
final history identical to an uninterrupted run with the same seed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402

from mango.runs.store import RunStore  # noqa: E402

CAMPAIGN = os.path.join(os.path.dirname(__file__), "_campaign.py")
BUDGET, BATCH, SLEEP = 200, 10, 0.01
OPTIMIZERS = ("random", "cma", "ga")
_REFERENCE: dict = {}


def reference(opt: str, seed: int):
    key = (opt, seed)
    if key not in _REFERENCE:
        res, obj = _campaign.run(None, opt, seed, BUDGET, BATCH)
        assert obj.evaluations == BUDGET
        _REFERENCE[key] = res
    return _REFERENCE[key]


def start(path, opt, seed, resume=False):
    args = [sys.executable, CAMPAIGN, str(path), opt, str(seed), str(BUDGET), str(BATCH), str(SLEEP)]
    if resume:
        args.append("--resume")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "READY", (line, proc.stderr.read())
    return proc


class Forked:
    """A campaign in a forked child process (no interpreter start-up: fast enough for many trials)."""

    def __init__(self, path, opt, seed, resume=False):
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_child, args=(str(path), opt, seed, resume), daemon=True)
        self.proc.start()

    def kill_after(self, delay: float) -> bool:
        self.proc.join(timeout=delay)
        if self.proc.exitcode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.join()
            assert self.proc.exitcode in (0, -signal.SIGKILL)  # 0: it finished just before the kill
            return self.proc.exitcode != 0
        assert self.proc.exitcode == 0
        return False


def _child(path, opt, seed, resume):
    _campaign.run(path, opt, seed, BUDGET, BATCH, SLEEP, resume=resume)


def kill_after(proc, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds unless it finished; True if it was killed."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    finally:
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
    return False


def recorded(path) -> int:
    if not os.path.exists(path):
        return 0
    with RunStore(path) as s:  # mode "a": a file killed while being created is completed as a new store
        return s.n_points()


def check_complete(path, ref, evaluated_after: int, recorded_before: int):
    with RunStore(path, mode="r") as s:
        q = s.read_queries()
        assert s.status == "finished"
        assert s.n_queries() == BUDGET
        sessions = s.sessions()
    # zero lost, zero duplicated, budget exact
    assert q["query"].tolist() == list(range(BUDGET))
    # nothing recorded was queried again by the resuming process
    assert evaluated_after == BUDGET - recorded_before
    # identical to the uninterrupted run
    np.testing.assert_array_equal(q["points"], ref.points)
    np.testing.assert_array_equal(q["values"], ref.values)
    np.testing.assert_array_equal(q["batch"], ref.batch)
    np.testing.assert_array_equal(q["responses"], ref.responses)
    assert sessions[-1]["status"] == "finished"


_DURATION: dict = {}


def campaign_seconds(tmp_path, opt: str, fork: bool) -> float:
    """Wall time of one uninterrupted campaign of ``opt`` in a child, measured on this machine.

    Kill delays are drawn as fractions of it, so the kills land inside runs however fast or
    loaded the machine is. Measured per optimizer: CMA-ES takes several times as long as random
    search, and delays scaled to the slowest would let the fast ones finish before the kill.
    """
    key = (opt, fork)
    if key not in _DURATION:
        for name in OPTIMIZERS:  # the optimizers' libraries are imported before forking, as in the trials
            reference(name, 0)
        path = tmp_path / f"calibrate-{opt}-{fork}.sqlite"
        if fork:
            t = time.perf_counter()
            assert not Forked(path, opt, 0).kill_after(120.0)
        else:
            proc = start(path, opt, 0)  # the clock starts at READY, as in a trial
            t = time.perf_counter()
            assert not kill_after(proc, 120.0)
        _DURATION[key] = time.perf_counter() - t
    return _DURATION[key]


def one_trial(tmp_path, trial: int, rng: random.Random, kills: int = 1, fork: bool = True):
    opt = OPTIMIZERS[trial % len(OPTIMIZERS)]
    seed = trial
    ref = reference(opt, seed)
    path = tmp_path / f"run{trial}.sqlite"
    killed = 0
    duration = campaign_seconds(tmp_path, opt, fork)
    for k in range(kills):
        resume = k > 0 and os.path.exists(path)
        left = 1.0 - recorded(path) / BUDGET if resume else 1.0  # a resumed campaign only runs what is left
        delay = rng.uniform(0.0, 1.1) * duration * max(left, 0.05)  # anywhere in it (now and then just after)
        if fork:
            was_killed = Forked(path, opt, seed, resume).kill_after(delay)
        else:
            was_killed = kill_after(start(path, opt, seed, resume), delay)
        if was_killed:
            killed += 1
        else:
            break
    before = recorded(path)
    res, obj = _campaign.run(path, opt, seed, BUDGET, BATCH, resume=os.path.exists(path))
    assert res.n_queries == BUDGET
    np.testing.assert_array_equal(res.points, ref.points)
    np.testing.assert_array_equal(res.values, ref.values)
    assert res.best_value == ref.best_value and res.best_query == ref.best_query
    check_complete(path, ref, obj.evaluations, before)
    return killed, before


def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(20261122)
    for opt in OPTIMIZERS:  # import the optimizers' libraries before forking
        reference(opt, 0)
    stats = [one_trial(tmp_path, t, rng) for t in range(30)]
    killed = sum(k for k, _ in stats)
    # the kills must land mostly inside runs, at different progress points
    assert killed >= 15, stats
    progress = {b for _, b in stats}
    assert len(progress) >= 5, stats
    assert any(0 < b < BUDGET for _, b in stats), stats
    print(f"\n{len(stats)} trials, {killed} killed; queries recorded at the kill: {sorted(b for _, b in stats)}")


def test_sigkill_fresh_interpreter(tmp_path):
    """The same in a freshly started Python (no fork): a couple of trials in the default suite."""
    rng = random.Random(3)
    stats = [one_trial(tmp_path, t, rng, fork=False) for t in (0, 2)]
    assert sum(k for k, _ in stats) >= 1, stats


@pytest.mark.slow
def test_sigkill_repeatedly_many_trials(tmp_path):
    """45 trials, each killed up to three times in a row (resumes killed too), then completed."""
    rng = random.Random(7)
    stats = [one_trial(tmp_path, t, rng, kills=3) for t in range(45)]
    assert sum(k for k, _ in stats) >= 65, stats


@pytest.mark.slow
def test_sigkill_fresh_interpreter_many(tmp_path):
    rng = random.Random(11)
    stats = [one_trial(tmp_path, t, rng, kills=2, fork=False) for t in range(8)]
    assert sum(k for k, _ in stats) >= 6, stats
    print(f"\n{len(stats)} trials, {sum(k for k, _ in stats)} kills; recorded at the last kill: {[b for _, b in stats]}")


@pytest.mark.slow
def test_cli_maximize_killed_then_resumed(tmp_path):
    """`mango maximize --store` killed with SIGKILL mid-run, then `mango maximize --resume`."""
    import time

    cli = [sys.executable, "-m", "mango.cli", "maximize", "--objective", "sphere", "--dim", "5", "--budget", "400",
           "--batch-size", "10", "--optimizer", "cma", "--seed", "3", "--no-progress"]
    ref_path, path = tmp_path / "ref.sqlite", tmp_path / "run.sqlite"
    subprocess.run(cli + ["--store", str(ref_path), "--out", str(tmp_path / "o0")], check=True, capture_output=True)
    proc = subprocess.Popen(cli + ["--store", str(path), "--out", str(tmp_path / "o1")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while recorded_safely(path) < 50 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = recorded_safely(path)
    assert 0 < before < 400, before
    out = subprocess.run([sys.executable, "-m", "mango.cli", "maximize", "--resume", str(path), "--no-progress",
                          "--out", str(tmp_path / "o2")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with RunStore(ref_path, mode="r") as a, RunStore(path, mode="r") as b:
        qa, qb = a.read_queries(), b.read_queries()
        assert b.status == "finished" and b.n_queries() == 400 and len(b.sessions()) == 2
    assert qb["query"].tolist() == list(range(400))
    np.testing.assert_array_equal(qa["points"], qb["points"])
    np.testing.assert_array_equal(qa["values"], qb["values"])


def recorded_safely(path) -> int:
    """Points recorded so far in a store another process is writing (0 while it does not exist yet)."""
    if not os.path.exists(path):
        return 0
    try:
        with RunStore(path, mode="r") as s:
            return s.n_points()
    except Exception:  # noqa: BLE001 - the writer may be creating the file right now
        return 0
