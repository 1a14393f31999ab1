"""Draw docs/architecture.svg: the data flow from oracle to report (left) and the packages in their layers (right).

The layers are read from ``tests/test_architecture.py`` (``LAYERS``), the order the tests hold the code to, so
the picture follows the code:  python docs/architecture_svg.py
"""

from __future__ import annotations

import ast
import html
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def layers() -> list[tuple[str, list[str]]]:
    tree = ast.parse((ROOT / "tests" / "test_architecture.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LAYERS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("LAYERS not found in tests/test_architecture.py")


def box(x, y, w, h, title, sub="", fill="#eef3fb", stroke="#4a6fa5"):
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="{stroke}"/>',
           f'<text x="{x + w / 2}" y="{y + (h / 2 - 3 if sub else h / 2 + 5)}" text-anchor="middle" '
           f'font-weight="bold">{html.escape(title)}</text>']
    if sub:
        out.append(f'<text x="{x + w / 2}" y="{y + h / 2 + 13}" text-anchor="middle" font-size="11" '
                   f'fill="#444">{html.escape(sub)}</text>')
    return out


def arrow(x1, y1, x2, y2, label="", dx=6, dy=-4):
    out = [f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" stroke-width="1.4" '
           'marker-end="url(#head)"/>']
    if label:
        out.append(f'<text x="{(x1 + x2) / 2 + dx}" y="{(y1 + y2) / 2 + dy}" font-size="11" '
                   f'fill="#a33">{html.escape(label)}</text>')
    return out


def flow() -> list[str]:
    """The left panel: one query batch, from the optimizer's ask to the report."""
    s = ['<text x="20" y="30" font-size="15" font-weight="bold">Data flow of a run</text>']
    W, H = 190, 44
    pos = {  # name: (x, y, title, package)
        "opt": (30, 60, "Optimizer.ask(n)", "mango.optimizers"),
        "space": (30, 150, "points in a Space", "mango.spaces"),
        "gen": (30, 240, "Generator.decode", "mango.generators (zoo)"),
        "oracle": (30, 330, "Oracle", "mango.oracles, mango.rig"),
        "obj": (270, 330, "Objective", "mango.runs.objective"),
        "tell": (270, 60, "Optimizer.tell", "mango.optimizers"),
        "loop": (270, 195, "maximize() loop", "mango.runs.loop (budget)"),
        "store": (150, 430, "RunStore", "mango.runs.store, resume"),
        "result": (150, 510, "Result, result.json", "mango.runs.result(file)"),
        "report": (150, 590, "report, watch, NWB", "mango.runs.report"),
    }
    for x, y, t, p in pos.values():
        s += box(x, y, W, H, t, p)
    c = lambda k, side: {  # noqa: E731
        "top": (pos[k][0] + W / 2, pos[k][1]), "bottom": (pos[k][0] + W / 2, pos[k][1] + H),
        "left": (pos[k][0], pos[k][1] + H / 2), "right": (pos[k][0] + W, pos[k][1] + H / 2)}[side]
    s += arrow(*c("opt", "bottom"), *c("space", "top"), "points")
    s += arrow(*c("space", "bottom"), *c("gen", "top"), "latent z")
    s += arrow(*c("gen", "bottom"), *c("oracle", "top"), "stimuli")
    s += arrow(*c("oracle", "right"), *c("obj", "left"), "responses", dx=-27, dy=16)
    s += arrow(*c("obj", "top"), *c("loop", "bottom"), "values")
    s += arrow(*c("loop", "top"), *c("tell", "bottom"), "tell")
    s += arrow(pos["oracle"][0] + W / 2, pos["oracle"][1] + H, pos["store"][0] + 40, pos["store"][1], "each batch")
    s += arrow(*c("store", "bottom"), *c("result", "top"))
    s += arrow(*c("result", "bottom"), *c("report", "top"))
    return s


def stack(x0: int) -> list[str]:
    """The right panel: the layers, lowest at the bottom, each with its packages."""
    ls = layers()
    s = [f'<text x="{x0}" y="30" font-size="15" font-weight="bold">Packages by layer '
         '(imports only go down)</text>']
    row, top, W = 56, 50, 520
    for i, (name, prefixes) in enumerate(reversed(ls)):
        y = top + i * row
        s.append(f'<text x="{x0}" y="{y + row / 2 + 2}" font-size="11" fill="#555">{html.escape(name)}</text>')
        n = len(prefixes)
        bw = (W - 10 * (n - 1)) / n
        for j, p in enumerate(prefixes):
            label = p.replace("mango.", "", 1).replace(".", "/") + ("/" if p not in (
                "mango._version", "mango.errors", "mango.spaces", "mango") else ".py")
            if p == "mango":
                label = "mango/__init__.py"
            elif p in ("mango._version", "mango.errors", "mango.spaces"):
                label = p.split(".")[1] + ".py"
            s += box(x0 + 150 + j * (bw + 10), y + 6, bw, row - 14, label, fill="#f4f4f4", stroke="#777")
    bottom = top + len(ls) * row
    s.append(f'<line x1="{x0 + 135}" y1="{bottom - 8}" x2="{x0 + 135}" y2="{top + 6}" stroke="#777" '
             'stroke-width="1.2" marker-end="url(#head)"/>')
    s.append(f'<text x="{x0 + 128}" y="{top + 2}" font-size="10" fill="#555" text-anchor="end">higher</text>')
    return s


def main() -> None:
    body = flow() + stack(500)
    height = 50 + len(layers()) * 56 + 30
    height = max(height, 660)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="{height}" viewBox="0 0 1200 {height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="13">',
           '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
           f'<rect width="1200" height="{height}" fill="white"/>', *body, "</svg>"]
    (HERE / "architecture.svg").write_text("\n".join(svg) + "\n")
    print(HERE / "architecture.svg")


if __name__ == "__main__":
    main()
