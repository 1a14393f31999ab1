"""Runs: what happens between the first query and the files a run leaves behind.

One run: :mod:`.objective` (generator -> oracle -> the value to maximize), :mod:`.loop` (:func:`maximize`, the
budgeted ask/tell loop), :mod:`.store` (the SQLite run store), :mod:`.resume` (recording into a store and
resuming from it), :mod:`.result` (:class:`Result`) and :mod:`.resultfile` (the CLI's ``result.json``),
:mod:`.progress`, :mod:`.threads`, :mod:`.provenance`, :mod:`.words`, :mod:`.serial`, :mod:`.outdir`.

Above the run, in layers (``tests/test_architecture.py`` holds the order):
:mod:`.natural` (natural images: references and warm-start screening, read by the loop),
:mod:`.report` (figures, HTML, NWB export, the live dashboard ``watch``) and
:mod:`.track` (the same units over training checkpoints: a campaign of runs and its report).
"""
