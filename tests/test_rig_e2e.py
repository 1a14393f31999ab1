"""End to end with real processes on loopback: `mango rig simulate` / `mango rig serve` + maximize + RunStore."""

import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import mango
from mango.rig import RigOracle
from mango.cli.rig import main as rig_main
from mango.spaces import Box

STARTUP_S = 90


class Proc:
    """A `python -m mango.cli.rig rig ...` subprocess; always killed at teardown."""

    def __init__(self, args, tmp_path, cwd=None):
        self.err_path = tmp_path / f"proc{os.getpid()}-{time.monotonic_ns()}.err"
        self.err = open(self.err_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        # SIGINT at its default in the child: a shell that runs the tests in the background ignores it, and a
        # Python started with SIGINT ignored never raises KeyboardInterrupt, so stop() could not stop it cleanly
        self.p = subprocess.Popen([sys.executable, "-m", "mango.cli.rig", "rig", *args], stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, cwd=cwd, env=env,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        ready, _, _ = select.select([self.p.stdout], [], [], STARTUP_S)
        line = self.p.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr()}")
        self.endpoint = line.split()[-1]

    def stderr(self) -> str:
        if not self.err.closed:
            self.err.flush()
        return self.err_path.read_text()

    def stop(self) -> str:
        """Ctrl-C the process (clean stop), return its stdout.

        Waits for the process to exit (an event), with a generous bound: a loaded machine may take many
        seconds to run the handler, and a short bound made this a wall-clock race.  A process that already
        stopped (its own ``--timeout``) still gives its output.
        """
        if self.p.poll() is None:
            self.p.send_signal(2)
        try:
            out, _ = self.p.communicate(timeout=STARTUP_S)
            self.err.close()
            return out
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        return ""

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self.err.close()


@pytest.fixture
def procs(tmp_path):
    started = []

    def start(args, cwd=None):
        p = Proc(args, tmp_path, cwd)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def _presentations(path):
    return [json.loads(line) for line in open(path)]


def _check_store(path, res, budget):
    from mango.runs.store import RunStore

    with RunStore(path, "r") as store:
        q = store.read_queries()
        assert store.n_queries() == budget and store.n_points() == budget
    np.testing.assert_array_equal(q["query"], np.arange(budget))  # every query once, none missing
    np.testing.assert_array_equal(q["values"], res.values)
    np.testing.assert_array_equal(q["responses"], res.responses)


def test_simulator_and_maximize_end_to_end(procs, tmp_path):
    log = tmp_path / "presented.jsonl"
    sim = procs(["simulate", "--port", "0", "--model", "synthetic", "--latency-ms", "2", "--seed", "3",
                 "--log", str(log), "--timeout", "900"])
    budget = 120
    with RigOracle(sim.endpoint, timeout=5.0, retries=2) as oracle:
        assert oracle.server_info["simulator"] is True and oracle.input_shape == (1, 28, 28)
        res = mango.maximize(oracle, space=Box(784, 0, 1), optimizer="random", budget=budget, batch_size=16,
                             seed=0, store=tmp_path / "run.sqlite", progress=False)
        assert oracle.stats["stimuli"] == budget and oracle.stats["retries"] == 0
    assert res.n_queries == budget and len(res.values) == budget
    assert np.all(res.values == np.round(res.values)) and res.values.max() > 0  # Poisson spike counts
    _check_store(tmp_path / "run.sqlite", res, budget)
    rows = _presentations(log)
    assert sum(r["n"] for r in rows) == budget and len({r["id"] for r in rows}) == len(rows)
    # the pipelined loop sends each batch of 16 as 6 + 10 stimuli (its lag: the last 10), the last batch of 8 whole
    assert [r["n"] for r in rows] == [6, 10] * 7 + [8]
    assert "stopped" in sim.stop()


def test_faults_nothing_lost_nor_double_counted(procs, tmp_path, caplog):
    log = tmp_path / "presented.jsonl"
    sim = procs(["simulate", "--port", "0", "--model", "synthetic", "--latency-ms", "1", "--seed", "3",
                 "--drop", "0.1", "--delay-prob", "0.1", "--delay-s", "0.45", "--malformed-prob", "0.1",
                 "--restart-after", "8", "--restart-pause", "0.3", "--log", str(log), "--timeout", "900"])
    caplog.set_level(logging.INFO, logger="mango.rig")
    budget = 300
    with RigOracle(sim.endpoint, timeout=0.3, retries=8) as oracle:
        res = mango.maximize(oracle, space=Box(784, 0, 1), optimizer="random", budget=budget, batch_size=10,
                             seed=0, store=tmp_path / "run.sqlite", progress=False)
        stats = dict(oracle.stats)
    assert res.n_queries == budget and res.stop_reason == "budget"
    _check_store(tmp_path / "run.sqlite", res, budget)
    assert stats["replies"] == stats["requests"] == budget // 10 and stats["stimuli"] == budget
    rows = _presentations(log)  # the neuron saw every request exactly once
    assert len(rows) == budget // 10 and len({r["id"] for r in rows}) == len(rows)
    assert sum(r["n"] for r in rows) == budget
    sim.stop()
    server_log = sim.stderr()
    for fault in ("dropping the reply", "delaying the reply", "malformed reply", "restart at new request"):
        assert fault in server_log, f"the simulator injected no {fault!r}:\n{server_log[-2000:]}"
    assert "answered from the reply cache, not presented again" in server_log
    client_log = caplog.text
    assert stats["timeouts"] >= 3 and stats["retries"] >= 3
    assert "timeout: no reply to request" in client_log and "re-sending request" in client_log
    assert stats["discarded_malformed"] >= 1 and "malformed reply" in client_log
    assert stats["discarded_stale"] >= 1 and "late duplicate" in client_log


def test_serve_module_and_keys_cli(procs, tmp_path, capsys):
    (tmp_path / "my_rig.py").write_text(textwrap.dedent("""
        import numpy as np

        def present(stimuli, meta):
            flat = stimuli.reshape(len(stimuli), -1).astype(float)
            return np.stack([flat.sum(1), flat.max(1)], 1)
    """))
    assert rig_main(["rig", "keys", "--out", str(tmp_path / "keys"), "--name", "server"]) == 0
    assert "public key" in capsys.readouterr().out
    srv = procs(["serve", "--module", "my_rig:present", "--address", "tcp://127.0.0.1:0", "--units", "sum,max",
                 "--curve-secret", str(tmp_path / "keys" / "server.key_secret"), "--timeout", "900"],
                cwd=tmp_path)
    with RigOracle(srv.endpoint, server_public_key=tmp_path / "keys" / "server.key", timeout=5.0) as oracle:
        assert oracle.unit_names == ["sum", "max"]
        r = oracle(np.arange(8.0).reshape(2, 4))
    np.testing.assert_allclose(r, [[6, 3], [22, 7]])
    out = srv.stop()
    assert "presented_stimuli': 2" in out


def test_cli_errors_are_clear(capsys):
    assert rig_main(["rig", "serve", "--module", "no_such_module_xyz:present", "--timeout", "1"]) == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert rig_main(["rig", "serve", "--module", "nocolon"]) == 2
    assert "MODULE:FUNCTION" in capsys.readouterr().err
    assert rig_main(["rig", "simulate", "--port", "0", "--drop", "2", "--timeout", "1"]) == 2
    assert "probability" in capsys.readouterr().err


def test_present_template_runs(monkeypatch):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "rig_present_template.py"
    spec = importlib.util.spec_from_file_location("rig_present_template", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "STIMULUS_S", 0.0)
    monkeypatch.setattr(mod, "BLANK_S", 0.0)
    from mango.rig import RigServer

    with RigServer(mod.present, "tcp://127.0.0.1:0", unit_names=["ch12"], input_shape=(1, 28, 28)) as srv:
        with RigOracle(srv.endpoint, timeout=5.0) as oracle:
            r = oracle(np.zeros((3, 1, 28, 28)))
    assert r.shape == (3, 1) and np.all(r >= 0)


def test_mango_maximize_cli_with_rig_oracle(procs, tmp_path):
    """`mango maximize --oracle rig://...` (the main CLI) against the simulator process."""
    log = tmp_path / "presented.jsonl"
    sim = procs(["simulate", "--port", "0", "--model", "synthetic", "--latency-ms", "1", "--log", str(log),
                 "--timeout", "900"])
    port = sim.endpoint.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "mango.cli", "maximize", "--oracle", f"rig://127.0.0.1:{port}",
                          "--budget", "40", "--batch-size", "10", "--optimizer", "random", "--no-progress",
                          "--store", str(tmp_path / "run.sqlite"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    from mango.runs.store import RunStore

    with RunStore(tmp_path / "run.sqlite", "r") as store:
        assert store.n_queries() == 40 and store.n_points() == 40
    assert sum(r["n"] for r in _presentations(log)) == 40
