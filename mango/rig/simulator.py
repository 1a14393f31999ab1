"""A simulated rig: any oracle behind the mango-rig protocol, with spiking noise, latency and faults.

``mango rig simulate --port 5555`` serves, by default, an output neuron of the
zoo's spiking digit network (``zoo:snn-digits``) with Poisson spike-count
noise and a presentation latency, so an experiment can be rehearsed end to
end::

    mango rig simulate --port 5555 --latency-ms 5 --drop 0.1 --restart-after 20
    mango maximize --oracle rig://127.0.0.1:5555 ...

With ``--on-ms 150 --off-ms 100 --jitter-ms 2`` (:class:`Schedule`) it shows
the stimuli of a batch one after another in real time and reports each one's
onset and offset, as a rig with a photodiode would.

Fault injection (:class:`Faults`) drops replies, delays them past the
client's timeout, sends malformed replies instead of the real one, and
restarts the server once (closing every connection and losing its reply
cache).  Every injected fault is logged on the ``mango.rig`` logger.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, UnknownNameError
from ..oracles.base import OracleWrapper
from .protocol import encode, peek_id
from .server import RigServer

__all__ = ["Faults", "Schedule", "SyntheticNeuron", "build_oracle", "make_present", "simulate", "null_present"]

log = logging.getLogger("mango.rig")


def null_present(stimuli: np.ndarray) -> np.ndarray:
    """A no-op rig: one zero response per stimulus (for latency benchmarks and smoke tests)."""
    return np.zeros((len(stimuli), 1))


def _prob(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p!r}.")
    return float(p)


class Faults:
    """Seeded fault injection for a :class:`~mango.rig.server.RigServer`.

    Parameters
    ----------
    drop : probability that a reply is never sent.
    delay_prob, delay_s : probability that a reply is held back ``delay_s``
        seconds (set it above the client's timeout to force a retry and a late
        duplicate).
    malformed_prob : probability that a malformed message replaces the reply.
    restart_after : restart the server when the N-th new request arrives
        (before presenting it), once.  ``None``: never.
    restart_pause : seconds the server stays down.
    seed : seed of the fault draws; same seed and requests, same faults (the
        faults of the n-th new request do not depend on earlier retries).

    ``events`` lists every injected fault as ``(kind, request id)``.
    """

    def __init__(self, drop: float = 0.0, delay_prob: float = 0.0, delay_s: float = 1.0, malformed_prob: float = 0.0,
                 restart_after: int | None = None, restart_pause: float = 0.5, seed: int = 0):
        self.drop = _prob("drop", drop)
        self.delay_prob = _prob("delay_prob", delay_prob)
        self.malformed_prob = _prob("malformed_prob", malformed_prob)
        if self.drop + self.delay_prob + self.malformed_prob > 1.0:
            raise ConfigError("drop + delay_prob + malformed_prob must not exceed 1.")
        if not delay_s >= 0 or not restart_pause >= 0:
            raise ConfigError("delay_s and restart_pause must be >= 0 seconds.")
        if restart_after is not None and (isinstance(restart_after, bool) or int(restart_after) != restart_after
                                          or restart_after < 1):
            raise ConfigError(f"restart_after must be a positive number of requests or None, got {restart_after!r}.")
        self.delay_s = float(delay_s)
        self.restart_after = None if restart_after is None else int(restart_after)
        self.restart_pause = float(restart_pause)
        self.seed = seed
        # new requests and retries draw from separate streams, so the faults hitting the n-th new request
        # do not depend on how many retries timing caused before it
        self.rng = np.random.default_rng(seed)
        self.rng_retry = np.random.default_rng([seed, 1])
        self.new_requests = 0
        self.restarted = False
        self.events: list[tuple[str, Any]] = []

    @property
    def active(self) -> bool:
        return bool(self.drop or self.delay_prob or self.malformed_prob or self.restart_after)

    def restart_now(self, server) -> bool:
        """Called when a new (not yet presented) request arrives; True to crash-restart before presenting it."""
        self.new_requests += 1
        if self.restart_after is not None and not self.restarted and self.new_requests >= self.restart_after:
            self.restarted = True
            self.events.append(("restart", None))
            log.warning("simulator fault: restart at new request #%d (it is lost and must be re-sent)",
                        self.new_requests)
            return True
        return False

    def action(self, server, body: Sequence, is_new: bool = True) -> tuple | None:
        """What to do with the reply to ``body``: ``None`` (send), ``("drop",)``, ``("delay", s)``,
        ``("malformed", frames)``.

        Delays model a slow presentation, so they only hit requests presented
        now (``is_new``), not retries answered from the cache; drops and
        malformed replies (network faults) hit any reply.
        """
        rng = self.rng if is_new else self.rng_retry
        u = rng.random()
        msg_id = peek_id(body)
        if u < self.drop:
            self.events.append(("drop", msg_id))
            log.warning("simulator fault: dropping the reply to request %s", msg_id)
            return ("drop",)
        u -= self.drop
        if u < self.delay_prob:
            if not is_new:
                return None
            self.events.append(("delay", msg_id))
            log.warning("simulator fault: delaying the reply to request %s by %.2f s", msg_id, self.delay_s)
            return ("delay", self.delay_s)
        u -= self.delay_prob
        if u < self.malformed_prob:
            variant = int(rng.integers(len(_MALFORMED)))
            self.events.append(("malformed", msg_id))
            log.warning("simulator fault: sending a malformed reply (%s) to request %s", _MALFORMED[variant][0], msg_id)
            return ("malformed", _MALFORMED[variant][1](msg_id, rng))
        return None

    def describe(self) -> dict:
        return {"drop": self.drop, "delay_prob": self.delay_prob, "delay_s": self.delay_s,
                "malformed_prob": self.malformed_prob, "restart_after": self.restart_after,
                "restart_pause": self.restart_pause, "seed": self.seed}


def _hdr(**kw) -> bytes:
    return json.dumps({"protocol": "mango-rig", "version": 1, **kw}).encode()


_MALFORMED: list[tuple[str, Callable]] = [
    ("garbage bytes", lambda i, rng: [rng.bytes(int(rng.integers(1, 64)))]),
    ("not a JSON object", lambda i, rng: [b"[1, 2, 3]"]),
    ("wrong protocol", lambda i, rng: [json.dumps({"protocol": "other", "version": 1, "type": "reply",
                                                    "id": i}).encode()]),
    ("truncated array", lambda i, rng: [_hdr(type="reply", id=i, arrays=[{"dtype": "<f8", "shape": [10 ** 6, 1]}]),
                                        b"\0" * 8]),
    ("forbidden dtype", lambda i, rng: [_hdr(type="reply", id=i, arrays=[{"dtype": "|O", "shape": [1, 1]}]),
                                        b"\0" * 8]),
    ("missing data frame", lambda i, rng: [_hdr(type="reply", id=i, arrays=[{"dtype": "<f8", "shape": [1, 1]}])]),
    ("wrong id", lambda i, rng: encode({"type": "reply", "id": f"bogus-{int(rng.integers(1 << 30))}"},
                                       [np.zeros((1, 1))])),
]


class SyntheticNeuron:
    """A model V1 simple cell (fallback when the zoo is not available):
    rate = ``max_rate * sigmoid(gain * <gabor, x>)``.

    The Gabor receptive field (orientation, frequency, position) is drawn from
    ``seed``; stimuli are ``[n, 1, size, size]`` images.
    """

    def __init__(self, size: int = 28, max_rate: float = 50.0, gain: float = 0.5, seed: int = 0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        theta, freq, sigma = rng.uniform(0, np.pi), rng.uniform(0.08, 0.16), size / 6
        xr = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        env = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
        g = env * np.cos(2 * np.pi * freq * xr)
        self.template = (g / np.linalg.norm(g)).reshape(-1)
        self.size, self.max_rate, self.gain = size, float(max_rate), float(gain)

    def __call__(self, stimuli) -> np.ndarray:
        x = np.asarray(stimuli.detach().cpu() if hasattr(stimuli, "detach") else stimuli, dtype=np.float64)
        x = x.reshape(len(x), -1)
        drive = x @ self.template
        return (self.max_rate / (1.0 + np.exp(-self.gain * drive)))[:, None]


class _Scaled(OracleWrapper):
    """Multiply an oracle's responses by ``factor`` (spiking rates per step -> spikes per second)."""

    def __init__(self, oracle, factor: float):
        super().__init__(oracle)
        self.factor = float(factor)

    def __call__(self, stimuli) -> np.ndarray:
        return self._inner(stimuli) * self.factor

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "factor": self.factor}


