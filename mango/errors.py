"""Exceptions raised by mango.

Every error a user can trigger with bad input is one of these (or a plain
``ValueError``/``TypeError`` subclass of them), and its message names both the
problem and the fix.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class MangoError(Exception):
    """Base class of all mango errors."""


class SpaceError(MangoError, ValueError):
    """A point does not belong to its space, or a space is ill-defined."""


class ConfigError(MangoError, ValueError):
    """An argument is out of range or inconsistent (budget < 1, bad name, ...)."""


class SpaceTooLargeError(ConfigError):
    """An optimizer cannot search this space on this machine (a full-covariance CMA-ES over tens of
    thousands of dimensions): refused before the run, with the optimizers that can."""


class UnknownNameError(ConfigError, KeyError):
    """A name (optimizer, layer, model, ...) is not known.

    The message lists the valid names and the closest matches.
    """

    def __init__(self, kind: str, name: str, valid: Iterable[str], also: Iterable[str] = (), note: str = ""):
        valid = sorted(valid)
        close = difflib.get_close_matches(str(name), valid + sorted(also), n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
        shown = valid if len(valid) <= 40 else valid[:40] + ["..."]
        msg += f" Valid {kind} names: {', '.join(shown)}." + (f" {note}" if note else "")
        self.kind, self.name, self.valid, self.close = kind, name, valid, close
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ObjectiveError(MangoError, RuntimeError):
    """The objective misbehaved (NaN response, wrong number of values, ...).

    ``partial_result`` holds everything recorded before the failure, so nothing
    already measured is lost.
    """

    def __init__(self, msg: str, partial_result=None):
        super().__init__(msg)
        self.partial_result = partial_result


class WorkerDiedError(MangoError, RuntimeError):
    """A worker process of a benchmark was killed (out of memory, a signal); finished runs are kept."""


class NumericalError(MangoError, ArithmeticError):
    """A computation gave non-finite numbers or did not converge (a generator's NaN output, a Cholesky
    factorization that fails at every jitter).  The message names what failed and what to check."""


class NumericalWarning(UserWarning):
    """A numerical step failed and mango fell back to a documented safe choice (the warning says which)."""


def close_matches(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(str(name), list(valid), n=n, cutoff=0.5)
