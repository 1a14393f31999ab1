"""Tests of mango watch: the live dashboard over run stores (read-only, loopback, no traversal, clear errors),
and an end-to-end test in real headless Chromium while a campaign writes its store in another process."""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import mango
from mango.runs.report.html import load_run, topk_distinct
from mango.runs.store import RunStore
from mango.cli.watch import add_subparser
from mango.runs.report.watch import RunWatcher, is_loopback, make_server, reference_value

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402
import _chromium  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Stop(Exception):
    pass


class StopAt:
    def __init__(self, k):
        self.k = k

    def on_batch(self, run, batch):
        if batch.index == self.k and not batch.replayed:
            raise Stop()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    p = tmp_path_factory.mktemp("watch") / "cma.sqlite"
    _campaign.run(p, "cma", 0, 120, 10)
    return str(p)


@pytest.fixture
def server(finished, tmp_path):
    """A dashboard over a finished store, a missing one and a file that is not a store, on a free port."""
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    logs = []
    srv = make_server([finished, str(tmp_path / "missing.sqlite"), str(junk)], port=0, interval=0.2,
                      log=logs.append)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.logs = logs
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv, path, host=None):
    c = http.client.HTTPConnection(*srv.server_address[:2], timeout=10)
    c.putrequest("GET", path, skip_host=host is not None, skip_accept_encoding=True)
    if host is not None:
        c.putheader("Host", host)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), body


def test_watcher_matches_the_report_and_reads_increments(tmp_path):
    p = tmp_path / "r.sqlite"
    with pytest.raises(Stop):
        mango.maximize(_campaign.ImageSphere(), _campaign.SPACE, optimizer="cma", budget=100, batch_size=10, seed=2,
                       progress=False, store=p, callbacks=[StopAt(4)])
    w = RunWatcher(p, top_k=6)
    w.refresh(force=True)
    s1 = w.state()
    assert s1["error"] is None and s1["n_queries"] == 50 and len(s1["q"]) == 50 and s1["since"] == 0
    assert s1["units"] == ["sphere", "ripple"] and len(s1["r"]) == 2 and len(s1["r"][0]) == 50
    assert not s1["live"] and s1["status"] == "error"  # stopped by an exception: nobody writes it
    _campaign.run(p, "cma", 2, 100, 10, resume=True)
    w.refresh(force=True)
    s2 = w.state(s1["generation"], len(s1["q"]))
    assert s2["generation"] == s1["generation"] and s2["since"] == 50 and s2["q"] == list(range(50, 100))
    assert s2["n_queries"] == 100 and s2["status"] == "finished" and s2["eta_s"] == 0.0
    # the same numbers as the report (one top-k selection, one store reader)
    r = load_run(p)
    assert s2["best_value"] == float(np.nanmax(r.values)) and s2["best_query"] == int(r.queries[r.best_index])
    assert [t["query"] for t in s2["top"]] == [int(r.queries[i]) for i in topk_distinct(r, 6)]
    assert all(t["image"] for t in s2["top"])
    assert s2["latest"]["batch"] == 9 and [t["query"] for t in s2["latest"]["items"]] == list(range(90, 100))
    assert s2["rate"] is not None and s2["rate"] > 0
    png = w.stimulus_png(s2["generation"], s2["best_query"])
    assert png.startswith(b"\x89PNG")
    assert w.stimulus_png(s2["generation"] + 1, s2["best_query"]) is None
    # another run written at the same path later: read again from scratch
    w.close()


def test_reference_line():
    assert reference_value({"metadata": {"reference": 2.5}}) == 2.5
    assert reference_value({"metadata": {"reference": {"max": 16.1, "percentile": 99}}}) == 16.1
    assert reference_value({"objective": {"optimum": 0}}) == 0.0
    assert reference_value({"objective": {"name": "x"}}) is None
    assert reference_value({"metadata": {"reference": "n/a"}}) is None


