"""The rig's side: wrap a lab's ``present(stimuli) -> responses`` behind the mango-rig protocol.

>>> def present(stimuli):            # numpy [n, C, H, W] -> responses [n, n_units]
...     ...                          # show each image, count spikes
>>> from mango.rig import serve
>>> serve(present, address="tcp://127.0.0.1:5555")          # doctest: +SKIP

The server is a ZeroMQ ROUTER socket, single-threaded: one batch is presented
at a time, in the order requests arrive.  Replies are cached by request id
(a bounded LRU), so a request that mango re-sends after a timeout is answered
from the cache and **never presented twice** -- a living neuron sees each
stimulus once per query.  Malformed requests get an ``error`` reply; nothing a
client sends can crash the server.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from .protocol import (PROTOCOL, TIMES, VERSION, ProtocolError, RigError, check_stimulus_times, decode, make_error,
                       make_pong, make_reply, peek_id)

__all__ = ["RigServer", "serve", "load_keypair", "load_public_key", "write_keypair"]

log = logging.getLogger("mango.rig")

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
DEFAULT_MAX_BYTES = 512 << 20


# -- CURVE keys ----------------------------------------------------------------

def _is_z85_key(k) -> bool:
    return isinstance(k, (bytes, str)) and len(k) == 40


def _read_key_file(key, not_a_file: str) -> tuple[str, tuple]:
    """``(path, (public, secret))`` read from the CURVE key file ``key`` (secret is None in a ``.key`` file);
    ConfigError ``not_a_file`` when ``key`` names no file, or the reason when the file cannot be read."""
    import zmq.auth

    path = os.fspath(key) if isinstance(key, (str, os.PathLike)) else None
    if path is None or not os.path.isfile(path):
        raise ConfigError(not_a_file)
    try:
        return path, zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot read CURVE key file {path}: {exc}")


def load_keypair(key) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``.key_secret`` file (``mango rig keys``) or a ``(public, secret)`` pair."""
    if isinstance(key, (tuple, list)) and len(key) == 2 and all(_is_z85_key(k) for k in key):
        return tuple(k.encode("ascii") if isinstance(k, str) else bytes(k) for k in key)  # type: ignore[return-value]
    path, (public, secret) = _read_key_file(
        key, f"CURVE secret key {key!r} is neither a (public, secret) pair nor an existing key file; "
             "create one with `mango rig keys --out DIR` and pass DIR/NAME.key_secret.")
    if secret is None:
        raise ConfigError(f"{path} holds only a public key; pass the matching .key_secret file.")
    return public, secret


def load_public_key(key) -> bytes:
    """A Z85 public key from a 40-character string/bytes or a ``.key``/``.key_secret`` file."""
    if _is_z85_key(key):
        return key.encode("ascii") if isinstance(key, str) else bytes(key)
    _, (public, _) = _read_key_file(
        key, f"CURVE public key {key!r} is neither a 40-character Z85 key nor an existing key file "
             "(written by `mango rig keys`).")
    return public


def write_keypair(directory, name: str = "rig") -> tuple[str, str]:
    """Generate a CURVE key pair; write ``DIR/NAME.key`` (public) and ``DIR/NAME.key_secret``. Returns both paths."""
    import zmq.auth

    if not name or os.sep in name or name.startswith("."):
        raise ConfigError(f"key name {name!r} must be a plain file name such as 'server' or 'client'.")
    os.makedirs(directory, exist_ok=True)
    public, secret = zmq.auth.create_certificates(os.fspath(directory), name)
    os.chmod(secret, 0o600)
    return public, secret


def _allowed_keys(allowed_clients) -> set[bytes]:
    import zmq.auth

    if isinstance(allowed_clients, (str, os.PathLike)) and os.path.isdir(allowed_clients):
        keys = set(zmq.auth.load_certificates(os.fspath(allowed_clients)).keys())
        if not keys:
            raise ConfigError(f"no client public keys (*.key files) in {allowed_clients}.")
        return keys
    if isinstance(allowed_clients, (str, bytes, os.PathLike)):
        allowed_clients = [allowed_clients]
    return {load_public_key(k) for k in allowed_clients}


class _KeyList:
    """ZAP credentials provider: accept exactly the listed client public keys."""

    def __init__(self, keys: set[bytes]):
        self.keys = {bytes(k) for k in keys}

    def callback(self, domain, key) -> bool:  # key: the client's Z85-encoded public key
        ok = (key.encode("ascii") if isinstance(key, str) else bytes(key)) in self.keys
        if not ok:
            log.warning("rig server: refused a CURVE client whose public key is not allowed")
        return ok


# -- the server ----------------------------------------------------------------

