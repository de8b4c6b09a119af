"""PermissionsAnalyzer over a tree built here (chmod, mknod, setcap, xattrs), with package
ownership from Package.files, and hidden entries through a small ImageView subclass.
Capability names are checked against libcap's own getcap."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
from collections.abc import Iterator

import pytest

from imgscan.analyzers.fcaps import CapabilityFormatError, decode
from imgscan.analyzers.interface import FileInfo, FileKind, ScanOptions, ViewEntry
from imgscan.analyzers.permissions import PermissionsAnalyzer
from imgscan.analyzers.view import DirView
from imgscan.model import LayerRef, OSInfo, Package, Severity


class HiddenView(DirView):
    """DirView plus entries that a (pretend) later layer deleted, and extra visible entries
    as a layer tar could carry them (the kernel refuses to store a malformed capability)."""

    def __init__(self, root: str, hidden: list[ViewEntry], extra: list[ViewEntry] = ()) -> None:
        super().__init__(root)
        self._hidden = hidden
        self._extra = list(extra)

    def entries(self) -> Iterator[ViewEntry]:
        yield from super().entries()
        yield from self._extra

    def hidden_entries(self) -> Iterator[ViewEntry]:
        return iter(self._hidden)


BROKEN = ViewEntry(FileInfo("usr/local/bin/broken", FileKind.FILE, mode=0o755, size=9,
                            xattrs={"security.capability": b"\x00\x00\x00\x02xx"}),
                   LayerRef(0, "sha256:" + "0" * 64))


def _file(root, rel: str, mode: int, data: bytes = b"#!/bin/sh\n", uid: int = 0,
          gid: int = 0) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chown(p, uid, gid)
    os.chmod(p, mode)


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ngames:x:5:60::/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nshadow:x:42:\ngames:x:60:\n")
    _file(root, "usr/bin/su", 0o4755)                      # package-owned (as /bin/su)
    _file(root, "usr/bin/chage", 0o2755, gid=42)          # setgid shadow, owned
    _file(root, "usr/local/bin/rootme", 0o4755)           # nobody owns it
    _file(root, "usr/local/bin/evil", 0o4777)             # world-writable setuid
    _file(root, "usr/games/grp", 0o2775, gid=60)          # group-writable by games
    _file(root, "etc/app.conf", 0o666)
    _file(root, "usr/bin/plain", 0o755)
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("srv/drop", 0o777)):
        (root / d).mkdir(parents=True)
        os.chmod(root / d, mode)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "opt").mkdir()
    os.mknod(root / "opt/sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mknod(root / "opt/mem", 0o666 | stat.S_IFCHR, os.makedev(1, 1))
    os.mknod(root / "opt/.wh", 0o000 | stat.S_IFCHR, os.makedev(0, 0))
    _file(root, "usr/bin/ping", 0o755)
    subprocess.run(["setcap", "cap_net_raw+ep", str(root / "usr/bin/ping")], check=True)
    _file(root, "usr/local/bin/admin", 0o755)
    # hand-built revision 3 (namespaced) value: cap_sys_admin permitted, effective, rootid 1000
    os.setxattr(root / "usr/local/bin/admin", "security.capability",
                struct.pack("<IIIIII", 0x03000001, 1 << 21, 0, 0, 0, 1000))
    return root


PKGS = [
    Package(type="deb", name="login", version="1:4.13", arch="amd64",
            files=("/bin/su", "/usr/share/doc/login")),
    Package(type="deb", name="passwd", version="1:4.13", arch="amd64",
            files=("/usr/bin/chage",)),
    Package(type="deb", name="iputils-ping", version="3:20221126", arch="amd64",
            files=("/bin/ping",)),
]
DEBIAN = OSInfo(id="debian", version_id="12")


def _by_rule(findings) -> dict[str, dict[str, Severity]]:
    out: dict[str, dict[str, Severity]] = {}
    for f in findings:
        out.setdefault(f.rule_id, {})[f.location.path] = f.severity
    return out


def test_permissions_over_dirview(tree) -> None:
    res = PermissionsAnalyzer().post_analyze(HiddenView(str(tree), [], [BROKEN]), PKGS, DEBIAN)
    got = _by_rule(res.findings)
    assert got["perm/setuid-owned"] == {"/usr/bin/su": Severity.LOW,
                                        "/usr/bin/chage": Severity.LOW}
    assert got["perm/setuid-unowned"] == {"/usr/local/bin/rootme": Severity.HIGH}
    assert got["perm/setuid-writable"] == {"/usr/local/bin/evil": Severity.CRITICAL,
                                           "/usr/games/grp": Severity.CRITICAL}
    assert got["perm/world-writable-file"] == {"/etc/app.conf": Severity.MEDIUM}
    assert got["perm/world-writable-dir"] == {"/srv/drop": Severity.MEDIUM}
    assert got["perm/world-writable-sticky-dir"] == {"/tmp": Severity.INFO,
                                                     "/var/tmp": Severity.INFO}
    assert got["perm/device-outside-dev"] == {"/opt/sda": Severity.MEDIUM,
                                              "/opt/mem": Severity.HIGH}
    assert got["perm/file-capabilities"] == {"/usr/bin/ping": Severity.LOW,
                                             "/usr/local/bin/admin": Severity.HIGH}
    assert got["perm/capability-malformed"] == {"/usr/local/bin/broken": Severity.LOW}
    assert [w.path for w in res.warnings] == ["/usr/local/bin/broken"]
    assert not any(s > Severity.INFO for s in got["perm/world-writable-sticky-dir"].values())

    rows = {r["path"]: r for r in res.facts["setuid"]}
    assert set(rows) == {"/usr/bin/su", "/usr/bin/chage", "/usr/local/bin/rootme",
                         "/usr/local/bin/evil", "/usr/games/grp"}
    chage = rows["/usr/bin/chage"]
    assert (chage["mode"], chage["owner"], chage["group"], chage["package"]) == (
        "2755", "root", "shadow", "passwd")
    assert rows["/usr/bin/su"]["package"] == "login"  # /bin/su in dpkg, usr-merged here
    assert rows["/usr/local/bin/rootme"]["package"] is None
    assert rows["/usr/games/grp"]["group"] == "games"
    su = next(f for f in res.findings if f.location.path == "/usr/bin/su")
    assert su.package == "pkg:deb/debian/login@1:4.13?arch=amd64&distro=debian-12"

    caps = {r["path"]: r for r in res.facts["capabilities"]}
    assert caps["/usr/bin/ping"]["capabilities"] == "cap_net_raw+ep"
    assert caps["/usr/bin/ping"]["package"] == "iputils-ping"
    assert caps["/usr/local/bin/admin"]["permitted"] == ["cap_sys_admin"]
    assert (caps["/usr/local/bin/admin"]["revision"], caps["/usr/local/bin/admin"]["rootid"]) \
        == (3, 1000)


def _parse_cap_text(text: str) -> dict[str, set[str]]:
    """libcap's textual form (``a,b=ep c+i d-e``) as {capability: flags}."""
    out: dict[str, set[str]] = {}
    for clause in text.split():
        i = min(i for i, ch in enumerate(clause) if ch in "=+-")
        names = clause[:i].split(",") if clause[:i] else []
        rest = clause[i:]
        while rest:
            op, rest = rest[0], rest[1:]
            j = next((k for k, ch in enumerate(rest) if ch in "=+-"), len(rest))
            flags, rest = set(rest[:j]), rest[j:]
            for n in names:
                cur = out.setdefault(n, set())
                if op == "=":
                    cur.clear()
                    cur |= flags
                elif op == "+":
                    cur |= flags
                else:
                    cur -= flags
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("spec", [
    "cap_net_raw+ep", "cap_net_raw,cap_net_admin+ep", "cap_chown+p cap_kill+i",
    "cap_net_raw+eip", "cap_setuid,cap_checkpoint_restore+ep", "cap_chown+ip cap_kill+p",
    "cap_bpf,cap_perfmon+p",
])
def test_capability_names_match_getcap(spec: str, tmp_path) -> None:
    p = tmp_path / "bin"
    p.write_bytes(b"x")
    subprocess.run(["setcap", spec, str(p)], check=True)
    getcap = subprocess.run(["getcap", str(p)], capture_output=True, text=True,
                            check=True).stdout.split(None, 1)[1]
    ours = decode(os.getxattr(p, "security.capability")).text()
    assert _parse_cap_text(ours) == _parse_cap_text(getcap)


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00\x02", b"\x00\x00\x00\x05" + bytes(16),
                                 b"\x00\x00\x00\x02" + bytes(15), b"\x00\x00\x00\x03" + bytes(30)])
