"""Architecture rules, checked from the source: the layers, no import cycles, no private access across modules.

The checks read ``mango/`` with :mod:`ast`, so they see every import and
attribute access, including the ones inside functions (a lazy import that only
hides a cycle still counts as one).
"""

from __future__ import annotations

import ast
import pathlib

import mango

ROOT = pathlib.Path(mango.__file__).parent

# Names with a leading underscore that are public API of the standard library.
_PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make", "_exit", "_field_defaults"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("mango",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the mango modules it imports (anywhere in the file)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # ``from pkg import sub`` depends on the submodule, not on the package's __init__
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in mods else module for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in mods and t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


# getattr(obj, "_x", ...) and kin: the builtins that name an attribute by a string
_BY_NAME = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in _PUBLIC_UNDERSCORE


def _owns(owner: ast.expr, scopes: list[ast.AST]) -> bool:
    """Whether ``owner`` is the object's own: ``super()``, or ``self`` / ``cls`` as the first argument of the
    function that binds it (the innermost enclosing function, or lambda, with an argument of that name)."""
    if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
        return True
    if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
        return False
    for fn in reversed(scopes):
        a = fn.args
        names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + [x.arg for x in (a.vararg, a.kwarg) if x]
        if owner.id in names:
            first = (a.posonlyargs + a.args)[:1]
            return bool(first) and first[0].arg == owner.id
    return False


def _uses(tree: ast.AST):
    """Every use of an attribute, as ``(node, owner, name, store, scopes)``: ``owner.name`` and
    ``getattr(owner, "name")`` (``setattr`` / ``delattr`` store); ``scopes`` are the functions (and lambdas)
    that enclose it, outermost first."""
    work: list[tuple[ast.AST, list[ast.AST]]] = [(tree, [])]
    while work:
        node, scopes = work.pop()
        if isinstance(node, ast.Attribute):
            yield node, node.value, node.attr, isinstance(node.ctx, (ast.Store, ast.Del)), scopes
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BY_NAME
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            yield node, node.args[0], node.args[1].value, node.func.id in ("setattr", "delattr"), scopes
        inner = scopes + [node] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else scopes
        work.extend((child, inner) for child in ast.iter_child_nodes(node))


def private_uses(source: str, label: str) -> list[tuple[int, str]]:
    """Uses of a private name of another module or object, as ``(line, code)``:
    ``obj._x``, ``getattr(obj, "_x")`` (and ``hasattr``), ``obj._x = ...``, ``setattr(obj, "_x", ...)``
    (and ``delattr``), ``from m import _x``.

    Allowed: ``self._x`` / ``cls._x`` where ``self`` / ``cls`` is the first
    argument of its function, and ``super()._x`` (a class's own, or inherited,
    protected members); and reading any ``_x`` the module defines itself (a
    function, class, argument or variable, or an attribute it assigns on its
    own objects: ``self._x = ...``).  Assigning a private attribute of any other
    object (``obj._x = ...``, ``setattr(obj, "_x", ...)``) is a use, not a
    definition: that is how a module patches another one.
    """
    tree = ast.parse(source, label)
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    uses = list(_uses(tree))
    defined.update(name for _, owner, name, store, scopes in uses if store and _owns(owner, scopes))
    bad = []
    for node, owner, name, store, scopes in uses:
        if not _is_private(name) or _owns(owner, scopes) or (name in defined and not store):
            continue
        bad.append(((node.lineno, node.col_offset), ast.unparse(node)))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and alias.name != "_version":
                    bad.append(((node.lineno, node.col_offset), f"imports {alias.name}"))
    return [(pos[0], code) for pos, code in sorted(bad)]  # in source order


def private_accesses(source: str, label: str) -> list[str]:
    """:func:`private_uses` as lines ``label:line: code``."""
    return [f"{label}:{line}: {code}" for line, code in private_uses(source, label)]


def test_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 40 and "mango.runs.loop" in graph and graph["mango.runs.loop"], "the import graph was not read"
    assert cycles(graph) == []


# The layers, lowest first: a module imports only from its own layer and the layers below (anywhere in the
# file, lazy imports included).  A module belongs to the layer of the longest prefix below that names it.
LAYERS = [
    ("foundation", ["mango._version", "mango.errors"]),
    ("search spaces", ["mango.spaces"]),
    ("stimuli and responses", ["mango.generators", "mango.oracles"]),
    ("models and their builder", ["mango.zoo"]),
    ("optimizers", ["mango.optimizers"]),
    ("natural images", ["mango.runs.natural"]),
    ("runs", ["mango.runs", "mango.rig"]),
    ("outputs", ["mango.runs.report"]),
    ("studies over many runs", ["mango.runs.track", "mango.runs.atlas", "mango.bench"]),
    ("command line", ["mango.cli"]),
    ("the public facade", ["mango"]),
]


