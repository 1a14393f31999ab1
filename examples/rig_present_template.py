"""Template: put your lab rig behind mango in a few lines.

Copy this file next to your stimulus code, fill in ``present``, then on the rig computer::

    mango rig serve --module rig_present_template:present --units ch12 --input-shape 1,28,28

and on the analysis computer::

    mango maximize --oracle rig://RIG-PC:5555 --rig-timeout 30 --budget 500 --store run.sqlite

(``--address tcp://0.0.0.0:5555`` plus CURVE keys for a rig on a lab network; see
docs/rig_protocol.md.)  Run this file directly to try it with a fake recording::

    python examples/rig_present_template.py           # serves on tcp://127.0.0.1:5555

``present`` receives one batch and must return one row of responses per stimulus, in
order, and may add each stimulus's onset and offset (seconds since the Unix epoch), which
the run store and the NWB export (``mango export nwb``) keep.  mango never sends the same
request twice to ``present``: a retried request is answered from the server's reply cache.
"""

from __future__ import annotations

import time

import numpy as np

#: seconds each image stays on screen, and the blank between images
STIMULUS_S = 0.2
BLANK_S = 0.1


def show(image: np.ndarray) -> None:
    """Put one image on the screen (replace with PsychoPy, e.g. ``ImageStim.image = ...; win.flip()``)."""
    time.sleep(STIMULUS_S)


def blank() -> None:
    """Grey screen between stimuli (PsychoPy: ``win.flip()`` with nothing drawn)."""
    time.sleep(BLANK_S)


def count_spikes(t_on: float, t_off: float) -> np.ndarray:
    """Spikes per channel between two times (replace with your acquisition API: Open Ephys, SpikeGLX, ...).

    This fake recording draws Poisson counts so the template runs anywhere.
    """
    return _rng.poisson(5.0, size=1).astype(float)


_rng = np.random.default_rng(0)


def present(stimuli: np.ndarray, meta: dict) -> tuple[np.ndarray, dict]:
    """Show each stimulus once; return responses ``[n, n_units]`` and each stimulus's onset and offset.

    ``stimuli``: float32 ``[n, C, H, W]`` in [0, 1] (``meta["kind"] == "stimuli"``), or
    stimulus parameters ``[n, d]`` (``meta["kind"] == "params"``).  ``meta`` also holds
    whatever the experimenter passed to ``RigOracle(meta=...)``.  The times are seconds since
    the Unix epoch (``time.time()``'s clock; a photodiode's times, converted, are better);
    returning the responses alone also works.
    """
    responses, onsets, offsets = [], [], []
    for image in stimuli:
        t_on = time.monotonic()
        onsets.append(time.time())
        show(image)
        t_off = time.monotonic()
        offsets.append(time.time())
        responses.append(count_spikes(t_on, t_off))
        blank()
    return np.stack(responses), {"onset_s": onsets, "offset_s": offsets}


if __name__ == "__main__":
    import logging

    from mango.rig import serve

    logging.basicConfig(level=logging.INFO)
    serve(present, "tcp://127.0.0.1:5555", unit_names=["ch12"], input_shape=(1, 28, 28),
          ready=lambda endpoint: print(f"listening on {endpoint}", flush=True))