def test_bad_stores_are_messages_not_crashes(tmp_path):
    logs = []
    newer = tmp_path / "newer.sqlite"
    _campaign.run(newer, "random", 0, 20, 10)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    trunc = tmp_path / "trunc.sqlite"
    _campaign.run(trunc, "random", 0, 200, 10)
    data = open(trunc, "rb").read()
    with open(trunc, "wb") as f:
        f.write(data[: len(data) // 3])
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"hello")
    cases = {tmp_path / "missing.sqlite": "no run store", newer: "newer mango", trunc: "corrupted or truncated",
             junk: "not an SQLite file"}
    for path, msg in cases.items():
        w = RunWatcher(path, log=logs.append)
        w.refresh(force=True)
        st = w.state()
        assert msg in st["error"] and "label" not in st
        assert any(msg in line and str(path) in line for line in logs)
    # logged once, not at every refresh
    n = len(logs)
    w.refresh(force=True)
    assert len(logs) == n
    # a store that appears later is picked up
    late = tmp_path / "late.sqlite"
    w = RunWatcher(late, log=logs.append)
    w.refresh(force=True)
    assert "no run store" in w.state()["error"]
    _campaign.run(late, "random", 0, 20, 10)
    w.refresh(force=True)
    assert w.state()["error"] is None and w.state()["n_queries"] == 20
    w.close()


def test_page_and_api(server, finished):
    status, ctype, body = get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/static/uPlot.iife.min.js" in body
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "watch.js", "watch.css"):
        assert get(server, "/static/" + name)[0] == 200
    status, ctype, body = get(server, "/api/state")
    doc = json.loads(body)
    ok, missing, junk = doc["runs"]
    with RunStore(finished, mode="r") as s:
        assert ok["n_queries"] == s.n_queries() == 120 and ok["error"] is None
    assert "no run store" in missing["error"] and "not an SQLite file" in junk["error"]
    assert any("not an SQLite file" in line for line in server.logs)
    st, ctype, png = get(server, f"/stimulus/0/{ok['generation']}/{ok['best_query']}.png")
    assert st == 200 and ctype == "image/png" and png.startswith(b"\x89PNG")
    assert get(server, f"/stimulus/0/{ok['generation']}/99999.png")[0] == 404
    assert get(server, f"/stimulus/7/{ok['generation']}/1.png")[0] == 404
    # increments: nothing new since what the page already has
    g = ",".join(str(r["generation"]) for r in doc["runs"])
    inc = json.loads(get(server, f"/api/state?g={g}&n=120,0,0")[2])["runs"][0]
    assert inc["since"] == 120 and inc["q"] == []


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/static/../server.py", "/static/../../store.py", "/static/%2e%2e/%2e%2e/store.py",
    "/static/..%2f..%2fstore.py", "/%2e%2e/%2e%2e/etc/passwd", "/static/%252e%252e/state.py",
    "/stimulus/0/1/../../../etc/passwd", "/static/..\\server.py", "/./static/watch.js", "/static/state.py",
    "/static/__init__.py", "/etc/passwd", "/static/", "/mango/watch/server.py"])
def test_path_traversal_refused(server, path):
    status, _, body = get(server, path)
    assert status in (400, 404)
    assert b"import" not in body and b"root:" not in body and len(body) < 200


def test_loopback_by_default_and_host_check(server, finished):
    assert server.server_address[0] == "127.0.0.1" and server.check_host
    parser = argparse.ArgumentParser(prog="mango")
    add_subparser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["watch", finished]).host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("::")
    # DNS rebinding: a page from another origin resolving to 127.0.0.1 sends its own Host
    assert get(server, "/api/state", host="evil.example:8765")[0] == 403
    assert get(server, "/api/state", host=f"localhost:{server.server_address[1]}")[0] == 200


