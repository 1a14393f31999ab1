"""Output directories checked before any work is done (``mango maximize --out``, ``mango report --out``).

A run that can only fail at its end -- after its whole budget of queries --
because its output directory is a file, or cannot be created or written, loses
what it measured.  :func:`check_out_dir` finds that out first, without creating
anything, and says it in one line: the path, what is wrong and the fix.
"""

from __future__ import annotations

import os

from ..errors import ConfigError

__all__ = ["check_out_dir"]


def check_out_dir(path, flag: str = "--out", names=()) -> None:
    """Raise :class:`ConfigError` unless ``path`` is a directory that exists and is writable, or can be created.

    ``names``: files the run will write into it; one that exists as a directory is refused too.
    """
    path = os.fspath(path)
    if not path:
        raise ConfigError(f"{flag} is empty; give a directory for the results (e.g. {flag} results/).")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} is a file, not a directory; give a directory for the results "
                          f"(e.g. {flag} {path}-out/), or move the file away.")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path} is not writable; give a directory you can write to.")
        for name in names:
            if os.path.isdir(os.path.join(path, name)):
                raise ConfigError(f"{flag} {path} holds a directory {name!r} where the run writes a file of that "
                                  f"name; give another {flag}, or move it away.")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the closest existing ancestor is where the directory would be created
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path} cannot be created: {parent} is a file, not a directory; give another "
                          f"{flag}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} cannot be created: {parent} is not writable; give a directory you can "
                          "write to.")
