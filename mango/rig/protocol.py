"""The mango-rig wire protocol, version 1 (see ``docs/rig_protocol.md``).

A message is a ZeroMQ multipart message: frame 0 is a UTF-8 JSON *header*,
frames 1.. are raw little/big-endian C-ordered array buffers described by the
header's ``"arrays"`` list (``{"dtype": "<f4", "shape": [32, 1, 28, 28]}``).
Nothing is ever pickled: a decoder only accepts the numeric dtypes in
:data:`DTYPES`, checks every shape against the frame's byte length, and turns
anything else into a :class:`ProtocolError`.

Message types
-------------
``present``  client -> rig: one batch of stimuli (``meta.kind == "stimuli"``)
             or stimulus parameters (``"params"``) in array 0.
``reply``    rig -> client: responses ``[n, n_units]`` (float64) in array 0,
             optional ``"timing"`` (seconds; with ``"onset_s"``/``"offset_s"``,
             each stimulus's onset and offset on the rig's Unix-time clock)
             and ``"units"`` in the header.
``error``    either way: ``{"error": {"code": ..., "message": ...}}``.
``ping``     client -> rig: asks for ``pong``.
``pong``     rig -> client: ``"units"``, ``"input_shape"``, ``"info"``.

Every request carries an ``"id"`` (a string of at most 128 characters, or an
int); the answer to it carries the same id.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import MangoError

__all__ = [
    "PROTOCOL", "VERSION", "TYPES", "DTYPES", "MAX_HEADER_BYTES", "MAX_ARRAYS", "MAX_ID_LEN",
    "RigError", "ProtocolError", "Message", "encode", "decode", "make_present", "make_reply",
    "make_error", "make_ping", "make_pong", "peek_id", "check_stimulus_times", "stimulus_times",
]

PROTOCOL = "mango-rig"
VERSION = 1
TYPES = ("present", "reply", "error", "ping", "pong")
MAX_HEADER_BYTES = 1 << 20  # 1 MiB of JSON is far more than any header needs
MAX_ARRAYS = 16
MAX_ID_LEN = 128
MAX_DIMS = 8
#: optional per-stimulus keys of a reply's ``"timing"``: lists of n seconds since the Unix epoch (rig clock)
TIMES = ("onset_s", "offset_s")

_BASE_TYPES = ("b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8")
#: dtype strings accepted on the wire (numpy ``dtype.str``): bool, ints, floats.
DTYPES = frozenset(np.dtype(t).newbyteorder(o).str for t in _BASE_TYPES for o in "<>")


class RigError(MangoError, RuntimeError):
    """The rig could not be reached or answered with an error (retries spent, refused, ...)."""


class ProtocolError(RigError, ValueError):
    """A message does not follow the mango-rig protocol (bad JSON, unknown dtype, size mismatch, ...)."""


@dataclass
class Message:
    """A decoded message: its header (a dict) and its arrays."""

    header: dict
    arrays: list[np.ndarray] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def id(self):
        return self.header.get("id")

    @property
    def meta(self) -> dict:
        return self.header.get("meta") or {}


def _check_id(msg_id) -> None:
    if isinstance(msg_id, bool) or not isinstance(msg_id, (str, int)):
        raise ProtocolError(f"message id must be a string or an int, got {type(msg_id).__name__}.")
    if isinstance(msg_id, str) and len(msg_id) > MAX_ID_LEN:
        raise ProtocolError(f"message id must have at most {MAX_ID_LEN} characters, got {len(msg_id)}.")
    if isinstance(msg_id, int) and not -(2 ** 63) <= msg_id < 2 ** 63:
        raise ProtocolError("an integer message id must fit in 64 bits.")


def encode(header: dict, arrays: Sequence[np.ndarray] = ()) -> list:
    """Frames of a message: the JSON header (with protocol, version and array specs added) and raw arrays."""
    specs, frames = [], []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.str not in DTYPES:
            raise ProtocolError(f"cannot send an array of dtype {a.dtype}: only bool, int and float arrays.")
        a = np.ascontiguousarray(a)
        specs.append({"dtype": a.dtype.str, "shape": list(a.shape)})
        frames.append(memoryview(a).cast("B") if a.size else b"")
    h = {"protocol": PROTOCOL, "version": VERSION, **header, "arrays": specs}
    return [json.dumps(h, allow_nan=False, separators=(",", ":")).encode("utf-8")] + frames


def _as_bytes(frame) -> bytes | memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return frame
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    if buf is not None:
        return buf
    raise ProtocolError(f"a frame must be bytes, got {type(frame).__name__}.")


def _parse_header(frame) -> dict:
    raw = _as_bytes(frame)
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header frame of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}.")
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"header frame is not UTF-8 JSON: {str(exc)[:120]}")
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got {type(header).__name__}.")
    return header


def peek_id(frames: Sequence) -> Any:
    """The id of a (possibly malformed) message, or ``None`` when it cannot be read."""
    try:
        msg_id = _parse_header(frames[0]).get("id")
        _check_id(msg_id)
        return msg_id
    except Exception:  # noqa: BLE001 - best effort on garbage
        return None


def decode(frames: Sequence, max_bytes: int | None = None) -> Message:
    """Validate and decode frames into a :class:`Message`; raise :class:`ProtocolError` on anything wrong.

    ``max_bytes`` bounds the total array payload (``None``: no bound).
    """
    if not frames:
        raise ProtocolError("empty message: expected a JSON header frame.")
    header = _parse_header(frames[0])
    if header.get("protocol") != PROTOCOL:
        raise ProtocolError(f"header 'protocol' must be {PROTOCOL!r}, got {str(header.get('protocol'))[:40]!r}.")
    version = header.get("version")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(f"unsupported protocol version {str(version)[:20]!r}; this side speaks version {VERSION}.")
    mtype = header.get("type")
    if mtype not in TYPES:
        raise ProtocolError(f"unknown message type {str(mtype)[:40]!r}; expected one of {', '.join(TYPES)}.")
    if "id" not in header:
        raise ProtocolError("header has no 'id'.")
    _check_id(header["id"])
    meta = header.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ProtocolError("header 'meta' must be a JSON object.")
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ProtocolError(f"header 'arrays' must be a list of at most {MAX_ARRAYS} array specs.")
    if len(specs) != len(frames) - 1:
        raise ProtocolError(f"header describes {len(specs)} array(s) but the message has {len(frames) - 1} "
                            "data frame(s).")
    arrays, total = [], 0
    for i, (spec, frame) in enumerate(zip(specs, frames[1:])):
        if not isinstance(spec, dict):
            raise ProtocolError(f"array spec {i} must be an object {{'dtype': ..., 'shape': [...]}}.")
        dtype, shape = spec.get("dtype"), spec.get("shape")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ProtocolError(f"array {i}: dtype {str(dtype)[:20]!r} is not allowed; use one of "
                                "'<f4', '<f8', '|u1', '<i4', ... (numeric numpy dtype strings).")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 40 for s in shape)):
            raise ProtocolError(f"array {i}: shape must be a list of at most {MAX_DIMS} non-negative ints.")
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize
        raw = _as_bytes(frame)
        if nbytes != len(raw):
            raise ProtocolError(f"array {i}: shape {shape} of {dtype} needs {nbytes} bytes, the frame has {len(raw)}.")
        total += nbytes
        if max_bytes is not None and total > max_bytes:
            raise ProtocolError(f"array payload exceeds the limit of {max_bytes} bytes.")
        arrays.append(np.frombuffer(raw, dtype=dt).reshape(shape))
    if mtype == "error":
        err = header.get("error")
        if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
            raise ProtocolError("an error message needs 'error': {'code': str, 'message': str}.")
    if mtype == "reply":
        if len(arrays) != 1 or arrays[0].ndim != 2 or arrays[0].dtype.kind not in "biuf":
            raise ProtocolError("a reply carries exactly one 2-D array of responses [n, n_units].")
        timing = header.get("timing")
        if timing is not None and not isinstance(timing, dict):
            raise ProtocolError("reply 'timing' must be an object of seconds.")
        if timing:
            check_stimulus_times(timing, arrays[0].shape[0], ProtocolError)
    if mtype == "present" and len(arrays) != 1:
        raise ProtocolError("a present request carries exactly one array (stimuli or parameters).")
    if mtype == "pong":
        units = header.get("units")
        if units is not None and (not isinstance(units, list) or not all(isinstance(u, str) for u in units)):
            raise ProtocolError("pong 'units' must be a list of strings.")
        ishape = header.get("input_shape")
        if ishape is not None and (not isinstance(ishape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in ishape)):
            raise ProtocolError("pong 'input_shape' must be a list of positive ints or null.")
    return Message(header, arrays)


# -- per-stimulus times -----------------------------------------------------------

def check_stimulus_times(timing: dict, n: int, error=ProtocolError) -> None:
    """Raise ``error`` unless ``timing``'s optional ``onset_s``/``offset_s`` are both absent, or both lists of
    ``n`` finite seconds with every offset at or after its onset."""
    given = [k for k in TIMES if timing.get(k) is not None]
    if not given:
        return
    if len(given) == 1:
        raise error(f"reply 'timing' has {given[0]!r} without {[k for k in TIMES if k not in given][0]!r}: "
                    "send both onset_s and offset_s (one number per stimulus), or neither.")
    for k in TIMES:
        v = timing[k]
        if not isinstance(v, list) or len(v) != n or not all(map(_finite, v)):
            raise error(f"reply 'timing' {k!r} must be a list of {n} finite numbers (seconds since the Unix epoch, "
                        "one per stimulus, in request order).")
    if any(b < a for a, b in zip(timing["onset_s"], timing["offset_s"])):
        raise error("reply 'timing' has a stimulus whose offset_s is before its onset_s; send each stimulus's "
                    "onset and offset in the same order.")


def _finite(t) -> bool:
    """A finite JSON number (a huge integer, which no float holds, is not)."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return False
    return abs(t) < 2 ** 63 if isinstance(t, int) else math.isfinite(t)


