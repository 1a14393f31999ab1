"""The static HTML site of an atlas: a page per layer, a page per unit, and an index.

An atlas maximizes every unit of one or more layers of a network, at one or
more training checkpoints.  :func:`write_site` turns its summary (a JSON-able
dict: settings, per-layer figures and, per unit and checkpoint, the best
stimuli, the best-so-far curve and the unit's top natural images) into plain
HTML files beside the images the atlas already wrote:

* ``index.html`` -- the title, the settings, one table row per layer (units
  done, the median normalized value, the share of units whose synthesized
  stimulus beats their best natural image, queries; one group of columns per
  checkpoint), a strip of each layer's strongest units, and the provenance in
  the footer;
* ``layer-<slug>.html`` -- one tile per unit at the last checkpoint: its best
  synthesized stimulus beside its top natural images, its name, its normalized
  value and its selectivity.  A menu (or ``?sort=index``, ``?sort=selectivity``
  in the address) orders the tiles by normalized value, unit index or
  selectivity.  With several checkpoints a table shows each unit's best
  stimulus at every checkpoint, so its preferred stimulus can be followed
  through training;
* ``unit-<slug>-<index>.html`` -- one block per checkpoint, latest first: the
  top distinct stimuli with their values, the best-so-far curve (an inline SVG,
  the best natural image's response as a dashed line), the top natural images
  with their values, the normalized value and the selectivity.

``<slug>`` is the layer name reduced to letters, digits, ``.``, ``_`` and
``-`` (made unique among the layers).  The pages use only relative links, an
embedded stylesheet and a few lines of embedded JavaScript: the directory
opens from disk (``file://``) with no server and no network, and can be copied
or archived whole.  Every value that is missing (a unit not run yet, a failed
run, no natural reference) shows as "–" and sorts last.  Each page is written
to a temporary file and moved into place, so a reader never sees half a page,
and writing the site again overwrites it with the same bytes.
"""

from __future__ import annotations

import html
import math
import os
import pathlib
import re
import urllib.parse

from ...errors import ConfigError
from .plan import slug as layer_slug

__all__ = ["write_site"]

_DASH = "–"
_NUMBERS = ("best_value", "normalized", "natural_max", "selectivity", "n_queries")
_SUMMARY_NUMBERS = ("median_normalized", "frac_above_natural", "n_units_done", "queries")
_SORTS = (("normalized", "normalized value (highest first)"), ("index", "unit index"),
          ("selectivity", "selectivity (highest first)"))

