"""RigOracle <-> RigServer over real loopback sockets (server in a thread): retries, errors, CURVE, live fuzzing."""

import json
import logging
import threading
import time

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mango
from mango.errors import ConfigError
from mango.rig import Faults, RigError, RigOracle, RigServer, parse_rig_uri, write_keypair
from mango.rig.protocol import decode, make_ping, make_reply
from mango.spaces import Box


def mean_present(stimuli):
    return stimuli.reshape(len(stimuli), -1).mean(1)


@pytest.fixture
def server(rig_server):
    return rig_server


def test_oracle_protocol_and_values(server):
    srv = server(input_shape=(1, 3, 3))
    with RigOracle(srv.endpoint, timeout=2.0, retries=1) as oracle:
        assert oracle.unit_names == ["response"] and oracle.n_units == 1
        assert oracle.input_shape == (1, 3, 3) and oracle.queries_per_stimulus == 1
        x = np.random.default_rng(0).random((5, 1, 3, 3))
        r = oracle(x)
        assert r.shape == (5, 1) and r.dtype == np.float64
        np.testing.assert_allclose(r[:, 0], x.reshape(5, -1).mean(1), rtol=1e-6)
        import torch

        np.testing.assert_allclose(oracle(torch.as_tensor(x)), r)
        d = oracle.describe()
        json.dumps(d)
        assert d["address"] == srv.endpoint and d["stats"]["stimuli"] == 10 and "present_s" in oracle.last_timing
        with pytest.raises(ConfigError, match="expects a batch"):
            oracle(np.zeros((2, 1, 4, 4)))
    assert srv.stats["presented_stimuli"] == 10


def test_maximize_through_the_rig(server):
    srv = server()
    with RigOracle(srv.endpoint, timeout=2.0) as oracle:
        res = mango.maximize(oracle, space=Box(6, 0, 1), optimizer="cma", budget=60, batch_size=10, seed=1,
                             progress=False)
    assert res.n_queries == 60 and srv.stats["presented_stimuli"] == 60
    assert res.responses.shape == (60, 1)
    np.testing.assert_allclose(res.values, res.points.mean(1), rtol=1e-6)


