"""The store and mounting stay apart: no import cycle among ``imgscan.store.*`` and
``imgscan.mount.*``, and neither package imports the other (issue 12)."""

from __future__ import annotations

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def import_graph(src: str = SRC) -> dict[str, set[str]]:
    """module -> the imgscan modules it imports anywhere (top level, in functions, or under
    TYPE_CHECKING: every one is a dependency a reader must follow)."""
    mods: dict[str, str] = {}
    for dirpath, _, files in os.walk(os.path.join(src, "imgscan")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, src)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        pkg = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names)
        graph[mod] = {m for m in out if m in mods and m != mod}
    return graph


def cycles(graph: dict[str, set[str]], keep: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module among those under ``keep``."""
    nodes = [m for m in graph if m.startswith(keep)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if not w.startswith(keep):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_no_cycle_among_store_and_mount_modules() -> None:
    assert cycles(import_graph(), ("imgscan.store", "imgscan.mount")) == []


def test_store_and_mount_never_import_each_other() -> None:
    graph = import_graph()
    crossing = sorted((m, d) for m, deps in graph.items() for d in deps
                      if (m.startswith("imgscan.store") and d.startswith("imgscan.mount"))
                      or (m.startswith("imgscan.mount") and d.startswith("imgscan.store")))
    assert crossing == []
