"""The package's import structure: no import circles, no upward arrows.

Every module under rethinkgen_tf/ is parsed (not imported), with its imports at any
depth (function-level ones too: a lazy import hides a circle, it does not remove it).
`from pkg import name` points at pkg.name where that is a module, else at pkg.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rethinkgen_tf"


def modules(root=ROOT, package=PACKAGE):
    """{dotted module name: path} of every .py file of the package."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name, path, known):
    """The package modules that module `name` (at `path`) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:  # import a.b.c: the deepest module known
                    target = target.rpartition(".")[0]
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in known else source)
    found.discard(name)
    return found


def graph(root=ROOT, package=PACKAGE):
    known = modules(root, package)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(g):
    """The strongly connected components of g with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def describe(g, component):
    inside = set(component)
    return "; ".join(f"{a} -> {b}" for a in component for b in sorted(g[a] & inside))


def test_the_graph_reads_every_kind_of_import(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from rethinkgen_tf import b\n")
    (pkg / "b.py").write_text("from rethinkgen_tf.sub.c import x\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("import rethinkgen_tf.a\nfrom .. import b\nimport os\n")
    g = graph(tmp_path)
    assert g == {PACKAGE: set(), f"{PACKAGE}.a": {f"{PACKAGE}.b"},
                 f"{PACKAGE}.b": {f"{PACKAGE}.sub.c"},
                 f"{PACKAGE}.sub": {f"{PACKAGE}.sub.c"},
                 f"{PACKAGE}.sub.c": {f"{PACKAGE}.a", f"{PACKAGE}.b"}}
    assert cycles(g) == [[f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.sub.c"]]


def test_the_package_has_no_import_circle():
    g = graph()
    assert len(g) > 20 and f"{PACKAGE}.train" in g
    found = cycles(g)
    assert not found, "import circles: " + " | ".join(describe(g, c) for c in found)


@pytest.mark.parametrize("low, high", [
    ("ops", "data"),            # the ops own the plan (ops.randomizations); the data layer reads it
    ("ops", "train"),
    ("data", "user_model"),     # the data layer reads files; it knows nothing of models
    ("data", "models"),
    ("data", "train"),
    ("recipes", "models"),      # recipes are data: they import nothing of the package
    ("recipes", "train"),
    ("evaluate", "train"),
])
def test_no_upward_arrow(low, high):
    g = graph()
    lows = [m for m in g if m == f"{PACKAGE}.{low}" or m.startswith(f"{PACKAGE}.{low}.")]
    assert lows
    bad = [(m, t) for m in lows for t in g[m]
           if t == f"{PACKAGE}.{high}" or t.startswith(f"{PACKAGE}.{high}.")]
    assert not bad


def test_recipes_import_nothing_of_the_package():
    assert graph()[f"{PACKAGE}.recipes"] == set()
