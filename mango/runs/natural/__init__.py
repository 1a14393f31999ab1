"""Natural images: the yardstick a unit's best is measured against (:mod:`.reference`) and the images a run may
start from (:mod:`.screening`, warm start)."""