def stimulus_times(timing: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(onset_s, offset_s)`` arrays of a decoded reply's ``timing``, or None when the rig sent none."""
    if not timing or timing.get("onset_s") is None:
        return None
    return np.asarray(timing["onset_s"], dtype=np.float64), np.asarray(timing["offset_s"], dtype=np.float64)


def _wire_timing(timing: dict) -> dict:
    """``timing`` as JSON: per-stimulus lists (``onset_s``, ``offset_s``) of floats, other entries floats."""
    return {k: [float(t) for t in v] if k in TIMES else float(v) for k, v in timing.items() if v is not None}


# -- constructors --------------------------------------------------------------

def make_present(msg_id, stimuli: np.ndarray, kind: str = "stimuli", meta: dict | None = None) -> list:
    """Frames of a ``present`` request for one batch."""
    return encode({"type": "present", "id": msg_id, "meta": {"kind": kind, **(meta or {})}}, [stimuli])


def make_reply(msg_id, responses: np.ndarray, units: Sequence[str] | None = None,
               timing: dict | None = None) -> list:
    """Frames of a ``reply`` carrying ``responses`` ``[n, n_units]`` (sent as float64).

    ``timing``: seconds, e.g. ``{"present_s": 0.84}``; ``"onset_s"`` and ``"offset_s"`` (optional, together)
    are sequences of one time per stimulus, seconds since the Unix epoch on the rig's clock."""
    h: dict = {"type": "reply", "id": msg_id}
    if units is not None:
        h["units"] = list(units)
    if timing:
        h["timing"] = _wire_timing(timing)
    return encode(h, [np.asarray(responses, dtype="<f8")])


def make_error(msg_id, code: str, message: str) -> list:
    """Frames of an ``error`` message (``msg_id`` may be ``None`` when the request's id was unreadable)."""
    return encode({"type": "error", "id": msg_id if msg_id is not None else "", "error": {
        "code": str(code), "message": str(message)[:2000]}})


def make_ping(msg_id) -> list:
    return encode({"type": "ping", "id": msg_id})


def make_pong(msg_id, units: Sequence[str] | None, input_shape: Sequence[int] | None = None,
              info: dict | None = None) -> list:
    return encode({"type": "pong", "id": msg_id, "units": None if units is None else list(units),
                   "input_shape": None if input_shape is None else [int(s) for s in input_shape],
                   "info": info or {}})
