"""The analyzer framework: one walk per layer, merge with whiteouts, attribution, cache,
rootfs safety and plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from imagebuild import WH, D, F, L, Layer, layer_tar
from imgscan.analyzers.interface import ScanOptions
from imgscan.reports import validate_report
from imgscan.scanner import Scanner


def status_paragraph(name: str, version: str, status: str = "install ok installed") -> str:
    return (f"Package: {name}\nStatus: {status}\nPriority: optional\nArchitecture: amd64\n"
            f"Version: {version}\nDescription: test package {name}\n\n")


def dpkg_layer(*pkgs: tuple[str, str], extra=()) -> Layer:
    text = "".join(status_paragraph(n, v) for n, v in pkgs)
    return Layer(layer_tar([D("var/lib/dpkg"), F("var/lib/dpkg/status", text), *extra]))


OS_RELEASE = F("usr/lib/os-release", 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian 12"\n')


def scan(store, img, **kw):
    rec = store.import_image(img, [])
    scanner = Scanner(**kw)
    return scanner, scanner.scan_image(store, rec)


def test_packages_are_attributed_to_the_layer_that_introduced_them(store, make_image):
    img = make_image([
        Layer(layer_tar([OS_RELEASE, L("etc/os-release", "../usr/lib/os-release")])),
        dpkg_layer(("a", "1.0"), ("b", "2.0"), ("c", "1:3.0-1")),
        Layer(layer_tar([F("unrelated", "x")])),
        dpkg_layer(("a", "1.0"), ("c", "1:3.0-1"), ("d", "4.0")),  # b removed, d added
    ])
    _, report = scan(store, img, analyzers=["dpkg"])
    got = {p.name: (p.version, p.layer.index) for p in report.packages}
    assert got == {"a": ("1.0", 1), "c": ("1:3.0-1", 1), "d": ("4.0", 3)}
    assert report.os is not None and report.os.id == "debian"
    d = next(p for p in report.packages if p.name == "d")
    assert d.purl == "pkg:deb/debian/d@4.0?arch=amd64&distro=debian-12"
    assert d.layer.diff_id == img.layers[3].diff_id
    assert report.layers[3].packages_added == 1


def test_a_database_deleted_by_a_whiteout_takes_its_packages_with_it(store, make_image):
    distroless = "Package: gone\nVersion: 1\nArchitecture: amd64\n\n"
    img = make_image([
        Layer(layer_tar([F("var/lib/dpkg/status.d/gone", distroless),
                         F("var/lib/dpkg/status.d/kept", distroless.replace("gone", "kept"))])),
        Layer(layer_tar([WH("var/lib/dpkg/status.d/gone")])),
    ])
    _, report = scan(store, img, analyzers=["dpkg"])
    assert [p.name for p in report.packages] == ["kept"]


def test_second_image_reanalyzes_only_its_new_layers(store, make_image):
    base = dpkg_layer(("a", "1"))
    files = [F(f"srv/f{i}.txt", "x") for i in range(5)]
    s1, _ = scan(store, make_image([base, Layer(layer_tar([OS_RELEASE]))]),
                 analyzers=["dpkg", "os-release"])
    assert s1.stats.calls == {"dpkg": 1, "os-release": 1}
    s2, r2 = scan(store, make_image([base, Layer(layer_tar([*files, F("etc/debian_version",
                                                                      "12.5\n")]))]),
                  analyzers=["dpkg", "os-release"])
    # the base layer's dpkg status came from the cache: only the new layer was walked
    assert s2.stats.calls == {"dpkg": 0, "os-release": 1}
    assert s2.stats.cache_hits == 2 and s2.stats.cache_misses == 2
    assert [p.name for p in r2.packages] == ["a"]


def test_symlinks_resolve_inside_the_image_never_on_the_host(store, make_image, tmp_path):
    from imgscan.analyzers.layered import LayeredView  # noqa: F401

    img = make_image([Layer(layer_tar([
        D("etc"), L("etc/os-release", "/etc/shadow"),  # absolute: the image's /etc/shadow
        F("etc/shadow", 'ID=inimage\n'),
        L("usr/lib/os-release", "../../../../../../etc/passwd"),
        L("loop1", "loop2"), L("loop2", "loop1"),
    ]))])
    rec = store.import_image(img, [])
    from imgscan.analyzers.layered import LayeredView as LV
    from imgscan.store.layerindex import load_index

    view = LV([store.diff_path(rec.layers[0])], [load_index(store.index_path(rec.layers[0]))],
              [__import__("imgscan.model", fromlist=["LayerRef"]).LayerRef(0, rec.diff_ids[0])])
    assert view.read("etc/os-release") == b"ID=inimage\n"
    assert view.resolve("usr/lib/os-release") is None  # the image has no etc/passwd
    assert view.resolve("loop1") is None


def test_special_files_are_never_opened_and_bad_content_is_a_warning(tmp_path):
    root = tmp_path / "rootfs"
    (root / "var/lib/dpkg").mkdir(parents=True)
    os.mkfifo(root / "var/lib/dpkg/status")  # would hang a reader
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"not a database" * 100)
    (root / "lib/apk/db").mkdir(parents=True)
    with open(root / "lib/apk/db/installed", "wb") as f:  # a 2 GB sparse file
        f.truncate(2 << 30)
    (root / "etc").mkdir()
    os.symlink("/etc/shadow", root / "etc/os-release")
    report = Scanner(jobs=1).scan_dir(str(root))
    assert report.packages == []
    paths = {w.path for w in report.warnings}
    assert "/var/lib/rpm/rpmdb.sqlite" in paths


def test_two_scans_give_identical_json_apart_from_times(store, make_image):
    img = make_image([dpkg_layer(("a", "1"), ("b", "2")), Layer(layer_tar([OS_RELEASE]))])
    rec = store.import_image(img, [])
    docs = []
    for _ in range(2):
        d = Scanner(analyzers=["dpkg", "os-release"]).scan_image(store, rec).to_dict()
        validate_report(d)
        d.pop("timings"), d.pop("created")
        docs.append(json.dumps(d, sort_keys=False))
    assert docs[0] == docs[1]


def test_machine_dpkg_database_in_an_image_equals_dpkg_query(store, make_image):
    status = open("/var/lib/dpkg/status", "rb").read()
    img = make_image([Layer(layer_tar([F("var/lib/dpkg/status", status)]))])
    _, report = scan(store, img, analyzers=["dpkg"])
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t"
                          "${Version}\t${Architecture}\n"], capture_output=True, text=True,
                         check=True).stdout
    expected = {tuple(line.split("\t")[1:]) for line in out.splitlines()
                if line.split("\t")[0].strip() == "ii"}
    got = {(p.name, p.version, p.arch) for p in report.packages}
    assert got == expected and len(got) > 100


PLUGIN = '''
from imgscan.analyzers.interface import Analyzer, AnalysisResult
from imgscan.model import Package

class Marker(Analyzer):
    name = "marker"
    version = 1
    def required(self, info):
        return info.path.endswith(".marker")
    def analyze(self, file):
        name, _, version = file.read().decode().strip().partition("=")
        return AnalysisResult(packages=[Package(type="generic", name=name, version=version,
                                                locations=("/" + file.info.path,))])
'''


def _venv_with_plugin(tmp_path, source: str) -> str:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    pkg = tmp_path / "plugin"
    (pkg / "imgscan_marker").mkdir(parents=True)
    (pkg / "imgscan_marker" / "__init__.py").write_text(source)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "imgscan-marker"
        version = "0.3"
        [project.entry-points."imgscan.analyzers"]
        marker = "imgscan_marker:Marker"
    '''))
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", str(pkg)], check=True)
    return str(venv / "bin/python")


def test_third_party_analyzer_plugin_from_a_venv(tmp_path):
    python = _venv_with_plugin(tmp_path, PLUGIN)
    root = tmp_path / "rootfs"
    (root / "opt").mkdir(parents=True)
    (root / "opt/thing.marker").write_text("widget=2.5\n")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    out = subprocess.run([python, "-m", "imgscan", "analyzers"], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert "marker" in out and "imgscan-marker 0.3" in out
    res = subprocess.run([python, "-m", "imgscan", "scan", f"dir:{root}", "--format", "json"],
                         capture_output=True, text=True, env=env, check=True)
    doc = json.loads(res.stdout)
    validate_report(doc)
    pkgs = doc["packages"]
    assert {"type": "generic", "name": "widget", "version": "2.5"}.items() <= \
        next(p for p in pkgs if p["name"] == "widget").items()


def test_broken_plugin_is_a_clear_error_naming_its_distribution(tmp_path):
    python = _venv_with_plugin(tmp_path, "raise ImportError('missing libfoo')\n")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    res = subprocess.run([python, "-m", "imgscan", "analyzers"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 3
    assert "imgscan-marker" in res.stderr and "missing libfoo" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_analyzer_name_is_a_usage_error():
    from imgscan.errors import UsageError

    with pytest.raises(UsageError, match="nonesuch"):
        Scanner(analyzers=["nonesuch"], options=ScanOptions())
