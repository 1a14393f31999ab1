"""Tensor-train sampling (``tt``, PROTES-style, in numpy): :mod:`.optimizer` the ask/tell shell, :mod:`.dist`
the TT/QTT distribution and its Adam update, :mod:`.sample` its sampler, :mod:`.kernels` the numpy kernels,
:mod:`.cores` the cores to and from teneva's format."""

from .cores import from_teneva, to_teneva
from .optimizer import TTOptimizer

__all__ = ["TTOptimizer", "to_teneva", "from_teneva"]
