"""An atlas of a whole network: every unit of one or more layers, sharded over a cluster, browsable as a site.

* :mod:`~mango.runs.atlas.plan` -- the units cut into shards (population campaigns), the manifest;
* :mod:`~mango.runs.atlas.shard` -- what a worker runs: one shard, one layer's natural-image reference;
* :mod:`~mango.runs.atlas.run` -- :func:`atlas`: the tasks on Dask or a process pool, progress, resume;
* :mod:`~mango.runs.atlas.summary` -- the atlas directory read back, per layer and checkpoint;
* :mod:`~mango.runs.atlas.site` -- the static HTML site.

The command line is ``mango atlas`` (:mod:`mango.cli.atlas`).
"""

from .plan import Shard, auto_shard_sizes, plan_shards
from .run import AtlasResult, atlas

__all__ = ["atlas", "AtlasResult", "Shard", "plan_shards", "auto_shard_sizes"]