_CSS = """
:root{--fg:#1d2125;--muted:#5f6b76;--line:#dde1e5;--tile:#f7f8fa;--accent:#0b62b8;--good:#1a7f37;--warn:#b35900}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:#fff;
margin:0 auto;max-width:1200px;padding:18px 22px 32px}
a{color:var(--accent);text-decoration:none} a:hover{text-decoration:underline}
h1{font-size:1.55em;margin:.25em 0 .35em} h2{font-size:1.2em;margin:1.6em 0 .6em;padding-bottom:4px;
border-bottom:1px solid var(--line)} h3{font-size:1em;margin:1.1em 0 .4em;color:#333}
nav.crumbs{font-size:.9em;color:var(--muted)} nav.crumbs a{margin:0 2px}
p.desc{max-width:80ch;white-space:pre-line} .muted{color:var(--muted)} .note{font-size:.88em;color:var(--muted);
max-width:80ch}
table{border-collapse:collapse;font-size:.92em;margin:.4em 0}
th,td{border:1px solid var(--line);padding:4px 10px;text-align:right;vertical-align:middle}
th{background:#f2f4f6;font-weight:600} th.l,td.l{text-align:left} th.group{text-align:center}
img.px{image-rendering: pixelated;border:1px solid var(--line);background:#fff;display:block}
.controls{display:flex;align-items:center;gap:10px;margin:.6em 0 1em;font-size:.95em}
select{font:inherit;padding:2px 6px} .scroll{overflow-x:auto;max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px}
a.tile{display:block;background:var(--tile);border:1px solid var(--line);border-radius:8px;padding:8px;
color:inherit;text-decoration:none}
a.tile:hover{border-color:var(--accent);box-shadow:0 1px 4px rgba(0,0,0,.12)}
.pics{display:flex;gap:5px;align-items:flex-start}
.tile img.best,.tile .missing{width:96px;height:96px}
.tile .nat{display:flex;flex-direction:column;gap:3px} .tile .nat img{width:30px;height:30px}
.missing{display:flex;align-items:center;justify-content:center;background:#eceff2;color:var(--muted);
font-size:.8em;border:1px dashed #c5ccd3}
.tile .name{font-weight:600;margin-top:6px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.tile .vals{font-size:.84em;color:var(--muted)} .above .norm{color:var(--good);font-weight:600}
.strip{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
figure{margin:0} figcaption{font-size:.8em;color:var(--muted);text-align:center;margin-top:2px}
figure img.px{width:96px;height:96px} .strip.small img.px{width:56px;height:56px}
table.evo td,table.evo th{text-align:center} table.evo td.l,table.evo th.l{text-align:left}
table.evo img.px,table.evo .missing{width:48px;height:48px;margin:0 auto 2px;font-size:.7em}
figure .missing{width:96px;height:96px} .strip.small .missing{width:56px;height:56px}
table.evo .v{font-size:.82em;color:var(--muted)}
.block{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
svg.curve{background:#fff;border:1px solid var(--line);border-radius:6px}
section.ckpt{border-top:3px solid var(--line);margin-top:1.6em} section.ckpt h2{border:0;margin-top:.6em}
.pager{display:flex;justify-content:space-between;font-size:.9em;margin:.4em 0}
footer{margin-top:2.5em;padding-top:8px;border-top:1px solid var(--line);font-size:.82em;color:var(--muted)}
"""

# Reorders the tiles of a layer page.  The menu and ``?sort=`` go through the same apply(); a missing value
# (empty data attribute) sorts last, ties fall back to the unit index.
_SORT_JS = """
<script>
(function () {
  var DIRS = {normalized: -1, index: 1, selectivity: -1};
  var select = document.getElementById('sort'), grid = document.getElementById('tiles');
  function num(tile, key) {
    var v = tile.getAttribute('data-' + key);
    return v === null || v === '' ? null : Number(v);
  }
  function apply(key) {
    if (!Object.prototype.hasOwnProperty.call(DIRS, key)) key = 'normalized';
    select.value = key;
    var dir = DIRS[key], tiles = Array.prototype.slice.call(grid.querySelectorAll('.tile'));
    tiles.sort(function (a, b) {
      var x = num(a, key), y = num(b, key);
      if (x === null || y === null) {
        if (x !== y) return x === null ? 1 : -1;
      } else if (x !== y) {
        return dir * (x - y);
      }
      return num(a, 'index') - num(b, 'index');
    });
    tiles.forEach(function (t) { grid.appendChild(t); });
    document.body.setAttribute('data-sorted', key);
  }
  select.addEventListener('change', function () {
    apply(select.value);
    try { history.replaceState(null, '', '?sort=' + select.value); } catch (e) { /* file:// may refuse */ }
  });
  apply(new URLSearchParams(window.location.search).get('sort') || select.value);
})();
</script>
"""


# ----------------------------------------------------------------------------------------------------------- input


