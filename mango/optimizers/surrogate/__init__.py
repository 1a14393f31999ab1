"""Model-based optimizer ``surrogate``: a GP on the stimuli, a trust region, batch Thompson sampling.

BoTorch's split: :mod:`.gp` the model (fit / predict / posterior paths),
:mod:`.trust_region` where to look, :mod:`.features` what the model sees,
:mod:`.optimizer` the ask/tell shell with the acquisition optimizers.
"""

from .optimizer import SurrogateOptimizer

__all__ = ["SurrogateOptimizer"]
