"""The import graph of ``src/imgscan`` follows the data flow (DESIGN.md, issue 12).

Every module is parsed with ``ast``; an import counts wherever it stands (top level or inside
a function: a lazy import is still a dependency at run time), except under
``if TYPE_CHECKING:``, which never runs. On that graph:

* there is no cycle;
* the rules of the house hold (``RULES`` below: each forbids a package importing another);
* the command line imports only click and imgscan's public API (``CLI_ALLOWED``).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

#: the command line: the commands and their shared options, and the entry's fast path
CLI = ("imgscan.cli", "imgscan.clioptions", "imgscan.cli_listings", "imgscan.cli_vulns",
       "imgscan.cli_server", "imgscan.cli_fast", "imgscan.cli_store", "imgscan.cli_scan",
       "imgscan.cli_values")

#: What the command line may import of imgscan's: the public API and small value types. The
#: store, the sources, the analyzers, the secrets engine and the writers are reached only
#: through ``imgscan.api`` (and its lazily served ``imgscan.pipeline`` and ``imgscan.gate``).
CLI_ALLOWED = frozenset({
    "imgscan",
    "imgscan._version",
    "imgscan.api",
    "imgscan.errors",
    "imgscan.gate",
    "imgscan.model",
    "imgscan.mounting",  # mount and umount: the public API without imgscan.api's imports
    "imgscan.pipeline",
    "imgscan.server",  # serve, worker, audit: the public API beyond one machine
})

#: the ground floor: these import nothing of imgscan's
GROUND = ("imgscan._version", "imgscan.errors", "imgscan.fileinfo", "imgscan.model")

#: (importer prefixes, forbidden prefixes, the rule of DESIGN.md it keeps)
RULES: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("imgscan.scanner", "imgscan.analyzers"), ("imgscan.store", "imgscan.mount"),
     "the scanner and the analyzers are handed layers as values: never the store"),
    (("imgscan.store", "imgscan.mount", "imgscan.images"),
     ("imgscan.analyzers", "imgscan.scanner", "imgscan.reports", "imgscan.secrets",
      "imgscan.gate", "imgscan.pipeline", "imgscan.api", *CLI),
     "the store and the sources never import analyzers or writers"),
    (("imgscan.images",), ("imgscan.store", "imgscan.mount"),
     "sources never import the store"),
    (("imgscan.store",), ("imgscan.mount",), "the store does not know about mounting"),
    (("imgscan.mount",), ("imgscan.store",), "mounting uses the store it is handed"),
    (("imgscan.secrets",), ("imgscan.analyzers", "imgscan.scanner"),
     "the secrets engine is a library: it never imports the analyzer framework"),
    (("imgscan.gate",), ("imgscan.reports", "imgscan.analyzers", "imgscan.scanner"),
     "the gate judges the model: it never imports the writers"),
    (("imgscan.reports",), ("imgscan.analyzers", "imgscan.scanner", "imgscan.store",
                            "imgscan.mount", "imgscan.images", "imgscan.gate"),
     "writers render the model: never analyzers"),
    (GROUND, ("imgscan",), "the model, the errors and the small value types import nothing"),
]


def modules(src: str = SRC) -> dict[str, str]:
    """module name -> file path, for every module under ``src/imgscan``."""
    mods: dict[str, str] = {}
    for dirpath, _, files in os.walk(os.path.join(src, "imgscan")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, src)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all but those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def import_graph(src: str = SRC) -> dict[str, set[str]]:
    """module -> the imgscan modules it imports at run time (lazily or not). ``from a import
    b`` counts as importing ``a.b`` when that is a module, else ``a``; importing ``a.b`` also
    runs ``a/__init__.py``, so the package counts too."""
    mods = modules(src)
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        pkg = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        out: set[str] = set()
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                       for a in node.names)
        deps = set()
        for m in out:
            parts = m.split(".")
            deps.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[mod] = {m for m in deps if m in mods and m != mod and not mod.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _under(mod: str, prefixes: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_lazy_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    # FileInput.elf() imports the ELF reader inside the method: a real dependency
    assert "imgscan.analyzers.elffile" in graph["imgscan.analyzers.interface"]
    # the ELF reader names FileInput only for annotations, under TYPE_CHECKING
    assert "imgscan.analyzers.interface" not in graph["imgscan.analyzers.elffile"]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_rules_of_the_house() -> None:
    graph = import_graph()
    broken = sorted(f"{m} imports {d}: {why}"
                    for importers, forbidden, why in RULES
                    for m, deps in graph.items() if _under(m, importers)
                    for d in deps if _under(d, forbidden) and not _under(d, importers))
    assert broken == []


def test_cli_imports_only_the_public_api() -> None:
    graph = import_graph()
    cli = {m for m in graph if _under(m, CLI)}
    assert cli == set(CLI)
    stray = sorted(f"{m} imports {d}" for m in cli for d in graph[m]
                   if d not in CLI_ALLOWED and not _under(d, CLI))
    assert stray == []
