"""npm cataloger against `npm ls --all --json --long` for trees installed here by `npm install`.

The tree has a nested copy (debug@2.6.9 keeps its own ms@2.0.0 beside the top-level
ms@2.1.3), a deduplicated dependency (humanize-ms uses the top-level ms), a scoped package,
an alias (old-ms is ms@0.7.3) and a global install under usr/local/lib/node_modules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from analyzerharness import run_analyzer
from imgscan.analyzers.interface import FileInfo, FileKind
from imgscan.analyzers.npm import NpmAnalyzer
from imgscan.purls import package_purl

NPM = shutil.which("npm")
LOCAL = ["debug@2.6.9", "ms@2.1.3", "humanize-ms@1.2.1", "@tootallnate/once@2.0.0",
         "is-number@7.0.0", "old-ms@npm:ms@0.7.3"]
GLOBAL = ["is-number@6.0.0"]
QUIET = ["--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if NPM is None:
        pytest.fail("npm is not installed (apt-get install npm)")
    root = tmp_path_factory.mktemp("npm")
    app = root / "srv" / "app"
    app.mkdir(parents=True)
    subprocess.run([NPM, "install", "--prefix", str(app), *QUIET, *LOCAL], check=True,
                   capture_output=True)
    subprocess.run([NPM, "install", "-g", "--prefix", str(root / "usr/local"), *QUIET,
                    *GLOBAL], check=True, capture_output=True)
    return root


def _npm_ls(root: Path, *args: str) -> set[tuple[str, str, str, str]]:
    """(name, version, path relative to root, license) of every node `npm ls` prints."""
    proc = subprocess.run([NPM, "ls", "--all", "--json", "--long", *args], capture_output=True,
                          text=True)
    doc = json.loads(proc.stdout)
    out: set[tuple[str, str, str, str]] = set()

    def walk(node: dict) -> None:
        for key, dep in (node.get("dependencies") or {}).items():
            rel = str(Path(dep["path"]).relative_to(root))
            out.add((dep.get("name", key), dep["version"], rel, dep.get("license", "")))
            walk(dep)

    walk(doc)
    return out


def test_matches_npm_ls(tree: Path) -> None:
    expected = _npm_ls(tree, "--prefix", str(tree / "srv/app"))
    expected |= _npm_ls(tree, "-g", "--prefix", str(tree / "usr/local"))
    result = run_analyzer(NpmAnalyzer(), str(tree))
    assert not result.warnings
    got = {(p.name, p.version, p.locations[0][1:].removesuffix("/package.json"),
            p.licenses[0] if p.licenses else "") for p in result.packages}
    assert got == expected
    assert len(result.packages) == len(expected)
    # the facts the fixture was built to have
    versions = {(p.name, p.version) for p in result.packages}
    assert {("ms", "2.0.0"), ("ms", "2.1.3"), ("ms", "0.7.3"), ("@tootallnate/once", "2.0.0"),
            ("is-number", "6.0.0"), ("is-number", "7.0.0")} <= versions
    scoped = next(p for p in result.packages if p.name == "@tootallnate/once")
    assert package_purl(scoped, None) == "pkg:npm/%40tootallnate/once@2.0.0"
    alias = next(p for p in result.packages if p.version == "0.7.3")
    assert alias.metadata["installed_as"] == "old-ms"
    # the application manifest and the hidden lockfile are not packages
    assert not any(p.locations[0] == "/srv/app/package.json" for p in result.packages)


def _run_one(tmp_path: Path, content: bytes, rel: str = "node_modules/x/package.json"):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    return run_analyzer(NpmAnalyzer(), str(tmp_path))


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b'{"name": "x"}', "no version"),
        (b'{"name": "x", "version": 7}', "no version"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not"),
    ],
    ids=["syntax", "array", "string", "noversion", "intversion", "binary", "deep"],
)
def test_bad_package_json(tmp_path: Path, content: bytes, needle: str) -> None:
    result = _run_one(tmp_path, content)
    assert not result.packages
    assert len(result.warnings) == 1 and needle in result.warnings[0].message


def test_license_shapes_and_nameless(tmp_path: Path) -> None:
    _run_one(tmp_path, b'{"name": "a", "version": "1.0.0", "license": {"type": "ISC"}}',
             "node_modules/a/package.json")
    _run_one(tmp_path, b'{"version": "2.0.0", "licenses": [{"type": "MIT"}, "BSD"]}',
             "node_modules/@s/b/package.json")
    got = {(p.name, p.version, p.licenses) for p in run_analyzer(NpmAnalyzer(),
                                                                 str(tmp_path)).packages}
    assert got == {("a", "1.0.0", ("ISC",)), ("@s/b", "2.0.0", ("MIT", "BSD"))}


def test_required_paths() -> None:
    an = NpmAnalyzer()
    ok = ["app/node_modules/a/package.json", "node_modules/@s/a/package.json",
          "usr/lib/node_modules/npm/package.json",
          "x/node_modules/a/node_modules/@s/b/package.json",
          "x/node_modules/.pnpm/a@1.0.0/node_modules/a/package.json"]
    no = ["app/package.json", "node_modules/a/lib/package.json", "node_modules/package.json",
          "node_modules/@s/package.json", "node_modules/.bin/package.json",
          "node_modules/.package-lock.json", "node_modules/a/package.json.bak"]
    for p in ok:
        assert an.required(FileInfo(p, FileKind.FILE, size=100)), p
    for p in no:
        assert not an.required(FileInfo(p, FileKind.FILE, size=100)), p
    assert not an.required(FileInfo(ok[0], FileKind.FILE, size=9 << 20))
