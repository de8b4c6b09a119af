"""Java archives: Maven coordinates from jars, wars, ears and friends, nested ones included.

For each archive (FORMATS.md §5.9), every ``META-INF/maven/<g>/<a>/pom.properties`` is a
package, so a shaded or fat jar yields one per bundled artifact. Without any, the main
section of ``META-INF/MANIFEST.MF`` is used, then the file name (``artifact-1.2.3.jar``).
A manifest's titles are prose ("My Fancy Library"), never an artifactId: the artifact is the
file name's (or a title that is an identifier), and the group comes from the OSGi
``Bundle-SymbolicName``, else the JPMS ``Automatic-Module-Name``, else
``Implementation-Vendor-Id`` (in that order of trust: the first two name the artifact itself,
the last only its vendor), so the purl has a namespace to match advisories against.
Nested archives (``WEB-INF/lib``, ``BOOT-INF/lib``, EAR modules) are opened in memory up
to a depth limit.

Archives are hostile input: entry counts are checked from the end-of-central-directory
record before ``zipfile`` builds its index, every entry read is capped, and a per-file
budget bounds the total bytes inflated and archives opened, so a zip bomb or a deep nest
costs bounded memory and time and ends in a warning.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.analyzers.seekable import open_seekable
from imgscan.model import Package, ScanWarning

ARCHIVE_EXTS = (".jar", ".war", ".ear", ".jmod", ".par", ".sar", ".jpi", ".hpi", ".lpkg",
                ".nar", ".rar", ".kar")
#: outer archives larger than this are not opened
MAX_ARCHIVE = 2 << 30
#: nesting depth; the outer archive is depth 1 (scalibr uses 16)
MAX_DEPTH = 16
#: entries in one archive's central directory (zipfile keeps an object per entry)
MAX_ENTRIES = 250_000
MAX_CENTRAL_DIR = 64 << 20
#: bytes read from one pom.properties or MANIFEST.MF
MAX_META = 1 << 20
#: a nested archive is inflated into memory up to this size
MAX_NESTED = 128 << 20
#: bytes inflated and archives opened per outer file, over all nesting
MAX_TOTAL = 512 << 20
MAX_ARCHIVES = 2000

_POM = re.compile(r"META-INF/maven/([^/]+)/([^/]+)/pom\.properties")
_FILENAME = re.compile(r"(?P<name>.+?)-(?P<version>\d[0-9A-Za-z.+_~-]*)")
_NAME_KEYS = ("Implementation-Title", "Specification-Title", "Bundle-Name",
              "Bundle-SymbolicName", "Automatic-Module-Name", "Name")
#: manifest titles that may be an artifactId, when they are identifiers and not prose
_ARTIFACT_KEYS = ("Implementation-Title", "Specification-Title", "Bundle-Name")
#: where a group comes from, most trusted first
_GROUP_KEYS = ("Bundle-SymbolicName", "Automatic-Module-Name", "Implementation-Vendor-Id")
#: what a Maven groupId or artifactId may look like (no spaces: a title is not one)
_MAVEN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_VERSION_KEYS = ("Implementation-Version", "Specification-Version", "Bundle-Version",
                 "Plugin-Version")
#: what zipfile raises on corrupt input (it has no single base error)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, NotImplementedError, RuntimeError, struct.error, KeyError,
               IndexError)


class ArchiveLimit(Exception):
    """A budget or limit was hit; the message says which."""


@dataclass
class _Budget:
    """What is left for one outer file, shared by all its nested archives."""

    bytes_left: int = MAX_TOTAL
    archives_left: int = MAX_ARCHIVES
    warnings: list[str] = field(default_factory=list)

    def charge(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise ArchiveLimit(f"more than {MAX_TOTAL} bytes inflated in total")


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_EXTS)


def central_directory_size(stream: BinaryIO) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end records, read without zipfile, so a
    huge directory is refused before anything is built from it. None if not found."""
    stream.seek(0, 2)
    size = stream.tell()
    tail_len = min(size, 65_535 + 22 + 20 + 56)
    stream.seek(size - tail_len)
    tail = stream.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries, cd_size = struct.unpack_from("<HI", tail, at + 10)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        z64 = tail.rfind(b"PK\x06\x06", 0, at)
        if z64 >= 0 and len(tail) - z64 >= 56:
            entries, cd_size = struct.unpack_from("<QQ", tail, z64 + 32)
    return entries, cd_size


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties: ``key=value``, ``key: value`` or ``key value``, ``#``/``!``
    comments, backslash continuations. Enough for pom.properties."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):
            line = line[:-1] + lines[i].lstrip()
            i += 1
        m = re.match(r"((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)", line)
        if m:
            out[m.group(1).replace("\\", "")] = m.group(2).strip()
        else:
            out[line.strip()] = ""
    return out


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a MANIFEST.MF: ``Key: value``, continuation lines start with one
    space, the main section ends at the first blank line."""
    attrs: dict[str, str] = {}
    last = ""
    for raw in text.splitlines():
        if not raw.strip():
            if attrs:
                break
            continue
        if raw.startswith(" ") and last:
            attrs[last] += raw[1:]
            continue
        key, sep, value = raw.partition(":")
        if sep and key.strip():
            last = key.strip()
            attrs[last] = value.strip()
    return attrs


def name_from_filename(path: str) -> tuple[str, str]:
    """``commons-io-2.11.0.jar`` -> (commons-io, 2.11.0); version '' when there is none."""
    base = path.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    m = _FILENAME.fullmatch(stem)
    if m:
        return m.group("name"), m.group("version")
    return stem, ""


def group_from_manifest(attrs: dict[str, str], artifact: str) -> tuple[str, str]:
    """The groupId a manifest implies, and the attribute it came from ('' when none does).

    A symbolic or module name names the artifact inside its group
    (``com.fasterxml.jackson.core.jackson-databind``, ``org.apache.commons.lang3`` for
    ``commons-lang3``): its last segment is dropped when it is the artifact or the artifact's
    last word. ``Implementation-Vendor-Id`` is the group as it stands."""
    for key in _GROUP_KEYS:
        value = attrs.get(key, "").split(";", 1)[0].strip()  # OSGi: ``name;singleton:=true``
        if not _MAVEN_ID.fullmatch(value):
            continue
        if key != "Implementation-Vendor-Id":
            head, _, last = value.rpartition(".")
            if "." in head and (last == artifact or artifact.endswith("-" + last)):
                value = head
        return value, key
    return "", ""


def artifact_from_manifest(attrs: dict[str, str], fname: str, named_by_version: bool) -> str:
    """The artifactId of a jar without pom.properties: the file name's when the file is
    called ``<artifact>-<version>.jar`` with the manifest's version, else a title that is an
    identifier, else the file name's; never prose with spaces ('' when nothing fits)."""
    candidates = [fname] if named_by_version else []
    candidates += [attrs.get(k, "") for k in _ARTIFACT_KEYS] + [fname]
    return next((c for c in candidates if _MAVEN_ID.fullmatch(c)), "")