def layer_of(module: str) -> int:
    best, level = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, level = p, i
    assert level is not None, f"{module} is in no layer: add it to LAYERS"
    return level


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer to a higher one, as ``module (layer) -> module (layer)``."""
    name = lambda m: f"{m} ({LAYERS[layer_of(m)][0]})"  # noqa: E731
    return sorted(f"{name(a)} -> {name(b)}" for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def test_imports_go_down_the_layers():
    graph = import_graph()
    assert all(layer_of(m) is not None for m in graph)
    assert upward_imports(graph) == []


def test_layer_checker_flags_an_upward_import():
    assert upward_imports({"mango.spaces": {"mango.runs.loop"}, "mango.runs.loop": {"mango.spaces"}}) == [
        "mango.spaces (search spaces) -> mango.runs.loop (runs)"]
    assert layer_of("mango.runs.report.watch.server") == layer_of("mango.runs.report.html") > layer_of("mango.runs.loop")


def test_top_level_has_at_most_twelve_entries():
    entries = sorted(p.name for p in ROOT.iterdir()
                     if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists()))
    assert len(entries) <= 12, entries


def test_only_the_command_line_parses_arguments():
    """argparse lives in ``mango.cli``; the zoo's training scripts (``python -m mango.zoo.train``, ``train_*``) are
    developer tools with their own options."""
    users = sorted(name for name, path in _modules().items()
                   if any(isinstance(n, (ast.Import, ast.ImportFrom))
                          and "argparse" in ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module])
                          for n in ast.walk(ast.parse(path.read_text()))))
    assert [u for u in users if not u.startswith("mango.cli")
            and not (u == "mango.zoo.train" or u.startswith("mango.zoo.train_"))] == []
    assert "mango.zoo.train" in users  # the check reads the imports


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# The private names of other objects that a module may use, each narrowly (module, code) -> why.
_CLI_NAMESPACE = "a value the CLI keeps on its own argparse Namespace between two of its steps"
ALLOWED_PRIVATE = {
    ("mango.optimizers.nevergrad_opt", "getattr(opt, '_popsize', None)"):
        "reads the population size of nevergrad's CMA, which has no public attribute for it "
        "(NevergradOptimizer.preferred_batch_size)",
    ("mango.optimizers.nevergrad_opt", "getattr(opt, '_optim', None)"):
        "reads the optimizer a nevergrad MetaModel delegates to, which has no public attribute for it "
        "(NevergradOptimizer._chain)",
    ("mango.optimizers.nevergrad_opt", "getattr(optimizerlib, '_CMA', None)"):
        "recognizes nevergrad's CMA-ES, whose class is private, to refuse a full covariance this machine cannot "
        "hold (nevergrad_opt._full_cma)",
    ("mango.optimizers.nevergrad_opt", "getattr(opt, '_config', None)"):
        "reads whether that CMA-ES is diagonal, from its configuration, which has no public attribute "
        "(nevergrad_opt._full_cma)",
    ("mango.cli.maximize", "args._select"): _CLI_NAMESPACE,
    ("mango.cli.maximize", "getattr(args, '_select', None)"): _CLI_NAMESPACE,
    ("mango.cli.maximize", "args._reference_line"): _CLI_NAMESPACE,
    ("mango.cli.maximize", "getattr(args, '_reference_line', None)"): _CLI_NAMESPACE,
}


def test_no_module_reads_another_modules_private_attributes():
    found = [(name, line, code) for name, path in _modules().items()
             for line, code in private_uses(path.read_text(), name)]
    assert [f"{name}:{line}: {code}" for name, line, code in found if (name, code) not in ALLOWED_PRIVATE] == []
    gone = set(ALLOWED_PRIVATE) - {(name, code) for name, _, code in found}
    assert not gone, f"allowed private uses that are gone (drop them from ALLOWED_PRIVATE): {sorted(gone)}"


def test_private_access_checker_flags_a_read():
    source = (
        "from mango.x import _hidden\n"
        "class A:\n"
        "    def f(self, run, opt):\n"
        "        opt._own = 1\n"
        "        return run._points, opt._own, self._mine, super()._base\n"
    )
    # assigning another object's private attribute is a use too (a patch, or a tag on a foreign object)
    assert private_accesses(source, "m") == ["m:1: imports _hidden", "m:4: opt._own", "m:5: run._points",
                                             "m:5: opt._own"]


def test_private_access_checker_exempts_self_and_cls_only_as_first_argument():
    source = (
        "class A:\n"
        "    def f(self, other):\n"
        "        def inner(x):\n"
        "            return self._closure, x._arg\n"
        "        return self._mine, other._theirs, inner, lambda self: self._lam\n"
        "    @classmethod\n"
        "    def g(cls):\n"
        "        return cls._cmine\n"
        "def patch(seq):\n"
        "    cls = seq.Sampler\n"
        "    original = cls._sample\n"
        "    cls._sample = original\n"
        "    cls._marker = True\n"
        "def h(x, self):\n"
        "    return self._second\n"
    )
    assert private_accesses(source, "m") == [
        "m:4: x._arg", "m:5: other._theirs", "m:11: cls._sample", "m:12: cls._sample", "m:13: cls._marker",
        "m:15: self._second"]


def test_private_access_checker_counts_getattr_and_setattr_with_a_private_name():
    source = (
        "class A:\n"
        "    def f(self, opt):\n"
        "        setattr(self, '_mine', 1)\n"
        "        return getattr(self, '_mine'), getattr(opt, '_popsize', None), hasattr(opt, '_x'), getattr(opt, n)\n"
        "def g(module, f):\n"
        "    setattr(module, '_hook', f)\n"
        "    delattr(module, '_old')\n"
        "    return getattr(module, 'public'), getattr(module, '__name__')\n"
    )
    assert private_accesses(source, "m") == [
        "m:4: getattr(opt, '_popsize', None)", "m:4: hasattr(opt, '_x')", "m:6: setattr(module, '_hook', f)",
        "m:7: delattr(module, '_old')"]


def test_py_typed_ships_with_the_package():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT.parent / "setup.cfg")
    assert (ROOT / "py.typed").exists()
    assert "py.typed" in [f.strip() for f in cfg["options.package_data"]["mango"].split(",")]
