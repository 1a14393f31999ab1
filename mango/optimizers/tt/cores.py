"""The ``tt`` optimizer's distribution to and from teneva's TT format.

teneva (a core dependency) holds a tensor train as a list of ``d`` numpy cores ``[r_{j-1}, n_j, r_j]`` with
``r_0 = r_d = 1``.  :func:`to_teneva` exports what a ``tt`` optimizer has learned in that format (analyse it with
``teneva.get``, ``teneva.sum``, ``teneva.optima_tt``, ...; ``examples/tt_cores_teneva.py``), and
:func:`from_teneva` loads such cores into a ``tt`` optimizer as its sampling distribution: a distribution
learned in an earlier session, or a prior built with teneva, to start from.  (teneva is imported when cores
are loaded, not with the optimizer: it takes about a second.)
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError

__all__ = ["to_teneva", "from_teneva"]


def to_teneva(opt) -> list[np.ndarray]:
    """``opt``'s sampling distribution as teneva TT cores over its space's dimensions, non-negative and summing
    to 1 (:meth:`~mango.optimizers.tt.optimizer.TTOptimizer.tt_cores`)."""
    return opt.tt_cores()


def from_teneva(opt, cores, *, pad: float = 0.0) -> None:
    """Make teneva TT ``cores`` ``opt``'s sampling distribution: ``p(i)`` proportional to ``|Y[i]|``.

    ``opt`` is a ``tt`` optimizer with a dense distribution (``quantize=False``, or ``"auto"`` with at most 64
    levels a dimension; QTT and binary spaces are refused) whose space has the cores' mode sizes.  Cores of a
    higher rank than the optimizer's are rounded to it by ``teneva.truncate``; lower ranks are padded with
    ``pad`` (0: the optimizer keeps the cores' rank).  The cores are scaled so that the distribution sums to 1,
    and Adam's moments start afresh.  Round trip: ``from_teneva(opt, to_teneva(opt))`` keeps the distribution
    (in single precision, the parameters').
    """
    import teneva  # imported here: it takes about a second, and only this needs it

    dist = opt.distribution
    if dist.q or dist.group:
        raise ConfigError("from_teneva loads dense tt distributions only (quantize=False); this one is "
                          f"{'grouped binary' if dist.group else 'quantized (QTT)'}.")
    Y = [np.asarray(c, dtype=np.float64) for c in cores]
    if any(c.ndim != 3 for c in Y) or Y[0].shape[0] != 1 or Y[-1].shape[2] != 1:
        raise ConfigError("TT cores are a list of arrays [r_{j-1}, n_j, r_j] with r_0 = r_d = 1 (teneva's format).")
    sizes = [int(n) for n in teneva.shape(Y)]
    if sizes != [int(n) for n in dist.sizes]:
        raise ConfigError(f"TT cores of mode sizes {sizes} do not fit the optimizer's space {list(dist.sizes)}.")
    if max(teneva.ranks(Y)) > dist.rank:
        Y = teneva.truncate(Y, e=1e-12, r=dist.rank)
    Y = [np.abs(c) for c in Y]
    total = float(teneva.sum(Y))
    if not np.isfinite(total) or total <= 0:
        raise ConfigError(f"TT cores sum to {total}; a distribution needs a positive, finite sum.")
    scale = total ** (-1.0 / len(Y))
    state = dist.state()
    theta = np.full(state["theta"].shape, pad, dtype=np.float64)  # [d, r, N, r], teneva's layout per mode
    for j, c in enumerate(Y):
        theta[j, : c.shape[0], : c.shape[1], : c.shape[2]] = c * scale
    zeros = np.zeros_like(theta)
    dist.load_state({"theta": theta, "adam_m": zeros, "adam_v": zeros, "adam_t": 0})