def _number(x, what: str):
    """``x`` as a finite float, None for None/NaN/inf; a ConfigError naming ``what`` for anything else."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ConfigError(f"{what} must be a number or null, got {x!r}; fix the atlas summary.")
    x = float(x)
    return x if math.isfinite(x) else None


def _rel_path(p, what: str):
    """A relative image path inside the site, or None; refuses absolute paths and ``..`` (the site must move)."""
    if p is None:
        return None
    if not isinstance(p, str) or not p:
        raise ConfigError(f"{what} must be a relative path (a string) or null, got {p!r}; fix the atlas summary.")
    parts = p.replace("\\", "/").split("/")
    if p.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", p) or ".." in parts:
        raise ConfigError(f"{what} is {p!r}, which is not inside the site directory; give image paths relative "
                          "to out_dir (e.g. img/layer/3/c0-best.png) so the site can be moved and shared.")
    return p


def _as_list(x, what: str) -> list:
    if x is None:
        return []
    if not isinstance(x, (list, tuple)):
        raise ConfigError(f"{what} must be a list, got {type(x).__name__}; fix the atlas summary.")
    return list(x)


def _check_entry(e, what: str) -> dict:
    """One unit at one checkpoint, checked and normalized (numbers as floats or None, lists as lists)."""
    if not isinstance(e, dict):
        raise ConfigError(f"{what} must be a dict, got {type(e).__name__}; fix the atlas summary.")
    out = {k: _number(e.get(k), f"{what} {k}") for k in _NUMBERS}
    out["best_png"] = _rel_path(e.get("best_png"), f"{what} best_png")
    for key in ("top_pngs", "natural_pngs"):
        out[key] = [_rel_path(p, f"{what} {key}[{i}]") for i, p in enumerate(_as_list(e.get(key), f"{what} {key}"))]
    for key in ("top_values", "natural_values"):
        out[key] = [_number(v, f"{what} {key}[{i}]") for i, v in enumerate(_as_list(e.get(key), f"{what} {key}"))]
    curve = []
    for i, step in enumerate(_as_list(e.get("curve"), f"{what} curve")):
        if not isinstance(step, (list, tuple)) or len(step) != 2:
            raise ConfigError(f"{what} curve[{i}] must be a pair [queries, best so far], got {step!r}.")
        q, v = _number(step[0], f"{what} curve[{i}] queries"), _number(step[1], f"{what} curve[{i}] value")
        if q is not None and v is not None:
            curve.append((q, v))
    out["curve"] = curve
    return out


def _slug(text) -> str:
    """A page-name-safe form of a layer name: the atlas's own rule (:func:`~mango.runs.atlas.plan.slug`), at
    most 80 characters."""
    return layer_slug(text)[:80]


def _validate(summary) -> tuple[list[str], list[dict]]:
    """The checkpoint labels and the layers, checked; each layer gets a unique ``slug`` and checked units."""
    if not isinstance(summary, dict):
        raise ConfigError(f"the atlas summary must be a dict, got {type(summary).__name__}.")
    if not isinstance(summary.get("layers"), (list, tuple)):
        raise ConfigError("the atlas summary has no 'layers' list; give one entry per layer "
                          "(name, n_units, summary, units).")
    labels = summary.get("checkpoints")
    if not isinstance(labels, (list, tuple)) or not labels:
        raise ConfigError("the atlas summary needs 'checkpoints': a non-empty list of labels in training order "
                          "(['model'] for a single model).")
    labels = [str(c) for c in labels]
    n = len(labels)
    layers, taken = [], set()
    for li, layer in enumerate(summary["layers"]):
        if not isinstance(layer, dict) or "name" not in layer:
            raise ConfigError(f"atlas layer #{li} must be a dict with a 'name'; fix the atlas summary.")
        name = str(layer["name"])
        units_in = layer.get("units")
        if not isinstance(units_in, (list, tuple)):
            raise ConfigError(f"atlas layer {name!r} has no 'units' list; give one entry per unit.")
        rows = _as_list(layer.get("summary"), f"layer {name!r} summary") or [{} for _ in labels]
        if len(rows) != n:
            raise ConfigError(f"atlas layer {name!r} has {len(rows)} summary rows but the atlas has {n} "
                              f"checkpoint(s) {labels}; give one summary row per checkpoint.")
        rows = [{k: _number((r or {}).get(k), f"layer {name!r} summary[{i}] {k}") for k in _SUMMARY_NUMBERS}
                for i, r in enumerate(rows)]
        slug, k = _slug(name), 2
        while slug.lower() in taken:  # unique, even on a case-insensitive file system
            slug, k = f"{_slug(name)}-{k}", k + 1
        taken.add(slug.lower())
        units, seen = [], set()
        for ui, u in enumerate(units_in):
            if not isinstance(u, dict):
                raise ConfigError(f"atlas layer {name!r} unit #{ui} must be a dict; fix the atlas summary.")
            index = u.get("index")
            if isinstance(index, bool) or not isinstance(index, int):
                raise ConfigError(f"atlas layer {name!r} unit #{ui} has index {index!r}; give an integer index.")
            if index in seen:
                raise ConfigError(f"atlas layer {name!r} lists unit {index} twice; give each unit once.")
            seen.add(index)
            uname = str(u.get("name") or f"{name}:{index}")
            cps = u.get("checkpoints")
            if not isinstance(cps, (list, tuple)) or len(cps) != n:
                got = len(cps) if isinstance(cps, (list, tuple)) else "no"
                raise ConfigError(f"atlas layer {name!r} unit {uname!r} has {got} checkpoint entries but the atlas "
                                  f"has {n} checkpoint(s) {labels}; give one entry per checkpoint, in that order.")
            entries = [_check_entry(e, f"layer {name!r} unit {uname!r} checkpoint {labels[i]!r}")
                       for i, e in enumerate(cps)]
            units.append({"index": index, "name": uname, "shard": u.get("shard"), "checkpoints": entries,
                          "page": f"unit-{slug}-{index}.html"})
        n_units = layer.get("n_units", len(units))
        if isinstance(n_units, bool) or not isinstance(n_units, int):
            raise ConfigError(f"atlas layer {name!r} has n_units {n_units!r}; give an integer.")
        layers.append({"name": name, "slug": slug, "page": f"layer-{slug}.html", "n_units": n_units,
                       "summary": rows, "units": units})
    return labels, layers


# ------------------------------------------------------------------------------------------------------ formatting


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(x, digits: int = 3, zeros: bool = True) -> str:
    """``x`` to ``digits`` significant digits (trailing zeros kept: 1.20, 0.500); "–" when missing."""
    if x is None:
        return _DASH
    s = f"{x:#.{digits}g}" if zeros else f"{x:.{digits}g}"
    return s[:-1] if s.endswith(".") else s


def _fmt_int(x) -> str:
    return _DASH if x is None else f"{int(round(x)):,}"


def _fmt_pct(x) -> str:
    return _DASH if x is None else f"{100 * x:.0f}%"


def _attr(x) -> str:
    """A number for a ``data-`` attribute (full precision); empty when missing."""
    return "" if x is None else repr(float(x))


def _src(path: str) -> str:
    return _e(urllib.parse.quote(path.replace("\\", "/"), safe="/"))


def _img(path, alt: str, cls: str = "", lazy: bool = True) -> str:
    if path is None:
        return f"<div class='missing {cls}'>no image</div>"
    loading = "lazy" if lazy else "eager"
    return f"<img class='px {cls}' src='{_src(path)}' alt='{_e(alt)}' loading='{loading}'>"


def _order(units: list[dict], key: str, descending: bool) -> list[dict]:
    """Units by their last checkpoint's ``key`` (or their index), missing values last, ties by index."""
    def k(u):
        v = u["index"] if key == "index" else u["checkpoints"][-1][key]
        return (v is None, 0.0 if v is None else (-v if descending else v), u["index"])
    return sorted(units, key=k)


