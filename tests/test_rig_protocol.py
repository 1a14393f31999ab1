"""The mango-rig wire protocol: encoding, validation, and fuzzing of both ends (no sockets)."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mango.errors import MangoError
from mango.rig import RigOracle
from mango.rig.protocol import (DTYPES, ProtocolError, RigError, decode, encode, make_error, make_ping, make_pong,
                                make_present, make_reply, peek_id)
from mango.rig.server import RigServer


def test_roundtrip_present_and_reply():
    x = np.random.default_rng(0).random((4, 1, 5, 5)).astype(np.float32)
    msg = decode(make_present("abc-1", x, meta={"session": "m01"}))
    assert msg.type == "present" and msg.id == "abc-1"
    assert msg.meta == {"kind": "stimuli", "session": "m01"}
    np.testing.assert_array_equal(msg.arrays[0], x)
    assert msg.arrays[0].dtype == np.float32
    r = np.arange(8.0).reshape(4, 2)
    rep = decode(make_reply(7, r, units=["a", "b"], timing={"present_s": 0.5}))
    assert rep.type == "reply" and rep.id == 7 and rep.header["units"] == ["a", "b"]
    assert rep.header["timing"] == {"present_s": 0.5}
    np.testing.assert_array_equal(rep.arrays[0], r)


def test_header_is_plain_json_with_array_specs():
    frames = make_present("i", np.zeros((2, 3), np.uint8), kind="params")
    h = json.loads(bytes(frames[0]))
    assert h["protocol"] == "mango-rig" and h["version"] == 1 and h["type"] == "present"
    assert h["arrays"] == [{"dtype": "|u1", "shape": [2, 3]}]
    assert len(bytes(frames[1])) == 6


def test_big_endian_and_empty_arrays():
    a = np.arange(6, dtype=">f8").reshape(2, 3)
    msg = decode(encode({"type": "present", "id": "x"}, [a]))
    np.testing.assert_array_equal(msg.arrays[0], a)
    msg = decode(encode({"type": "reply", "id": "x"}, [np.zeros((0, 1))]))
    assert msg.arrays[0].shape == (0, 1)


@pytest.mark.parametrize("frames, fragment", [
    ([], "empty message"),
    ([b"\xff\xfe"], "not UTF-8 JSON"),
    ([b"[1, 2]"], "JSON object"),
    ([json.dumps({"protocol": "zmtp", "version": 1, "type": "ping", "id": "a"}).encode()], "'protocol'"),
    ([json.dumps({"protocol": "mango-rig", "version": 2, "type": "ping", "id": "a"}).encode()], "version"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "explode", "id": "a"}).encode()], "unknown message type"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "ping"}).encode()], "no 'id'"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "ping", "id": 1.5}).encode()], "id"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "ping", "id": "x" * 500}).encode()], "at most"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "present", "id": "a",
                  "arrays": [{"dtype": "|O", "shape": [1]}]}).encode(), b"\0" * 8], "not allowed"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "present", "id": "a",
                  "arrays": [{"dtype": "<f8", "shape": [2, 2]}]}).encode(), b"\0" * 8], "needs 32 bytes"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "present", "id": "a",
                  "arrays": [{"dtype": "<f8", "shape": [1]}]}).encode()], "data frame"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "present", "id": "a",
                  "arrays": [{"dtype": "<f8", "shape": [-1]}]}).encode(), b""], "non-negative"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "error", "id": "a"}).encode()], "error"),
    ([json.dumps({"protocol": "mango-rig", "version": 1, "type": "reply", "id": "a", "arrays": []}).encode()],
     "2-D array"),
])
def test_decode_rejects_with_clear_message(frames, fragment):
    with pytest.raises(ProtocolError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        decode(frames)


def test_payload_limit_and_error_hierarchy():
    frames = make_present("a", np.zeros((100, 100)))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode(frames, max_bytes=1000)
    assert issubclass(ProtocolError, RigError) and issubclass(RigError, MangoError)


def test_encode_refuses_object_arrays():
    with pytest.raises(ProtocolError, match="dtype"):
        encode({"type": "present", "id": "a"}, [np.array([object()])])
    assert "|O" not in DTYPES and "<f4" in DTYPES and ">i8" in DTYPES


def test_peek_id():
    assert peek_id(make_ping("q-1")) == "q-1"
    assert peek_id([b"garbage"]) is None
    assert peek_id([json.dumps({"id": [1]}).encode()]) is None


# -- server side: handle() on anything -------------------------------------------------------

def _server(**kw):
    return RigServer(lambda s: s.reshape(len(s), -1).mean(1), "tcp://127.0.0.1:0", **kw)


def test_server_handle_present_ping_cache_and_errors():
    calls = []

    def present(stim, meta):
        calls.append((stim.shape, meta))
        return np.ones((len(stim), 2))

    srv = RigServer(present, "tcp://127.0.0.1:0", unit_names=["a", "b"], input_shape=(1, 2, 2))
    pong = decode(srv.handle(make_ping("p")))
    assert pong.type == "pong" and pong.header["units"] == ["a", "b"] and pong.header["input_shape"] == [1, 2, 2]
    req = make_present("r1", np.zeros((3, 1, 2, 2), np.float32), meta={"trial": 4})
    first = decode(srv.handle(req))
    again = decode(srv.handle(req))  # a retry: answered from the cache
    assert first.type == again.type == "reply"
    np.testing.assert_array_equal(first.arrays[0], np.ones((3, 2)))
    assert len(calls) == 1 and calls[0] == ((3, 1, 2, 2), {"kind": "stimuli", "trial": 4})
    assert srv.stats["presented_stimuli"] == 3 and srv.stats["cache_hits"] == 1
    err = decode(srv.handle(make_reply("r2", np.zeros((1, 1)))))
    assert err.type == "error" and err.header["error"]["code"] == "unexpected"


def test_server_reports_bad_present_output_and_exceptions():
    srv = RigServer(lambda s: np.zeros((len(s), 3)), "tcp://127.0.0.1:0")
    err = decode(srv.handle(make_present("a", np.zeros((2, 4)))))
    assert err.type == "error" and err.header["error"]["code"] == "present_failed"
    assert "unit_names" in err.header["error"]["message"]

    def boom(s):
        raise RuntimeError("shutter stuck")

    srv = RigServer(boom, "tcp://127.0.0.1:0")
    err = decode(srv.handle(make_present("b", np.zeros((2, 4)))))
    assert err.header["error"]["code"] == "present_failed" and "shutter stuck" in err.header["error"]["message"]
    assert err.id == "b"


def test_cache_is_bounded():
    srv = _server(cache_size=3)
    for i in range(10):
        srv.handle(make_present(f"id{i}", np.zeros((1, 2))))
    assert len(srv._cache) == 3
    srv.handle(make_present("id0", np.zeros((1, 2))))  # evicted: presented again
    assert srv.stats["presented_batches"] == 11


_frame = st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from(["protocol", "version", "type", "id", "arrays", "meta", "error", "timing",
                                     "units", "input_shape"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-5, 2 ** 70), st.floats(allow_nan=False),
                              st.text(max_size=12), st.sampled_from(["mango-rig", "present", "reply", "ping",
                                                                     "pong", "error"]),
                              st.lists(st.one_of(st.integers(-3, 40), st.dictionaries(
                                  st.sampled_from(["dtype", "shape"]),
                                  st.one_of(st.sampled_from(["<f4", "<f8", "|u1", "|O", "<c16", "V8", "x"]),
                                            st.lists(st.integers(-2, 5), max_size=4))), st.text(max_size=3)),
                                       max_size=3),
                              st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)),
                    max_size=10).map(lambda d: json.dumps(d).encode()),
)


def _mutate(data):
    """A valid present/reply message with one frame truncated, extended or with a byte changed."""
    kind, which, pos, byte, op = data
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    frames = [bytes(f) for f in (make_present("m", arr) if kind else make_reply("m", arr.astype(np.float64)))]
    f = frames[which % len(frames)]
    i = pos % max(1, len(f))
    if op == 0:
        f = f[:i]
    elif op == 1:
        f = f + bytes([byte]) * (i + 1)
    elif f:
        f = f[:i] + bytes([byte]) + f[i + 1:]
    frames[which % len(frames)] = f
    return frames


_mutated = st.tuples(st.booleans(), st.integers(0, 1), st.integers(0, 400), st.integers(0, 255),
                     st.integers(0, 2)).map(_mutate)
_message = st.one_of(st.lists(_frame, min_size=0, max_size=4), _mutated)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_message)
def test_fuzz_server_never_crashes(frames):
    srv = _server()
    out = srv.handle(frames)
    msg = decode(out)  # the answer is always a well-formed message
    assert msg.type in ("reply", "error", "pong")


@settings(max_examples=150, deadline=None)
@given(_message)
def test_fuzz_decode_raises_only_protocol_errors(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=150, deadline=None)
@given(_message, st.booleans())
def test_fuzz_client_accept_never_crashes(frames, with_delimiter):
    oracle = RigOracle("tcp://127.0.0.1:9", connect=False, unit_names=["u"], timeout=0.1, retries=0)
    try:
        status, payload = oracle._accept(([b""] if with_delimiter else []) + frames, "expected-id", 2)
        assert status in ("ok", "discard", "stale", "error")
        if status == "error":
            assert isinstance(payload, RigError)
    finally:
        oracle.close()


def test_client_accept_classification():
    oracle = RigOracle("tcp://127.0.0.1:9", connect=False, unit_names=["u"])
    try:
        ok = oracle._accept([b""] + make_reply("e", np.ones((2, 1))), "e", 2)
        assert ok[0] == "ok"
        assert oracle._accept(make_reply("old", np.ones((2, 1))), "e", 2)[0] == "stale"
        bad_shape = oracle._accept(make_reply("e", np.ones((3, 1))), "e", 2)
        assert bad_shape[0] == "discard" and "shape" in bad_shape[1]
        err = oracle._accept(make_error("e", "present_failed", "lamp off"), "e", 2)
        assert err[0] == "error" and "lamp off" in str(err[1])
        assert oracle._accept(make_pong("e", ["u"]), "e", None)[0] == "ok"
    finally:
        oracle.close()
