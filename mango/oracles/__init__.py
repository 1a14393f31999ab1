"""Oracles: the neurons mango probes (stimuli -> responses ``[n, n_units]``).

* :class:`TorchOracle` -- a unit of any PyTorch network (forward hook on a named layer).
* :class:`SNNOracle` -- a unit of a spiking network, snntorch or SpikingJelly (rate / count / membrane over time).
* :class:`CallableOracle` -- any Python function ``stimuli -> responses``.
* :class:`Noisy` / :class:`Repeat` -- wrappers adding response noise / repeated presentations.
"""

from .base import Oracle, OracleWrapper
from .callable import CallableOracle
from .noise import Noisy, Repeat, ResponseNoise
from .snn import SNNOracle, reset_snn, spiking_layers, stateless_prefix
from .torch import TorchOracle, find_layer

__all__ = ["Oracle", "OracleWrapper", "TorchOracle", "SNNOracle", "CallableOracle", "Noisy", "Repeat", "ResponseNoise",
           "reset_snn", "spiking_layers", "stateless_prefix", "find_layer"]