def _page(title: str, body: str, provenance: str, script: str = "") -> str:
    foot = f"<footer>{_e(provenance)}</footer>" if provenance else ""
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n{foot}\n{script}"
            "</body>\n</html>\n")


def _write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------------------------- pages


_LEGEND = ("<p class='note'><b>normalized</b> = the unit's best response to a synthesized stimulus ÷ its best "
           "response to the natural images (above 1: the synthesized stimulus beats every natural image). "
           "<b>selectivity</b> = lifetime sparseness of the unit over the natural images (0: it responds alike "
           "to all of them, 1: to one only). <b>above natural</b> = the share of units whose normalized value is "
           "above 1.</p>")


def _index_page(summary: dict, labels: list[str], layers: list[dict]) -> str:
    title = str(summary.get("title") or "mango atlas")
    several = len(labels) > 1
    cols = ("<th>done</th><th>median normalized</th>"
            "<th title='units whose best synthesized stimulus beats their best natural image'>above natural"
            "</th><th>queries</th>")
    if several:
        head = ("<tr><th class='l' rowspan='2'>layer</th><th rowspan='2'>units</th>"
                + "".join(f"<th class='group' colspan='4'>{_e(c)}</th>" for c in labels) + "</tr>"
                + "<tr>" + cols * len(labels) + "</tr>")
    else:
        head = f"<tr><th class='l'>layer</th><th>units</th>{cols}</tr>"
    rows = []
    for layer in layers:
        cells = "".join(f"<td>{_fmt_int(r['n_units_done'])}</td><td>{_fmt(r['median_normalized'])}</td>"
                        f"<td>{_fmt_pct(r['frac_above_natural'])}</td><td>{_fmt_int(r['queries'])}</td>"
                        for r in layer["summary"])
        rows.append(f"<tr><td class='l'><a href='{layer['page']}'>{_e(layer['name'])}</a></td>"
                    f"<td>{layer['n_units']:,}</td>{cells}</tr>")
    parts = [f"<h1>{_e(title)}</h1>"]
    if summary.get("description"):
        parts.append(f"<p class='desc'>{_e(summary['description'])}</p>")
    if several:
        parts.append(f"<p class='muted'>checkpoints, in training order: {_e(', '.join(labels))}</p>")
    parts.append("<h2>Layers</h2>")
    parts.append(f"<div class='scroll'><table class='summary'>{head}{''.join(rows)}</table></div>" if layers else
                 "<p class='muted'>This atlas has no layers.</p>")
    parts.append(_LEGEND)
    for layer in layers:
        best = [u for u in _order(layer["units"], "normalized", True) if u["checkpoints"][-1]["best_png"]][:10]
        if not best:
            continue
        figs = "".join(f"<figure><a href='{u['page']}'>{_img(u['checkpoints'][-1]['best_png'], u['name'])}</a>"
                       f"<figcaption>{_e(u['name'])}<br>{_fmt(u['checkpoints'][-1]['normalized'])}</figcaption>"
                       "</figure>" for u in best)
        where = f" at {_e(labels[-1])}" if several else ""
        parts.append(f"<h3><a href='{layer['page']}'>{_e(layer['name'])}</a> "
                     f"<span class='muted'>— strongest units{where}</span></h3><div class='strip small'>{figs}</div>")
    return _page(title, "\n".join(parts), str(summary.get("provenance") or ""))


