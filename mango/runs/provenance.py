"""Where a result came from: mango's version and git commit, the package versions, the thread counts.

:func:`provenance` is the one place that says it; ``result.json``
(:mod:`mango.runs.resultfile`), every benchmark record (:mod:`mango.bench`) and
their summaries carry its dict, and :func:`describe` puts it in one line.

Package versions are read with :mod:`importlib.metadata`, so nothing is
imported just to name its version.  The git commit is looked up once per
process (``git`` in a subprocess), and only when mango runs from a git
checkout: from an installed copy (site-packages) it is ``None``, and so is it
when ``git`` is missing or fails.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess

from .._version import __version__
from .threads import active

__all__ = ["provenance", "describe", "git_state", "PACKAGES", "OPTIONAL_PACKAGES", "THREAD_VARS"]

#: packages whose version is always named (``None`` when not installed)
PACKAGES = ("torch", "numpy", "scipy", "cma", "nevergrad", "teneva", "snntorch")
#: optional optimizer packages, named only when installed
OPTIONAL_PACKAGES = ("botorch", "protes", "ttopt")
#: environment variables that set the thread count of the numeric libraries
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: tracked paths whose changes do not make the tree dirty: the benchmarks' outputs, not code
_NOT_CODE = ":(exclude)benchmarks/results"
_GIT_TIMEOUT_S = 10


def _version(name: str) -> str | None:
    """The installed version of distribution ``name`` (``None`` when it is not installed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(root: str, *args: str) -> str | None:
    """The stripped output of ``git -C root ARGS`` (``None`` when git is missing or fails)."""
    try:
        out = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(root: str) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout whose top level is ``root``; ``(None, None)`` when ``root`` is
    not the top of a checkout (an installed mango inside some other repository's tree is not a checkout).

    ``dirty``: a tracked file outside ``benchmarks/results`` differs from the commit (untracked files and
    benchmark outputs do not count).  Cached: one lookup per process and root.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if not top or os.path.realpath(top) != os.path.realpath(root):
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", _NOT_CODE)
    return commit, None if status is None else bool(status)


def _checkout_root() -> str:
    """The directory above the ``mango`` package: a checkout's top level when mango runs from one."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # mango/runs/provenance.py


def _threads() -> dict:
    """torch's intra-op thread count and the thread variables of the environment (``None`` when unset); inside
    a run (a :func:`mango.runs.threads.use_threads` block) also the count mango chose and why (``chosen``)."""
    n = None
    try:
        import torch  # a core dependency, imported by every run anyway

        n = int(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    out = {"torch": n, **{v: os.environ.get(v) for v in THREAD_VARS}}
    choice = active()
    if choice is not None:
        out["chosen"] = choice.to_dict()
    return out


def provenance() -> dict:
    """What produced a result, as plain data.

    Returns
    -------
    dict
        ``mango`` (its version), ``git_commit`` (the full hash, or ``None`` when
        mango does not run from a git checkout or git is unavailable),
        ``git_dirty`` (tracked code differs from that commit; ``None`` without a
        commit), ``python``, ``packages`` (name -> version of torch, numpy,
        scipy, cma, nevergrad, teneva and snntorch, ``None`` if missing, and of
        botorch, protes and ttopt when installed) and ``threads`` (``torch``:
        ``torch.get_num_threads()``; ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``:
        the environment's values, ``None`` when unset; inside a run,
        ``chosen``: the count mango set, its source and why, see
        :mod:`mango.runs.threads`).
    """
    commit, dirty = git_state(_checkout_root())
    packages = {name: _version(name) for name in PACKAGES}
    packages.update({name: v for name in OPTIONAL_PACKAGES if (v := _version(name)) is not None})
    return {"mango": __version__, "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(), "packages": packages, "threads": _threads()}


def describe(prov: dict | None = None) -> str:
    """:func:`provenance` (or a dict it returned) in one line, e.g. ``mango 0.1.0 (git 7794ba1, dirty),
    python 3.11.7, torch 2.3.0, ...; threads: torch 1, OMP_NUM_THREADS=1``."""
    p = provenance() if prov is None else prov
    commit = p.get("git_commit")
    where = "not a git checkout" if not commit else f"git {commit[:7]}" + (", dirty" if p.get("git_dirty") else "")
    pkgs = ", ".join(f"{k} {v or 'not installed'}" for k, v in (p.get("packages") or {}).items())
    th = p.get("threads") or {}
    threads = ", ".join([f"torch {th.get('torch')}"] + [f"{v}={th[v]}" for v in THREAD_VARS if th.get(v)])
    return f"mango {p.get('mango')} ({where}), python {p.get('python')}, {pkgs}; threads: {threads}"


if __name__ == "__main__":  # pragma: no cover - ``python -m mango.runs.provenance``
    print(describe())
