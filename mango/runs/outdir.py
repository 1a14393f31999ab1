"""Output directories checked before any work is done (``mango maximize --out``, ``mango report --out``), and
the manifests of studies that continue in their directory (``mango track``, ``mango atlas``).

A run that can only fail at its end -- after its whole budget of queries --
because its output directory is a file, or cannot be created or written, loses
what it measured.  :func:`check_out_dir` finds that out first, without creating
anything, and says it in one line: the path, what is wrong and the fix.

A study records its settings in a JSON manifest in its directory
(:func:`write_manifest`); rerunning it reads them back (:func:`read_manifest`)
and refuses other settings rather than mixing them in (:func:`settings_diffs`).
"""

from __future__ import annotations

import json
import os

from ..errors import ConfigError

__all__ = ["check_out_dir", "read_manifest", "write_manifest", "settings_diffs"]


def read_manifest(out, name: str, fmt: str, what: str) -> dict | None:
    """The manifest ``out/name`` of format ``fmt`` (None when there is none); ``what`` names the study."""
    path = os.path.join(os.fspath(out), name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path!r} is not a readable {what} manifest ({exc}); remove it or use another "
                          "directory.") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ConfigError(f"{path!r} is not a mango {what} manifest (format "
                          f"{doc.get('format') if isinstance(doc, dict) else None!r}).")
    return doc


def write_manifest(out, name: str, doc: dict) -> None:
    """Write ``out/name`` atomically (a reader sees the old manifest or the new one, never half)."""
    path = os.path.join(os.fspath(out), name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    os.replace(tmp, path)


def settings_diffs(old: dict | None, new: dict) -> list[str]:
    """``"key: recorded A, now B"`` for every setting of ``new["settings"]`` that differs from ``old``'s."""
    if old is None:
        return []
    return [f"{k}: recorded {old['settings'].get(k)!r}, now {v!r}" for k, v in new["settings"].items()
            if old["settings"].get(k) != v]


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
