"""mango.optimizers.pending: asked points matched to told ones by id, in ask order for repeats."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mango.optimizers as mo
from mango.runs import serial
from mango.errors import ConfigError
from mango.optimizers.pending import Pending
from mango.spaces import Box, Codebook


def test_ids_are_consecutive_and_handles_come_back():
    p = Pending(2)
    assert p.add([[0.1, 0.2], [0.3, 0.4]], ["a", "b"]).tolist() == [0, 1]
    assert p.add([[0.5, 0.6]]).tolist() == [2]
    assert len(p) == 3 and [0.3, 0.4] in p and [9.0, 9.0] not in p
    got = p.pop([[0.5, 0.6], [0.1, 0.2]])  # out of order
    assert [(a.id, a.handle) for a in got] == [(2, None), (0, "a")]
    assert p.ids().tolist() == [1] and p.points().tolist() == [[0.3, 0.4]]


def test_repeated_points_are_matched_in_ask_order():
    p = Pending(3, np.int64)
    ids = p.add([[1, 2, 3], [4, 5, 6], [1, 2, 3], [1, 2, 3]], ["x", "y", "z", "w"])
    assert ids.tolist() == [0, 1, 2, 3]
    got = p.pop([[1, 2, 3], [1, 2, 3]])  # two copies in one call: oldest asks first
    assert [a.id for a in got] == [0, 2]
    assert [a.handle for a in p.pop([[1, 2, 3]])] == ["w"]
    assert p.ids().tolist() == [1]


def test_negative_zero_and_dtype_match_by_value():
    p = Pending(2, float)
    p.add(np.array([[-0.0, 1.0]]))
    assert [a.id for a in p.pop(np.array([[0.0, 1]], dtype=np.int64))] == [0]


def test_unknown_point_is_an_error_and_takes_nothing():
    p = Pending(2)
    p.add([[0.0, 1.0], [2.0, 3.0]])
    with pytest.raises(ConfigError, match="never asked"):
        p.pop([[0.0, 1.0], [5.0, 5.0]])
    assert len(p) == 2  # all or nothing
    got = p.pop([[5.0, 5.0], [2.0, 3.0]], unasked="none")
    assert got[0] is None and got[1].id == 1


def test_told_twice_is_an_error_that_says_so():
    p = Pending(1)
    p.add([[0.5]])
    p.pop([[0.5]])
    with pytest.raises(ConfigError, match="told already"):
        p.pop([[0.5]])
    p.add([[0.5]])
    with pytest.raises(ConfigError, match="told already"):
        p.pop([[0.5], [0.5]])  # asked once more, told twice in one call
    assert len(p) == 1


def test_bad_shapes_and_arguments_are_refused():
    p = Pending(2)
    with pytest.raises(ConfigError, match=r"expected \(n, 2\)"):
        p.add([[1.0, 2.0, 3.0]])
    with pytest.raises(ConfigError, match="one per point"):
        p.add([[1.0, 2.0]], handles=[1, 2])
    with pytest.raises(ConfigError, match="unasked"):
        p.pop([[1.0, 2.0]], unasked="skip")
    with pytest.raises(ConfigError, match="dim >= 1"):
        Pending(0)


def test_state_round_trips_through_json():
    p = Pending(2, np.int64)
    p.add([[1, 1], [2, 2], [1, 1]], [10, 20, 30])
    p.pop([[2, 2]])
    q = Pending(2, np.int64)
    q.load_state_dict(serial.loads(serial.dumps(p.state_dict())))
    assert q.ids().tolist() == [0, 2] and q.points().tolist() == [[1, 1], [1, 1]]
    assert [(a.id, a.handle) for a in q.pop([[1, 1]])] == [(0, 10)]
    assert q.add([[3, 3]]).tolist() == [3]  # ids continue
    with pytest.raises(ConfigError, match="repeated ids"):
        q.load_state_dict({"ids": [1, 1], "points": [[0, 0], [0, 0]], "handles": [None, None], "next_id": 2})


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dim=st.integers(1, 3), n_distinct=st.integers(1, 4), n=st.integers(1, 40))
def test_any_tell_order_maps_back_to_the_asked_ids(data, dim, n_distinct, n):
    """Random asks of few distinct points (many repeats), told in random batches and order: every id comes
    back exactly once, to a point equal to the one asked, and repeats of a point come back in ask order."""
    distinct = np.arange(n_distinct * dim, dtype=float).reshape(n_distinct, dim) / 7
    rows = data.draw(st.lists(st.integers(0, n_distinct - 1), min_size=n, max_size=n))
    p = Pending(dim)
    asked = {}
    pos = 0
    while pos < n:  # asked in random batches
        k = data.draw(st.integers(1, n - pos))
        ids = p.add(distinct[rows[pos:pos + k]], handles=rows[pos:pos + k])
        asked.update(zip(ids.tolist(), rows[pos:pos + k]))
        pos += k
    order = data.draw(st.permutations(range(n)))
    told_rows = [rows[i] for i in order]
    got = []
    pos = 0
    while pos < n:  # told in other random batches
        k = data.draw(st.integers(1, n - pos))
        got += p.pop(distinct[told_rows[pos:pos + k]])
        pos += k
    assert len(p) == 0 and sorted(a.id for a in got) == list(range(n))
    for r, a in zip(told_rows, got):
        assert asked[a.id] == r == a.handle
    for r in set(rows):
        ids_r = [a.id for a, t in zip(got, told_rows) if t == r]
        assert ids_r == sorted(ids_r)  # repeats: first asked, first told


@pytest.mark.parametrize("name,space", [("cma", Box(3, -1, 1)), ("ga", Codebook(3, 4)),
                                        ("ga", Box(2, -1, 1).grid(3))])
def test_optimizers_accept_a_shuffled_tell_and_unasked_points(name, space):
    """Told out of order, with a point never asked: same continuation as told in order plus that point
    (generation-based optimizers, also through the Grid adapter; nevergrad's own methods depend on tell order)."""
    f = lambda x: -np.sum((np.asarray(x, float) - 0.3) ** 2, axis=1)  # noqa: E731
    a, b = mo.make(name, space, seed=5), mo.make(name, space, seed=5)
    extra = space.sample(1, 0)
    for _ in range(4):
        pa, pb = a.ask(6), b.ask(6)
        assert np.array_equal(pa, pb)
        a.tell(np.concatenate([pa, extra]), f(np.concatenate([pa, extra])))
        order = np.random.default_rng(0).permutation(6)
        b.tell(np.concatenate([pb[order], extra]), f(np.concatenate([pb[order], extra])))
    assert np.array_equal(a.ask(6), b.ask(6))
