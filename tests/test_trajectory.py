"""Trajectory tests: the first 50 proposals of the main optimizers, under a fixed seed, are pinned by a hash.

A change to an optimizer, the loop or the optimizer base that changes what
they propose fails here.  If the change is deliberate, update the hash and
give the reason in the commit.  To print the hashes (the pinned ones, and any
optimizer named on the command line, with ``key=value`` parameters):

    python tests/test_trajectory.py [surrogate batch_size=10]
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

from mango.oracles import testfunctions

sys.path.insert(0, os.path.dirname(__file__))
from _trajectory import BEHAVIOUR_CHANGED, proposals_hash, trajectory  # noqa: E402

N = 50
# small problems without a generator, which every pinned optimizer searches natively
PROBLEMS = {"rastrigin": lambda: testfunctions.get("rastrigin", 5),  # a 5-d Box
            "codebook": lambda: testfunctions.get("codebook", 6)}  # 6 positions of 16 codes

# One entry per pinned optimizer: name, make() parameters, problem, sha256 of its first N proposals -- or the
# hashes it has on each CPU family where torch's float kernels round differently (the GP fit of `surrogate`
# amplifies a last-bit difference past the hash's 10 significant digits): the same code, the same packages.
TRAJECTORIES = [
    # the default optimizer: 10 random points, then 4 model-based batches (rank-based data, one standardization)
    pytest.param("surrogate", {"batch_size": 10}, "rastrigin",
                 ("1cb590d7e8640845fb7c14b80f17b3279f54cd35f8af46022b09531fbf357aa8",  # AMD EPYC
                  "ac3059bc9f5add7a227cb68ed867a435f6d2c65af86abde234da92478dfd06ee"),  # Intel Xeon
                 id="surrogate"),
    pytest.param("cma", {}, "rastrigin",
                 "bad0ce399bdf3ae80af182a14c96b996bf7119d080c1c47a9a4700a420102871", id="cma"),
    pytest.param("ga", {}, "rastrigin",
                 "2ae813397f224dd7250021c53358d6ca53d697d921b8076039a002b62886f6f8", id="ga"),
    pytest.param("ga", {}, "codebook",
                 "f82797540962861dd6dbaaf899b1956dc57fc026ebfdc61857d9bf19343e82bf", id="ga-codebook"),
]


def trajectory_hash(name: str, params: dict, problem: str) -> str:
    f, space = PROBLEMS[problem]()
    return proposals_hash(trajectory(name, space, f, n=N, batch=10, seed=0, **params))


@pytest.mark.parametrize("name,params,problem,expected", TRAJECTORIES)
def test_first_proposals_are_pinned(name, params, problem, expected):
    first = trajectory_hash(name, params, problem)
    assert trajectory_hash(name, params, problem) == first, f"{name} on {problem} is not deterministic under a seed"
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    assert first in expected, f"{BEHAVIOUR_CHANGED} ({name} on {problem}: now {first})"


def test_proposals_hash_rounds_platform_noise_away():
    import numpy as np

    x = np.array([[0.1 + 0.2, -1e-300, 123456.789], [0.0, -0.0, 2.0]])
    assert proposals_hash(x) == proposals_hash(x * (1 + 1e-14))  # below 10 significant digits
    assert proposals_hash(x) != proposals_hash(x * (1 + 1e-8))
    assert proposals_hash(x) != proposals_hash(x.reshape(3, 2))  # the shape counts
    with pytest.raises(ValueError):
        proposals_hash([[np.nan]])


def main(argv: list[str]) -> None:
    rows = [(p.values[0], p.values[1], p.values[2]) for p in TRAJECTORIES]
    i = 0
    while i < len(argv):  # NAME [key=value ...], on rastrigin
        name, params, i = argv[i], {}, i + 1
        while i < len(argv) and "=" in argv[i]:
            key, value = argv[i].split("=", 1)
            params[key], i = ast.literal_eval(value), i + 1
        rows.append((name, params, "rastrigin"))
    for name, params, problem in rows:
        print(f"{name} {params} {problem}: {trajectory_hash(name, params, problem)}")


if __name__ == "__main__":
    main(sys.argv[1:])