def test_params_kind_meta_and_uint8_wire(server):
    seen = []

    def present(stim, meta):
        seen.append((stim.dtype, meta))
        return stim.astype(float).sum(1) * meta.get("scale", 1.0)

    srv = server(present)
    with RigOracle(srv.endpoint, kind="params", wire_dtype="uint8", meta={"animal": "m01"}) as oracle:
        r = oracle(np.array([[0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(r[:, 0], [1.0, 256 / 255], atol=1e-9)
    assert seen[0][0] == np.uint8 and seen[0][1]["kind"] == "params" and seen[0][1]["animal"] == "m01"


def test_multi_unit_names_and_mismatch(server):
    srv = server(lambda s: np.stack([s.sum((1, 2, 3)), -s.sum((1, 2, 3))], 1), unit_names=["on", "off"])
    with RigOracle(srv.endpoint) as oracle:
        assert oracle.unit_names == ["on", "off"]
        assert oracle(np.ones((2, 1, 2, 2))).tolist() == [[4, -4], [4, -4]]
    with pytest.raises(ConfigError, match="differ from the rig's units"):
        RigOracle(srv.endpoint, unit_names=["x"])


def test_retry_is_answered_from_cache_and_late_duplicates_discarded(server, caplog):
    # every reply delayed past the client's timeout: the client re-sends, the server answers the retry
    # from its cache (no second presentation), and the duplicate reply is discarded later.
    faults = Faults(delay_prob=1.0, delay_s=0.3, seed=0)
    srv = server(faults=faults)
    caplog.set_level(logging.INFO, logger="mango.rig")
    with RigOracle(srv.endpoint, timeout=0.2, retries=3) as oracle:
        for i in range(3):
            r = oracle(np.full((4, 1, 2, 2), float(i)))
            np.testing.assert_allclose(r[:, 0], i)
        # how many retries a batch gets depends on the machine's speed (a loaded one wakes the client late);
        # over three batches one at least, and the server presents each batch once whatever their number
        assert oracle.stats["replies"] == 3 and oracle.stats["retries"] >= 1
        assert oracle.stats["discarded_stale"] >= 1
    assert srv.stats["presented_batches"] == 3 and srv.stats["presented_stimuli"] == 12
    assert srv.stats["cache_hits"] >= 1
    text = caplog.text
    assert "timeout" in text and "late duplicate" in text and "answered from the reply cache" in text


def test_dropped_replies_then_success(server):
    srv = server(faults=Faults(drop=0.5, seed=3))
    with RigOracle(srv.endpoint, timeout=0.15, retries=20) as oracle:
        for i in range(6):
            assert oracle(np.full((2, 1, 1, 1), float(i)))[0, 0] == i
    assert srv.stats["presented_batches"] == 6  # never twice, however many drops
    assert sum(1 for e in srv.faults.events if e[0] == "drop") >= 1


def test_no_server_gives_clear_error_after_retries():
    t0 = time.monotonic()
    with pytest.raises(RigError) as err:
        RigOracle("tcp://127.0.0.1:9", timeout=0.2, retries=2)
    msg = str(err.value)
    assert "tcp://127.0.0.1:9" in msg and "3 attempt" in msg and "no reply within 0.2 s" in msg
    assert "mango rig serve" in msg
    assert time.monotonic() - t0 < 30  # gives up (3 x 0.2 s of waiting), not hangs; a busy machine adds its share


def test_retries_spent_mid_run_names_the_fault(server):
    srv = server(faults=Faults(drop=1.0, seed=0))
    oracle = RigOracle(srv.endpoint, timeout=0.1, retries=1)
    with pytest.raises(RigError, match="after 2 attempt"):
        oracle(np.zeros((1, 1, 1, 1)))
    oracle.close()


def test_present_failure_is_reported_not_retried(server):
    calls = []

    def present(s):
        calls.append(1)
        raise OSError("photodiode not detected")

    srv = server(present)
    with RigOracle(srv.endpoint, timeout=1.0, retries=3) as oracle:
        with pytest.raises(RigError, match="photodiode not detected"):
            oracle(np.zeros((1, 1, 1, 1)))
        assert oracle.stats["retries"] == 0
    assert len(calls) == 1


def test_bad_configuration_errors():
    with pytest.raises(ConfigError, match="must start with rig://"):
        RigOracle("http://localhost:80", connect=False, unit_names=["u"])
    with pytest.raises(ConfigError, match="timeout"):
        RigOracle("tcp://127.0.0.1:9", timeout=0, connect=False, unit_names=["u"])
    with pytest.raises(ConfigError, match="retries"):
        RigOracle("tcp://127.0.0.1:9", retries=-1, connect=False, unit_names=["u"])
    with pytest.raises(ConfigError, match="connect=False needs unit_names"):
        RigOracle("tcp://127.0.0.1:9", connect=False)
    with pytest.raises(ConfigError, match="kind"):
        RigOracle("tcp://127.0.0.1:9", kind="movies", connect=False, unit_names=["u"])
    with pytest.raises(ConfigError, match="present must be a function"):
        RigServer(42)
    with pytest.raises(ConfigError, match="probability"):
        Faults(drop=1.5)
    with pytest.raises(ConfigError, match="allowed_clients needs curve_secret_key"):
        RigServer(mean_present, allowed_clients=[zmq.curve_keypair()[0]])
    assert parse_rig_uri("rig://10.0.0.2:5555") == "tcp://10.0.0.2:5555"
    with pytest.raises(ConfigError):
        parse_rig_uri("rig://host")


def test_bind_conflict_is_a_clear_error(server):
    srv = server()
    with pytest.raises(RigError, match="cannot bind"):
        RigServer(mean_present, srv.endpoint).bind()


# -- CURVE -----------------------------------------------------------------------------------

def test_curve_any_client_that_knows_the_server_key(server, tmp_path):
    pub, sec = write_keypair(tmp_path, "server")
    srv = server(curve_secret_key=sec)
    with RigOracle(srv.endpoint, server_public_key=pub, timeout=2.0) as oracle:
        assert oracle(np.ones((2, 1, 1, 1)))[:, 0].tolist() == [1.0, 1.0]
        assert oracle.describe()["curve"] is True
    # no keys at all: refused (the handshake fails), clear error
    with pytest.raises(RigError, match="refused"):
        RigOracle(srv.endpoint, timeout=0.4, retries=0)
    # the wrong server key: refused too
    with pytest.raises(RigError, match="refused"):
        RigOracle(srv.endpoint, server_public_key=zmq.curve_keypair()[0], timeout=0.4, retries=0)
    assert srv.stats["presented_stimuli"] == 2


def test_curve_allowed_clients_only(server, tmp_path):
    spub, ssec = write_keypair(tmp_path / "server", "server")
    cpub, csec = write_keypair(tmp_path / "clients", "alice")
    srv = server(curve_secret_key=ssec, allowed_clients=tmp_path / "clients")
    with RigOracle(srv.endpoint, server_public_key=spub, client_keys=csec, timeout=2.0) as oracle:
        assert oracle(np.ones((1, 1, 1, 1)))[0, 0] == 1.0
    with pytest.raises(RigError, match="refused"):  # knows the server key, but is not on the list
        RigOracle(srv.endpoint, server_public_key=spub, timeout=0.5, retries=0)
    assert srv.stats["presented_stimuli"] == 1


def test_key_files_are_private(tmp_path):
    import os
    import stat

    pub, sec = write_keypair(tmp_path, "rig")
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    assert open(pub).read().count("secret-key") == 0


# -- live fuzzing: garbage on the wire ------------------------------------------------------

_junk = st.lists(st.binary(max_size=40) | st.sampled_from([
    b'{"protocol":"mango-rig","version":1,"type":"present","id":"x","arrays":[{"dtype":"<f8","shape":[9]}]}',
    b'{"protocol":"mango-rig","version":1,"type":"reply","id":"x","arrays":[]}', b"", b"{}", b"null"]),
    min_size=1, max_size=4)


@pytest.fixture(scope="module")
def live_server():
    srv = RigServer(mean_present, "tcp://127.0.0.1:0").start()
    ctx = zmq.Context()
    yield srv, ctx
    ctx.destroy(0)
    srv.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=_junk, delimiter=st.booleans())
def test_fuzz_live_server_survives_garbage(live_server, junk, delimiter):
    srv, ctx = live_server
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(srv.endpoint)
    try:
        sock.send_multipart(([b""] if delimiter else []) + junk)
        if sock.poll(2000):  # an error reply (or nothing when the envelope itself is unusable)
            frames = sock.recv_multipart()
            if frames and frames[0] == b"":
                frames = frames[1:]
            assert decode(frames).type in ("error", "reply")
        sock.send_multipart([b""] + make_ping("alive"))
        assert sock.poll(2000), "the server stopped answering after garbage"
        assert decode(sock.recv_multipart()[1:]).type == "pong"
    finally:
        sock.close(0)


@settings(max_examples=25, deadline=None)
@given(junk=st.lists(_junk, min_size=0, max_size=3))
def test_fuzz_live_client_discards_garbage(junk):
    """A rig that answers each request with garbage first, then the real reply: the client gets the real one."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def rig():
        while not stop.is_set():
            if not router.poll(50):
                continue
            frames = router.recv_multipart()
            ident, body = frames[0], frames[2:]
            msg = decode(body)
            for j in junk:
                router.send_multipart([ident, b""] + j)
            if msg.type == "ping":
                from mango.rig.protocol import make_pong

                router.send_multipart([ident, b""] + make_pong(msg.id, ["u"]))
            else:
                router.send_multipart([ident, b""] + make_reply(msg.id, np.full((len(msg.arrays[0]), 1), 7.0)))

    t = threading.Thread(target=rig, daemon=True)
    t.start()
    try:
        with RigOracle(f"tcp://127.0.0.1:{port}", timeout=2.0, retries=0) as oracle:
            r = oracle(np.zeros((3, 2)))
            assert r[:, 0].tolist() == [7.0, 7.0, 7.0]
    finally:
        stop.set()
        t.join(2)
        router.close(0)
        ctx.term()


# -- the simulator's neuron ------------------------------------------------------------------

def test_simulator_default_neuron_is_a_zoo_snn_unit():
    from mango.rig.simulator import build_oracle

    oracle = build_oracle("zoo:snn-digits", unit=3, seed=0)
    d = oracle.describe()
    assert d["kind"] == "poisson" and d["oracle"]["oracle"]["class"] == "SNNOracle"
    assert oracle.unit_names == ["lif3:3"] and oracle.input_shape == (1, 28, 28)
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    r1 = oracle(x)
    r2 = build_oracle("zoo:snn-digits", unit=3, seed=0)(x)
    assert r1.shape == (4, 1) and np.all(r1 >= 0)
    np.testing.assert_array_equal(r1, r2)  # same seed, same spikes


def test_simulator_falls_back_when_zoo_missing(monkeypatch, caplog):
    import mango.zoo
    from mango.errors import UnknownNameError
    from mango.rig.simulator import build_oracle

    def missing(name, device=None):
        raise FileNotFoundError("weights not installed")

    monkeypatch.setattr(mango.zoo, "load", missing)
    caplog.set_level(logging.WARNING, logger="mango.rig")
    oracle = build_oracle("zoo:snn-digits", noise="none")
    assert oracle.unit_names == ["gabor"] and "synthetic Gabor neuron instead" in caplog.text
    monkeypatch.undo()
    with pytest.raises(UnknownNameError):
        build_oracle("zoo:no-such-net")
    with pytest.raises(ConfigError, match="zoo:NAME"):
        build_oracle("resnet")


def test_faults_are_seeded():
    from mango.rig.protocol import make_present

    body = make_present("x", np.zeros((1, 1)))
    runs = []
    for _ in range(2):
        f = Faults(drop=0.2, delay_prob=0.2, malformed_prob=0.2, delay_s=0.0, seed=5)
        runs.append([None if a is None else a[0] for a in (f.action(None, body) for _ in range(50))])
    assert runs[0] == runs[1] and {"drop", "delay", "malformed", None} <= set(runs[0])


# -- population campaigns through the rig ------------------------------------------------------

def _simulated_population(server, unit=(0, 1, 2)):
    """A rig (server in a thread) recording several units of the zoo SNN, without noise."""
    from mango.rig.simulator import build_oracle, make_present

    neuron = build_oracle("zoo:snn-digits", unit=list(unit), noise="none", seed=0)
    return neuron, server(make_present(neuron), unit_names=neuron.unit_names, input_shape=(1, 28, 28))


def test_population_campaign_through_the_rig(server):
    from mango.zoo.build import build_generator

    neuron, srv = _simulated_population(server)
    gen = build_generator("grating")
    with RigOracle(srv.endpoint, timeout=5.0) as oracle:
        assert oracle.unit_names == ["lif3:0", "lif3:1", "lif3:2"]
        res = mango.maximize(oracle, generator=gen, unit="all", optimizer="cma", budget=30, batch_size=10, seed=1,
                             progress=False)
    assert res.is_population and res.target_names == oracle.unit_names and srv.stats["presented_stimuli"] == 30
    np.testing.assert_array_equal(res.unit_values, res.responses)  # every channel is a target, in order
    for j, u in enumerate(res.units()):  # each unit's best is its channel's maximum, shown to the neuron itself
        assert u.best_value == res.responses[:, j].max()
        np.testing.assert_allclose(neuron(u.best_stimulus[None])[0, j], u.best_value, rtol=1e-5)


def test_population_campaign_through_the_rig_from_the_cli(server, tmp_path, capsys):
    from mango.cli.maximize import main

    _, srv = _simulated_population(server)
    uri = "rig://" + srv.endpoint[len("tcp://"):]
    base = ["maximize", "--oracle", uri, "--generator", "grating", "--budget", "20", "--batch-size", "10", "--quiet"]
    assert main(base + ["--unit", "lif3:2,0", "--out", str(tmp_path / "o")]) == 0
    r = json.loads((tmp_path / "o" / "result.json").read_text())
    assert [u["name"] for u in r["units"]] == ["lif3:2", "lif3:0"] and [u["column"] for u in r["units"]] == [2, 0]
    assert r["reference"] is None and all(u["normalized"] is None for u in r["units"])
    assert "each of channels" in r["target"]["description"]
    assert main(base + ["--unit", "0-5", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "names channel 3" in err and "valid indices are 0..2" in err and "--unit all" in err
    assert main(base + ["--unit", "lif3:0,nope", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no channel 'nope'" in err and "0=lif3:0, 1=lif3:1, 2=lif3:2" in err
    assert srv.stats["presented_stimuli"] == 20  # the refused runs showed nothing


def test_rig_returning_fewer_channels_names_them(server):
    srv = server(lambda s: np.stack([s.sum((1, 2, 3)), -s.sum((1, 2, 3))], 1), unit_names=["on", "off"])
    with RigOracle(srv.endpoint, connect=False, unit_names=["on", "off", "sustained"], timeout=2.0,
                   retries=3) as oracle:
        with pytest.raises(RigError, match=r"2 response column\(s\).*\['sustained'\] are missing") as err:
            oracle(np.ones((2, 1, 2, 2)))
        assert "one column per channel" in str(err.value) and oracle.stats["retries"] == 0
    with RigOracle(srv.endpoint, connect=False, unit_names=["on"], timeout=2.0, retries=0) as oracle:
        with pytest.raises(RigError, match="1 column"):
            oracle(np.ones((1, 1, 2, 2)))


def test_simulator_serves_several_units(caplog):
    from mango.cli.rig import main as rig_main
    from mango.rig.simulator import build_oracle

    every = build_oracle("zoo:snn-digits", unit="all", noise="none")
    some = build_oracle("zoo:snn-digits", unit=[3, 7], noise="none")
    assert every.unit_names == [f"lif3:{j}" for j in range(10)] and some.unit_names == ["lif3:3", "lif3:7"]
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    np.testing.assert_array_equal(every(x)[:, [3, 7]], some(x))
    cells = build_oracle("synthetic", unit=[0, 1, 2], noise="none", seed=4)
    r = cells(x)
    assert cells.unit_names == ["gabor0", "gabor1", "gabor2"] and r.shape == (3, 3) and len(set(r[0])) == 3
    caplog.set_level(logging.INFO, logger="mango.rig")
    assert rig_main(["rig", "simulate", "--port", "0", "--unit", "0-2", "--noise", "none", "--timeout", "0.2"]) == 0
    assert "units=['lif3:0', 'lif3:1', 'lif3:2']" in caplog.text
