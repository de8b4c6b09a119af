"""File permissions: setuid/setgid, world-writable, device nodes, file capabilities.

An image-wide ``PostAnalyzer`` ("permissions") because ownership needs the packages: each
setuid/setgid file or file with capabilities is matched against ``Package.files`` (dpkg
``.list``, rpm file lists, apk ``R:`` entries, as the OS catalogers found them). Modes and
owners are whatever the view reports; a layered view reports the layer tar headers, so a
rootless scan says exactly what a root scan says.

Rule ids (stable) and severities:

* ``perm/setuid-writable`` -- critical: a setuid/setgid file that a non-root user can
  modify (world-writable, group-writable with a non-root group, or owned by a non-root user
  and owner-writable): whoever can write it runs code as its owner or group.
* ``perm/setuid-unowned`` -- high: setuid/setgid and no package owns it (added by hand or
  by a build step; nobody tracks its updates). Medium, titled "no package database found",
  for a ``dir:`` tree (no image config) with no package file lists at all: a tree copied
  out of a system may simply lack the database, and claiming "not owned" would be wrong.
* ``perm/setuid-owned`` -- low: setuid/setgid, shipped by a package (expected, listed for
  inventory; the package's own vulnerabilities are what matter).
* ``perm/setuid-hidden`` -- info: a setuid/setgid file that a later layer deleted or
  replaced; it is in the image tarball but not in the running filesystem.
* ``perm/world-writable-file`` -- medium: a regular file anyone may modify.
* ``perm/world-writable-dir`` -- medium: a directory anyone may write, without the sticky
  bit (anyone can delete or replace other users' files in it).
* ``perm/world-writable-sticky-dir`` -- info: /tmp-like directories; fine, listed only.
* ``perm/device-outside-dev`` -- a device node outside /dev: high when others may read or
  write it, medium otherwise (a container runtime mounts its own /dev; a node elsewhere is
  a way around it). Character devices 0:0 are overlayfs whiteouts and are skipped.
* ``perm/file-capabilities`` -- a file with ``security.capability``: high when unowned or
  when it grants a root-equivalent capability (cap_sys_admin, cap_setuid, ...), else low.
* ``perm/capability-malformed`` -- low: an undecodable capability xattr (also a warning).

Tables: ``facts["setuid"]`` (one row per setuid/setgid file, hidden ones with
``hidden: true``) and ``facts["capabilities"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from imgscan.analyzers.fcaps import ROOT_EQUIVALENT, CapabilityFormatError, decode
from imgscan.analyzers.interface import (
    AnalysisResult,
    FileKind,
    ImageView,
    PostAnalyzer,
    ViewEntry,
)
from imgscan.model import Finding, Location, OSInfo, Package, ScanWarning, Severity
from imgscan.purls import package_purl
from imgscan.whiteouts import is_overlay_whiteout

CAPABILITY_XATTR = "security.capability"
_CATEGORY = "permissions"
_MAX_DB = 4 << 20

#: usr-merged systems: the package database may list /bin/su for the file at /usr/bin/su
_USRMERGE = (("usr/bin/", "bin/"), ("usr/sbin/", "sbin/"), ("usr/lib/", "lib/"),
             ("usr/lib64/", "lib64/"), ("usr/lib32/", "lib32/"), ("usr/libx32/", "libx32/"))


class OwnerIndex:
    """Which package owns a path, from ``Package.files`` (absolute paths)."""

    def __init__(self, packages: Iterable[Package]) -> None:
        self._by_path: dict[str, Package] = {}
        for pkg in packages:
            for f in pkg.files:
                self._by_path.setdefault("/" + f.strip("/"), pkg)

    def __bool__(self) -> bool:
        """False when no package listed its files: ownership is unknown, not absent."""
        return bool(self._by_path)

    def owner(self, relpath: str) -> Package | None:
        for cand in self._aliases(relpath):
            pkg = self._by_path.get("/" + cand)
            if pkg is not None:
                return pkg
        return None

    @staticmethod
    def _aliases(relpath: str) -> list[str]:
        out = [relpath]
        for merged, legacy in _USRMERGE:
            if relpath.startswith(merged):
                out.append(legacy + relpath[len(merged):])
            elif relpath.startswith(legacy):
                out.append(merged + relpath[len(legacy):])
        return out


def _id_names(view: ImageView, path: str) -> dict[int, str]:
    """uid/gid -> name from the image's own /etc/passwd or /etc/group (never the host's)."""
    try:
        data = view.read(path, limit=_MAX_DB)
    except OSError:
        return {}
    out: dict[int, str] = {}
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out.setdefault(int(parts[2]), parts[0])
    return out


def setuid_writable_by_non_root(mode: int, uid: int, gid: int) -> bool:
    """Can someone other than root modify this file? (see ``perm/setuid-writable``)"""
    return bool(mode & 0o002 or (mode & 0o020 and gid != 0) or (mode & 0o200 and uid != 0))


class PermissionsAnalyzer(PostAnalyzer):
    """setuid/setgid, world-writable, devices and capabilities (see the module docstring)."""

    name: ClassVar[str] = "permissions"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "setuid/setgid, world-writable files, devices, capabilities"
    reads: ClassVar[tuple[str, ...]] = ("etc/passwd", "etc/group")

    def post_analyze(
        self, view: ImageView, packages: Sequence[Package], os: OSInfo | None
    ) -> AnalysisResult:
        self._res = AnalysisResult()
        self._owners = OwnerIndex(packages)
        self._os = os
        self._image = bool(view.config)  # a dir: tree has no config
        self._users = _id_names(view, "etc/passwd")
        self._groups = _id_names(view, "etc/group")
        for entry in view.entries():
            self._visible(entry)
        if self.options.hidden:
            for entry in view.hidden_entries():
                if entry.info.is_regular and entry.info.mode & 0o6000:
                    self._setuid(entry, hidden=True)
        res = self._res
        del self._res
        return res

    def _pkg_props(self, pkg: Package | None) -> tuple[str, dict[str, Any]]:
        if pkg is None:
            return "", {"package": None}
        purl = pkg.purl or package_purl(pkg, self._os)
        return purl, {"package": pkg.name, "package_version": pkg.version,
                      "package_type": pkg.type}

    def _visible(self, entry: ViewEntry) -> None:
        info = entry.info
        if info.is_regular:
            if info.mode & 0o6000:
                self._setuid(entry, hidden=False)
            elif info.mode & 0o002:
                self._add("perm/world-writable-file", Severity.MEDIUM,
                          "World-writable file", entry, f"mode {info.mode:04o}")
            if CAPABILITY_XATTR in info.xattrs:
                self._caps(entry, info.xattrs[CAPABILITY_XATTR])
        elif info.kind == FileKind.DIR and info.mode & 0o002:
            if info.mode & 0o1000:
                self._add("perm/world-writable-sticky-dir", Severity.INFO,
                          "World-writable directory with sticky bit", entry,
                          f"mode {info.mode:04o}")
            else:
                self._add("perm/world-writable-dir", Severity.MEDIUM,
                          "World-writable directory without sticky bit", entry,
                          f"mode {info.mode:04o}")
        elif info.kind in (FileKind.CHAR, FileKind.BLOCK):
            if info.path == "dev" or info.path.startswith("dev/"):
                return
            if is_overlay_whiteout(info):
                return  # an overlayfs whiteout left in an unpacked tree
            sev = Severity.HIGH if info.mode & 0o006 else Severity.MEDIUM
            self._add("perm/device-outside-dev", sev, f"{info.kind.value} device outside /dev",
                      entry, f"{info.kind.value} {info.devmajor}:{info.devminor} "
                             f"mode {info.mode:04o}")

    def _add(self, rule: str, sev: Severity, title: str, entry: ViewEntry, evidence: str,
             pkg: Package | None = None, props: Mapping[str, Any] | None = None) -> None:
        purl, pprops = self._pkg_props(pkg)
        self._res.findings.append(Finding(
            rule_id=rule, severity=sev, category=_CATEGORY, title=title,
            location=Location(path=entry.info.abspath, layer=entry.layer,
                              hidden_by=entry.hidden_by),
            evidence=evidence, package=purl,
            properties={**pprops, **(props or {})},
        ))

    def _setuid(self, entry: ViewEntry, hidden: bool) -> None:
        info = entry.info
        pkg = self._owners.owner(info.path)
        bits = [b for b, m in (("setuid", 0o4000), ("setgid", 0o2000)) if info.mode & m]
        what = "/".join(bits)
        owner = self._users.get(info.uid, str(info.uid))
        group = self._groups.get(info.gid, str(info.gid))
        evidence = f"mode {info.mode:04o} owner {owner} group {group}"
        writable = setuid_writable_by_non_root(info.mode, info.uid, info.gid)
        _, pprops = self._pkg_props(pkg)
        self._res.facts.setdefault("setuid", []).append({
            "path": info.abspath, "mode": f"{info.mode:04o}", "setuid": "setuid" in bits,
            "setgid": "setgid" in bits, "uid": info.uid, "gid": info.gid, "owner": owner,
            "group": group, **pprops, "writable_by_non_root": writable,
            "layer": entry.layer.index, "hidden": hidden,
            "hidden_by": entry.hidden_by.index if entry.hidden_by else None,
        })
        if hidden:
            self._add("perm/setuid-hidden", Severity.INFO,
                      f"{what} file hidden by a later layer", entry, evidence, pkg)
        elif writable:
            self._add("perm/setuid-writable", Severity.CRITICAL,
                      f"{what} file writable by a non-root user", entry, evidence, pkg)
        elif pkg is None and not self._owners and not self._image:
            self._add("perm/setuid-unowned", Severity.MEDIUM,
                      f"{what} file; no package database found", entry, evidence)
        elif pkg is None:
            self._add("perm/setuid-unowned", Severity.HIGH,
                      f"{what} file not owned by any package", entry, evidence)
        else:
            self._add("perm/setuid-owned", Severity.LOW, f"{what} file from package {pkg.name}",
                      entry, evidence, pkg)

    def _caps(self, entry: ViewEntry, raw: bytes) -> None:
        info = entry.info
        pkg = self._owners.owner(info.path)
        try:
            caps = decode(raw)
        except CapabilityFormatError as e:
            self._res.warnings.append(ScanWarning(
                message=f"malformed security.capability: {e}", path=info.abspath,
                analyzer=self.name, layer=entry.layer))
            self._add("perm/capability-malformed", Severity.LOW,
                      "Undecodable file capability xattr", entry, raw[:32].hex(), pkg)
            return
        text = caps.text()
        granted = caps.permitted_names + caps.inheritable_names
        root_eq = sorted(set(granted) & ROOT_EQUIVALENT)
        _, pprops = self._pkg_props(pkg)
        self._res.facts.setdefault("capabilities", []).append({
            "path": info.abspath, "capabilities": text, "permitted": caps.permitted_names,
            "inheritable": caps.inheritable_names, "effective": caps.effective,
            "revision": caps.revision, "rootid": caps.rootid, **pprops,
            "layer": entry.layer.index,
        })
        sev = Severity.HIGH if (pkg is None or root_eq) else Severity.LOW
        self._add("perm/file-capabilities", sev, f"File capabilities {text}", entry, text, pkg,
                  {"root_equivalent": root_eq})
