"""Plain-data serialization: JSON with numpy arrays, never pickle.

Optimizer ``state_dict()``s, run configs and rig headers are made of dicts,
lists, strings, numbers, booleans, ``None`` and numpy arrays.  :func:`dumps`
turns such a structure into JSON text (arrays become ``{"__ndarray__": base64,
"dtype": ..., "shape": ...}``) and :func:`loads` turns it back, bit for bit.
Only numeric dtypes are accepted on the way in, so loading can never execute
code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

_ALLOWED_KINDS = set("biuf")  # bool, int, uint, float


def to_plain(obj: Any) -> Any:
    """Convert ``obj`` into JSON-compatible plain data (arrays base64-encoded)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot serialize array of dtype {obj.dtype}; only numeric arrays")
        arr = np.ascontiguousarray(obj)
        return {
            "__ndarray__": base64.b64encode(arr.tobytes()).decode("ascii"),
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
        }
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"state keys must be strings, got {k!r}")
            out[k] = to_plain(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot serialize object of type {type(obj).__name__}: {obj!r}")


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            dtype = np.dtype(obj["dtype"])
            if dtype.kind not in _ALLOWED_KINDS:
                raise ValueError(f"refusing to decode array of dtype {dtype}")
            raw = base64.b64decode(obj["__ndarray__"])
            return np.frombuffer(raw, dtype=dtype).reshape(obj["shape"]).copy()
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


def dumps(obj: Any, **kw) -> str:
    return json.dumps(to_plain(obj), allow_nan=True, **kw)


def loads(text: str | bytes) -> Any:
    return from_plain(json.loads(text))