def test_cli_warns_beyond_loopback(finished):
    proc = subprocess.Popen([sys.executable, "-m", "mango.cli", "watch", finished, "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "run store(s) at http://" in line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0, beyond this machine's loopback" in err


def test_dashboard_does_not_write_the_store(finished):
    digest = hashlib.sha256(open(finished, "rb").read()).hexdigest()
    w = RunWatcher(finished)
    for _ in range(3):
        w.refresh(force=True)
        st = w.state()
        w.stimulus_png(st["generation"], st["best_query"])
    # its connection is SQLite's read-only one: a write through it fails
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        w._store._conn.execute("DELETE FROM queries")
    w.close()
    assert hashlib.sha256(open(finished, "rb").read()).hexdigest() == digest


@pytest.mark.skipif(_chromium.find() is None, reason="chromium is not installed")
def test_live_page_in_headless_chromium(tmp_path):
    """A campaign writes a store in another process; `mango watch` serves it; the page in headless Chromium
    shows the query count rising, ends at the store's count, and shows the best stimulus."""
    store = tmp_path / "live.sqlite"
    watch = subprocess.Popen([sys.executable, "-m", "mango.cli", "watch", str(store), "--port", "0",
                              "--interval", "0.25"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    campaign = None
    try:
        url = watch.stdout.readline().split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        campaign = subprocess.Popen([sys.executable, os.path.join(HERE, "_campaign.py"), str(store), "cma", "0",
                                     "300", "10", "0.15"], stdout=subprocess.PIPE, text=True)
        assert campaign.stdout.readline().strip() == "READY"
        count = "Number((document.querySelector('#run-0 .nq') || {}).textContent || 0)"
        with _chromium.Browser(1280, 900) as b:
            b.goto(url)
            first = b.wait_for(f"{count} > 0 && {count}", timeout=60)
            assert campaign.poll() is None, "the campaign ended before the first read"
            second = b.wait_for(f"{count} > {first} && {count}", timeout=30)
            assert second > first
            assert campaign.wait(timeout=120) == 0
            with RunStore(store, mode="r") as s:
                final = s.n_queries()
                best_query = s.result().best_query
            assert final == 300
            assert b.wait_for(f"{count} === {final}", timeout=30)
            # the best stimulus: an image on the page, loaded, of the store's best query
            img = ("(() => { const i = document.querySelector('#run-0 img.stim.best'); return i && i.complete && "
                   "i.naturalWidth > 0 && Number(i.dataset.query); })()")
            assert b.wait_for(f"{img} === {best_query}", timeout=30) is True
            assert b.evaluate("document.querySelector('#run-0 .status').textContent") == "finished"
            # the rest of the page: the latest batch's stimuli, both units' responses, the overview row
            assert b.evaluate("document.querySelectorAll('#run-0 .latest img.stim').length") == 10
            assert b.evaluate("!document.querySelector('#run-0 .units').hidden && "
                              "document.querySelectorAll('#run-0 .units canvas').length > 0")
            assert b.evaluate("document.querySelector('#run-0 .eta').textContent") == "done"
            assert b.evaluate("document.querySelectorAll('#overview tr').length") == 2
            assert b.evaluate("document.querySelector('#conn').className").endswith("ok")
    finally:
        if campaign is not None and campaign.poll() is None:
            campaign.kill()
            campaign.wait()
        watch.terminate()
        watch.communicate(timeout=30)


class FlakyRig(_campaign.ImageSphere):
    """An objective whose oracle keeps fault counters like RigOracle.stats (a retry every third batch)."""

    def __init__(self):
        super().__init__()
        self.stats = {"requests": 0, "timeouts": 0, "retries": 0, "reconnects": 0}

    def evaluate(self, points):
        self.stats["requests"] += 1
        if self.stats["requests"] % 3 == 0:
            self.stats["timeouts"] += 1
            self.stats["retries"] += 1
        return super().evaluate(points)


def test_rig_faults_are_recorded_and_shown(tmp_path):
    p = tmp_path / "rig.sqlite"
    mango.maximize(FlakyRig(), _campaign.SPACE, optimizer="random", budget=90, batch_size=10, progress=False, store=p)
    with RunStore(p, mode="r") as s:
        assert s.oracle_stats == {"requests": 9, "timeouts": 3, "retries": 3, "reconnects": 0}
    w = RunWatcher(p)
    w.refresh(force=True)
    assert w.state()["rig"]["retries"] == 3
    w.close()
    # runs without such an oracle record nothing
    q = tmp_path / "plain.sqlite"
    _campaign.run(q, "random", 0, 20, 10)
    with RunStore(q, mode="r") as s:
        assert s.oracle_stats is None