def build_oracle(model: str | None = "zoo:snn-digits", layer: str | None = None, unit=None, *,
                 noise: str = "poisson", window: float = 0.5, max_rate: float = 100.0, seed: int = 0, device=None):
    """The simulated neuron: ``"zoo:NAME"`` (a zoo network's unit), or ``"synthetic"`` (a Gabor cell).

    ``unit`` is an index or name, a list (several units, one channel each: a rig
    recording a population) or ``"all"`` (every unit of the zoo network's layer).

    A spiking zoo network's rate readout (fraction of time steps with a spike)
    is scaled to ``max_rate`` spikes/s.  If the zoo model cannot be loaded,
    falls back to the synthetic neuron with a warning.  ``noise="poisson"``
    turns rates into spike-count estimates over ``window`` seconds (seeded);
    ``"none"`` keeps them exact.
    """
    from ..oracles import Noisy, SNNOracle

    if noise not in ("poisson", "none"):
        raise UnknownNameError("noise", noise, ["poisson", "none"])
    oracle = None
    model = model or "synthetic"
    if model.startswith("zoo:"):
        name = model[4:]
        try:
            oracle = _zoo_oracle(name, layer, unit, seed=seed, device=device)
        except (ImportError, AttributeError, FileNotFoundError, OSError, RuntimeError) as exc:
            log.warning("simulator: zoo model %r unavailable (%s: %s); using the synthetic Gabor neuron instead",
                        name, type(exc).__name__, exc)
    elif model != "synthetic":
        raise ConfigError(f"model {model!r} must be 'zoo:NAME' (e.g. zoo:snn-digits) or 'synthetic'.")
    if oracle is None:
        oracle = _synthetic(unit, max_rate / 2, seed, device)
    elif isinstance(oracle, SNNOracle):
        oracle = _Scaled(oracle, float(max_rate))
    if noise == "poisson":
        oracle = Noisy(oracle, "poisson", window=window, clip_negative=True, seed=seed)
    return oracle


