"""Tests of mango.runs.report.html: figures, GIF, HTML page (and a headless Chromium screenshot when available)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

import mango
from mango.errors import ConfigError
from mango.cli.report import add_subparser
from mango.runs.report.html import _improvements, load_run, make_report, topk_distinct
from mango.spaces import Box
from mango.runs.store import RunStore, StoreError

sys.path.insert(0, os.path.dirname(__file__))
import _campaign  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    paths = []
    for opt in ("cma", "random"):
        p = d / f"{opt}.sqlite"
        _campaign.run(p, opt, 1, 150, 10)
        paths.append(str(p))
    # a run that was interrupted and resumed (two sessions)
    p = d / "resumed.sqlite"

    class Stop(Exception):
        pass

    class StopAt:
        def on_batch(self, run, batch):
            if batch.index == 4 and not batch.replayed:
                raise Stop()

    with pytest.raises(Stop):
        mango.maximize(_campaign.ImageSphere(), _campaign.SPACE, optimizer="ga", budget=150, batch_size=10, seed=1,
                       progress=False, store=p, callbacks=[StopAt()])
    _campaign.run(p, "ga", 1, 150, 10, resume=True)
    paths.append(str(p))
    # a plain function: no stimuli, duplicates in a tiny discrete space
    p = d / "plain.sqlite"
    mango.maximize(lambda x: -np.sum((x - 0.2) ** 2, axis=1), Box(3), optimizer="cma", budget=60, progress=False,
                   store=p)
    paths.append(str(p))
    return paths


def test_load_run_and_topk_distinct(runs):
    r = load_run(runs[0])
    assert len(r.values) == 150 and r.n_queries == 150 and r.status == "finished"
    rows = topk_distinct(r, 12)
    assert len(rows) == 12
    vals = r.values[rows]
    assert np.all(np.diff(vals) <= 0) and vals[0] == np.nanmax(r.values)
    assert len({r.hashes[i] for i in rows}) == 12
    # duplicates are dropped: give two rows the same hash
    r.hashes[rows[1]] = r.hashes[rows[0]]
    assert rows[1] not in topk_distinct(r, 12)


def test_report_files_and_self_contained_html(runs, tmp_path):
    out = make_report(runs, tmp_path / "rep", top_k=8, title="four runs")
    assert out == str(tmp_path / "rep" / "index.html")
    files = set(os.listdir(tmp_path / "rep"))
    for i in (1, 2, 3, 4):
        assert f"convergence_{i}.png" in files
    for i in (1, 2, 3):  # runs with stimuli
        assert f"topk_{i}.png" in files and f"evolution_{i}.gif" in files
    assert "topk_4.png" not in files and "evolution_4.gif" not in files
    assert "compare.png" in files
    page = open(out, encoding="utf-8").read()
    assert "four runs" in page and "resumed.sqlite" in page
    # self-contained: every image is embedded, nothing is fetched
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 1 + 4 + 3 + 3 and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r'href="(?!#)', page)
    assert "No stimuli were stored" in page
    assert "&quot;optimizer&quot;: &quot;ga&quot;" in page  # the config is on the page
    # the resumed run shows its two sessions
    r3 = page.split("id='run3'")[1].split("id='run4'")[0]
    assert r3.count("<tr><td>") >= 2 and "resumed here" in r3


def test_gif_frames_follow_improvements(runs, tmp_path):
    make_report(runs[0], tmp_path)
    r = load_run(runs[0])
    frames = Image.open(tmp_path / "evolution_1.gif")
    assert frames.n_frames == len(_improvements(r)) > 3
    images = []
    for k in range(frames.n_frames):
        frames.seek(k)
        images.append(np.asarray(frames.convert("RGB"), dtype=float))
    assert np.abs(images[0] - images[-1]).max() > 0  # the stimulus evolves


def test_cli_report(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="mango")
    add_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", runs[0], runs[1], "--out", str(tmp_path / "c"), "--top-k", "4"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip().endswith("index.html")
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database")
    args = parser.parse_args(["report", str(bad), "--out", str(tmp_path / "d")])
    assert args.func(args) == 2
    assert "not an SQLite file" in capsys.readouterr().err


def test_report_errors(tmp_path, runs):
    with pytest.raises(StoreError, match="no run store"):
        make_report(tmp_path / "missing.sqlite", tmp_path / "o")
    with pytest.raises(ConfigError, match="top_k"):
        make_report(runs[0], tmp_path / "o", top_k=0)
    RunStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ConfigError, match="no run yet"):
        make_report(tmp_path / "empty.sqlite", tmp_path / "o")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_html_renders_in_headless_chromium(runs, tmp_path):
    out = make_report(runs, tmp_path / "rep", top_k=8)
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp()
    try:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,1600",
                        "file://" + os.path.abspath(out)], check=True, timeout=120, capture_output=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1600, 1200)
    # a rendered page: mostly white background with plenty of drawn content (text, figures)
    assert img.mean() > 150 and (img < 128).mean() > 0.01 and img.std() > 20


# -- population campaigns ---------------------------------------------------------------------

def _filters(k: int):
    """An oracle of ``k`` linear units on 28x28 images (fixed random filters), for population campaigns."""
    from mango.oracles import CallableOracle

    w = np.random.default_rng(3).normal(size=(784, k))
    return CallableOracle(lambda s: np.asarray(s, dtype=float).reshape(len(s), -1) @ w,
                          unit_names=[f"cell{j}" for j in range(k)], input_shape=(1, 28, 28))


def test_report_of_a_population_campaign_has_the_units_grid_and_curves(tmp_path):
    from mango.zoo.build import build_generator

    gen = build_generator("grating")
    refs = [{"max": 10.0 + j, "percentile": 99.0, "percentile_value": 9.0, "n_images": 5, "images": "test"}
            for j in range(3)]
    path = tmp_path / "pop.sqlite"
    res = mango.maximize(_filters(3), generator=gen, unit="all", optimizer="cma", budget=40, batch_size=10, seed=0,
                         progress=False, store=path, metadata={"unit_references": refs})
    r = load_run(path)
    assert [u.name for u in r.units] == ["cell0", "cell1", "cell2"]
    assert all(u.best_stimulus is not None for u in r.units)  # kept: each improved its unit
    html = open(make_report(path, tmp_path / "rep")).read()
    assert "Population campaign: 3 units" in html and "each unit's best stimulus" in html
    for j, u in enumerate(res.units()):
        assert f"<td class='l'>{u.name}</td>" in html and f"{u.best_value / refs[j]['max']:.3g}" in html
    for f in ("units_1.png", "unit_curves_1.png"):
        assert Image.open(tmp_path / "rep" / f).size[0] > 300
    assert html.count("data:image/png;base64") >= 4


def test_report_of_a_population_without_stored_stimuli_says_so(tmp_path):
    from mango.zoo.build import build_generator

    path = tmp_path / "pop12.sqlite"
    with RunStore(path, stimuli="none") as store:
        mango.maximize(_filters(12), generator=build_generator("grating"), unit="all", optimizer="random",
                       budget=36, batch_size=12, seed=0, progress=False, store=store)
    r = load_run(path)
    assert len(r.units) == 12 and all(u.best_stimulus is None for u in r.units)
    html = open(make_report(path, tmp_path / "rep")).read()
    assert "did not keep the best stimulus of 12 of the 12 units" in html and "(one panel per unit)" in html
    assert html.count("<td class='l'>not stored</td>") == 12
    assert (tmp_path / "rep" / "units_1.png").exists() and (tmp_path / "rep" / "unit_curves_1.png").exists()
