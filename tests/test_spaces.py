import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mango.errors import SpaceError
from mango.spaces import Box, Codebook, Grid, space_from_dict


def test_box_bounds_and_sampling():
    box = Box(3, -1.0, [1.0, 2.0, 3.0])
    x = box.sample(1000, seed=0)
    assert x.shape == (1000, 3)
    assert np.all(x >= box.low) and np.all(x <= box.high)
    assert np.array_equal(x, box.sample(1000, seed=0))
    assert not np.array_equal(x, box.sample(1000, seed=1))
    assert box.validate(x[0]).shape == (1, 3)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 4)), "expects a batch of shape"),
    (np.full((1, 3), 5.0), "outside the box at dimension 0"),
    (np.array([[0.0, np.nan, 0.0]]), "NaN"),
])
def test_box_validation_errors(bad, match):
    with pytest.raises(SpaceError, match=match):
        Box(3, -1, 1).validate(bad)


def test_box_definition_errors():
    with pytest.raises(SpaceError, match="positive integer"):
        Box(0)
    with pytest.raises(SpaceError, match="low < high"):
        Box(2, 1, -1)
    with pytest.raises(SpaceError, match="length dim"):
        Box(2, [0, 0, 0], 1)


def test_grid_index_value_roundtrip():
    grid = Grid(Box(4, -4, 4), 64)
    idx = grid.sample(100, seed=3)
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() <= 63
    assert np.array_equal(grid.index(grid.values(idx)), idx)
    assert np.allclose(grid.values([[0, 63, 0, 63]]), [[-4, 4, -4, 4]])
    # nearest level, and clipping outside the box
    assert grid.index([[-100.0, 100.0, -0.01, 4 / 63 * 0.9]]).tolist() == [[0, 63, 31, 32]]


def test_discrete_validation_errors():
    cb = Codebook((8, 8), 512)
    assert cb.dim == 64 and cb.shape == (8, 8)
    with pytest.raises(SpaceError, match="out of range at dimension 2"):
        cb.validate(np.array([[0, 0, 512] + [0] * 61]))
    with pytest.raises(SpaceError, match="integer indices"):
        cb.validate(np.full((1, 64), 0.5))
    with pytest.raises(SpaceError, match="at least 2 codes"):
        Codebook(4, 1)
    with pytest.raises(SpaceError, match="levels"):
        Grid(Box(2), 1)


@pytest.mark.parametrize("space", [Box(3, -1, [1, 2, 3]), Grid(Box(2, 0, 1), [4, 8]), Codebook((7, 7), 128)])
def test_to_dict_roundtrip(space):
    assert space_from_dict(space.to_dict()) == space


@settings(max_examples=50, deadline=None)
@given(dim=st.integers(1, 20), levels=st.integers(2, 600), n=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_grid_samples_always_valid(dim, levels, n, seed):
    g = Grid(Box(dim, -2.5, 7.0), levels)
    pts = g.sample(n, seed)
    g.validate(pts)
    assert np.all(g.box.contains(g.values(pts)) for _ in [0])
