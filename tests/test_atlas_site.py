"""Tests of mango.runs.atlas.site: the static HTML site of an atlas (pages, links, images, escaping, missing
values, bad input) and the layer page in real headless Chromium (images load, the sort menu and ?sort= work)."""

from __future__ import annotations

import html.parser
import json
import os
import pathlib
import struct
import sys
import urllib.parse
import zlib

import pytest

from mango.errors import ConfigError
from mango.runs.atlas.site import write_site

sys.path.insert(0, os.path.dirname(__file__))
import _chromium  # noqa: E402

WEIRD_UNIT = "<em>x&\"y'</em>"
WEIRD_LAYER = "conv 1/relu<&>"
# index, normalized, selectivity of the layer "output" at the last checkpoint; unit 2 has not been run
OUTPUT = [(0, 0.5, 0.3), (1, 1.2, None), (2, None, 0.1), (3, 0.9, 0.8), (4, 1.05, 0.5)]
BY_NORMALIZED = [1, 4, 3, 0, 2]
BY_SELECTIVITY = [3, 4, 0, 2, 1]


def _png(path: pathlib.Path, seed: int, size: int = 28) -> None:
    """A small RGB PNG, different for each seed (raw bytes: no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\0" + bytes(c for x in range(size) for c in ((x * 9 + seed * 37) % 256,
                                                                     (y * 9 + seed * 11) % 256,
                                                                     ((x ^ y) * 4 + seed * 53) % 256))
                    for y in range(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _entry(root, layer_dir, index, c, normalized, selectivity, ran=True, seed=0):
    """One unit at checkpoint ``c``, its images written under ``root``."""
    base = f"img/{layer_dir}/{index}/c{c}"
    nat = [f"{base}-nat{k}.png" for k in range(3)]
    for k, p in enumerate(nat):
        _png(root / p, seed + 100 + k)
    entry = {"best_value": None, "normalized": normalized, "n_queries": 0, "best_png": None, "top_pngs": [],
             "top_values": [], "curve": [], "natural_max": 0.4, "natural_pngs": nat,
             "natural_values": [0.4, 0.35, 0.3], "selectivity": selectivity}
    if ran:
        top = [f"{base}-top{k}.png" for k in range(3)]
        for k, p in enumerate(top):
            _png(root / p, seed + k)
        best = 0.4 * normalized if normalized is not None else 0.2
        entry.update(best_value=best, n_queries=300, best_png=top[0], top_pngs=top,
                     top_values=[best, best * 0.95, best * 0.9], curve=[[1, best * 0.2], [20, best * 0.6], [300, best]])
    return entry


def make_atlas(root: pathlib.Path, labels=("model",)) -> dict:
    """A synthetic atlas summary with its images: layer "output" (5 units: one not run, one with an HTML-hostile
    name, missing normalized and selectivity values) and a layer with an HTML- and path-hostile name."""
    n = len(labels)
    units = []
    for index, norm, sel in OUTPUT:
        cps = [_entry(root, "output", index, c, None if norm is None else norm * (c + 1) / n, sel,
                      ran=norm is not None, seed=10 * index + c) for c in range(n)]
        units.append({"index": index, "name": WEIRD_UNIT if index == 4 else f"output:{index}",
                      "shard": "output-000", "checkpoints": cps})
    weird = [{"index": i, "name": f"{WEIRD_LAYER}:{i}", "shard": "conv_1_relu-000",
              "checkpoints": [_entry(root, "conv_1_relu", i, c, 0.7 + 0.1 * i, 0.2, seed=200 + i) for c in range(n)]}
             for i in range(2)]
    summ = [{"median_normalized": 0.9 + 0.1 * c, "frac_above_natural": 0.4, "n_units_done": 4, "queries": 1200}
            for c in range(n)]
    return {"title": "atlas of <zoo>:snn-color", "description": "budget 300 per unit, optimizer cma",
            "provenance": "mango 0.1.0 (git abc1234), torch 2.13.0", "checkpoints": list(labels),
            "layers": [{"name": "output", "n_units": 5, "summary": summ, "units": units},
                       {"name": WEIRD_LAYER, "n_units": 2,
                        "summary": [{"median_normalized": None, "frac_above_natural": None, "n_units_done": 2,
                                     "queries": 600}] * n, "units": weird}]}


class _Refs(html.parser.HTMLParser):
    """The tags of a page and every src/href in it."""

    def __init__(self):
        super().__init__()
        self.tags, self.refs = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append((tag, key, attrs[key]))


def _parse(path: pathlib.Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _pages(out: pathlib.Path) -> list[pathlib.Path]:
    return sorted(out.glob("*.html"))


@pytest.fixture
def site(tmp_path):
    out = tmp_path / "atlas"
    summary = make_atlas(out)
    return out, summary, write_site(summary, out)


def test_every_page_is_written(site):
    out, summary, index = site
    assert index == out / "index.html" and index.is_file()
    names = {p.name for p in _pages(out)}
    assert names == {"index.html", "layer-output.html", "layer-conv_1_relu.html",
                     *(f"unit-output-{i}.html" for i, _, _ in OUTPUT), "unit-conv_1_relu-0.html",
                     "unit-conv_1_relu-1.html"}
    text = index.read_text()
    assert "budget 300 per unit, optimizer cma" in text and "mango 0.1.0 (git abc1234), torch 2.13.0" in text
    assert text.count("<footer>") == 1


def test_every_reference_resolves_to_a_file_and_nothing_is_fetched_from_outside(site):
    out, _, _ = site
    n_img = 0
    for page in _pages(out):
        text = page.read_text()
        refs = _parse(page)
        for tag, key, ref in refs.refs:
            assert not urllib.parse.urlsplit(ref).scheme and not ref.startswith("/"), (page.name, ref)
            target = urllib.parse.unquote(urllib.parse.urlsplit(ref).path)
            if not target:  # an anchor in the page
                assert ref.startswith("#") and f"id='{ref[1:]}'" in text, (page.name, ref)
                continue
            assert (out / target).is_file(), (page.name, ref)
            n_img += tag == "img"
        assert "<link" not in text and "@import" not in text and "url(" not in text
        assert "<script src" not in text
        for tag, attrs in refs.tags:
            if tag == "img":
                assert attrs.get("alt") and "px" in attrs["class"].split()
    assert n_img > 50
    assert "image-rendering: pixelated" in (out / "index.html").read_text()


def test_layer_page_tiles(site):
    out, _, _ = site
    refs = _parse(out / "layer-output.html")
    tiles = [a for t, a in refs.tags if t == "a" and "tile" in a.get("class", "").split()]
    assert [int(a["data-index"]) for a in tiles] == BY_NORMALIZED  # already in the default order without JS
    assert [a["href"] for a in tiles] == [f"unit-output-{i}.html" for i in BY_NORMALIZED]
    by_index = {int(a["data-index"]): a for a in tiles}
    assert by_index[2]["data-normalized"] == "" and by_index[1]["data-selectivity"] == ""
    assert float(by_index[4]["data-normalized"]) == 1.05 and float(by_index[3]["data-selectivity"]) == 0.8
    select = [a for t, a in refs.tags if t == "select"]
    assert select == [{"id": "sort"}]
    assert [a["value"] for t, a in refs.tags if t == "option"] == ["normalized", "index", "selectivity"]
    text = (out / "layer-output.html").read_text()
    grid = text[text.index("id='tiles'"):text.index("<footer>")]
    imgs = _parse_text(grid)
    assert len(imgs) == 4 + 5 * 3  # four best stimuli (unit 2 was not run) and three natural images per unit
    assert all(a.get("loading") == "eager" for a in imgs)
    assert "1.05" in text and "0.62" not in text and "no image" in text
    assert "Across checkpoints" not in text  # one checkpoint


def _parse_text(fragment: str) -> list[dict]:
    p = _Refs()
    p.feed(fragment)
    return [a for t, a in p.tags if t == "img"]


def test_weird_names_are_escaped_and_slugged(site):
    out, _, _ = site
    for page in _pages(out):
        text = page.read_text()
        assert "<em>" not in text and "<&>" not in text and "<zoo>" not in text, page.name
    assert "&lt;em&gt;x&amp;&quot;y&#x27;&lt;/em&gt;" in (out / "unit-output-4.html").read_text()
    assert "conv 1/relu&lt;&amp;&gt;" in (out / "layer-conv_1_relu.html").read_text()
    assert "atlas of &lt;zoo&gt;:snn-color" in (out / "index.html").read_text()


def test_missing_values_render_as_a_dash(site):
    out, _, _ = site
    unit = (out / "unit-output-2.html").read_text()
    assert "<td>–</td>" in unit and "No best-so-far curve recorded." in unit and "<polyline" not in unit
    index = (out / "index.html").read_text()
    row = index[index.index("layer-conv_1_relu.html"):]
    row = row[:row.index("</tr>")]
    assert row.count("<td>–</td>") == 2  # median normalized and fraction above natural
    assert "40%" in index and "1,200" in index


def test_unit_page_curve_and_images(site):
    out, _, _ = site
    text = (out / "unit-output-3.html").read_text()
    assert "<svg" in text and "<polyline" in text and ">queries</text>" in text and ">best value</text>" in text
    assert "stroke-dasharray" in text  # the best natural image's response, dashed
    assert "Top distinct stimuli" in text and "Top natural images" in text
    assert "href='layer-output.html'" in text and "href='index.html'" in text
    assert "href='unit-output-2.html'" in text and "href='unit-output-4.html'" in text  # previous, next
    refs = _parse(out / "unit-output-3.html")
    assert sum(t == "img" for t, _ in refs.tags) == 6


def test_no_dashed_line_without_a_natural_reference(tmp_path):
    summary = make_atlas(tmp_path)
    summary["layers"][0]["units"][0]["checkpoints"][0]["natural_max"] = None
    write_site(summary, tmp_path)
    text = (tmp_path / "unit-output-0.html").read_text()
    assert "<polyline" in text and "stroke-dasharray" not in text


def test_checkpoint_atlas_has_the_table_across_checkpoints(tmp_path):
    labels = ["epoch 1", "epoch 5", "epoch 20"]
    write_site(make_atlas(tmp_path, labels), tmp_path)
    layer = (tmp_path / "layer-output.html").read_text()
    assert "Across checkpoints" in layer
    table = layer[layer.index("<table class='evo'>"):]
    table = table[:table.index("</table>")]
    assert all(f"<th>{c}</th>" in table for c in labels)
    assert table.count("<tr>") == 1 + len(OUTPUT)
    assert all(f"img/output/3/c{c}-top0.png" in table for c in range(3))
    # the tiles show the last checkpoint
    assert "img/output/3/c2-top0.png" in layer[:layer.index("Across checkpoints")]
    assert "img/output/3/c0-top0.png" not in layer[:layer.index("Across checkpoints")]
    index = (tmp_path / "index.html").read_text()
    assert all(f"colspan='4'>{c}</th>" in index for c in labels)
    unit = (tmp_path / "unit-output-3.html").read_text()
    blocks = [unit.index(f"<h2>{c}</h2>") for c in labels]
    assert blocks == sorted(blocks, reverse=True)  # latest first
    assert "Over training" in unit


def test_rewriting_gives_the_same_bytes_and_leaves_no_temporary_file(site):
    out, summary, _ = site
    before = {p.name: p.read_bytes() for p in _pages(out)}
    write_site(json.loads(json.dumps(summary)), out)  # what a summary read back from JSON gives
    assert {p.name: p.read_bytes() for p in _pages(out)} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_colliding_layer_names_get_distinct_pages(tmp_path):
    summary = make_atlas(tmp_path)
    twin = json.loads(json.dumps(summary["layers"][1]))
    twin["name"] = "conv 1/relu"
    summary["layers"].append(twin)
    write_site(summary, tmp_path)
    assert (tmp_path / "layer-conv_1_relu.html").is_file() and (tmp_path / "layer-conv_1_relu-2.html").is_file()
    assert (tmp_path / "unit-conv_1_relu-2-0.html").is_file()


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("layers"), "no 'layers'"),
    (lambda s: s.update(checkpoints=[]), "'checkpoints'"),
    (lambda s: s["layers"][0]["units"][3]["checkpoints"].append({}), "'output:3' has 2 checkpoint entries"),
    (lambda s: s["layers"][0]["units"][3].pop("checkpoints"), "'output:3' has no checkpoint entries"),
    (lambda s: s["layers"][0]["units"][0]["checkpoints"][0].update(best_png="../elsewhere.png"),
     "not inside the site directory"),
    (lambda s: s["layers"][0]["units"][0]["checkpoints"][0].update(normalized="high"), "must be a number"),
    (lambda s: s["layers"][0]["units"].append(dict(s["layers"][0]["units"][0])), "lists unit 0 twice"),
])
def test_bad_summaries_are_refused_in_one_line(tmp_path, change, words):
    summary = make_atlas(tmp_path)
    change(summary)
    with pytest.raises(ConfigError) as e:
        write_site(summary, tmp_path / "site")
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "site").exists()  # nothing written


def test_headless_chromium_loads_the_images_and_sorts_the_tiles(tmp_path):
    if _chromium.find() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the site's layer page was not opened "
                    "in a browser")
    out = tmp_path / "atlas"
    write_site(make_atlas(out, ["epoch 1", "epoch 20"]), out)
    url = (out / "layer-output.html").as_uri()
    tiles = "[...document.querySelectorAll('#tiles .tile')]"
    with _chromium.Browser(1100, 900) as b:
        def load(u):
            b.goto(u)
            b.wait_for(f"location.href === {json.dumps(u)} && document.readyState === 'complete' && "
                       "document.body.getAttribute('data-sorted')", timeout=30)

        def order(key="index"):
            return b.evaluate(f"{tiles}.map(t => t.getAttribute('data-{key}'))")

        def choose(key):
            b.evaluate(f"(() => {{ const s = document.getElementById('sort'); s.value = '{key}'; "
                       "s.dispatchEvent(new Event('change')); })()")

        load(url)
        b.wait_for("[...document.querySelectorAll('#tiles img')].every(i => i.complete)", timeout=30)
        imgs = b.evaluate("[...document.querySelectorAll('#tiles img')].map(i => [i.complete, i.naturalWidth, "
                          "i.getAttribute('src')])")
        assert len(imgs) == 4 + 5 * 3
        assert all(c and w > 0 for c, w, _ in imgs), [s for c, w, s in imgs if not (c and w > 0)]
        assert b.evaluate("document.getElementById('sort').value") == "normalized"
        norm = order("normalized")
        assert [int(i) for i in order()] == BY_NORMALIZED
        known = [float(v) for v in norm if v]
        assert known == sorted(known, reverse=True) and norm[len(known):] == [""]
        choose("index")
        assert [int(i) for i in order()] == [0, 1, 2, 3, 4]
        choose("selectivity")
        assert [int(i) for i in order()] == BY_SELECTIVITY
        sel = order("selectivity")
        known = [float(v) for v in sel if v]
        assert known == sorted(known, reverse=True) and sel[len(known):] == [""]
        choose("normalized")
        assert [int(i) for i in order()] == BY_NORMALIZED

        load(url + "?sort=index")
        assert [int(i) for i in order()] == [0, 1, 2, 3, 4]
        assert b.evaluate("document.getElementById('sort').value") == "index"

        load(url)
        b.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # the table's images load lazily
        b.wait_for("[...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30)
        b.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "layer-output.png"
        b.screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    width, height = struct.unpack(">II", data[16:24])
    assert width > 1000 and height > 900  # the whole page, taller than the window
    print(f"screenshot of the layer page: {shot}")