def _accepts_meta(fn: Callable) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.name == "meta" for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class RigServer:
    """A mango-rig server around ``present``.

    Parameters
    ----------
    present : ``present(stimuli) -> responses`` or ``present(stimuli, meta)``;
        ``stimuli`` is a numpy array (``[n, C, H, W]`` images, or ``[n, d]``
        stimulus parameters when ``meta["kind"] == "params"``), ``responses``
        an array ``[n, n_units]`` (or ``[n]`` for one unit).  It may also
        return ``(responses, {"onset_s": [...], "offset_s": [...]})``: each
        stimulus's onset and offset as the rig measured them, in seconds
        since the Unix epoch (``time.time()``'s clock); they travel in the
        reply and the run store keeps them.
    address : ZeroMQ endpoint to bind; ``tcp://127.0.0.1:5555`` (localhost
        only) by default.  Port ``0`` (or ``*``) picks a free port; see
        :attr:`endpoint`.
    unit_names : one name per response column (default one unit, ``"response"``).
    input_shape : the shape of one stimulus, reported to clients (optional).
    curve_secret_key : enables CURVE encryption/authentication: a
        ``.key_secret`` file from ``mango rig keys`` or a ``(public, secret)``
        pair.  Clients then need the server's public key.
    allowed_clients : with CURVE, which clients may connect: ``None`` (any
        client that knows the server's public key), a directory of client
        ``.key`` files, or a list of public keys/files.
    cache_size : replies kept for answering retried requests.
    max_bytes : largest accepted request payload.
    faults : fault injection for rehearsals (see :class:`mango.rig.simulator.Faults`).
    info : extra JSON-able facts reported in ``pong``.
    """

    def __init__(self, present: Callable, address: str = DEFAULT_ADDRESS, *, unit_names: Sequence[str] | None = None,
                 input_shape: Sequence[int] | None = None, curve_secret_key=None, allowed_clients=None,
                 cache_size: int = 1024, max_bytes: int = DEFAULT_MAX_BYTES, faults=None,
                 info: dict | None = None, presentation_log: str | os.PathLike | None = None):
        if not callable(present):
            raise ConfigError(f"present must be a function stimuli -> responses, got {type(present).__name__}.")
        if not isinstance(address, str) or "://" not in address:
            raise ConfigError(f"address must be a ZeroMQ endpoint such as 'tcp://127.0.0.1:5555', got {address!r}.")
        if cache_size < 1:
            raise ConfigError(f"cache_size must be >= 1, got {cache_size}.")
        self.present = present
        self._pass_meta = _accepts_meta(present)
        if address.startswith("tcp://") and address.endswith(":0"):
            address = address[:-2] + ":*"  # any free port; see .endpoint
        self.address = address
        self.unit_names = [str(u) for u in (unit_names if unit_names is not None else ["response"])]
        if not self.unit_names:
            raise ConfigError("unit_names must name at least one response column.")
        self.input_shape = None if input_shape is None else [int(s) for s in input_shape]
        self.keys = load_keypair(curve_secret_key) if curve_secret_key is not None else None
        self.allowed = _allowed_keys(allowed_clients) if allowed_clients is not None else None
        if self.allowed is not None and self.keys is None:
            raise ConfigError("allowed_clients needs curve_secret_key= (CURVE authentication).")
        self.cache_size = int(cache_size)
        self.max_bytes = int(max_bytes)
        self.faults = faults
        self.info = dict(info or {})
        self.presentation_log = presentation_log
        self._cache: OrderedDict = OrderedDict()
        self.stats = {"requests": 0, "presented_batches": 0, "presented_stimuli": 0, "cache_hits": 0,
                      "malformed": 0, "present_errors": 0, "restarts": 0}
        self._ctx = None
        self._sock = None
        self._auth = None
        self.endpoint: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- request handling (pure: frames in, frames out) ----------------------
    def handle(self, frames: Sequence) -> list:
        """Answer one request (its frames, without routing envelope); never raises."""
        try:
            return self._handle(frames)
        except Exception as exc:  # noqa: BLE001 - a server must survive anything
            log.exception("rig server: internal error while handling a request")
            return make_error(peek_id(frames) if frames else None, "internal", f"{type(exc).__name__}: {exc}")

    def _handle(self, frames: Sequence) -> list:
        try:
            msg = decode(frames, max_bytes=self.max_bytes)
        except ProtocolError as exc:
            self.stats["malformed"] += 1
            log.warning("rig server: malformed request (%s); answered with an error", exc)
            return make_error(peek_id(frames), "malformed", str(exc))
        if msg.type == "ping":
            return make_pong(msg.id, self.unit_names, self.input_shape,
                             {"server": "mango", "protocol": PROTOCOL, "version": VERSION, **self.info})
        if msg.type != "present":
            self.stats["malformed"] += 1
            return make_error(msg.id, "unexpected", f"a rig server takes 'present' or 'ping', not {msg.type!r}.")
        self.stats["requests"] += 1
        key = repr(msg.id)
        if key in self._cache:
            self._cache.move_to_end(key)
            self.stats["cache_hits"] += 1
            log.info("rig server: request %s is a retry; answered from the reply cache, not presented again", msg.id)
            return self._cache[key]
        reply = self._present(msg)
        self._cache[key] = reply
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return reply

    def _present(self, msg) -> list:
        stimuli = np.array(msg.arrays[0])  # writable copy, owned by the lab's code
        n = stimuli.shape[0] if stimuli.ndim else 0
        if stimuli.ndim == 0 or n == 0:
            return make_error(msg.id, "malformed", "a present request needs a batch array [n, ...] with n >= 1.")
        t0 = time.perf_counter()
        try:
            out = self.present(stimuli, dict(msg.meta)) if self._pass_meta else self.present(stimuli)
            out, times = _split_times(out)
            out = np.asarray(out, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - the lab's code failed: tell the client
            self.stats["present_errors"] += 1
            log.error("rig server: present() failed on request %s: %s: %s", msg.id, type(exc).__name__, exc)
            return make_error(msg.id, "present_failed", f"present() raised {type(exc).__name__}: {exc}")
        t1 = time.perf_counter()
        if out.ndim == 1 and len(self.unit_names) == 1:
            out = out[:, None]
        if out.shape != (n, len(self.unit_names)):
            self.stats["present_errors"] += 1
            msg_txt = (f"present() returned responses of shape {out.shape} for {n} stimuli; expected "
                       f"({n}, {len(self.unit_names)}) for units {self.unit_names}. Return one row per stimulus, "
                       "or pass unit_names=[...] to serve() with one name per column.")
            log.error("rig server: %s", msg_txt)
            return make_error(msg.id, "present_failed", msg_txt)
        self.stats["presented_batches"] += 1
        self.stats["presented_stimuli"] += n
        if self.presentation_log is not None:
            import json

            with open(self.presentation_log, "a") as f:
                f.write(json.dumps({"id": msg.id, "n": int(n), "t": time.time()}) + "\n")
        try:
            times = _stimulus_times(times, n)
        except ConfigError as exc:
            self.stats["present_errors"] += 1
            log.error("rig server: %s", exc)
            return make_error(msg.id, "present_failed", str(exc))
        return make_reply(msg.id, out, timing={"present_s": t1 - t0, **times})

    # -- sockets --------------------------------------------------------------
    def bind(self) -> str:
        """Create and bind the socket; returns the bound endpoint (with the real port)."""
        import zmq

        if self._ctx is None:
            self._ctx = zmq.Context()
        if self.keys is not None and self._auth is None and self.allowed is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("mango.rig.auth"))
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=_KeyList(self.allowed))
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.maxmsgsize = self.max_bytes + MAX_HEADER_SLACK
        sock.router_mandatory = False
        if self.keys is not None:
            sock.curve_secretkey = self.keys[1]
            sock.curve_publickey = self.keys[0]
            sock.curve_server = True
        addr = self.endpoint or self.address
        try:
            sock.bind(addr)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise RigError(f"cannot bind the rig server to {addr}: {exc}. Is another server using that port? "
                           "Pick another --port/--address.")
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        host = self.endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if self.keys is None and self.endpoint.startswith("tcp://") and not (
                host.startswith("127.") or host in ("localhost", "::1")):
            log.warning("rig server: bound to %s without CURVE: anyone who can reach this port can present "
                        "stimuli. Use curve_secret_key= (`--curve-secret`, keys from `mango rig keys`) on a "
                        "lab network.", self.endpoint)
        return self.endpoint

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def restart(self, pause: float = 0.5) -> None:
        """Simulate a crash and restart: drop every connection and the reply cache, rebind after ``pause`` s."""
        self.stats["restarts"] += 1
        log.warning("rig server: restarting (connections and reply cache are lost), back in %.2f s", pause)
        self._close_socket()
        self._cache.clear()
        if self._stop.wait(pause):
            return
        self.bind()

    def serve_forever(self, timeout: float | None = None, max_requests: int | None = None) -> None:
        """Answer requests until :meth:`stop`, ``timeout`` seconds, or ``max_requests`` present requests."""
        import zmq

        if self._sock is None:
            self.bind()
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                break
            if max_requests is not None and self.stats["requests"] >= max_requests:
                break
            if self._sock is None:
                break
            if not self._sock.poll(100):
                continue
            try:
                frames = self._sock.recv_multipart(copy=True)
            except zmq.ZMQError as exc:  # e.g. message too large
                log.warning("rig server: receive failed: %s", exc)
                continue
            self._serve_one(frames)
        self._close_socket()

    def _serve_one(self, frames: list) -> None:
        if len(frames) < 2:  # no routing identity: cannot answer
            self.stats["malformed"] += 1
            return
        identity, body = frames[0], frames[1:]
        envelope = [identity]
        if body and body[0] == b"":  # REQ-style (or our DEALER) delimiter
            envelope.append(b"")
            body = body[1:]
        action = None
        is_new = False
        if self.faults is not None:
            msg_id = peek_id(body) if body else None
            is_new = msg_id is not None and repr(msg_id) not in self._cache and _looks_like_present(body)
            if is_new and self.faults.restart_now(self):
                self.restart(self.faults.restart_pause)
                return  # the request dies with the "crashed" process; the client retries
        reply = self.handle(body)
        if self.faults is not None and _looks_like_present(body):
            action = self.faults.action(self, body, is_new)
        self._send(envelope, reply, action)

    def _send(self, envelope: list, reply: list, action=None) -> None:
        import zmq

        if action is not None:
            kind = action[0]
            if kind == "drop":
                return
            if kind == "delay":
                if self._stop.wait(action[1]):
                    return
            elif kind == "malformed":
                reply = action[1]
        if self._sock is None:
            return
        try:
            self._sock.send_multipart(envelope + list(reply), copy=False)
        except zmq.ZMQError as exc:
            log.warning("rig server: could not send a reply: %s", exc)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "RigServer":
        """Bind and serve in a background thread (for tests and notebooks); returns self."""
        if self._sock is None:
            self.bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve_forever, name="mango-rig-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the socket, the authenticator and the context."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._close_socket()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def run(self, label: str, ready: Callable[[str], None] | None = None, timeout: float | None = None,
            max_requests: int | None = None) -> "RigServer":
        """Bind, log ``"<label> listening on <endpoint>"``, call ``ready(endpoint)``, and serve in this thread
        until interrupted (Ctrl-C) or ``timeout``/``max_requests``; then stop and return self."""
        endpoint = self.bind()
        log.info("%s listening on %s", label, endpoint)
        if ready is not None:
            ready(endpoint)
        try:
            self.serve_forever(timeout=timeout, max_requests=max_requests)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return self

    def __enter__(self) -> "RigServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint or self.address, "units": self.unit_names, "input_shape": self.input_shape,
                "curve": self.keys is not None, "stats": dict(self.stats)}


