"""Per-stimulus onset and offset times on the wire (issue 32, item 3): protocol, server, client, simulator, store."""

import sqlite3

import numpy as np
import pytest

import mango
from mango.errors import ConfigError
from mango.oracles import Repeat
from mango.rig import RigOracle, RigServer, Schedule
from mango.rig.protocol import ProtocolError, decode, make_reply
from mango.rig.simulator import make_present
from mango.spaces import Box
from mango.runs.store import SCHEMA_VERSION, RunStore


def mean_present(stimuli):
    return stimuli.reshape(len(stimuli), -1).mean(1)


def timed_present(stimuli):
    """A rig that shows each stimulus 10 ms, 5 ms apart, starting at a fixed time, and says so."""
    onset = 1.7e9 + 0.015 * np.arange(len(stimuli))
    return mean_present(stimuli), {"onset_s": onset, "offset_s": onset + 0.010}


@pytest.fixture
def server(rig_server):
    """Rig servers that report times (timed_present) unless given another ``present``."""
    return lambda present=timed_present, **kw: rig_server(present, **kw)


def test_reply_carries_times_and_old_replies_still_decode():
    msg = decode(make_reply(1, np.zeros((2, 1)), timing={"present_s": 0.5, "onset_s": [1.0, 2.0],
                                                           "offset_s": [1.5, 2.5]}))
    assert msg.header["timing"] == {"present_s": 0.5, "onset_s": [1.0, 2.0], "offset_s": [1.5, 2.5]}
    assert decode(make_reply(1, np.zeros((2, 1)), timing={"present_s": 0.5})).header["timing"] == {"present_s": 0.5}


