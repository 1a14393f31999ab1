"""Unit lists as the command lines write them: ``3``, ``on``, ``0-9``, ``0,2,5``, ``0-3,7``, ``all``.

Shared by ``mango maximize --unit / --among`` and ``mango rig simulate --unit``.
:func:`parse_units` reads a list of indices (``--among``); :func:`parse_unit_spec`
reads ``--unit``, which may also be a name (a rig channel) or ``all``, and
:func:`is_population` tells whether it names more than one unit (a population
campaign: :func:`mango.maximize` with ``unit=[...]``).  The rest resolves a
``mango maximize`` namespace's ``--unit`` against what it reads: a model's
layer (:func:`model_units`) or a rig's channels (:func:`rig_channels`).
"""

from __future__ import annotations

import re

from ..errors import ConfigError

__all__ = ["parse_units", "parse_unit_spec", "is_population", "unit_spec_text", "check_population_options",
           "model_units", "rig_channels", "population_columns", "population_names"]


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


# -- `mango maximize --unit`, resolved against a model's layer or a rig's channels ------------------------

def model_units(args, spec, model, input_shape, kw) -> list[int]:
    """A population campaign's unit indices in a model's layer (``all``: every one)."""
    names = [] if spec == "all" else [u for u in spec if isinstance(u, str)]
    if names:
        raise ConfigError(f"--unit {unit_spec_text(spec)}: {names[0]!r} is not a unit index; a model's units are "
                          "indices (e.g. --unit 0-9 or --unit 0,2,5); names are for the channels of a rig.")
    from ..zoo.build import layer_units

    every = layer_units(model, args.layer, input_shape=input_shape, device=args.device, **kw)
    if spec == "all":
        return every
    bad = [u for u in spec if not 0 <= u < len(every)]
    if bad:
        raise ConfigError(f"--unit {unit_spec_text(spec)} names unit(s) {unit_spec_text(bad)}, but layer "
                          f"{args.layer!r} of {args.model} has {len(every)} unit(s): valid indices are "
                          f"0..{len(every) - 1}. Fix the list (e.g. --unit 0-{len(every) - 1}) or use --unit all.")
    return list(spec)


def check_population_options(args) -> None:
    """Clear errors for options that make no sense with several ``--unit`` (a population campaign)."""
    spec = unit_spec_text(args.unit)
    if args.objective:
        raise ConfigError(f"--unit {spec} names units of a neuron model or rig; --objective {args.objective} is a "
                          "test function with one value. Drop --unit, or drop --objective.")
    if args.selectivity or args.direction:
        opt = "--selectivity" if args.selectivity else "--direction"
        single = ("give one --unit and the compared units with --among (e.g. --unit 3 --among 0-9 --selectivity "
                  "difference)" if args.selectivity else "list the weighted units with --among (e.g. --among 0-2 "
                  "--direction 1,-1,0.5) and drop --unit")
        raise ConfigError(f"{opt} maximizes one value computed from several units, but --unit {spec} asks for a "
                          f"population campaign (each unit maximized on its own). For {opt[2:]}, {single}; for a "
                          f"population campaign, drop {opt}.")
    if args.among:
        raise ConfigError(f"--among lists the units a single-unit campaign records besides --unit; a population "
                          f"campaign (--unit {spec}) records and maximizes each of its units already. Drop --among.")


def population_columns(args, oracle, spec) -> list | str:
    """The ``unit=`` of a population campaign: a model's oracle reads exactly the listed units (columns
    0..K-1); a rig's columns are its channels (indices or names, checked against what it returns)."""
    if not args.oracle:
        return list(range(oracle.n_units))
    return "all" if spec == "all" else rig_channels(args, oracle, spec)


def rig_channels(args, oracle, units: list) -> list:
    """``units`` (channel indices or names) checked against the rig's channels."""
    names = list(oracle.unit_names)
    n = len(names)
    listed = f"{n} channel(s): " + ", ".join(f"{j}={c}" for j, c in enumerate(names[:12])) + (
        ", ..." if n > 12 else "")
    for u in units:
        if isinstance(u, str) and u not in names:
            raise ConfigError(f"--unit {unit_spec_text(args.unit)}: the rig at {args.oracle} has no channel {u!r}; "
                              f"it returns {listed}. Name one of them, give indices 0..{n - 1}, or --unit all.")
        if isinstance(u, int) and not 0 <= u < n:
            raise ConfigError(f"--unit {unit_spec_text(args.unit)} names channel {u}, but the rig at {args.oracle} "
                              f"returns {listed}; valid indices are 0..{n - 1}. Fix the list (e.g. --unit "
                              f"0-{n - 1}) or use --unit all.")
    return list(units)


def population_names(args, oracle) -> list[str] | None:
    """A population campaign's unit names (None for one unit)."""
    spec = parse_unit_spec(args.unit)
    if not is_population(spec):
        return None
    names = list(oracle.unit_names)
    if not args.oracle or spec == "all":
        return names  # a model's oracle reads exactly the listed units
    return [u if isinstance(u, str) else names[u] for u in spec]
