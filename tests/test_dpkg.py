"""The dpkg cataloger against dpkg-query itself: the machine's own database, synthetic
admindirs with every status kind, distroless status.d, .list/.md5sums, truncation."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from analyzerharness import LocalFileInput, info_from_stat, run_analyzer
from imgscan.analyzers.dpkg import DpkgAnalyzer

FMT = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t" \
      "${db:Status-Abbrev}\n"


def dpkg_query(admindir: str) -> set[tuple[str, ...]]:
    """Installed packages as dpkg-query reports them: (name, version, arch, src, src ver)."""
    out = subprocess.run(["dpkg-query", f"--admindir={admindir}", "-W", "-f", FMT],
                         capture_output=True, text=True, check=True).stdout
    rows = set()
    for line in out.splitlines():
        *fields, abbrev = line.split("\t")
        if abbrev[1:2] == "i":  # second letter: the status, 'i' = installed
            rows.add(tuple(fields))
    return rows


def analyze(path: Path, rel: str):
    return DpkgAnalyzer().analyze(LocalFileInput(str(path), info_from_stat(rel, os.stat(path))))


def rows(result) -> set[tuple[str, ...]]:
    return {(p.name, p.version, p.arch, p.source_name, p.source_version)
            for p in result.packages}


def test_machine_status_equals_dpkg_query():
    result = analyze(Path("/var/lib/dpkg/status"), "var/lib/dpkg/status")
    expected = dpkg_query("/var/lib/dpkg")
    assert len(expected) > 50
    assert result.warnings == []
    assert rows(result) == expected
    assert len(result.packages) == len(expected)  # no duplicates either
    p = result.packages[0]
    assert p.type == "deb" and p.locations == ("/var/lib/dpkg/status",)
    assert p.licenses == () and p.purl == "" and "maintainer" in p.metadata


STATUS = """\
Package: foo
Status: install ok installed
Maintainer: A <a@example.org>
Architecture: amd64
Source: foosrc (1:2.0-0.1)
Version: 1:2.0-1+b1
Description: foo
 long text
 .
 more

Package: bar
Status: deinstall ok config-files
Maintainer: A <a@example.org>
Architecture: amd64
Version: 1.0
Description: bar

Package: baz
Status: install ok unpacked
Maintainer: A <a@example.org>
Architecture: all
Version: 3
Description: baz

Package: half
Status: install reinstreq half-installed
Maintainer: A <a@example.org>
Architecture: all
Version: 3
Description: half

Package: trig
Status: install ok triggers-pending
Maintainer: A <a@example.org>
Architecture: all
Version: 3
Triggers-Pending: /usr/share/foo
Description: trig

Package: libx
Status: install ok installed
Maintainer: A <a@example.org>
Architecture: i386
Multi-Arch: same
Source: libx-src
Version: 5~rc1
Description: libx

Package: libx
Status: install ok installed
Maintainer: A <a@example.org>
Architecture: amd64
Multi-Arch: same
Source: libx-src
Version: 5~rc1
Description: libx

Package: held
Status: hold ok installed
Maintainer: A <a@example.org>
Architecture: arm64
Version: 0.1-2
Description: held
"""


def test_synthetic_statuses_equal_dpkg_query(tmp_path):
    (tmp_path / "status").write_text(STATUS)
    expected = dpkg_query(str(tmp_path))
    result = analyze(tmp_path / "status", "var/lib/dpkg/status")
    assert result.warnings == []
    assert rows(result) == expected
    assert {r[0] for r in expected} == {"foo", "libx", "held"}  # the fixture means it
    foo = next(p for p in result.packages if p.name == "foo")
    assert (foo.source_name, foo.source_version) == ("foosrc", "1:2.0-0.1")
    assert [p.arch for p in result.packages if p.name == "libx"] == ["i386", "amd64"]


LAST = """\
Package: last
Status: install ok installed
Architecture: amd64
Version: 9:1.0-1
Description: the paragraph that a cut lands in
 continued
