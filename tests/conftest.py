import os

import numpy as np
import pytest

from mango.rig import RigServer

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def mean_present(stimuli):
    """A rig's response: each stimulus's mean pixel."""
    return stimuli.reshape(len(stimuli), -1).mean(1)


@pytest.fixture
def rig_server():
    """Start rig servers on free localhost ports (``rig_server(present=mean_present, **kw)``); stopped after."""
    started = []

    def start(present=mean_present, **kw):
        srv = RigServer(present, "tcp://127.0.0.1:0", **kw).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