def _tile(u: dict) -> str:
    c = u["checkpoints"][-1]
    nat = "".join(_img(p, f"{u['name']}: natural image {i + 1}", lazy=False)
                  for i, p in enumerate(c["natural_pngs"][:3]) if p)
    above = " above" if c["normalized"] is not None and c["normalized"] > 1 else ""
    return (f"<a class='tile{above}' href='{u['page']}' data-index='{u['index']}' "
            f"data-normalized='{_attr(c['normalized'])}' data-selectivity='{_attr(c['selectivity'])}' "
            f"title='{_e(u['name'])}'>"
            f"<div class='pics'>{_img(c['best_png'], u['name'] + ': best synthesized stimulus', 'best', lazy=False)}"
            f"<div class='nat'>{nat}</div></div>"
            f"<div class='name'>{_e(u['name'])}</div>"
            f"<div class='vals'>norm <span class='norm'>{_fmt(c['normalized'])}</span> · "
            f"sel {_fmt(c['selectivity'])}</div></a>")


def _layer_page(summary: dict, labels: list[str], layer: dict) -> str:
    title = str(summary.get("title") or "mango atlas")
    several = len(labels) > 1
    last = layer["summary"][-1]
    options = "".join(f"<option value='{v}'{' selected' if v == 'normalized' else ''}>{t}</option>"
                      for v, t in _SORTS)
    tiles = "\n".join(_tile(u) for u in _order(layer["units"], "normalized", True))
    at = f" at {_e(labels[-1])}" if several else ""
    parts = [f"<nav class='crumbs'><a href='index.html'>{_e(title)}</a> › layer</nav>",
             f"<h1>{_e(layer['name'])}</h1>",
             f"<p class='muted'>{layer['n_units']:,} units, {_fmt_int(last['n_units_done'])} done{at}; median "
             f"normalized {_fmt(last['median_normalized'])}; {_fmt_pct(last['frac_above_natural'])} above their "
             f"best natural image; {_fmt_int(last['queries'])} queries.</p>",
             _LEGEND,
             f"<h2>Units{at}</h2>",
             f"<div class='controls'><label for='sort'>order by</label><select id='sort'>{options}</select>"
             "<span class='muted'>each tile: the best synthesized stimulus, then the unit's top natural images"
             "</span></div>",
             f"<div id='tiles' class='grid'>\n{tiles}\n</div>" if layer["units"] else
             "<p class='muted'>No unit of this layer has been run yet.</p>"]
    if several and layer["units"]:
        head = "<tr><th class='l'>unit</th>" + "".join(f"<th>{_e(c)}</th>" for c in labels) + "</tr>"
        rows = []
        for u in _order(layer["units"], "index", False):
            cells = "".join(f"<td>{_img(c['best_png'], u['name'] + ' at ' + labels[i])}"
                            f"<span class='v'>{_fmt(c['normalized'])}</span></td>"
                            for i, c in enumerate(u["checkpoints"]))
            rows.append(f"<tr><td class='l'><a href='{u['page']}'>{_e(u['name'])}</a></td>{cells}</tr>")
        parts += ["<h2 id='checkpoints'>Across checkpoints</h2>",
                  "<p class='note'>Each unit's best synthesized stimulus at each checkpoint, in training order, "
                  "with its normalized value.</p>",
                  f"<div class='scroll'><table class='evo'>{head}{''.join(rows)}</table></div>"]
    return _page(f"{layer['name']} — {title}", "\n".join(parts), str(summary.get("provenance") or ""),
                 _SORT_JS if layer["units"] else "")


