"""Other packages' optimizers behind mango's ask/tell API, for comparison (the ``peers`` extra): :mod:`.protes`
(``protes``, ``protes-loop``, ``ttopt``), :mod:`.botorch` (``turbo``), and :mod:`.threaded` for peers that run
their own loop.  Each imports its package lazily; the registry lists a peer only when it is installed."""
