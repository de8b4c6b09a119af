"""Installed Python distributions: ``*.dist-info/METADATA``, ``*.egg-info`` and ``.egg`` zips.

Matched by suffix anywhere in the tree (site-packages, dist-packages, virtualenvs, /opt), as
FORMATS.md §5.5 advises. Name and version come from the metadata headers, never from the
directory name, because older installers did not normalise directory names.
"""

from __future__ import annotations

import re
import zipfile
from email.parser import HeaderParser
from typing import Any, BinaryIO

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.analyzers.java import ZIP_ERRORS, central_directory_size
from imgscan.analyzers.seekable import open_seekable
from imgscan.model import Package, ScanWarning

#: metadata files larger than this are not metadata
MAX_METADATA = 4 << 20
#: .egg zips larger than this are skipped
MAX_EGG = 256 << 20
MAX_EGG_ENTRIES = 100_000
#: a License header longer than this is a pasted license text, not an identifier
MAX_LICENSE_ID = 120


def metadata_kind(path: str) -> str:
    """Which metadata shape a path is: 'dist-info', 'egg-info', 'egg-dir' (an unzipped
    egg), 'egg-info-file', 'egg' (a zipped egg) or ''."""
    if path.endswith(".dist-info/METADATA"):
        return "dist-info"
    if path.endswith(".egg-info/PKG-INFO"):
        return "egg-info"
    if path.endswith(".egg/EGG-INFO/PKG-INFO"):
        return "egg-dir"
    if path.endswith(".egg-info"):
        return "egg-info-file"
    if path.endswith(".egg"):
        return "egg"
    return ""


def _licenses(msg: Any) -> tuple[str, ...]:
    expr = (msg.get("License-Expression") or "").strip()
    if expr:
        return (expr,)
    lic = (msg.get("License") or "").strip()
    if lic and lic.upper() != "UNKNOWN" and "\n" not in lic and len(lic) <= MAX_LICENSE_ID:
        return (lic,)
    out = []
    for c in msg.get_all("Classifier") or []:
        parts = [p.strip() for p in str(c).split("::")]
        if len(parts) >= 2 and parts[0] == "License" and parts[-1] != "OSI Approved":
            out.append(parts[-1])
    return tuple(dict.fromkeys(out))


def parse_metadata(text: str) -> tuple[dict[str, Any] | None, str]:
    """(fields, problem): Name, Version and friends from core-metadata headers."""
    if "\0" in text[:4096]:
        return None, "binary data, not metadata headers"
    msg = HeaderParser().parsestr(text, headersonly=True)
    name = (msg.get("Name") or "").strip()
    version = (msg.get("Version") or "").strip()
    if not name or not version:
        return None, "no Name or Version header"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or any(c.isspace() for c in version):
        return None, f"implausible Name/Version {name[:60]!r} {version[:60]!r}"
    fields: dict[str, Any] = {"name": name, "version": version, "licenses": _licenses(msg)}
    meta: dict[str, Any] = {}
    for key, header in (("metadata_version", "Metadata-Version"), ("author", "Author"),
                        ("author_email", "Author-email"), ("summary", "Summary")):
        value = (msg.get(header) or "").strip()
        if value:
            meta[key] = value
    requires = [str(r).strip() for r in msg.get_all("Requires-Dist") or []]
    if requires:
        meta["requires_dist"] = requires
    fields["metadata"] = meta
    return fields, ""


def _site_dir(path: str, kind: str) -> str:
    """The directory that holds the .dist-info/.egg-info/.egg: where the package lives."""
    parts = path.split("/")
    drop = {"dist-info": 2, "egg-info": 2, "egg-dir": 3}.get(kind, 1)
    return "/" + "/".join(parts[:-drop])


class PythonAnalyzer(Analyzer):
    name = "python"
    version = 1
    description = "Python distributions from dist-info, egg-info and .egg metadata"
    max_read = MAX_METADATA + 1

    def required(self, info: FileInfo) -> bool:
        if not info.is_regular:
            return False
        kind = metadata_kind(info.path)
        if not kind:
            return False
        return info.size <= (MAX_EGG if kind == "egg" else MAX_METADATA)

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        path = file.info.abspath
        kind = metadata_kind(file.info.path)
        if kind == "egg":
            text, problem = self._egg_pkg_info(file)
        else:
            text, problem = file.read(MAX_METADATA + 1).decode("utf-8", "replace"), ""
            if len(text) > MAX_METADATA:
                problem = "metadata file over the size cap"
        if not problem:
            fields, problem = parse_metadata(text or "")
        if problem:
            return AnalysisResult(warnings=[ScanWarning(f"Python {kind}: {problem}", path,
                                                        self.name)])
        assert fields is not None
        meta = dict(fields["metadata"])
        meta["format"] = kind
        meta["site_packages"] = _site_dir(file.info.path, kind)
        if kind == "dist-info":
            installer = self._installer(file)
            if installer:
                meta["installer"] = installer
        pkg = Package(type="pypi", name=fields["name"], version=fields["version"],
                      licenses=fields["licenses"], locations=(path,), metadata=meta)
        return AnalysisResult(packages=[pkg])

    def _egg_pkg_info(self, file: FileInput) -> tuple[str, str]:
        try:
            with open_seekable(file, MAX_EGG) as stream:
                sizes = central_directory_size(stream)
                if sizes is not None and sizes[0] > MAX_EGG_ENTRIES:
                    return "", f"egg has over {MAX_EGG_ENTRIES} entries"
                stream.seek(0)
                return self._pkg_info_from_zip(stream)
        except ZIP_ERRORS as exc:
            return "", f"unreadable egg: {exc}"

    @staticmethod
    def _pkg_info_from_zip(stream: BinaryIO) -> tuple[str, str]:
        with zipfile.ZipFile(stream) as z:
            infos = z.infolist()
            entry = next((i for i in infos if i.filename == "EGG-INFO/PKG-INFO"), None)
            if entry is None:
                return "", "egg has no EGG-INFO/PKG-INFO"
            if entry.file_size > MAX_METADATA:
                return "", "EGG-INFO/PKG-INFO over the size cap"
            with z.open(entry) as f:
                data = f.read(MAX_METADATA + 1)
            return data.decode("utf-8", "replace"), ""

    @staticmethod
    def _installer(file: FileInput) -> str:
        """The INSTALLER file next to METADATA (pip, uv, conda...), when present."""
        try:
            f = file.open_sibling("INSTALLER")
        except OSError:
            return ""
        if f is None:
            return ""
        with f:
            return f.read(256).decode("utf-8", "replace").strip()
