"""The ``mango watch`` web server: the standard library's ThreadingHTTPServer, read-only, loopback by default.

It serves exactly these paths and nothing else (no file system path is ever
built from a URL):

* ``/`` -- the page (``static/index.html``), which polls ``/api/state``;
* ``/static/NAME`` -- the page's own script and style and the vendored uPlot
  (a fixed list of names, read from the package);
* ``/api/state?g=G0,G1,..&n=N0,N1,..`` -- every run's state as JSON, with each
  run's history from row ``N`` on (the page sends what it already has);
* ``/stimulus/RUN/GENERATION/QUERY.png`` -- one stimulus stored in a run.

A URL with a ``.`` or ``..`` segment (plain or %-encoded), a backslash or a NUL
is refused with 400 before anything else.  When bound to loopback, requests
whose ``Host`` is not a loopback name are refused (403: DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import os
import json
import re
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, unquote, urlsplit

from ...._version import __version__
from .state import RunWatcher

__all__ = ["WatchServer", "make_server", "is_loopback"]

# name -> content type: the only files the server reads, all from the package
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "watch.js": "text/javascript; charset=utf-8",
    "watch.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_STIMULUS = re.compile(r"^/stimulus/(\d{1,6})/(\d{1,9})/(\d{1,12})\.png$")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# the atlas site's pages carry their small scripts and styles inline (they open from disk too); nothing else runs
_SITE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SITE_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
               ".css": "text/css; charset=utf-8", ".json": "application/json"}


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(h, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def _static(name: str) -> bytes:
    return resources.files("mango.runs.report.watch").joinpath("static", name).read_bytes()


def _refused_path(raw: str) -> bool:
    """A path with a dot segment, a backslash or a NUL (decoded once and twice: %2e%2e, %252e)."""
    for p in (raw, unquote(raw), unquote(unquote(raw))):
        if "\\" in p or "\x00" in p:
            return True
        if any(seg in (".", "..") for seg in p.split("/")):
            return True
    return False


class _Handler(BaseHTTPRequestHandler):
    server: "WatchServer"
    server_version = f"mango-watch/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("mango watch: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              cache: str = "no-store", csp: str = _CSP) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", csp)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, text: str) -> None:
        self._send(int(status), f"{int(status)} {status.phrase}: {text}\n".encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        raw = self.path
        if _refused_path(raw):
            return self._error(HTTPStatus.BAD_REQUEST, "path refused (mango watch serves only its own page)")
        if self.server.check_host:
            host = (self.headers.get("Host") or "").strip()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in _LOOPBACK_NAMES:
                return self._error(HTTPStatus.FORBIDDEN, "Host is not a loopback name")
        url = urlsplit(raw)
        path = url.path
        if path in ("/", "/index.html"):
            return self._send(200, _static("index.html"), _STATIC["index.html"])
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name in _STATIC and name != "index.html":
                return self._send(200, _static(name), _STATIC[name])
            return self._error(HTTPStatus.NOT_FOUND, "no such file")
        if path == "/api/state":
            return self._state(parse_qs(url.query))
        m = _STIMULUS.match(path)
        if m:
            i, gen, q = (int(x) for x in m.groups())
            if i < len(self.server.watchers):
                png = self.server.watchers[i].stimulus_png(gen, q)
                if png is not None:
                    # the URL names the run's generation: its image never changes
                    return self._send(200, png, "image/png", cache="private, max-age=86400, immutable")
            return self._error(HTTPStatus.NOT_FOUND, "no such stimulus")
        if path.startswith("/atlas/") and self.server.site_dir:
            return self._site_file(unquote(path[len("/atlas/"):]) or "index.html")
        return self._error(HTTPStatus.NOT_FOUND, "no such page")

    def _site_file(self, name: str) -> None:
        """A file of the atlas site (``--site`` / ``mango watch ATLAS_DIR``), never one outside its directory."""
        root = os.path.realpath(self.server.site_dir)
        full = os.path.realpath(os.path.join(root, name))
        ctype = _SITE_TYPES.get(os.path.splitext(full)[1].lower())
        if not full.startswith(root + os.sep) or ctype is None or not os.path.isfile(full):
            return self._error(HTTPStatus.NOT_FOUND, "no such file of the atlas site")
        with open(full, "rb") as f:
            self._send(200, f.read(), ctype, cache="no-cache", csp=_SITE_CSP)

    def _state(self, qs: dict) -> None:
        def ints(key):
            try:
                return [int(x) for x in (qs.get(key, [""])[0]).split(",") if x != ""]
            except ValueError:
                return []

        gens, ns = ints("g"), ints("n")
        runs = []
        for w in self.server.watchers:
            w.refresh()
            i = w.index
            try:
                st = w.state(gens[i] if i < len(gens) else None, ns[i] if i < len(ns) else 0)
                json.dumps(st, allow_nan=False)
            except Exception as exc:  # noqa: BLE001 - one run's odd data must not take the page down
                st = {"index": i, "path": w.path, "file": w.path.rsplit("/", 1)[-1], "generation": w.generation,
                      "error": f"cannot show this run: {type(exc).__name__}: {exc}"}
            runs.append(st)
        doc = {"version": __version__, "time": time.time(), "interval": self.server.interval, "runs": runs}
        self._send(200, json.dumps(doc, allow_nan=False).encode(), "application/json")


class WatchServer(ThreadingHTTPServer):
    """Serves the dashboard over ``watchers`` (one :class:`RunWatcher` per store)."""

    daemon_threads = True

    def __init__(self, address, watchers, interval: float = 1.0, verbose: bool = False, site_dir: str | None = None):
        host = address[0]
        self.site_dir = site_dir
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.watchers = list(watchers)
        self.interval = float(interval)
        self.verbose = bool(verbose)
        self.check_host = is_loopback(host)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        for w in self.watchers:
            w.close()


def make_server(stores, host: str = "127.0.0.1", port: int = 8765, interval: float = 1.0, top_k: int = 8,
                verbose: bool = False, log=None, site_dir: str | None = None) -> WatchServer:
    """A :class:`WatchServer` for ``stores`` (paths); call ``serve_forever()`` (or use a thread).

    ``site_dir``: a static site (an atlas's ``site/``) also served, under ``/atlas/``."""
    watchers = [RunWatcher(p, i, min_interval=min(0.5, interval), top_k=top_k, log=log)
                for i, p in enumerate(stores)]
    for w in watchers:
        w.refresh(force=True)  # report unreadable stores at once
    return WatchServer((host, int(port)), watchers, interval=interval, verbose=verbose, site_dir=site_dir)