def _curve_svg(curve: list, natural_max, n_queries, w: int = 420, h: int = 230) -> str:
    """Best so far against queries as a step polyline; the best natural image's response dashed."""
    if not curve:
        return "<p class='muted'>No best-so-far curve recorded.</p>"
    x_end = max([q for q, _ in curve] + [n_queries or 0])
    ys = [v for _, v in curve] + ([natural_max] if natural_max is not None else [])
    x0, x1 = 0.0, max(x_end, 1.0)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.06 or (abs(y1) * 0.1 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 62, 14, 12, 42
    def sx(q):
        return left + (q - x0) / (x1 - x0) * (w - left - right)
    def sy(v):
        return top + (y1 - v) / (y1 - y0) * (h - top - bottom)
    pts, prev = [], None
    for q, v in curve:
        if prev is not None:
            pts.append((q, prev))
        pts.append((q, v))
        prev = v
    pts.append((x_end, prev))
    poly = " ".join(f"{sx(q):.1f},{sy(v):.1f}" for q, v in pts)
    xb, yb = h - bottom, left
    out = [f"<svg class='curve' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
           f"viewBox='0 0 {w} {h}' role='img' aria-label='best value so far against queries'>",
           f"<line x1='{yb}' y1='{top}' x2='{yb}' y2='{xb}' stroke='#888'/>",
           f"<line x1='{yb}' y1='{xb}' x2='{w - right}' y2='{xb}' stroke='#888'/>",
           f"<text x='{yb}' y='{xb + 15}' font-size='11' text-anchor='middle' fill='#555'>{_fmt_int(x0)}</text>",
           f"<text x='{w - right}' y='{xb + 15}' font-size='11' text-anchor='end' fill='#555'>{_fmt_int(x1)}</text>",
           f"<text x='{yb - 5}' y='{sy(y1 - pad) + 4:.1f}' font-size='11' text-anchor='end' fill='#555'>"
           f"{_fmt(y1 - pad)}</text>",
           f"<text x='{yb - 5}' y='{sy(y0 + pad) + 4:.1f}' font-size='11' text-anchor='end' fill='#555'>"
           f"{_fmt(y0 + pad)}</text>",
           f"<text x='{(left + w - right) / 2:.0f}' y='{h - 8}' font-size='12' text-anchor='middle' fill='#333'>"
           "queries</text>",
           f"<text x='14' y='{(top + xb) / 2:.0f}' font-size='12' text-anchor='middle' fill='#333' "
           f"transform='rotate(-90 14 {(top + xb) / 2:.0f})'>best value</text>"]
    if natural_max is not None:
        y = sy(natural_max)
        out += [f"<line class='natural' x1='{yb}' y1='{y:.1f}' x2='{w - right}' y2='{y:.1f}' stroke='#b35900' "
                "stroke-width='1.2' stroke-dasharray='5 4'/>",
                f"<text x='{w - right - 4}' y='{y - 4:.1f}' font-size='10.5' text-anchor='end' fill='#b35900'>"
                "best natural image</text>"]
    out += [f"<polyline fill='none' stroke='#0b62b8' stroke-width='2' points='{poly}'/>", "</svg>"]
    return "\n".join(out)


def _figures(pngs: list, values: list, name: str, what: str) -> str:
    figs = []
    for i, p in enumerate(pngs):
        if p is None:
            continue
        v = values[i] if i < len(values) else None
        figs.append(f"<figure>{_img(p, name + f': {what} {i + 1}')}<figcaption>#{i + 1} · {_fmt(v, 4, False)}"
                    "</figcaption></figure>")
    return f"<div class='strip'>{''.join(figs)}</div>" if figs else "<p class='muted'>None recorded.</p>"


def _unit_page(summary: dict, labels: list[str], layer: dict, u: dict, prev, nxt) -> str:
    title = str(summary.get("title") or "mango atlas")
    several = len(labels) > 1
    parts = [f"<nav class='crumbs'><a href='index.html'>{_e(title)}</a> › "
             f"<a href='{layer['page']}'>{_e(layer['name'])}</a> › unit</nav>",
             f"<h1>{_e(u['name'])}</h1>",
             f"<p class='muted'>layer {_e(layer['name'])}, unit {u['index']}"
             + (f", shard {_e(u['shard'])}" if u.get("shard") else "") + "</p>",
             "<div class='pager'><span>"
             + (f"<a href='{prev['page']}'>← {_e(prev['name'])}</a>" if prev else "") + "</span><span>"
             + (f"<a href='{nxt['page']}'>{_e(nxt['name'])} →</a>" if nxt else "") + "</span></div>"]
    if several:
        figs = "".join(f"<figure><a href='#c{i}'>{_img(c['best_png'], u['name'] + ' at ' + labels[i])}</a>"
                       f"<figcaption>{_e(labels[i])}<br>{_fmt(c['normalized'])}</figcaption></figure>"
                       for i, c in enumerate(u["checkpoints"]))
        parts += ["<h2>Over training</h2>", f"<div class='strip'>{figs}</div>"]
    for i in reversed(range(len(labels))):
        c = u["checkpoints"][i]
        stats = ("<table class='stats'>"
                 f"<tr><th class='l'>normalized (best ÷ best natural)</th><td>{_fmt(c['normalized'])}</td></tr>"
                 f"<tr><th class='l'>best value</th><td>{_fmt(c['best_value'], 4, False)}</td></tr>"
                 f"<tr><th class='l'>best natural image</th><td>{_fmt(c['natural_max'], 4, False)}</td></tr>"
                 f"<tr><th class='l'>selectivity</th><td>{_fmt(c['selectivity'])}</td></tr>"
                 f"<tr><th class='l'>queries</th><td>{_fmt_int(c['n_queries'])}</td></tr></table>")
        block = [f"<section class='ckpt' id='c{i}'>",
                 f"<h2>{_e(labels[i])}</h2>" if several else "",
                 f"<div class='block'><div>{stats}</div><div><h3 style='margin-top:0'>Best so far</h3>"
                 f"{_curve_svg(c['curve'], c['natural_max'], c['n_queries'])}</div></div>",
                 "<h3>Top distinct stimuli</h3>", _figures(c["top_pngs"], c["top_values"], u["name"], "stimulus"),
                 "<h3>Top natural images</h3>",
                 _figures(c["natural_pngs"], c["natural_values"], u["name"], "natural image"),
                 "</section>"]
        parts.append("\n".join(b for b in block if b))
    return _page(f"{u['name']} — {title}", "\n".join(parts), str(summary.get("provenance") or ""))


def write_site(summary: dict, out_dir) -> pathlib.Path:
    """Write the atlas's HTML pages into ``out_dir`` and return the path of its ``index.html``.

    Parameters
    ----------
    summary : the atlas summary, a JSON-able dict: ``title``, ``description``,
        ``provenance`` (text), ``checkpoints`` (labels in training order, at
        least one) and ``layers``; each layer has ``name``, ``n_units``,
        ``summary`` (one row per checkpoint: ``median_normalized``,
        ``frac_above_natural``, ``n_units_done``, ``queries``) and ``units``;
        each unit has ``index``, ``name``, ``shard`` and ``checkpoints`` (one
        entry per checkpoint label, in the same order: ``best_value``,
        ``normalized``, ``n_queries``, ``best_png``, ``top_pngs``,
        ``top_values``, ``curve``, ``natural_max``, ``natural_pngs``,
        ``natural_values``, ``selectivity``).  Any number may be None (shown
        as "–", sorted last).  Image paths are relative to ``out_dir``, where
        the images must already be.
    out_dir : the atlas directory (created when missing).

    Returns
    -------
    pathlib.Path
        ``out_dir / "index.html"``; beside it ``layer-<slug>.html`` per layer
        and ``unit-<slug>-<index>.html`` per unit.  Writing again overwrites
        the pages (the same summary gives the same bytes).

    Raises
    ------
    ConfigError
        The summary has no ``layers`` or ``checkpoints``, a unit's
        ``checkpoints`` list does not match the atlas's checkpoints, a number
        is not a number, or an image path is absolute or leaves ``out_dir``.
    """
    labels, layers = _validate(summary)
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the atlas directory {out} is a file, not a directory; give the atlas directory.")
    out.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        units = _order(layer["units"], "index", False)
        for k, u in enumerate(units):
            prev = units[k - 1] if k > 0 else None
            nxt = units[k + 1] if k + 1 < len(units) else None
            _write(out / u["page"], _unit_page(summary, labels, layer, u, prev, nxt))
        _write(out / layer["page"], _layer_page(summary, labels, layer))
    index = out / "index.html"
    _write(index, _index_page(summary, labels, layers))
    return index
