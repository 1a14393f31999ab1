"""The ``mango`` command line, one module per subcommand, thin over the Python API.

:mod:`.maximize` holds ``mango maximize`` and the dispatcher (:func:`main`, the console script); the other
subcommands live beside it (:mod:`.zoo`, :mod:`.report`, :mod:`.watch`, :mod:`.export`, :mod:`.rig`,
:mod:`.bench`, :mod:`.track`), each exposing ``add_subparser``; :mod:`.units` parses unit lists (``0-9``,
``all``, rig channel names), :mod:`.values` the ``KEY=VALUE`` options; ``--param`` values are parsed by
:func:`mango.optimizers.registry.parse_value`, as the benchmark's optimizer specs are.  Only this package imports :mod:`argparse` (and the zoo's training
script, ``python -m mango.zoo.train``, a developer tool).
"""

from .maximize import main

__all__ = ["main"]
