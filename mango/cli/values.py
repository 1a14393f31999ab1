"""Values the command line takes as text, parsed in one place for every subcommand."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

__all__ = ["key_values"]


def key_values(items, flag: str, example: str, value: Callable[[str], object] = str) -> dict:
    """Repeated ``FLAG KEY=VALUE`` options as a dict; ``value`` turns each value's text into the value.
    Anything else is a one-line :class:`ConfigError` that names ``flag`` and shows ``example``."""
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r} (e.g. {flag} {example}).")
        out[key.strip()] = value(text)
    return out
