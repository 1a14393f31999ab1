"""A small deterministic campaign used by the fault-injection tests (tests/test_store_faults.py).

Run as a script: ``python tests/_campaign.py STORE OPTIMIZER SEED BUDGET BATCH SLEEP [--resume] [--hold FILE]
[--pipeline] [--pipeline-lag L] [--stall N FILE] [--checkpoint-every K]``.
Prints ``READY`` once imports are done, then runs :func:`mango.maximize` with
``store=STORE`` (``resume=True`` with ``--resume``) on :class:`ImageSphere`.  With ``--hold FILE`` the
objective waits before each batch past the first 10 points for as long as FILE exists: a test holds the
writer mid-run by an event (removing the file), not by racing its speed.  With ``--stall N FILE`` the
objective, asked to evaluate once N points were evaluated, creates FILE and waits (for a SIGKILL): a
batch is then in flight, and in a pipelined run (``--pipeline``) the next one is asked too.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import mango
from mango.spaces import Box

DIM = 6
SPACE = Box(DIM, -1.0, 1.0)


class ImageSphere:
    """Deterministic objective with two response units and tiny 1x6x6 image stimuli.

    ``evaluations`` counts the points evaluated by this object (to check that a
    resumed run queries nothing twice); ``sleep`` seconds are spent per batch.
    """

    unit_names = ["sphere", "ripple"]
    queries_per_point = 1

    def __init__(self, sleep: float = 0.0, hold: str | None = None, stall: tuple[int, str] | None = None):
        self.sleep = sleep
        self.hold = hold
        self.stall = stall
        self.evaluations = 0

    def evaluate(self, points):
        x = np.asarray(points, dtype=float)
        deadline = time.monotonic() + 600  # a safety net for a test that never releases the hold
        while self.hold and self.evaluations >= 10 and os.path.exists(self.hold) and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.stall and self.evaluations >= self.stall[0]:
            open(self.stall[1], "w").close()
            while time.monotonic() < deadline:
                time.sleep(0.05)
        if self.sleep:
            time.sleep(self.sleep)
        self.evaluations += len(x)
        sphere = -np.sum((x - 0.3) ** 2, axis=1)
        ripple = np.cos(3.0 * x).sum(axis=1)
        stimuli = np.clip(0.5 + 0.5 * x[:, None, :, None] * x[:, None, None, :], 0.0, 1.0)
        return sphere, {"responses": np.stack([sphere, ripple], axis=1), "stimuli": stimuli}

    def describe(self) -> dict:
        return {"name": "image-sphere", "dim": DIM}


def run(store, optimizer: str, seed: int, budget: int, batch: int, sleep: float = 0.0, resume: bool = False,
        objective: ImageSphere | None = None, hold: str | None = None, pipeline: bool = False,
        checkpoint_every: int | None = None, pipeline_lag: int | None = None):
    """One campaign; returns ``(result, objective)``."""
    obj = objective or ImageSphere(sleep, hold)
    if store is not None and checkpoint_every is not None:
        from mango.runs.store import RunStore

        store = RunStore(store, checkpoint_every=checkpoint_every)
    try:
        res = mango.maximize(obj, SPACE, optimizer=optimizer, budget=budget, batch_size=batch, seed=seed,
                             progress=False, store=store, resume=resume, pipeline=pipeline,
                             pipeline_lag=pipeline_lag)
    finally:
        if hasattr(store, "close"):
            store.close()
    return res, obj


if __name__ == "__main__":
    path, opt, seed, budget, batch, sleep = sys.argv[1:7]
    resume = "--resume" in sys.argv[7:]
    hold = sys.argv[sys.argv.index("--hold") + 1] if "--hold" in sys.argv[7:] else None
    stall = None
    if "--stall" in sys.argv[7:]:
        i = sys.argv.index("--stall")
        stall = (int(sys.argv[i + 1]), sys.argv[i + 2])
    every = int(sys.argv[sys.argv.index("--checkpoint-every") + 1]) if "--checkpoint-every" in sys.argv[7:] else None
    lag = int(sys.argv[sys.argv.index("--pipeline-lag") + 1]) if "--pipeline-lag" in sys.argv[7:] else None
    if opt == "cma":
        import cma  # noqa: F401 - import before READY so kills land inside the run
    if opt == "surrogate":  # torch's float sums depend on its thread count: match the test process (1)
        import torch

        torch.set_num_threads(1)
    print("READY", flush=True)
    res, _ = run(path, opt, int(seed), int(budget), int(batch), float(sleep), resume=resume,
                 objective=ImageSphere(float(sleep), hold, stall), pipeline="--pipeline" in sys.argv[7:],
                 checkpoint_every=every, pipeline_lag=lag)
    print("DONE", res.n_queries, flush=True)
