"""``mango watch``: a live browser dashboard over run stores (read-only, loopback by default).

``mango watch run.sqlite [more.sqlite ...]`` serves a page on http://127.0.0.1:8765/
that follows each run while it is written (and shows finished runs the same way):
best-so-far curve and every response (with a reference line where the run records
one), the best distinct stimuli and the latest batch's, queries done / budget,
queries per second and ETA, rig faults and retries, per-unit responses, and a
comparison of all runs.  Stores are opened with SQLite's read-only URI
(``mode=ro``), so watching takes no lock and never slows the run down.

Plots are drawn in the browser by uPlot (MIT, vendored in ``static/`` with its
licence; no CDN, works offline); the server is the standard library's
``http.server``.
"""

from .server import WatchServer, is_loopback, make_server
from .state import RunWatcher, reference_value

__all__ = ["RunWatcher", "WatchServer", "make_server", "is_loopback", "reference_value"]
