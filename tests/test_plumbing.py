"""Which way the imports run: writers are plugins, the scanner names no plugin, no circles."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from imgscan.reports.interface import ENTRY_POINT_GROUP, ReportFormat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "imgscan"


def _registered_writers() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(project["project"]["entry-points"][ENTRY_POINT_GROUP])


def _imports(path: Path) -> set[str]:
    """Every imgscan module a file imports (``from a import b`` counts as ``a.b`` too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("imgscan")}


def test_builtin_writers_are_entry_points_of_the_project() -> None:
    registered = _registered_writers()
    assert set(registered) == {f.value for f in ReportFormat}
    assert all(v.startswith("imgscan.reports.") for v in registered.values())


def test_writers_import_only_the_interface_and_common_modules() -> None:
    allowed = {"imgscan.reports.interface", "imgscan.reports.common"}
    writers = {v.partition(":")[0] for v in _registered_writers().values()}
    for module in writers:
        path = SRC / "reports" / (module.rsplit(".", 1)[1] + ".py")
        reports = {m for m in _imports(path) if m.startswith("imgscan.reports.")}
        assert {m.rsplit(".", 1)[0] if m not in allowed else m for m in reports} <= allowed
    assert not {m for m in _imports(SRC / "reports" / "interface.py")
                if m.startswith("imgscan.reports.")}


def test_loading_one_writer_imports_no_other() -> None:
    code = ("import sys\nfrom imgscan.reports.interface import get_writer\nget_writer('json')\n"
            "print(sorted(m for m in sys.modules if m.startswith('imgscan.reports.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(["imgscan.reports.common", "imgscan.reports.interface",
                               "imgscan.reports.json_writer"])


def test_the_scanner_names_no_plugin_and_no_module_imports_the_package_root() -> None:
    text = (SRC / "scanner.py").read_text(encoding="utf-8")
    for plugin in ("os-release", "osrelease", "elf-fortify", "ALWAYS", "FACT_UPDATES"):
        assert plugin not in text
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "imgscan":
                assert "__version__" not in {a.name for a in node.names}, path


def test_imgscan_scan_stays_the_function_after_a_scan(tmp_path: Path) -> None:
    """The scanner module is not named ``scan``: importing it must not replace the package's
    ``imgscan.scan`` function with a module (it did, so a library's second scan failed)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("ID=debian\nVERSION_ID=12\n")
    code = ("import imgscan\n"
            f"a = imgscan.scan('dir:{tmp_path}', analyzers=['os-release'])\n"
            f"b = imgscan.scan('dir:{tmp_path}', analyzers=['os-release'])\n"
            "print(callable(imgscan.scan), a.os.id, b.os.id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "debian", "debian"]