"""


def test_truncated_status_warns_and_keeps_complete_paragraphs(tmp_path):
    """A status cut anywhere inside its last paragraph (mid-name, before or after a colon,
    mid-value, mid-continuation) gives one warning and the complete paragraphs, as
    dpkg-query reads them: the shape is built here, not cut from the host's database."""
    complete = STATUS + "\n"
    (tmp_path / "status").write_text(complete)
    expected = dpkg_query(str(tmp_path))
    text = complete + LAST
    cuts = [c for c in range(len(complete) + 1, len(text)) if text[c - 1] != "\n"]
    assert len(cuts) > 100  # every byte of the last paragraph but its line ends
    first_line = complete.count("\n") + 1
    for cut in cuts:
        (tmp_path / "status").write_text(text[:cut])
        result = analyze(tmp_path / "status", "var/lib/dpkg/status")
        assert [w.message for w in result.warnings] == [
            f"file ends mid-line (truncated); the paragraph from line {first_line} was dropped"
        ], repr(text[len(complete):cut])
        w = result.warnings[0]
        assert w.analyzer == "dpkg" and w.path == "/var/lib/dpkg/status"
        assert rows(result) == expected


@pytest.mark.parametrize(
    ("text", "n_packages"),
    [
        ("Package: a\nVersion: 1\nStatus: install ok installed\n\nGarbage line\n\n", 1),
        ("Version: 1\nStatus: install ok installed\n\n", 0),  # no Package
        (" continuation first\nPackage: a\nVersion: 1\n\n", 1),
        ("\0\xff\xfe binary junk \x01\n", 0),
        ("", 0),
    ],
)
def test_malformed_status(tmp_path, text, n_packages):
    (tmp_path / "status").write_bytes(text.encode("utf-8", "surrogateescape"))
    result = analyze(tmp_path / "status", "var/lib/dpkg/status")
    assert len(result.packages) == n_packages
    if text:
        assert result.warnings


DISTROLESS = {
    "base-files": "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"
                  "Maintainer: Santiago Vila <sanvila@debian.org>\nInstalled-Size: 341\n",
    "libssl3": "Package: libssl3\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n"
               "Architecture: amd64\nMulti-Arch: same\n",
    "tzdata": "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n"
              "Status: install ok installed\n",
}


