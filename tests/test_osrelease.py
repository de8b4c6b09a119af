"""OS detection: os-release parsing checked against the shell that os-release is written
for, symlinked layouts, fallbacks, and choose_os."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from analyzerharness import run_analyzer
from imgscan.analyzers.osrelease import (
    OS_RELEASE_PRIORITY,
    OSReleaseAnalyzer,
    choose_os,
    parse_os_release,
)
from imgscan.model import OSInfo

TRICKY = r"""# comment line
NAME="Debian GNU/Linux"
PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'
ID=debian
VERSION_ID="12"

VERSION="12 (\"bookworm\") \$HOME \\ back \q"
QUOTES='it'\''s'" mixed \$x "\ word
VERSION_CODENAME=bookworm
ID_LIKE="rhel centos fedora"
HOME_URL="https://www.debian.org/"
EMPTY=
"""

KEYS = ("QUOTES", "NAME", "PRETTY_NAME", "ID", "VERSION_ID", "VERSION", "VERSION_CODENAME",
        "ID_LIKE", "HOME_URL", "EMPTY")


def shell_values(path: str) -> dict[str, str]:
    """What POSIX sh makes of the file (os-release(5) says it is shell-compatible)."""
    script = ". " + path + "; " + "; ".join(f'printf "%s\\0" "${k}"' for k in KEYS)
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    return dict(zip(KEYS, out.decode().split("\0")[:-1], strict=True))


@pytest.mark.parametrize("text", [TRICKY, None])
def test_values_equal_shell(tmp_path, text):
    path = tmp_path / "os-release"
    if text is None:  # the machine's own file
        path.write_bytes(Path("/etc/os-release").read_bytes())
    else:
        path.write_text(text)
    expected = shell_values(str(path))
    fields, problems = parse_os_release(path.read_text())
    assert problems == []
    assert {k: fields.get(k, "") for k in KEYS} == expected
    if text is not None:
        assert expected["VERSION"] == '12 ("bookworm") $HOME \\ back \\q'  # the shell agrees
        assert expected["QUOTES"] == "it's mixed $x  word"


def test_symlinked_os_release(tmp_path):
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib/os-release").write_text(TRICKY)
    os.symlink("../usr/lib/os-release", tmp_path / "etc/os-release")
    result = run_analyzer(OSReleaseAnalyzer(), str(tmp_path))
    assert result.warnings == []
    assert result.os == OSInfo(id="debian", version_id="12",
                               pretty_name="Debian GNU/Linux 12 (bookworm)",
                               version_codename="bookworm", id_like=("rhel", "centos", "fedora"),
                               source="/usr/lib/os-release")


def test_unbalanced_quotes_warn(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=alpine\nVERSION_ID="3.19.1\nnot a line\n')
    result = run_analyzer(OSReleaseAnalyzer(), str(tmp_path))
    assert result.os is not None
    assert (result.os.id, result.os.version_id) == ("alpine", "3.19.1")
    assert len(result.warnings) == 2 and all(w.analyzer == "os-release" for w in result.warnings)


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [
        ("etc/alpine-release", "3.19.1\n", ("alpine", "3.19.1", "")),
        ("etc/debian_version", "12.5\n", ("debian", "12.5", "")),
        ("etc/debian_version", "trixie/sid\n", ("debian", "", "trixie")),
        ("etc/redhat-release", "CentOS release 6.10 (Final)\n", ("centos", "6.10", "")),
        ("etc/redhat-release", "Red Hat Enterprise Linux release 8.9 (Ootpa)\n",
         ("rhel", "8.9", "")),
        ("etc/system-release", "Amazon Linux release 2 (Karoo)\n", ("amzn", "2", "")),
        ("etc/redhat-release", "Rocky Linux release 9.3 (Blue Onyx)\n", ("rocky", "9.3", "")),
    ],
)
def test_fallback_files(tmp_path, path, content, expected):
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(content)
    result = run_analyzer(OSReleaseAnalyzer(), str(tmp_path))
    assert result.os is not None
    assert (result.os.id, result.os.version_id, result.os.version_codename) == expected
    assert result.os.source == "/" + path


@pytest.mark.parametrize("content", ["", "\n\n", "Some Unknown OS 7\n"])
def test_unusable_fallback_warns(tmp_path, content):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/redhat-release").write_text(content)
    result = run_analyzer(OSReleaseAnalyzer(), str(tmp_path))
    assert result.os is None and len(result.warnings) == 1


def test_choose_os_prefers_os_release_and_fills_version():
    testing = OSInfo(id="debian", pretty_name="Debian GNU/Linux trixie/sid",
                     version_codename="trixie", source="/etc/os-release")
    numbered = OSInfo(id="debian", version_id="13.0", source="/etc/debian_version")
    sid = OSInfo(id="debian", version_codename="trixie", source="/etc/debian_version")
    chosen = choose_os({"/etc/os-release": testing, "/etc/debian_version": numbered})
    assert chosen is not None
    assert (chosen.id, chosen.version_id, chosen.version_codename, chosen.source) == (
        "debian", "13.0", "trixie", "/etc/os-release")
    assert choose_os({"etc/os-release": testing, "etc/debian_version": sid}) == testing


def test_choose_os_other_rules():
    ubuntu = OSInfo(id="ubuntu", version_id="22.04", source="/etc/os-release")
    deb = OSInfo(id="debian", version_id="", version_codename="bookworm",
                 source="/etc/debian_version")
    assert choose_os({"/etc/debian_version": deb, "/etc/os-release": ubuntu}) == ubuntu
    # an os-release without VERSION_ID is not filled from another distribution's file
    bare = OSInfo(id="ubuntu", source="/etc/os-release")
    assert choose_os({"etc/os-release": bare, "etc/debian_version": OSInfo(
        id="debian", version_id="12.5")}) == bare
    # etc/os-release beats usr/lib/os-release when both are regular files
    a = OSInfo(id="fedora", version_id="40", source="/etc/os-release")
    b = OSInfo(id="fedora", version_id="39", source="/usr/lib/os-release")
    assert choose_os({"usr/lib/os-release": b, "etc/os-release": a}) == a
    # no os-release: the most trusted fallback
    alp = OSInfo(id="alpine", version_id="3.19.1", source="/etc/alpine-release")
    rh = OSInfo(id="centos", version_id="6.10", source="/etc/redhat-release")
    assert choose_os({"etc/redhat-release": rh, "etc/alpine-release": alp}) == alp
    assert choose_os({}) is None


def test_priority_and_required():
    assert OS_RELEASE_PRIORITY[:2] == ("etc/os-release", "usr/lib/os-release")
    a = OSReleaseAnalyzer()
    st = os.stat(__file__)
    from analyzerharness import info_from_stat

    assert all(a.required(info_from_stat(p, st)) for p in OS_RELEASE_PRIORITY)
    assert not a.required(info_from_stat("etc/lsb-release", st))
    assert not a.required(info_from_stat("x/etc/os-release", st))
