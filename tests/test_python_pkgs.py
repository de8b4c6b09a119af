"""Python cataloger against `pip list --path DIR` for wheels installed by `pip install --target`.

Names chosen for their spelling: dots (zope.event), underscores (typing_extensions), dashes
whose dist-info directory uses underscores (python-dateutil), capitals (PySocks). An egg-info
directory and a single-file egg-info written here are listed by pip too, so they are part of
the comparison; zipped and unzipped eggs are checked against the PKG-INFO the test wrote.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from analyzerharness import run_analyzer
from imgscan.analyzers.interface import FileInfo, FileKind
from imgscan.analyzers.python_pkgs import PythonAnalyzer
from imgscan.purls import package_purl

WHEELS = ["six==1.16.0", "python-dateutil==2.8.2", "typing_extensions==4.5.0",
          "zope.event==4.6", "PySocks==1.7.1", "idna==3.4"]
SITE = "usr/lib/python3.11/site-packages"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("py")
    target = root / SITE
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-compile", "--target", str(target), *WHEELS],
        check=True,
    )
    egg_info = target / "Old_Pkg-0.9.egg-info"
    egg_info.mkdir()
    (egg_info / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: Old_Pkg\nVersion: 0.9.post1\nLicense: BSD\n"
    )
    (target / "single.file-2.0b1-py3.11.egg-info").write_text(
        "Metadata-Version: 1.1\nName: single.file\nVersion: 2.0b1\n"
        "Classifier: License :: OSI Approved :: MIT License\n"
    )
    return root


def _pip_list(path: Path) -> set[tuple[str, str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--disable-pip-version-check", "--path",
         str(path), "--format", "json"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {(d["name"], d["version"]) for d in json.loads(out)}


def test_matches_pip_list(site: Path) -> None:
    expected = _pip_list(site / SITE)
    assert len(expected) == len(WHEELS) + 2
    result = run_analyzer(PythonAnalyzer(), str(site))
    assert not result.warnings
    assert {(p.name, p.version) for p in result.packages} == expected
    assert len(result.packages) == len(expected)
    by_name = {p.name: p for p in result.packages}
    du = by_name["python-dateutil"]
    assert du.locations == (f"/{SITE}/python_dateutil-2.8.2.dist-info/METADATA",)
    assert du.metadata["site_packages"] == f"/{SITE}"
    assert du.metadata["installer"] == "pip"
    assert du.licenses  # "Dual License" in 2.8.2's License header
    assert by_name["Old_Pkg"].licenses == ("BSD",)
    assert package_purl(by_name["zope.event"], None) == "pkg:pypi/zope-event@4.6"
    assert by_name["single.file"].licenses == ("MIT License",)
    assert all(p.type == "pypi" and not p.purl and p.layer is None for p in result.packages)


def _egg_zip(path: Path, pkg_info: bytes | None, extra: int = 0) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        if pkg_info is not None:
            z.writestr("EGG-INFO/PKG-INFO", pkg_info)
        for i in range(extra):
            z.writestr(f"x/{i}", b"")


def test_eggs(tmp_path: Path) -> None:
    site = tmp_path / "opt/app/lib/python3.9/site-packages"
    site.mkdir(parents=True)
    _egg_zip(site / "Zipped-1.2-py3.9.egg",
             b"Metadata-Version: 1.1\nName: Zipped.Pkg\nVersion: 1.2rc3\n"
             b"License-Expression: Apache-2.0 OR MIT\n")
    unz = site / "Unzipped-3.0-py3.9.egg" / "EGG-INFO"
    unz.mkdir(parents=True)
    (unz / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: unzipped\nVersion: 3.0\n")
    result = run_analyzer(PythonAnalyzer(), str(tmp_path))
    assert not result.warnings
    got = {(p.name, p.version, p.licenses, p.metadata["site_packages"]) for p in result.packages}
    sp = "/opt/app/lib/python3.9/site-packages"
    assert got == {("Zipped.Pkg", "1.2rc3", ("Apache-2.0 OR MIT",), sp),
                   ("unzipped", "3.0", (), sp)}


def test_version_kept_exactly(tmp_path: Path) -> None:
    d = tmp_path / "x" / "weird_name-1.dist-info"
    d.mkdir(parents=True)
    # the directory says 1; the metadata is the truth, including local versions and epochs
    (d / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: Weird.Name_x\nVersion: 1!2.0.0+local.7\n"
    )
    (pkg,) = run_analyzer(PythonAnalyzer(), str(tmp_path)).packages
    assert (pkg.name, pkg.version) == ("Weird.Name_x", "1!2.0.0+local.7")


@pytest.mark.parametrize(
    "name,content",
    [
        ("garbage-1.dist-info/METADATA", random.Random(7).randbytes(2000)),
        ("noversion-1.dist-info/METADATA", b"Metadata-Version: 2.1\nName: noversion\n"),
        ("empty-1.dist-info/METADATA", b""),
        ("html-1.dist-info/METADATA", b"<html><body>Name: x</body></html>\n"),
        ("nul-1.egg-info", b"Name: a\0b\nVersion: 1\n"),
        ("badzip-1.egg", b"PK\x03\x04 this is no zip"),
        ("huge-1.dist-info/METADATA", b"Name: h\nVersion: 1\nX: " + b"a" * (4 << 20)),
    ],
    ids=["garbage", "noversion", "empty", "html", "nul", "badzip", "huge"],
)
def test_bad_metadata_warns(tmp_path: Path, name: str, content: bytes) -> None:
    p = tmp_path / "site-packages" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    an = PythonAnalyzer()
    info = FileInfo(f"site-packages/{name}", FileKind.FILE, size=len(content))
    if not an.required(info):  # over the size cap: never read at all
        assert len(content) > 4 << 20
        return
    result = run_analyzer(an, str(tmp_path))
    assert not result.packages
    assert len(result.warnings) == 1 and result.warnings[0].analyzer == "python"


def test_egg_without_pkg_info(tmp_path: Path) -> None:
    _egg_zip(tmp_path / "a-1.egg", None)
    result = run_analyzer(PythonAnalyzer(), str(tmp_path))
    assert not result.packages and "PKG-INFO" in result.warnings[0].message


def test_required() -> None:
    an = PythonAnalyzer()
    ok = ["usr/lib/python3/dist-packages/a-1.dist-info/METADATA", "opt/v/x.egg-info",
          "x/y.egg-info/PKG-INFO", "x/z-1.egg"]
    no = ["x/a-1.dist-info/RECORD", "x/METADATA", "x/y.egg-info/SOURCES.txt", "x/a.whl"]
    for p in ok:
        assert an.required(FileInfo(p, FileKind.FILE, size=100)), p
    for p in no:
        assert not an.required(FileInfo(p, FileKind.FILE, size=100)), p
    assert not an.required(FileInfo("x/y.egg-info", FileKind.DIR))