def test_distroless_status_d(tmp_path):
    d = tmp_path / "var/lib/dpkg/status.d"
    d.mkdir(parents=True)
    for name, text in DISTROLESS.items():
        (d / name).write_text(text)
    (d / "libssl3.md5sums").write_text(
        "0123456789abcdef0123456789abcdef  usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "fedcba9876543210fedcba9876543210  usr/share/doc/libssl3/copyright\n")
    result = run_analyzer(DpkgAnalyzer(), str(tmp_path))
    assert result.warnings == []
    assert rows(result) == {
        ("base-files", "12.4+deb12u5", "amd64", "base-files", "12.4+deb12u5"),
        ("libssl3", "3.0.11-1~deb12u2", "amd64", "openssl", "3.0.11-1~deb12u2"),
        ("tzdata", "2024a-0+deb12u1", "all", "tzdata", "2024a-0+deb12u1"),
    }
    locs = {p.name: p.locations for p in result.packages}
    assert locs["libssl3"] == ("/var/lib/dpkg/status.d/libssl3",)
    assert [(f.name, f.files) for f in result.package_files] == [
        ("libssl3", ("/usr/lib/x86_64-linux-gnu/libssl.so.3",
                     "/usr/share/doc/libssl3/copyright"))]


VCPKG_STATUS = """\
Package: zlib
Version: 1.3.1
Depends: vcpkg-cmake
Architecture: x64-windows
Multi-Arch: same
Abi: 2b3f0c6f1d6a0d3e8c4c9f5b0a7e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7980
Description: A compression library
Status: install ok installed

Package: vcpkg-cmake
Version: 2024-04-23
Architecture: x64-windows
Multi-Arch: same
Abi: 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
Type: Port
Status: install ok installed
"""


def test_vcpkg_status_is_not_reported_as_debian_packages(tmp_path):
    (tmp_path / "status").write_text(VCPKG_STATUS)
    result = analyze(tmp_path / "status", "var/lib/dpkg/status")
    assert result.packages == []
    [w] = result.warnings
    assert w.analyzer == "dpkg" and w.path == "/var/lib/dpkg/status"
    assert "not a dpkg database" in w.message and "vcpkg" in w.message
    assert "Architecture: x64-windows" in w.message


@pytest.mark.parametrize("arch", ["amd64", "all", "hurd-i386", "musl-linux-arm64", "x32"])
def test_debian_architectures_are_not_taken_for_vcpkg(tmp_path, arch):
    (tmp_path / "status").write_text(
        f"Package: a\nStatus: install ok installed\nArchitecture: {arch}\nVersion: 1\n")
    result = analyze(tmp_path / "status", "var/lib/dpkg/status")
    assert result.warnings == [] and [p.arch for p in result.packages] == [arch]


def test_distroless_companions_are_not_status_files(tmp_path):
    """Distroless names stanza files by package and may keep a package's control files
    beside them: scripts are skipped, file lists read as file lists, stanzas as status."""
    d = tmp_path / "var/lib/dpkg/status.d"
    d.mkdir(parents=True)
    for name, text in DISTROLESS.items():
        (d / name).write_text(text)
    (d / "libc6").write_text("Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n"
                             "Source: glibc\n")
    script = "#!/bin/sh\nset -e\ncase \"$1\" in\n  configure) ldconfig ;;\nesac\n"
    for suffix in (".preinst", ".postinst", ".prerm", ".postrm", ".conffiles", ".shlibs",
                   ".triggers"):
        (d / f"libc6{suffix}").write_text(script)
    (d / "libc6.list").write_text("/.\n/lib/x86_64-linux-gnu/libc.so.6\n")
    result = run_analyzer(DpkgAnalyzer(), str(tmp_path))
    assert result.warnings == []
    assert {r[0] for r in rows(result)} == {"base-files", "libssl3", "tzdata", "libc6"}
    assert [(f.name, f.files) for f in result.package_files] == [
        ("libc6", ("/lib/x86_64-linux-gnu/libc.so.6",))]


def _list_files():
    info = Path("/var/lib/dpkg/info")
    return sorted(p for p in info.iterdir() if p.name.endswith(".list"))


def test_info_lists_equal_list_files():
    lists = _list_files()
    assert len(lists) > 50
    a = DpkgAnalyzer()
    multiarch = 0
    for path in lists:
        rel = f"var/lib/dpkg/info/{path.name}"
        assert a.required(info_from_stat(rel, os.stat(path)))
        result = a.analyze(LocalFileInput(str(path), info_from_stat(rel, os.stat(path))))
        [pf] = result.package_files
        stem = path.name[: -len(".list")]
        name, _, arch = stem.partition(":")
        multiarch += bool(arch)
        assert (pf.type, pf.name, pf.arch) == ("deb", name, arch)
        expected = [ln for ln in path.read_text().splitlines() if ln and ln != "/."]
        assert list(pf.files) == expected
    assert multiarch > 0  # Multi-Arch: same packages have <pkg>:<arch>.list


def test_info_list_matches_dpkg_query_L():
    """For a few packages, the list equals what dpkg-query -L prints (minus diversions)."""
    a = DpkgAnalyzer()
    for pkg in ("dpkg", "bash", "coreutils"):
        path = Path(f"/var/lib/dpkg/info/{pkg}.list")
        rel = f"var/lib/dpkg/info/{pkg}.list"
        [pf] = a.analyze(LocalFileInput(str(path), info_from_stat(rel, os.stat(path)))) \
            .package_files
        out = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True,
                             check=True).stdout
        expected = {ln for ln in out.splitlines() if ln.startswith("/") and ln != "/."}
        assert set(pf.files) == expected


def test_info_md5sums_paths_get_slash():
    path = Path("/var/lib/dpkg/info/dpkg.md5sums")
    rel = "var/lib/dpkg/info/dpkg.md5sums"
    [pf] = DpkgAnalyzer().analyze(LocalFileInput(str(path), info_from_stat(
        rel, os.stat(path)))).package_files
    expected = ["/" + ln.split("  ", 1)[1] for ln in path.read_text().splitlines()]
    assert list(pf.files) == expected and all(f.startswith("/") for f in pf.files)


def test_required():
    a = DpkgAnalyzer()
    st = os.stat(__file__)
    yes = ["var/lib/dpkg/status", "var/lib/dpkg/status.d/libc6", "var/lib/dpkg/info/a.list",
           "var/lib/dpkg/info/libc6:amd64.md5sums", "var/lib/dpkg/status.d/x.md5sums",
           "var/lib/dpkg/status.d/base", "var/lib/dpkg/status.d/python3.11"]
    no = ["var/lib/dpkg/available", "var/lib/dpkg/status-old", "var/lib/dpkg/info/a.postinst",
          "var/lib/dpkg/info/a.conffiles", "var/lib/dpkg/status.d/sub/x", "etc/status",
          "var/lib/dpkg/status.d/libc6.preinst", "var/lib/dpkg/status.d/libc6.postinst"]
    assert [a.required(info_from_stat(p, st)) for p in yes] == [True] * len(yes)
    assert [a.required(info_from_stat(p, st)) for p in no] == [False] * len(no)
