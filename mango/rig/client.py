"""mango's side of the rig: :class:`RigOracle`, an Oracle whose neuron lives behind the network.

>>> from mango.rig import RigOracle
>>> oracle = RigOracle("tcp://127.0.0.1:5555", timeout=5.0, retries=3)      # doctest: +SKIP
>>> responses = oracle(stimuli)                                             # doctest: +SKIP

Each call sends one ``present`` request with a fresh id and waits for the
reply with that id.  On a timeout the *same* request (same id) is re-sent; the
server answers a request it has already presented from its reply cache, so a
retried request is never presented nor counted twice.  Replies whose id is not
the awaited one (late duplicates of an earlier request) and malformed frames
are logged on the ``mango.rig`` logger and discarded.  When the retries are
spent, :class:`~mango.rig.protocol.RigError` names the address and the last
fault.  Not thread-safe: one RigOracle per thread.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..oracles.base import Oracle
from .protocol import ProtocolError, RigError, decode, make_ping, make_present, stimulus_times

__all__ = ["RigOracle", "parse_rig_uri"]

log = logging.getLogger("mango.rig")

_WIRE_DTYPES = {"float32": "<f4", "float64": "<f8", "float16": "<f2", "uint8": "|u1"}


def parse_rig_uri(uri: str) -> str:
    """``rig://HOST:PORT`` (or ``tcp://HOST:PORT``, ``ipc://PATH``) -> a ZeroMQ endpoint."""
    if not isinstance(uri, str):
        raise ConfigError(f"rig address must be a string such as 'rig://127.0.0.1:5555', got {uri!r}.")
    if uri.startswith("rig://"):
        rest = uri[len("rig://"):]
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"rig address {uri!r} must look like rig://HOST:PORT, e.g. rig://127.0.0.1:5555.")
        return f"tcp://{host}:{int(port)}"
    if uri.startswith(("tcp://", "ipc://", "inproc://")):
        return uri
    raise ConfigError(f"rig address {uri!r} must start with rig://, tcp://, ipc:// or inproc:// "
                      "(e.g. rig://127.0.0.1:5555).")


