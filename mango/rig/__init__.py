"""Closed-loop lab rigs over ZeroMQ (wire spec: ``docs/rig_protocol.md``).

* :class:`RigOracle` -- mango's side: an Oracle whose neuron is behind the
  network (idempotent request ids, timeouts and retries, clear errors).
* :func:`serve` / :class:`RigServer` -- the rig's side: wraps the lab's
  ``present(stimuli) -> responses`` in a few lines; optional CURVE security.
* :func:`simulate` -- a simulated rig (a zoo spiking neuron with Poisson
  noise, latency and fault injection) to rehearse an experiment.
"""

from .client import RigOracle, parse_rig_uri
from .protocol import PROTOCOL, VERSION, ProtocolError, RigError
from .server import RigServer, load_keypair, load_public_key, serve, write_keypair
from .simulator import Faults, Schedule, simulate

__all__ = ["RigOracle", "parse_rig_uri", "RigServer", "serve", "simulate", "Faults", "Schedule", "RigError",
           "ProtocolError", "write_keypair", "load_keypair", "load_public_key", "PROTOCOL", "VERSION"]
