"""Spaces, objectives and values in words, for result.json, figures and the HTML report.

Everything here reads the plain-data descriptions mango already records
(``Space.to_dict()``, ``Objective.describe()``, a run's config), so a report
made from a run store alone says the same as the run that wrote it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["space_text", "objective_text", "value_what", "value_units", "value_label", "reference_of", "readout_text"]

_READOUT = {
    "membrane": "mean membrane potential",
    "rate": "spike rate (spikes per time step)",
    "count": "spike count",
}


def readout_text(readout: str | None) -> str | None:
    """A spiking readout's name in words (``"rate"`` -> ``"spike rate (spikes per time step)"``)."""
    return _READOUT.get(readout, readout)


def _rng(a) -> str:
    a = np.asarray(a, dtype=float)
    return f"{a.min():.3g}" if a.size and np.all(a == a.flat[0]) else f"{a.min():.3g}..{a.max():.3g}"


def space_text(space: dict | None) -> str:
    """``{"kind": "box", "dim": 784, ...}`` -> "continuous box, 784 dimensions, each in [-4.57..0.47, ...]"."""
    if not isinstance(space, dict):
        return "–" if space is None else str(space)
    kind = space.get("kind")
    if kind == "box":
        lo, hi = np.asarray(space["low"], float), np.asarray(space["high"], float)
        same = lo.size and np.all(lo == lo[0]) and np.all(hi == hi[0])
        bounds = (f"each in [{lo[0]:.3g}, {hi[0]:.3g}]" if same else
                  f"per-dimension bounds: low {_rng(lo)}, high {_rng(hi)}")
        return f"continuous box of {space['dim']} dimensions, {bounds}"
    if kind == "grid":
        lv = np.asarray(space.get("levels", []))
        box = space.get("box") or {}
        levels = f"{int(lv[0])} levels" if lv.size and np.all(lv == lv[0]) else f"{_rng(lv)} levels"
        return f"grid of {box.get('dim', lv.size)} dimensions x {levels} (a box discretized)"
    if kind == "codebook":
        pos = space.get("positions")
        n = int(np.prod(pos)) if pos else 0
        shape = "x".join(map(str, pos)) if pos and len(pos) > 1 else str(n)
        return f"codebook: {shape} positions, each one of {space.get('codes')} unordered codes"
    return str(space)


def _oracle_core(oracle: dict) -> dict:
    """The innermost oracle description (inside Noisy / Repeat wrappers)."""
    while isinstance(oracle, dict) and isinstance(oracle.get("oracle"), dict):
        oracle = oracle["oracle"]
    return oracle if isinstance(oracle, dict) else {}


def _wrappers(oracle) -> list[str]:
    out = []
    while isinstance(oracle, dict) and isinstance(oracle.get("oracle"), dict):
        if oracle.get("class") == "Noisy":
            out.append(f"{oracle.get('kind')} noise")
        elif oracle.get("class") == "Repeat":
            out.append(f"{oracle.get('reduce', 'mean')} of {oracle.get('times')} repeats")
        oracle = oracle["oracle"]
    return out


def value_what(objective: Any) -> str:
    """What one value is, e.g. "mean membrane potential over 20 time steps of unit 3 of layer lif3 (SNNDigits)"."""
    if not isinstance(objective, dict):
        return f"the value returned by {objective}" if objective else "the objective's value"
    o = objective.get("oracle")
    core = _oracle_core(o)
    cls = core.get("class")
    units = core.get("unit") or core.get("units") or []
    unit = units[0] if isinstance(units, list) and len(units) == 1 else units
    if cls == "SNNOracle":
        readout = readout_text(core.get("readout"))
        text = (f"{readout} over {core.get('num_steps')} time steps of unit {unit} of spiking layer "
                f"{core.get('layer')} ({core.get('model')})")
    elif cls == "TorchOracle":
        spatial = core.get("spatial")
        text = (f"activation of unit {unit} of layer {core.get('layer')} ({core.get('model')})"
                + (" averaged over space" if spatial == "mean" else ""))
    elif cls == "RigOracle":
        text = f"response of rig unit {unit} ({core.get('address')})"
    elif cls:
        text = f"response of {', '.join(map(str, core.get('units') or [])) or 'the unit'} ({cls})"
    else:
        text = "the objective's value"
    sel = objective.get("unit")
    targets = objective.get("units")
    if isinstance(targets, list):
        text = (f"population campaign over columns {targets}: each column maximized on its own; a value is the "
                "mean of those columns of: " + text)
    elif sel == "mean":
        text = "population mean of " + text
    elif isinstance(sel, dict) and "selectivity" in sel:
        how = "minus" if sel.get("mode") == "difference" else "divided by"
        text = (f"selectivity of column {sel['selectivity']}: its response {how} the mean of the other columns "
                f"{sel.get('others') or ''}, of: " + text).replace("  ", " ")
    elif isinstance(sel, dict) and "direction" in sel:
        text = f"weighted sum (weights {sel['direction']}) of the columns of: " + text
    elif isinstance(sel, int) and isinstance(units, list) and len(units) > 1:
        text = f"column {sel} of: " + text
    w = _wrappers(o)
    return text + (f", {', '.join(w)}" if w else "")


def value_units(objective: Any) -> str:
    """The unit of measure of a value, as far as mango knows it."""
    core = _oracle_core(objective.get("oracle")) if isinstance(objective, dict) else {}
    cls = core.get("class")
    if cls == "SNNOracle":
        return {"membrane": "membrane potential in the model's units (the spike threshold of snntorch's "
                            "neurons is 1.0 by default)",
                "rate": "spikes per time step (0..1)", "count": "spikes"}.get(core.get("readout"), "model units")
    if cls == "TorchOracle":
        return "the layer's activation units (arbitrary)"
    if cls == "RigOracle":
        return "whatever the rig reports (e.g. spikes per presentation)"
    return "the objective's own units"


def value_label(objective: Any, short: bool = True) -> str:
    """A y-axis label: "lif3 unit 3: mean membrane potential"."""
    core = _oracle_core(objective.get("oracle")) if isinstance(objective, dict) else {}
    cls = core.get("class")
    units = core.get("unit") or []
    unit = units[0] if isinstance(units, list) and len(units) == 1 else units
    if cls == "SNNOracle":
        return f"{core.get('layer')} unit {unit}: {readout_text(core.get('readout'))}"
    if cls == "TorchOracle":
        return f"{core.get('layer')} unit {unit}: activation"
    if cls == "RigOracle":
        return f"rig unit {unit}: response"
    return "objective" if not objective else (str(objective) if not isinstance(objective, dict) else "objective")


def objective_text(objective: Any, generator: Any = None) -> str:
    """The whole objective in one sentence (value, and the generator that makes the stimuli)."""
    if not isinstance(objective, dict):
        return value_what(objective)
    text = value_what(objective)
    gen = objective.get("generator") if generator is None else generator
    if isinstance(gen, dict):
        name = gen.get("zoo_name") or gen.get("kind") or gen.get("name") or gen.get("type")
        view = f", {gen['view']} view" if gen.get("view") else ""
        text += f"; stimuli from {gen.get('type')} ({name}{view})"
    return text


def reference_of(config: dict | None) -> dict | None:
    """The natural-image reference recorded in a run's config (``metadata.reference``), if any."""
    ref = ((config or {}).get("metadata") or {}).get("reference")
    return ref if isinstance(ref, dict) and isinstance(ref.get("max"), (int, float)) else None
