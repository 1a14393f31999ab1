"""``inception``: one model of every unit of a population campaign (:mod:`.optimizer`: a CNN ensemble, or with
``backbone=`` :mod:`.readout`'s linear readout of a pretrained network's frozen features), stimuli synthesized
per unit through the generator."""

from .optimizer import InceptionOptimizer

__all__ = ["InceptionOptimizer"]
