"""Matching: real OSV records (Go vulndb, PyPA) and hand-written edge cases; Go symbol
reachability read from the pclntab of stripped Go 1.19 binaries built here."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from imgscan.analyzers.gosymbols import function_names, symbol_index
from imgscan.model import OSInfo, Package, Severity
from imgscan.vulns import import_paths, match_packages

DATA = Path(__file__).parent / "data" / "osv"
DEB12 = OSInfo(id="debian", version_id="12")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "vulns.db"
    r = import_paths(path, [DATA / "go", DATA / "pypa", DATA / "edge"])
    assert not r.problems
    return path


def _ids(db: Path, pkgs: list[Package], os_info: OSInfo | None = None, **kw) -> set[str]:
    return {i for f in match_packages(pkgs, os_info, db, **kw).findings
            for i in f.properties["ids"]}


def test_debian_source_package_and_release(db: Path) -> None:
    old = Package(type="deb", name="libssl3", version="3.0.9-1", source_name="openssl",
                  source_version="3.0.9-1", purl="pkg:deb/debian/libssl3@3.0.9-1")
    fixed = Package(type="deb", name="libssl3", version="3.0.11-1~deb12u2",
                    source_name="openssl", source_version="3.0.11-1~deb12u2")
    res = match_packages([old, fixed], DEB12, db)
    assert [f.properties["ids"] for f in res.findings] == [["EDGE-DEB-1"]]
    f = res.findings[0]
    assert f.severity is Severity.CRITICAL and f.properties["cvss_score"] == 9.8
    assert f.rule_id == "CVE-2099-0001" and f.properties["fixed_version"] == "3.0.11-1~deb12u1"
    assert f.category == "vulnerability" and f.package == old.purl and f.id
    # Debian 11's record and the PyPI record of the same name do not apply
    assert _ids(db, [old], OSInfo(id="debian", version_id="11")) == {"EDGE-DEB-11"}
    exact = Package(type="deb", name="libssl3", version="3.0.11-1~deb12u1",
                    source_name="openssl")
    assert not _ids(db, [exact], DEB12)  # the fixed version itself


def test_alpine_origin(db: Path) -> None:
    alp = OSInfo(id="alpine", version_id="3.19.1")
    p = Package(type="apk", name="ssl_client", version="1.36.1-r15", source_name="busybox")
    assert _ids(db, [p], alp) == {"EDGE-ALPINE"}
    assert not _ids(db, [Package(type="apk", name="busybox", version="1.36.1-r16")], alp)


def test_pypi_aliases_merge_and_fix(db: Path) -> None:
    res = match_packages([Package(type="pypi", name="Jinja2", version="2.10")], None, db)
    assert len(res.findings) == 1
    f = res.findings[0]
    assert f.properties["ids"] == ["GHSA-462w-v97r-4m45", "PYSEC-2019-217"]
    assert f.rule_id == "CVE-2019-10906" and f.properties["fixed_version"] == "2.10.1"
    assert f.severity is Severity.HIGH  # the GHSA's own rating; PYSEC has none
    assert not _ids(db, [Package(type="pypi", name="jinja2", version="2.10.1")])
    assert _ids(db, [Package(type="pypi", name="urllib3", version="1.25.8")]) == {
        "PYSEC-2020-148"}


def test_last_affected_limit_versions_withdrawn(db: Path) -> None:
    def ids(t: str, n: str, v: str, **kw) -> set[str]:
        return _ids(db, [Package(type=t, name=n, version=v)], **kw)
    assert ids("pypi", "edge.pkg", "1.4") == {"EDGE-LAST"}
    assert ids("pypi", "edge-pkg", "1.4.1") == set()
    assert ids("pypi", "edge-pkg", "0.9") == set()
    assert ids("npm", "limited", "1.5.0") == {"EDGE-LIMIT"}  # withdrawn one is gone
    assert ids("npm", "limited", "2.5.0") == set()  # past the limit
    assert ids("cargo", "listed", "0.1.2") == {"EDGE-VERSIONS"}
    assert ids("cargo", "listed", "0.1.1") == set()
    assert ids("pypi", "edge-pkg", "1.0", only_fixed=True) == set()  # no fix exists


def test_unorderable_version_is_a_warning(db: Path) -> None:
    res = match_packages([Package(type="npm", name="limited", version="not-a-version")],
                         None, db)
    assert not res.findings and "cannot order" in res.warnings[0].message


GO = shutil.which("go")


def _module(proxy: Path, path: str, version: str, files: dict[str, str]) -> None:
    d = proxy / path / "@v"
    d.mkdir(parents=True, exist_ok=True)
    gomod = f"module {path}\n\ngo 1.19\n"
    (d / f"{version}.info").write_text(f'{{"Version":"{version}","Time":"2020-01-01T00:00:00Z"}}')
    (d / f"{version}.mod").write_text(gomod)
    with zipfile.ZipFile(d / f"{version}.zip", "w") as z:
        z.writestr(f"{path}@{version}/go.mod", gomod)
        for name, body in files.items():
            z.writestr(f"{path}@{version}/{name}", body)
    (d / "list").write_text(version + "\n")


@pytest.fixture(scope="module")
def go_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if GO is None:
        pytest.fail("go is not installed (apt-get install golang-go)")
    base = tmp_path_factory.mktemp("gobin")
    proxy = base / "proxy"
    # a stand-in for golang.org/x/text v0.3.5 (no network): Parse is what GO-2021-0113 names
    _module(proxy, "golang.org/x/text", "v0.3.5", {"language/language.go": (
        "package language\n\nimport \"strings\"\n\n"
        "func Parse(s string) (string, error) { return strings.ToLower(s), nil }\n\n"
        "func Make(s string) string { return strings.ToUpper(s) }\n")})
    out = {}
    for name, body in {
        "uses-parse": 'import (\n\t"fmt"\n\t"net/http"\n\t"golang.org/x/text/language"\n)\n\n'
                      'func main() {\n\tt, _ := language.Parse("EN")\n\tr, err := '
                      'http.Get("http://127.0.0.1:1/")\n\tfmt.Println(t, r, err)\n}\n',
        "uses-make": 'import (\n\t"fmt"\n\t"golang.org/x/text/language"\n)\n\n'
                     'func main() { fmt.Println(language.Make("en")) }\n',
    }.items():
        app = base / name
        app.mkdir()
        (app / "go.mod").write_text(f"module example.com/{name}\n\ngo 1.19\n\n"
                                    "require golang.org/x/text v0.3.5\n")
        (app / "main.go").write_text("package main\n\n" + body)
        env = dict(os.environ, GOPROXY=f"file://{proxy}", GOSUMDB="off", GOFLAGS="-mod=mod",
                   GOMODCACHE=str(base / "modcache"), CGO_ENABLED="0")
        out[name] = base / f"{name}.bin"
        subprocess.run([GO, "build", "-ldflags=-s -w", "-o", str(out[name]), "."], cwd=app,
                       env=env, check=True)
    return out


def test_go_reachability(db: Path, go_bins: dict[str, Path]) -> None:
    version = subprocess.run([GO, "env", "GOVERSION"], capture_output=True, text=True,
                             check=True).stdout.strip()
    syms = {str(p): symbol_index(function_names(p.read_bytes())) for p in go_bins.values()}
    names = function_names(go_bins["uses-parse"].read_bytes())
    assert "net/http.(*Client).Get" in names or "net/http.(*Client).Do" in names
    for name, path in go_bins.items():
        pkgs = [Package(type="golang", name="stdlib", version=version, locations=(str(path),)),
                Package(type="golang", name="golang.org/x/text", version="v0.3.5",
                        locations=(str(path),))]
        res = match_packages(pkgs, None, db, go_symbols=syms)
        by_id = {f.properties["ids"][0]: f for f in res.findings}
        assert {"GO-2021-0113", "GO-2023-1751"} <= set(by_id), name
        html = by_id["GO-2023-1751"]  # html/template is linked into neither binary
        assert html.properties["reachability"] == "not-reachable"
        assert html.severity is Severity.INFO and "html/template" in \
            html.properties["reachability_reason"]
        text = by_id["GO-2021-0113"]
        want = "reachable" if name == "uses-parse" else "not-reachable"
        assert text.properties["reachability"] == want, name
        if name == "uses-parse":
            assert by_id["GO-2023-1878"].properties["reachability"] == "reachable"
        strict = match_packages(pkgs, None, db, go_symbols=syms, strict_reachability=True)
        assert all(f.severity is not Severity.INFO for f in strict.findings)
