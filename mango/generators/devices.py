"""Torch device resolution, shared by generators and oracles."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def default_device(device=None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"invalid device {device!r}: use e.g. 'cpu', 'cuda' or 'cuda:0'.") from e
