"""A plain genetic algorithm of the kind XDream used on neurons in visual cortex.

Ponce et al. (2019, *Cell*) evolved images for macaque IT neurons with a
generator and a simple GA: the best images are conserved (elitism), parents
are drawn with probabilities that grow with their z-scored fitness
(a softmax with a *selectivity* temperature), children take each gene from
one parent or the other (*heritability*), and genes mutate at a fixed rate.
This is that algorithm, with mango's seeds and budget.  Conserved images are
not shown again, so every query is a new child.

On a Box, mutation adds Gaussian noise scaled to the box width; on a Codebook
a mutated position takes a new code uniformly at random (codes are
categories).  A Grid is searched through its Box.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .base import GenerationOptimizer


class GeneticAlgorithm(GenerationOptimizer):
    """XDream-style GA.

    Parameters
    ----------
    popsize : population size (first generation; later generations add
        ``popsize - n_elite`` children).
    n_elite : best individuals conserved unchanged into the next generation.
    selectivity : softmax temperature on z-scored fitness for parent choice.
    heritability : probability a gene comes from the first parent.
    mutation_rate : probability a gene mutates; default 0.25 on a Box,
        ``max(1/dim, 0.05)`` on a Codebook.
    mutation_size : std of Gaussian mutation as a fraction of the box width.
    """

    name = "ga"
    native = ("box", "codebook")
    defaults = {"popsize": 20, "n_elite": 4, "selectivity": 2.0, "heritability": 0.5,
                "mutation_rate": None, "mutation_size": 0.15}

    def _setup_generations(self) -> None:
        p = self.params
        for key in ("popsize", "n_elite"):
            if isinstance(p[key], bool) or not isinstance(p[key], (int, np.integer)):
                raise ConfigError(f"ga: {key} must be an integer, got {p[key]!r}.")
        if int(p["popsize"]) < 2 or not 0 <= int(p["n_elite"]) < int(p["popsize"]):
            raise ConfigError(f"ga needs popsize >= 2 and 0 <= n_elite < popsize, got popsize={p['popsize']}, "
                              f"n_elite={p['n_elite']}.")
        for key, low, high in (("selectivity", 0.0, math.inf), ("heritability", 0.0, 1.0),
                               ("mutation_rate", 0.0, 1.0), ("mutation_size", 0.0, math.inf)):
            v = p[key]
            if v is None and key == "mutation_rate":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not low <= v <= high:
                where = f"in [{low:g}, {high:g}]" if high < math.inf else f">= {low:g}"
                raise ConfigError(f"ga: {key} must be a number {where}, got {v!r} (default "
                                  f"{self.defaults[key]!r}).")
        self._pop = None
        self._fit = None
        rate = p["mutation_rate"]
        if rate is None:
            rate = 0.25 if self.space.kind == "box" else max(1.0 / self.space.dim, 0.05)
        self._rate = float(rate)

    @property
    def preferred_batch_size(self) -> int:
        return int(self.params["popsize"]) - int(self.params["n_elite"])

    def _ask_generation(self):
        popsize = int(self.params["popsize"])
        if self._pop is None or len(self._pop) < 2:
            return self.space.sample(popsize, self.rng), None
        n_child = popsize - int(self.params["n_elite"])
        fit = self._fit
        z = (fit - fit.mean()) / (fit.std() + 1e-12)
        w = np.exp(self.params["selectivity"] * (z - z.max()))
        prob = w / w.sum()
        a = self.rng.choice(len(fit), size=n_child, p=prob)
        b = self.rng.choice(len(fit), size=n_child, p=prob)
        take_a = self.rng.random((n_child, self.space.dim)) < self.params["heritability"]
        child = np.where(take_a, self._pop[a], self._pop[b])
        mutate = self.rng.random(child.shape) < self._rate
        if self.space.kind == "box":
            width = self.space.high - self.space.low
            noise = self.rng.standard_normal(child.shape) * self.params["mutation_size"] * width
            child = self.space.clip(child + mutate * noise)
        else:
            new_codes = (self.rng.random(child.shape) * self.space.sizes).astype(np.int64)
            child = np.where(mutate, new_codes, child)
        return child, None

    def _merge(self, points, values) -> None:
        if self._pop is None:
            self._pop, self._fit = np.array(points), np.array(values, dtype=float)
            return
        k = int(self.params["n_elite"])
        order = np.argsort(-self._fit, kind="stable")[:k]
        self._pop = np.concatenate([self._pop[order], points])
        self._fit = np.concatenate([self._fit[order], values])

    def _tell_generation(self, points, values, token) -> None:
        self._merge(points, values)

    def _tell_extra(self, points, values) -> None:
        """Warm start / foreign points join the population, replacing the worst."""
        if self._pop is None:
            self._pop, self._fit = np.array(points), np.array(values, dtype=float)
            return
        pop = np.concatenate([self._pop, points])
        fit = np.concatenate([self._fit, values])
        keep = np.argsort(-fit, kind="stable")[: max(len(self._pop), int(self.params["popsize"]))]
        self._pop, self._fit = pop[keep], fit[keep]
