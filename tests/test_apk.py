"""The apk cataloger on installed databases written here in Alpine's own layout."""

from __future__ import annotations

import os
import random

import pytest

from analyzerharness import info_from_stat, run_analyzer
from imgscan.analyzers.apk import ApkAnalyzer

INSTALLED = """\
C:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1700000000
c:4f0e7ad5d9e6e4a1b1ff3b1e2dd3d4c1e6a0d0b2
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1tDS2wWWtVxlYzAS6aS2yRZ4a0xo=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1V7Fr6CQRxb9mQl6yLHIR3bO5pjE=
P:busybox-binsh
V:1.36.1-r15
A:x86_64
S:1547
I:1
T:busybox ash /bin/sh
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1700000001
c:d6e4b6c1c0b9e4d7d7f1f2e3a4b5c6d7e8f9a0b1
D:busybox=1.36.1-r15
F:bin
R:sh
a:0:0:777
Z:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=

C:Q1d0s6CzrVcq5aUyKhUx4ZuqkG0Xo=
P:ca-certificates-bundle
V:20230506-r0
A:x86_64
L:MPL-2.0 AND MIT
o:ca-certificates
F:etc
F:etc/ssl
F:etc/ssl/certs
R:ca-certificates.crt
Z:Q1xq8KPu4SxtIhYkDv9WSuP0ZM1oY=
F:etc/ssl1.1
R:cert.pem

P:bbsuid
V:1.36.1-r15
A:x86_64
L:GPL-2.0-only
o:busybox
F:bin
R:bbsuid
a:0:0:4111
Z:Q1x9iF4zMYR2d7ut/xgxYN7v6r0y4=

"""


def scan(tmp_path, text: str, path: str = "lib/apk/db/installed"):
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return run_analyzer(ApkAnalyzer(), str(tmp_path))


@pytest.mark.parametrize("path", ["lib/apk/db/installed", "usr/lib/apk/db/installed"])
def test_installed_db(tmp_path, path):
    result = scan(tmp_path, INSTALLED, path)
    assert result.warnings == []
    got = [(p.name, p.version, p.arch, p.source_name, p.source_version, p.licenses)
           for p in result.packages]
    assert got == [
        ("musl", "1.2.4_git20230717-r4", "x86_64", "musl", "1.2.4_git20230717-r4", ("MIT",)),
        ("busybox-binsh", "1.36.1-r15", "x86_64", "busybox", "1.36.1-r15", ("GPL-2.0-only",)),
        ("ca-certificates-bundle", "20230506-r0", "x86_64", "ca-certificates", "20230506-r0",
         ("MPL-2.0 AND MIT",)),
        ("bbsuid", "1.36.1-r15", "x86_64", "busybox", "1.36.1-r15", ("GPL-2.0-only",)),
    ]
    files = {p.name: p.files for p in result.packages}
    assert files["musl"] == ("/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1")
    assert files["ca-certificates-bundle"] == ("/etc/ssl/certs/ca-certificates.crt",
                                               "/etc/ssl1.1/cert.pem")
    bbsuid = result.packages[3]
    assert bbsuid.metadata["file_acls"] == {"/bin/bbsuid": "0:0:4111"}
    musl = result.packages[0]
    assert musl.metadata["maintainer"] == "Timo Teräs <timo.teras@iki.fi>"
    assert musl.metadata["checksum"] == "Q1pcfTfDNEbNKQc2s1tia7da05M8Q="
    assert musl.locations == ("/" + path,) and musl.purl == "" and musl.type == "apk"


def test_malformed_lines(tmp_path):
    text = ("P:good\nV:1-r0\nthis is not a field\nA:x86_64\nR:orphan-file-without-F\n\n"
            "V:2-r0\nA:x86_64\n\n"  # no P
            "P:nover\n\n"  # no V
            "P:last\nV:3-r0\n")
    result = scan(tmp_path, text)
    assert [(p.name, p.version, p.files) for p in result.packages] == [
        ("good", "1-r0", ()), ("last", "3-r0", ())]
    msgs = [w.message for w in result.warnings]
    assert len(msgs) == 3 and all(w.analyzer == "apk" for w in result.warnings)
    assert any("2 malformed line(s)" in m and "3, 5" in m for m in msgs)
    assert sum("no P: name or no V: version" in m for m in msgs) == 2


def test_truncated_db(tmp_path):
    cut = INSTALLED.index("P:bbsuid") + len("P:bbsuid\nV:1.3")
    result = scan(tmp_path, INSTALLED[:cut])
    assert [p.name for p in result.packages] == ["musl", "busybox-binsh",
                                                 "ca-certificates-bundle"]
    assert len(result.warnings) == 1 and "truncated" in result.warnings[0].message


@pytest.mark.parametrize("tail", ["Z:Q1Lu6fOlK4zPVKwYv4s1lrbrV1sJQ=", "R:bbsuid", "a:0:0:4111",
                                  "L:GPL-2.0-only"])
def test_db_without_final_newline_keeps_its_last_package(tmp_path, tail):
    """apk reads a database whose last line has no newline; so do we, when the unfinished
    line is not the name or the version (the only fields a cut would make lie)."""
    text = INSTALLED.rstrip("\n") + "\n" + tail
    result = scan(tmp_path, text)
    assert result.warnings == []
    assert [(p.name, p.version) for p in result.packages][-1] == ("bbsuid", "1.36.1-r15")
    assert len(result.packages) == 4


@pytest.mark.parametrize("tail", ["", "\nP:next", "\nP:next\nV:2.0", "\nP:next\nV:2.0\nxx"])
def test_db_cut_in_a_name_or_version_drops_that_package(tmp_path, tail):
    text = INSTALLED.rstrip("\n") + "\n" + tail if tail else INSTALLED + "P:nex"
    result = scan(tmp_path, text)
    assert [p.name for p in result.packages] == ["musl", "busybox-binsh",
                                                 "ca-certificates-bundle", "bbsuid"]
    assert len(result.warnings) == 1 and "truncated" in result.warnings[0].message


def test_binary_junk(tmp_path):
    target = tmp_path / "lib/apk/db/installed"
    target.parent.mkdir(parents=True)
    target.write_bytes(random.Random(3).randbytes(5000) + b"\n")
    result = run_analyzer(ApkAnalyzer(), str(tmp_path))
    assert result.packages == [] or all(p.name for p in result.packages)
    assert result.warnings


def test_required():
    st = os.stat(__file__)
    a = ApkAnalyzer()
    assert a.required(info_from_stat("lib/apk/db/installed", st))
    assert a.required(info_from_stat("usr/lib/apk/db/installed", st))
    assert not a.required(info_from_stat("lib/apk/db/triggers", st))