@pytest.mark.parametrize("timing, fragment", [
    ({"onset_s": [1.0, 2.0]}, "without 'offset_s'"),
    ({"onset_s": [1.0], "offset_s": [1.5]}, "list of 2 finite numbers"),
    ({"onset_s": [1.0, 2.0], "offset_s": [1.5, 1.9]}, "before its onset_s"),
])
def test_bad_times_are_protocol_errors(timing, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        decode(make_reply(1, np.zeros((2, 1)), timing=timing))


def test_oracle_reports_times_and_the_store_keeps_them(server, tmp_path):
    srv = server()
    with RigOracle(srv.endpoint, timeout=5.0) as oracle:
        oracle(np.zeros((3, 2)))
        onset, offset = oracle.take_times()
        np.testing.assert_allclose(offset - onset, 0.010, atol=1e-6)
        assert oracle.take_times() is None  # taken
        res = mango.maximize(oracle, space=Box(2, 0, 1), optimizer="random", budget=6, batch_size=3, seed=0,
                             progress=False, store=tmp_path / "r.sqlite")
    assert res.n_queries == 6
    with RunStore(tmp_path / "r.sqlite", mode="r") as s:
        q = s.read_queries()
        df = s.to_dataframe()
    expect = 1.7e9 + 0.015 * np.array([0, 1, 2, 0, 1, 2])
    np.testing.assert_allclose(q["onset"], expect, rtol=0, atol=1e-6)
    np.testing.assert_allclose(q["offset"], expect + 0.010, rtol=0, atol=1e-6)
    np.testing.assert_allclose(df["onset"], expect, rtol=0, atol=1e-6)


def test_repeated_points_span_first_onset_to_last_offset(server, tmp_path):
    srv = server()
    with RigOracle(srv.endpoint, timeout=5.0) as rig:
        mango.maximize(Repeat(rig, 2), space=Box(2, 0, 1), optimizer="random", budget=8, batch_size=2, seed=0,
                       progress=False, store=tmp_path / "r.sqlite")
    with RunStore(tmp_path / "r.sqlite", mode="r") as s:
        q = s.read_queries()
    # each batch of 2 points is sent as 4 stimuli (p0 p1 p0 p1): point 0 from stimulus 0 to 2, point 1 from 1 to 3
    np.testing.assert_allclose(q["onset"], 1.7e9 + 0.015 * np.array([0, 1, 0, 1]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(q["offset"], 1.7e9 + 0.015 * np.array([2, 3, 2, 3]) + 0.010, rtol=0, atol=1e-6)


def test_a_rig_without_times_still_works(server, tmp_path):
    srv = server(mean_present)
    with RigOracle(srv.endpoint, timeout=5.0) as oracle:
        res = mango.maximize(oracle, space=Box(2, 0, 1), optimizer="random", budget=4, batch_size=2, seed=0,
                             progress=False, store=tmp_path / "r.sqlite")
        assert oracle.take_times() is None
    assert res.n_queries == 4
    with RunStore(tmp_path / "r.sqlite", mode="r") as s:
        q = s.read_queries()
        assert np.isnan(q["onset"]).all() and np.isnan(q["offset"]).all()
        assert "onset" not in s.to_dataframe().columns
        np.testing.assert_allclose(q["values"], q["points"].mean(1), rtol=1e-6)


@pytest.mark.parametrize("times, fragment", [
    ({"onset_s": [1.0]}, "without 'offset_s'"),
    ({"onset_s": [1.0, 2.0], "offset_s": [1.5]}, "list of 2 finite numbers"),
    ({"onset_s": ["a", "b"], "offset_s": [1.0, 2.0]}, "not numbers"),
    ({"start": [1.0, 2.0]}, "unknown key"),
])
def test_bad_times_from_present_are_reported(server, times, fragment):
    srv = server(lambda x: (mean_present(x), times))
    with RigOracle(srv.endpoint, timeout=5.0, retries=0) as oracle:
        with pytest.raises(mango.rig.RigError, match=fragment):
            oracle(np.zeros((2, 2)))


def test_simulator_schedule_is_seeded_and_realistic():
    sched = Schedule(150, 100, jitter_ms=5, seed=3)
    onset, offset, end = sched.times(10, 100.0)
    on, gap = offset - onset, onset[1:] - offset[:-1]
    assert onset[0] == 100.0 and np.all(np.diff(onset) > 0)
    assert 0.13 < on.min() and on.max() < 0.17 and abs(on.mean() - 0.150) < 0.005
    assert 0.08 < gap.min() and gap.max() < 0.12 and end > offset[-1]
    again = Schedule(150, 100, jitter_ms=5, seed=3).times(10, 100.0)
    np.testing.assert_array_equal(onset, again[0])
    flat = Schedule(20, 10).times(3, 0.0)
    np.testing.assert_allclose(flat[0], [0.0, 0.03, 0.06])
    np.testing.assert_allclose(flat[2], 0.09)
    for bad in ({"on_ms": 0}, {"off_ms": -1}, {"jitter_ms": float("nan")}):
        with pytest.raises(ConfigError, match="ms"):
            Schedule(**{"on_ms": 150, **bad})


def test_simulated_rig_reports_its_schedule(server):
    present = make_present(lambda x: mean_present(x)[:, None], schedule=Schedule(on_ms=4, off_ms=2, seed=0))
    srv = server(present, info={"schedule": "4/2"})
    with RigOracle(srv.endpoint, timeout=5.0) as oracle:
        oracle(np.zeros((5, 2)))
        onset, offset = oracle.take_times()
    np.testing.assert_allclose(offset - onset, 0.004, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.diff(onset), 0.006, rtol=0, atol=1e-6)


def test_schema_1_store_opens_and_gains_the_columns(tmp_path):
    p = tmp_path / "old.sqlite"
    mango.maximize(lambda x: -np.sum(x ** 2, axis=1), space=Box(2, -1, 1), optimizer="random", budget=4,
                   batch_size=2, seed=0, progress=False, store=p)
    con = sqlite3.connect(p)  # make it what mango wrote before schema 2
    con.execute("ALTER TABLE queries DROP COLUMN onset")
    con.execute("ALTER TABLE queries DROP COLUMN offset")
    con.execute("ALTER TABLE batches DROP COLUMN reasked")  # (schema 3)
    con.execute("DROP TABLE pending")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with RunStore(p, mode="r") as s:  # read-only: read as is, no times
        q = s.read_queries()
        assert len(q["query"]) == 4 and np.isnan(q["onset"]).all()
    con = sqlite3.connect(p)
    assert dict(con.execute("SELECT key, value FROM meta"))["schema_version"] == "1"  # reading changed nothing
    con.close()
    res = mango.maximize(lambda x: -np.sum(x ** 2, axis=1), space=Box(2, -1, 1), optimizer="random", budget=6,
                         batch_size=2, seed=0, progress=False, store=p, resume=True)
    assert res.n_queries == 6
    con = sqlite3.connect(p)
    assert int(dict(con.execute("SELECT key, value FROM meta"))["schema_version"]) == SCHEMA_VERSION == 3
    con.close()
    with RunStore(p, mode="r") as s:
        assert len(s.read_queries()["onset"]) == 6
        assert [b["reasked"] for b in s.batches()] == [False] * 3 and s.pending() == []


def test_simulate_cli_checks_its_schedule(capsys):
    from mango.cli.rig import main as rig_main

    assert rig_main(["rig", "simulate", "--port", "0", "--jitter-ms", "2"]) == 2
    assert "--jitter-ms needs --on-ms" in capsys.readouterr().err
    assert rig_main(["rig", "simulate", "--port", "0", "--on-ms", "-5", "--model", "synthetic"]) == 2
    assert "on_ms must be" in capsys.readouterr().err