def test_malformed_capability_raises_format_error(raw: bytes) -> None:
    with pytest.raises(CapabilityFormatError):
        decode(raw)




def test_hidden_setuid_is_listed_as_hidden(tree) -> None:
    l1 = LayerRef(1, "sha256:" + "1" * 64, "RUN chmod u+s /usr/bin/x")
    l2 = LayerRef(2, "sha256:" + "2" * 64, "RUN rm /usr/bin/x")
    hidden = [
        ViewEntry(FileInfo("usr/bin/x", FileKind.FILE, mode=0o4755, size=10), l1, l2),
        ViewEntry(FileInfo("usr/bin/y", FileKind.FILE, mode=0o755, size=10), l1, l2),
    ]
    res = PermissionsAnalyzer().post_analyze(HiddenView(str(tree), hidden), PKGS, DEBIAN)
    [f] = [f for f in res.findings if f.rule_id == "perm/setuid-hidden"]
    assert (f.location.path, f.location.layer, f.location.hidden_by) == ("/usr/bin/x", l1, l2)
    row = next(r for r in res.facts["setuid"] if r["path"] == "/usr/bin/x")
    assert (row["hidden"], row["layer"], row["hidden_by"]) == (True, 1, 2)

    quiet = PermissionsAnalyzer(ScanOptions(hidden=False)).post_analyze(
        HiddenView(str(tree), hidden), PKGS, DEBIAN)
    assert not [f for f in quiet.findings if f.rule_id == "perm/setuid-hidden"]


@pytest.mark.parametrize("sub", ["/usr/bin", "/usr/sbin"])
def test_machine_setuid_files_match_find(sub: str) -> None:
    """Every setuid/setgid file find(1) sees on this machine is reported, with dpkg's owner."""
    want = set(subprocess.run(
        ["find", sub, "-xdev", "-type", "f", "(", "-perm", "-4000", "-o", "-perm", "-2000",
         ")"], capture_output=True, text=True, check=True).stdout.split())
    owners: dict[str, str] = {}
    if want:  # dpkg -S names the owner; paths relative to the view root `sub`
        out = subprocess.run(["dpkg", "-S", *sorted(want)], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            pkg, path = line.split(": ", 1)
            owners[path.removeprefix(sub)] = pkg.split(":")[0]
    pkgs = [Package(type="deb", name=n, version="1",
                    files=tuple(p for p, o in owners.items() if o == n))
            for n in set(owners.values())]
    res = PermissionsAnalyzer().post_analyze(DirView(sub), pkgs, None)
    got = {r["path"]: r["package"] for r in res.facts.get("setuid", [])}
    assert {sub + p for p in got} == want
    assert {p: got[p] for p in owners} == owners
