"""``mango track``: the same units over ordered training checkpoints (:mod:`.campaign`) and its report
(:mod:`.report`)."""

from .campaign import TrackResult, track

__all__ = ["track", "TrackResult"]
