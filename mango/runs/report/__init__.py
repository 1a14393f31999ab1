"""What runs leave for people and other tools: :mod:`.plots` (figures), :mod:`.html` (``mango report``: figures
and a self-contained page), :mod:`.export` (NWB), :mod:`.watch` (``mango watch``: a live dashboard)."""