def _zoo_oracle(name: str, layer, unit, seed: int, device):
    """Unit ``unit`` of ``layer`` of zoo network ``name`` (:mod:`mango.zoo.build`), seeing the images the network
    takes (1x28x28 for the digit zoo, 3x32x32 for ``snn-color``).

    ``unit`` may list several units (one channel each) or be ``"all"`` (every unit of the layer).
    """
    from ..zoo.build import build_model, build_unit_oracle, layer_units
    from ..zoo import MODELS, canonical_name

    shape = tuple(MODELS[canonical_name(name)].get("input_shape") or (1, 28, 28))
    model = build_model(f"zoo:{name}", device=device)
    if unit == "all":
        unit = layer_units(model, layer or "output", input_shape=shape, device=device)
    return build_unit_oracle(model, layer or "output", 0 if unit is None else unit, device=device, seed=seed,
                             input_shape=shape)


def _synthetic(unit, max_rate: float, seed: int, device):
    """The synthetic Gabor cell; a list of units gets one cell each (receptive fields drawn from ``[seed, j]``)."""
    from ..oracles import CallableOracle

    if not isinstance(unit, (list, tuple)) or len(unit) < 2:
        return CallableOracle(SyntheticNeuron(max_rate=max_rate, seed=seed), unit_names=["gabor"],
                              input_shape=(1, 28, 28), device=device)
    cells = [SyntheticNeuron(max_rate=max_rate, seed=int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
             for j in range(len(unit))]

    def respond(stimuli):
        return np.concatenate([c(stimuli) for c in cells], axis=1)

    return CallableOracle(respond, unit_names=[f"gabor{u}" for u in unit], input_shape=(1, 28, 28), device=device)


class Schedule:
    """A seeded presentation schedule: each stimulus on for ``on_ms``, then a blank for ``off_ms``.

    Each duration is drawn as the nominal one plus Gaussian jitter of standard
    deviation ``jitter_ms`` (clipped at 0), from ``seed``: the same seed gives
    the same durations, batch after batch.
    """

    def __init__(self, on_ms: float = 150.0, off_ms: float = 100.0, jitter_ms: float = 0.0, seed: int = 0):
        for name, v in (("on_ms", on_ms), ("off_ms", off_ms), ("jitter_ms", jitter_ms)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ConfigError(f"{name} must be a finite number of milliseconds >= 0, got {v!r} "
                                  "(e.g. --on-ms 150 --off-ms 100 --jitter-ms 2).")
        if on_ms <= 0:
            raise ConfigError(f"on_ms must be > 0 for a timed presentation, got {on_ms!r} (e.g. --on-ms 150).")
        self.on_ms, self.off_ms, self.jitter_ms = float(on_ms), float(off_ms), float(jitter_ms)
        self.rng = np.random.default_rng([seed, 2])

    def times(self, n: int, t0: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Onsets and offsets of ``n`` stimuli shown from ``t0`` (seconds), and the end of the last blank."""
        jitter = self.rng.normal(0.0, self.jitter_ms, size=(n, 2)) if self.jitter_ms else np.zeros((n, 2))
        on = np.maximum(self.on_ms + jitter[:, 0], 0.0) / 1000.0
        off = np.maximum(self.off_ms + jitter[:, 1], 0.0) / 1000.0
        onset = t0 + np.concatenate([[0.0], np.cumsum(on + off)[:-1]])
        return onset, onset + on, float(onset[-1] + on[-1] + off[-1])

    def describe(self) -> dict:
        return {"on_ms": self.on_ms, "off_ms": self.off_ms, "jitter_ms": self.jitter_ms}


def make_present(oracle, latency_ms: float = 0.0, schedule: Schedule | None = None) -> Callable:
    """``present(stimuli)`` calling ``oracle`` and taking at least ``latency_ms`` per batch (the screen's time).

    With a :class:`Schedule` the stimuli are shown one after another in real time (each on, then a blank), and
    ``present`` returns ``(responses, {"onset_s": [...], "offset_s": [...]})``, the times a rig reports.
    """
    if latency_ms < 0:
        raise ConfigError(f"latency_ms must be >= 0, got {latency_ms}.")

    def present(stimuli: np.ndarray):
        t0, wall0 = time.perf_counter(), time.time()
        out = oracle(stimuli)
        end = latency_ms / 1000.0
        times = None
        if schedule is not None:
            onset, offset, last = schedule.times(len(stimuli), wall0)
            end = max(end, last - wall0)
            times = {"onset_s": onset, "offset_s": offset}
        rest = end - (time.perf_counter() - t0)
        if rest > 0:
            time.sleep(rest)
        return out if times is None else (out, times)

    return present


def simulate(port: int = 5555, host: str = "127.0.0.1", *, model: str | None = "zoo:snn-digits",
             layer: str | None = None, unit=None, noise: str = "poisson", window: float = 0.5,
             latency_ms: float = 5.0, schedule: Schedule | None = None, faults: Faults | None = None, seed: int = 0,
             device=None,
             curve_secret_key=None, allowed_clients=None, presentation_log=None, timeout: float | None = None,
             max_requests: int | None = None, ready: Callable[[str], None] | None = None) -> RigServer:
    """Serve a simulated neuron on ``tcp://host:port`` until Ctrl-C, ``timeout`` s or ``max_requests``.

    ``port=0`` picks a free port (``ready(endpoint)`` tells which).  A
    :class:`Schedule` shows each stimulus for its on time and reports its onset
    and offset in the reply.  Returns the stopped server (its ``stats`` and
    ``faults.events`` say what happened).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ConfigError(f"port must be an int in 0..65535 (0 = any free port), got {port!r}.")
    oracle = build_oracle(model, layer, unit, noise=noise, window=window, seed=seed, device=device)
    present = make_present(oracle, latency_ms, schedule)
    addr = f"tcp://{host}:{port if port else '*'}"
    server = RigServer(present, addr, unit_names=oracle.unit_names,
                       input_shape=getattr(oracle, "input_shape", None), curve_secret_key=curve_secret_key,
                       allowed_clients=allowed_clients, faults=faults if faults is not None and faults.active else None,
                       info={"simulator": True, "oracle": _describe(oracle),
                             "schedule": schedule.describe() if schedule is not None else None,
                             "faults": faults.describe() if faults is not None else None},
                       presentation_log=presentation_log)
    return server.run(f"rig simulator ({oracle})", ready=ready, timeout=timeout, max_requests=max_requests)


def _describe(oracle) -> Any:
    try:
        d = oracle.describe()
        json.dumps(d)
        return d
    except Exception:  # noqa: BLE001
        return type(oracle).__name__
