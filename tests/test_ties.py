"""Quantized, tie-heavy responses (spike counts): flat regions and steps must not stall ``surrogate``."""

import warnings

import numpy as np
import pytest

import mango
from mango.optimizers import make
from mango.spaces import Box

DIM, RADIUS, LEVELS = 20, 1.4, 8
OPTIMUM = np.random.default_rng(7).uniform(0.2, 0.8, DIM)


def step(x):
    """A step function of a known optimum: ``LEVELS`` quantized levels of a cone of radius ``RADIUS``; zero on
    ~92 % of the unit cube (a neuron silent to most stimuli, counting spikes to the rest)."""
    r = np.linalg.norm(np.atleast_2d(x) - OPTIMUM, axis=1)
    return np.floor(LEVELS * np.clip(1 - r / RADIUS, 0, None)) / LEVELS


def _best(optimizer, seed, budget=150):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mango.maximize(step, space=Box(DIM, 0, 1), optimizer=optimizer, budget=budget, batch_size=10,
                             seed=seed, progress=False, threads=1)
    return float(res.best_value)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_step_function_is_climbed_past_where_random_search_stalls(seed):
    rnd = _best("random", seed)
    sur = _best("surrogate", seed)
    assert rnd <= 0.375  # random search finds the cone's rim, then stalls
    assert sur >= 0.625 and sur > rnd + 0.25, (sur, rnd)


def test_a_flat_design_is_neither_success_nor_failure_and_the_design_goes_on():
    space = Box(DIM, 0, 1)
    opt = make("surrogate", space, seed=0, batch_size=10)
    lengths = []
    for _ in range(6):  # all silent: a zero response everywhere
        x = opt.ask(10)
        opt.tell(x, np.zeros(10))
        lengths.append(opt.tr.length)
    assert lengths == [opt.tr.length_init] * 6  # the region neither shrank nor restarted
    x = opt.ask(10)  # still the design: uniform over the whole space, not perturbations of one silent point
    assert np.abs(x - x.mean(0)).max() > 0.4 and opt.diagnostics()["model_fallbacks"] == 0
    opt.tell(x, np.r_[np.zeros(9), 1.0])  # a first spike: the model takes over around it
    y = opt.ask(10)
    assert np.median(np.linalg.norm(y - x[-1], axis=1)) < np.median(np.linalg.norm(x - x[-1], axis=1))