MAX_HEADER_SLACK = 2 << 20


def _split_times(out) -> tuple[Any, dict | None]:
    """``present``'s result as ``(responses, times)``: it returns responses, or ``(responses, times)`` where
    ``times`` is ``{"onset_s": [...], "offset_s": [...]}``."""
    if isinstance(out, tuple) and len(out) == 2 and (out[1] is None or isinstance(out[1], dict)):
        return out
    return out, None


def _stimulus_times(times: dict | None, n: int) -> dict:
    """The per-stimulus times ``present`` returned, as the reply's timing entries ({} when it returned none)."""
    if not times:
        return {}
    extra = sorted(set(times) - set(TIMES))
    if extra:
        raise ConfigError(f"present() returned times with unknown key(s) {extra}; return "
                          "(responses, {'onset_s': [...], 'offset_s': [...]}) with one time per stimulus.")
    try:
        plain = {k: None if times.get(k) is None else np.asarray(times[k], dtype=np.float64).reshape(-1).tolist()
                 for k in TIMES}
    except (TypeError, ValueError):
        raise ConfigError("present() returned times that are not numbers; onset_s and offset_s must hold one "
                          "time per stimulus, in seconds since the Unix epoch.") from None
    check_stimulus_times(plain, n, ConfigError)
    return {k: v for k, v in plain.items() if v is not None}


