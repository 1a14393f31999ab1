"""mango: gradient-free, black-box activation maximization.

>>> import mango
>>> from mango.spaces import Box
>>> res = mango.maximize(lambda x: -(x ** 2).sum(1), Box(4, -1, 1), optimizer="cma", budget=200, progress=False)
>>> res.n_queries
200
"""

from ._version import __version__
from .errors import ConfigError, MangoError, ObjectiveError, SpaceError, UnknownNameError
from .runs.loop import Batch, Callback, maximize
from .runs.objective import Direction, Objective, Selectivity
from .runs.result import Result
from .spaces import Box, Codebook, Grid
from .runs.track.campaign import TrackResult, track
from .runs.atlas import AtlasResult, atlas

__all__ = [
    "__version__", "maximize", "track", "TrackResult", "atlas", "AtlasResult", "Result", "Batch", "Callback",
    "Objective", "Selectivity", "Direction",
    "Box", "Grid", "Codebook",
    "MangoError", "ConfigError", "SpaceError", "UnknownNameError", "ObjectiveError",
]