class RigOracle(Oracle):
    """An Oracle that presents stimuli on a lab rig (or the simulator) over ZeroMQ.

    Parameters
    ----------
    address : ``tcp://HOST:PORT`` or ``rig://HOST:PORT`` of a server started
        with :func:`mango.rig.serve`, ``mango rig serve`` or ``mango rig simulate``.
    timeout : seconds to wait for one reply before re-sending the request.
        Must exceed the rig's presentation time for one batch.
    retries : re-sends before giving up with :class:`RigError`.
    server_public_key : enables CURVE: the server's public key (Z85 string or
        a ``.key`` file from ``mango rig keys``).
    client_keys : this client's key pair (a ``.key_secret`` file or a
        ``(public, secret)`` pair); default an ephemeral pair, enough for a
        server that accepts any client knowing its key.
    unit_names, input_shape : default: asked from the server at connection
        (a ``ping``).  ``connect=False`` skips the ping (``unit_names`` then
        required).
    kind : ``"stimuli"`` (images) or ``"params"`` (stimulus parameters for a
        rig-side parametric generator); tells the rig what array 0 holds.
    wire_dtype : ``"float32"`` (default), ``"float64"``, ``"float16"`` or
        ``"uint8"`` (stimuli in [0, 1] sent as 0..255).
    device : where stimuli are staged before leaving (host memory is needed for
        the wire anyway); default CPU.
    meta : JSON-able dict sent with every request (e.g. ``{"session": "m01"}``).
    """

    #: presents on a rig: :func:`mango.maximize` pipelines its loop by default (the rig never waits for mango)
    remote = True

    def __init__(self, address: str = "tcp://127.0.0.1:5555", timeout: float = 5.0, retries: int = 3, *,
                 server_public_key=None, client_keys=None, unit_names: Sequence[str] | None = None,
                 input_shape: Sequence[int] | None = None, kind: str = "stimuli", wire_dtype: str = "float32",
                 device=None, connect: bool = True, meta: dict | None = None, max_discards: int = 1000):
        self.address = parse_rig_uri(address)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {retries!r}.")
        if kind not in ("stimuli", "params"):
            raise ConfigError(f"kind must be 'stimuli' or 'params', got {kind!r}.")
        if wire_dtype not in _WIRE_DTYPES:
            raise ConfigError(f"wire_dtype must be one of {sorted(_WIRE_DTYPES)}, got {wire_dtype!r}.")
        if meta is not None and not isinstance(meta, dict):
            raise ConfigError("meta must be a JSON-able dict.")
        if not connect and unit_names is None:
            raise ConfigError("connect=False needs unit_names=[...] (otherwise they are asked from the server).")
        super().__init__(unit_names, device, input_shape)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.kind = kind
        self.wire_dtype = wire_dtype
        self.meta = dict(meta or {})
        self.max_discards = int(max_discards)
        self.server_info: dict = {}
        self.last_timing: dict = {}
        self._times: list | None = []  # (onset_s, offset_s) of the replies since take_times(); None: one had none
        self._session = uuid.uuid4().hex[:12]
        self._seq = 0
        self.stats = {"requests": 0, "replies": 0, "stimuli": 0, "timeouts": 0, "retries": 0, "reconnects": 0,
                      "discarded_malformed": 0, "discarded_stale": 0}
        self._curve = None
        if server_public_key is not None:
            from .server import load_keypair, load_public_key

            server_key = load_public_key(server_public_key)
            if client_keys is None:
                import zmq

                client_keys = zmq.curve_keypair()
            self._curve = (server_key, *load_keypair(client_keys))
        elif client_keys is not None:
            raise ConfigError("client_keys needs server_public_key= (CURVE).")
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sock = None
        self._mon = None
        self._open()
        if connect:
            try:
                pong = self.ping()
            except BaseException:
                self.close()
                raise
            units = pong.get("units")
            if unit_names is None:
                if not units:
                    raise RigError(f"the rig at {self.address} did not report its unit names; pass unit_names=[...].")
                self._unit_names = list(units)
            elif units and list(units) != self.unit_names:
                raise ConfigError(f"unit_names={self.unit_names} differ from the rig's units {units} at "
                                  f"{self.address}; omit unit_names= to use the rig's.")
            if input_shape is None and pong.get("input_shape") and kind == "stimuli":
                self.input_shape = tuple(pong["input_shape"])
            self.server_info = dict(pong.get("info") or {})

    @classmethod
    def from_uri(cls, uri: str, **kwargs) -> "RigOracle":
        """``RigOracle.from_uri("rig://127.0.0.1:5555")``; keyword arguments as for the constructor."""
        return cls(parse_rig_uri(uri), **kwargs)

    # -- socket ---------------------------------------------------------------
    def _open(self) -> None:
        zmq = self._zmq
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndtimeo = max(1, int(self.timeout * 1000))  # no connection (e.g. refused handshake): send blocks
        sock.reconnect_ivl = 100
        sock.reconnect_ivl_max = 1000
        if self._curve is not None:
            server_key, public, secret = self._curve
            sock.curve_serverkey = server_key
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        try:
            self._mon = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        except zmq.ZMQError:  # pragma: no cover - libzmq without monitor events
            self._mon = None
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise RigError(f"cannot connect to the rig at {self.address}: {exc}")
        self._sock = sock

    def _close_socket(self) -> None:
        if self._sock is not None:
            if self._mon is not None:
                try:
                    self._sock.disable_monitor()
                except self._zmq.ZMQError:  # pragma: no cover
                    pass
                self._mon.close(0)
                self._mon = None
            self._sock.close(0)
            self._sock = None

    def _reconnect(self) -> None:
        self.stats["reconnects"] += 1
        log.warning("rig client: reopening the connection to %s", self.address)
        self._close_socket()
        self._open()

    def _handshake_problem(self) -> str:
        """A description of failed CURVE handshakes seen on the monitor, or ''."""
        if self._mon is None:
            return ""
        from zmq.utils.monitor import recv_monitor_message

        zmq = self._zmq
        failed = ok = 0
        while True:
            try:
                ev = recv_monitor_message(self._mon, flags=zmq.NOBLOCK)
            except (zmq.Again, zmq.ZMQError):
                break
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                ok += 1
            else:
                failed += 1
        if failed and not ok:
            return (" The security handshake failed: the rig refused this client (wrong or missing CURVE keys: "
                    "pass server_public_key= the server's .key file, and client_keys= a key pair the server allows).")
        return ""

    def close(self) -> None:
        """Close the connection (also done at garbage collection)."""
        self._close_socket()
        if getattr(self, "_ctx", None) is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> "RigOracle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- requests ---------------------------------------------------------------
    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._session}-{self._seq}"

    def _accept(self, frames: list, msg_id, n: int | None):
        """Classify one received message: ``("ok", msg)``, ``("error", RigError)`` or ``("discard", reason)``."""
        if frames and len(frames[0]) == 0:
            frames = frames[1:]
        try:
            msg = decode(frames)
        except ProtocolError as exc:
            return "discard", f"malformed reply: {exc}"
        if msg.id != msg_id:
            return "stale", f"reply for request {str(msg.id)[:80]!r} while awaiting {msg_id!r} (late duplicate)"
        if msg.type == "error":
            err = msg.header["error"]
            cls = ProtocolError if err["code"] == "malformed" else RigError
            return "error", cls(f"the rig at {self.address} answered request {msg_id} with error "
                                f"{err['code']!r}: {err['message']}")
        if n is None:
            if msg.type != "pong":
                return "discard", f"expected a pong, got {msg.type!r}"
            return "ok", msg
        if msg.type != "reply":
            return "discard", f"expected a reply, got {msg.type!r}"
        resp = msg.arrays[0]
        k = self.n_units
        if resp.ndim == 2 and resp.shape[0] == n and k and resp.shape[1] != k:
            return "error", RigError(self._channel_mismatch(resp.shape[1], msg_id))
        if resp.shape[0] != n or (k and resp.shape[1] != k):
            return "discard", (f"reply has responses of shape {tuple(resp.shape)} for {n} stimuli; expected "
                               f"({n}, {k or 'n_units'})")
        return "ok", msg

    def _channel_mismatch(self, got: int, msg_id) -> str:
        """Why a reply with ``got`` response columns does not fit this client's channels, and the fix.

        Not a transient fault (re-sending gets the same columns), so it is an error, not a retry.
        """
        names = self.unit_names
        if got < len(names):
            missing = names[got:]
            return (f"the rig at {self.address} answered request {msg_id} with {got} response column(s), but this "
                    f"client expects {len(names)} channel(s) {names}: channel(s) {missing} are missing. The rig's "
                    "present function must return one column per channel it declares (serve it with --units / "
                    "unit_names= naming exactly the columns it returns); a client given unit_names= must name "
                    "exactly the rig's channels (omit unit_names= to ask the rig for them).")
        return (f"the rig at {self.address} answered request {msg_id} with {got} response columns, but this client "
                f"expects {len(names)} channel(s) {names}: {got - len(names)} column(s) have no name. Declare every "
                "column the rig returns (--units / unit_names= on the rig's side, or omit unit_names= here).")

    def _request(self, frames: list, msg_id, n: int | None, what: str):
        zmq = self._zmq
        last_fault = "no reply"
        consecutive_timeouts = 0
        discards = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                if consecutive_timeouts >= 2:
                    self._reconnect()
                log.warning("rig client: re-sending %s %s to %s (attempt %d of %d) after: %s",
                            what, msg_id, self.address, attempt + 1, self.retries + 1, last_fault)
            if self._sock is None:
                self._open()
            try:
                self._sock.send_multipart([b""] + frames, copy=False)
            except zmq.Again:
                self.stats["timeouts"] += 1
                consecutive_timeouts += 1
                last_fault = f"could not send within {self.timeout:g} s (no connection to the rig)"
                log.warning("rig client: %s %s to %s: %s", what, msg_id, self.address, last_fault)
                continue
            except zmq.ZMQError as exc:
                last_fault = f"send failed: {exc}"
                consecutive_timeouts += 1
                continue
            deadline = time.monotonic() + self.timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._sock.poll(max(1, int(remaining * 1000))):
                    self.stats["timeouts"] += 1
                    consecutive_timeouts += 1
                    last_fault = f"no reply within {self.timeout:g} s"
                    log.warning("rig client: timeout: no reply to %s %s from %s within %g s",
                                what, msg_id, self.address, self.timeout)
                    break
                try:
                    reply = self._sock.recv_multipart(copy=True)
                except zmq.ZMQError as exc:
                    last_fault = f"receive failed: {exc}"
                    break
                status, payload = self._accept(reply, msg_id, n)
                if status == "ok":
                    return payload
                if status == "error":
                    raise payload
                discards += 1
                key = "discarded_stale" if status == "stale" else "discarded_malformed"
                self.stats[key] += 1
                log.warning("rig client: discarded a message from %s: %s", self.address, payload)
                if status == "discard":
                    last_fault = payload
                if discards > self.max_discards:
                    raise RigError(f"the rig at {self.address} sent {discards} unusable messages for {what} "
                                   f"{msg_id}; last: {payload}")
        raise RigError(
            f"no valid reply from the rig at {self.address} to {what} {msg_id} after {self.retries + 1} attempt(s) "
            f"of {self.timeout:g} s; last fault: {last_fault}. Is the rig server running (`mango rig serve` / "
            f"`mango rig simulate`) and reachable?{self._handshake_problem()} If one batch takes "
            "longer to present, raise the timeout (command line: --rig-timeout SECONDS; Python: RigOracle(..., "
            "timeout=SECONDS))."
        )

    def ping(self) -> dict:
        """Ask the server for its units, input shape and info (the ``pong`` header)."""
        msg_id = self._next_id()
        return self._request(make_ping(msg_id), msg_id, None, "ping").header

    def request(self, stimuli: np.ndarray, meta: dict | None = None) -> np.ndarray:
        """Present one batch (a numpy array ``[n, ...]``) and return responses ``[n, n_units]`` (float64)."""
        arr = np.asarray(stimuli)
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise ConfigError(f"stimuli must be a non-empty batch [n, ...], got shape {arr.shape}.")
        if self.wire_dtype == "uint8":
            arr = np.clip(np.rint(np.asarray(arr, dtype=np.float64) * 255.0), 0, 255)
        arr = np.ascontiguousarray(arr, dtype=np.dtype(_WIRE_DTYPES[self.wire_dtype]))
        msg_id = self._next_id()
        self.stats["requests"] += 1
        m = {**self.meta, **(meta or {})}
        if self.wire_dtype == "uint8":
            m["scale"] = 1.0 / 255.0
        msg = self._request(make_present(msg_id, arr, self.kind, m), msg_id, arr.shape[0], "request")
        self.stats["replies"] += 1
        self.stats["stimuli"] += int(arr.shape[0])
        self.last_timing = dict(msg.header.get("timing") or {})
        times = stimulus_times(self.last_timing)
        if self._times is not None:
            self._times = None if times is None else self._times + [times]
        return np.array(msg.arrays[0], dtype=np.float64)

    def take_times(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Onsets and offsets (seconds since the Unix epoch, the rig's clock) of every stimulus presented since
        the last call, in order, and forget them; None when a reply carried no times (or none came)."""
        times, self._times = self._times, []
        if not times:
            return None
        return np.concatenate([t[0] for t in times]), np.concatenate([t[1] for t in times])

    # -- Oracle protocol ----------------------------------------------------------
    def _respond(self, x) -> np.ndarray:
        return self.request(x.detach().to("cpu").numpy())

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"address": self.address, "timeout": self.timeout, "retries": self.retries, "kind": self.kind,
                  "wire_dtype": self.wire_dtype, "curve": self._curve is not None, "server": self.server_info,
                  "stats": dict(self.stats)})
        return d

    def __repr__(self) -> str:
        return (f"RigOracle({self.address!r}, units={self.unit_names!r}, timeout={self.timeout:g}, "
                f"retries={self.retries})")
