"""Selectivity and population-direction objectives (mango.runs.objective)."""

import numpy as np
import pytest

import mango
from mango.errors import ConfigError, ObjectiveError
from mango.runs.objective import Direction, Objective, Selectivity
from mango.oracles import CallableOracle
from mango.spaces import Box

R = np.array([[4.0, 1.0, 3.0],    # unit 0 strongest, others mean 2
              [1.0, 2.0, 2.0],    # unit 0 weakest
              [2.0, 2.0, 2.0]])   # no preference


def test_selectivity_difference_sign_and_scale():
    v = Selectivity(0)(R)
    np.testing.assert_allclose(v, [2.0, -1.0, 0.0])  # r - mean(others), in response units
    np.testing.assert_allclose(Selectivity(0, others=[1])(R), [3.0, -1.0, 0.0])
    np.testing.assert_allclose(Selectivity(2)(R), [0.5, 0.5, 0.0])


def test_selectivity_ratio_sign_and_scale():
    v = Selectivity(0, mode="ratio")(R)
    np.testing.assert_allclose(v, [2.0, 0.5, 1.0], rtol=1e-5)  # 1 = no preference
    with pytest.raises(ObjectiveError, match="negative"):
        Selectivity(0, mode="ratio")(R - 3)


def test_direction():
    np.testing.assert_allclose(Direction([1, -1, 0])(R), [3.0, -1.0, 0.0])
    np.testing.assert_allclose(Direction(np.ones(3) / 3)(R), R.mean(1))


def test_bad_specs_are_clear_errors():
    with pytest.raises(ConfigError, match="mode"):
        Selectivity(0, mode="log")
    with pytest.raises(ConfigError, match="without the target"):
        Selectivity(1, others=[1, 2])
    with pytest.raises(ConfigError, match="not all zero"):
        Direction([0, 0])
    oracle = CallableOracle(lambda x: np.asarray(x)[:, :2] ** 2, n_units=2)
    with pytest.raises(ConfigError, match="reads 2 unit"):
        Objective(oracle, unit=Selectivity(3), space=Box(2))
    with pytest.raises(ConfigError, match="one weight per unit"):
        Objective(oracle, unit=Direction([1, 1, 1]), space=Box(2))


def test_maximize_selectivity_finds_the_selective_point():
    # two units: u0 = x0, u1 = x1 + x0 / 2: the most selective point for u0 has x0 high and x1 low
    oracle = CallableOracle(lambda x: np.stack([x[:, 0], x[:, 1] + x[:, 0] / 2], 1), n_units=2)
    res = mango.maximize(oracle, space=Box(2), unit=Selectivity(0), optimizer="cma", budget=200, progress=False)
    assert res.best_point[0] > 0.8 and res.best_point[1] < -0.8
    assert res.responses.shape == (200, 2)  # every unit's response is recorded
    assert res.config["objective"]["unit"] == {"selectivity": 0, "mode": "difference", "others": None}
