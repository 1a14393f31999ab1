"""Unit lists as the command lines write them: ``3``, ``on``, ``0-9``, ``0,2,5``, ``0-3,7``, ``all``.

Shared by ``mango maximize --unit / --among`` and ``mango rig simulate --unit``.
:func:`parse_units` reads a list of indices (``--among``); :func:`parse_unit_spec`
reads ``--unit``, which may also be a name (a rig channel) or ``all``, and
:func:`is_population` tells whether it names more than one unit (a population
campaign: :func:`mango.maximize` with ``unit=[...]``).
"""

from __future__ import annotations

import re

from .errors import ConfigError

__all__ = ["parse_units", "parse_unit_spec", "is_population", "unit_spec_text"]


def parse_units(text: str, option: str = "--among") -> list[int]:
    """``"0-9"``, ``"0,2,5"`` or ``"0-3,7"`` as a list of unit indices (in the order given, no repeats)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out += list(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"{option} takes unit indices such as 0-9 or 0,2,5 or 0-3,7; got {text!r}.") from None
    if any(u < 0 for u in out) or len(set(out)) != len(out):
        raise ConfigError(f"{option} lists each unit index (>= 0) once; got {text!r}.")
    return out


_RANGE = re.compile(r"^\d+(\s*-\s*\d+)?$")


def _is_index(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def parse_unit_spec(text) -> int | str | list:
    """``--unit`` as given: an int (``"3"``), a name (``"on"``), ``"all"``, or a list (``"0-9"``, ``"0,2,5"``,
    ``"on,off"``: indices and names).

    A list of one unit is that unit (``"3-3"`` is ``3``), so one unit is always
    a single-unit campaign.  Ints are returned as they are (a stored ``--unit 3``
    stays ``3``).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, list):
        return text[0] if len(text) == 1 else list(text)
    s = str(text).strip()
    if not s:
        raise ConfigError("--unit is empty; give a unit index (3), a list (0-9, 0,2,5), a name, or 'all'.")
    if s == "all":
        return "all"
    if _is_index(s):
        return int(s)
    parts = [p.strip() for p in s.split(",")]
    if any(not p for p in parts):
        raise ConfigError(f"--unit {s!r} has an empty item; write e.g. 0,2,5 or 0-9.")
    out: list = []
    for p in parts:
        if _RANGE.match(p):  # an index or a range of indices
            out += parse_units(p, "--unit")
        else:
            out.append(p)  # a name (a rig channel)
    if len(set(map(str, out))) != len(out):
        dup = sorted({str(u) for u in out if list(map(str, out)).count(str(u)) > 1})
        raise ConfigError(f"--unit {s!r} names unit(s) {', '.join(dup)} more than once; list each unit once.")
    return out[0] if len(out) == 1 else out


def is_population(spec) -> bool:
    """Whether a parsed ``--unit`` names several units (a list, or ``"all"``): a population campaign."""
    return spec == "all" or (isinstance(spec, list) and len(spec) > 1)


def unit_spec_text(spec) -> str:
    """A parsed ``--unit`` back in words, runs of indices as ranges: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    if not isinstance(spec, list):
        return str(spec)
    parts: list[str] = []
    i = 0
    while i < len(spec):
        j = i
        if isinstance(spec[i], int):
            while j + 1 < len(spec) and isinstance(spec[j + 1], int) and spec[j + 1] == spec[j] + 1:
                j += 1
        parts.append(str(spec[i]) if j == i else f"{spec[i]}-{spec[j]}")
        i = j + 1
    return ",".join(parts)