def _looks_like_present(body) -> bool:
    try:
        return b'"present"' in bytes(body[0][:4096])
    except Exception:  # noqa: BLE001
        return False


def serve(present: Callable, address: str = DEFAULT_ADDRESS, *, curve_secret_key=None, allowed_clients=None,
          unit_names: Sequence[str] | None = None, input_shape: Sequence[int] | None = None,
          timeout: float | None = None, max_requests: int | None = None, ready: Callable[[str], None] | None = None,
          **kwargs) -> RigServer:
    """Serve ``present`` over the mango-rig protocol until interrupted (Ctrl-C) or ``timeout``/``max_requests``.

    ``ready(endpoint)`` is called once the socket is bound (e.g. to print the
    port chosen for ``tcp://127.0.0.1:0``).  Other keyword arguments go to
    :class:`RigServer`.  Returns the (stopped) server, whose ``stats`` count
    requests, presentations, cache hits and malformed requests.
    """
    server = RigServer(present, address, curve_secret_key=curve_secret_key, allowed_clients=allowed_clients,
                       unit_names=unit_names, input_shape=input_shape, **kwargs)
    label = f"rig server (units {server.unit_names}, CURVE {'on' if server.keys else 'off'})"
    return server.run(label, ready=ready, timeout=timeout, max_requests=max_requests)
