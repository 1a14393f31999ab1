"""Optimizers behind one budgeted ask/tell protocol.

>>> import mango.optimizers as mo
>>> "cma" in mo.available()
True
"""

from .base import GenerationOptimizer, Optimizer
from .registry import available, get, make, register

__all__ = ["Optimizer", "GenerationOptimizer", "make", "available", "register", "get"]