def _maven(artifact: str, version: str, group: str, loc: str, **meta: Any) -> Package:
    metadata: dict[str, Any] = {"artifact_id": artifact, **meta}
    if group:
        metadata["group_id"] = group
    return Package(type="maven", name=artifact, version=version, locations=(loc,),
                   metadata=metadata)


class JavaAnalyzer(Analyzer):
    name = "java"
    version = 2  # 2: issue 15 (results changed; cached layers are re-analyzed)
    description = "Maven artifacts in Java archives (pom.properties, MANIFEST.MF, file name)"
    max_read = 64

    def required(self, info: FileInfo) -> bool:
        return info.is_regular and is_archive_name(info.path) and 0 < info.size <= MAX_ARCHIVE

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        path = file.info.abspath
        result = AnalysisResult()
        budget = _Budget(bytes_left=MAX_TOTAL, archives_left=MAX_ARCHIVES)
        try:
            with open_seekable(file, MAX_NESTED) as stream:
                self._archive(stream, path, 1, budget, result)
        except ArchiveLimit as exc:
            budget.warnings.append(f"stopped: {exc}")
        except ZIP_ERRORS as exc:
            budget.warnings.append(f"unreadable archive: {exc}")
        for msg in dict.fromkeys(budget.warnings):
            result.warnings.append(ScanWarning(f"java: {msg}", path, self.name))
        return result if not result.is_empty() else None

    def _archive(self, stream: BinaryIO, loc: str, depth: int, budget: _Budget,
                 result: AnalysisResult) -> None:
        budget.archives_left -= 1
        if budget.archives_left < 0:
            raise ArchiveLimit(f"more than {MAX_ARCHIVES} nested archives")
        sizes = central_directory_size(stream)
        if sizes is None:
            raise zipfile.BadZipFile(f"{loc}: no end of central directory")
        if sizes[0] > MAX_ENTRIES or sizes[1] > MAX_CENTRAL_DIR:
            budget.warnings.append(f"{loc}: {sizes[0]} entries, over the limit; skipped")
            return
        stream.seek(0)
        with zipfile.ZipFile(stream) as z:
            infos = z.infolist()
            found = self._poms(z, infos, loc, budget)
            if not found:
                found = self._manifest_or_name(z, loc, budget)
            result.packages.extend(found)
            for info in infos:
                if info.is_dir() or not is_archive_name(info.filename):
                    continue
                inner = f"{loc}!/{info.filename}"
                if depth >= MAX_DEPTH:
                    budget.warnings.append(f"archives nested deeper than {MAX_DEPTH} skipped")
                    continue
                if info.file_size > MAX_NESTED:
                    budget.warnings.append(f"{inner}: {info.file_size} bytes, over the "
                                           "nested-archive cap; skipped")
                    continue
                try:
                    data = self._read(z, info, MAX_NESTED, budget)
                    self._archive(io.BytesIO(data), inner, depth + 1, budget, result)
                except ArchiveLimit as exc:
                    if budget.bytes_left < 0 or budget.archives_left < 0:
                        raise
                    budget.warnings.append(f"{inner}: {exc}")
                except ZIP_ERRORS as exc:
                    budget.warnings.append(f"{inner}: unreadable nested archive: {exc}")

    @staticmethod
    def _read(z: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, budget: _Budget) -> bytes:
        if info.file_size > cap:
            raise ArchiveLimit(f"{info.filename} is {info.file_size} bytes, over {cap}")
        with z.open(info) as f:
            data = f.read(min(cap, budget.bytes_left) + 1)
        budget.charge(len(data))
        if len(data) > cap:
            raise ArchiveLimit(f"{info.filename} inflates beyond {cap} bytes")
        return data

    def _meta_text(self, z: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget,
                   loc: str) -> str | None:
        try:
            return self._read(z, info, MAX_META, budget).decode("utf-8", "replace")
        except ArchiveLimit as exc:
            if budget.bytes_left < 0:
                raise
            budget.warnings.append(f"{loc}: {exc}")
        except ZIP_ERRORS as exc:
            budget.warnings.append(f"{loc}!/{info.filename}: unreadable: {exc}")
        return None

    def _poms(self, z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], loc: str,
              budget: _Budget) -> list[Package]:
        out = []
        for info in infos:
            m = _POM.fullmatch(info.filename)
            if not m:
                continue
            text = self._meta_text(z, info, budget, loc)
            if text is None:
                continue
            props = parse_properties(text)
            group = props.get("groupId") or m.group(1)
            artifact = props.get("artifactId") or m.group(2)
            version = props.get("version", "")
            if not version:
                budget.warnings.append(f"{loc}!/{info.filename}: no version")
                continue
            out.append(_maven(artifact, version, group, loc, source="pom.properties",
                              pom_properties=info.filename))
        return out

    def _manifest_or_name(self, z: zipfile.ZipFile, loc: str,
                          budget: _Budget) -> list[Package]:
        attrs: dict[str, str] = {}
        try:
            info = z.getinfo("META-INF/MANIFEST.MF")
        except KeyError:
            info = None
        if info is not None:
            text = self._meta_text(z, info, budget, loc)
            attrs = parse_manifest(text) if text else {}
        fname, fversion = name_from_filename(loc)
        title = next((attrs[k] for k in _NAME_KEYS if attrs.get(k)), "")
        version = next((attrs[k] for k in _VERSION_KEYS if attrs.get(k)), "")
        if title and version:
            artifact = artifact_from_manifest(attrs, fname, fversion == version)
            if artifact:
                group, group_key = group_from_manifest(attrs, artifact)
                meta: dict[str, Any] = {"source": "manifest"}
                if title != artifact:
                    meta["manifest_name"] = title
                if group_key:
                    meta["group_source"] = group_key
                return [_maven(artifact, version, group, loc, **meta)]
        if fversion and _MAVEN_ID.fullmatch(fname):
            group, group_key = group_from_manifest(attrs, fname)
            extra = {"group_source": group_key} if group_key else {}
            return [_maven(fname, fversion, group, loc, source="filename", **extra)]
        return []
