"""The dpkg cataloger: ``status``, distroless ``status.d/*`` and the ``info/`` file lists.

Each file is read on its own (FORMATS.md §5.2): ``var/lib/dpkg/status`` keeps only
packages whose Status' third word is ``installed``; a distroless ``status.d/<pkg>`` paragraph
has no Status and counts as installed; ``info/<pkg>[:arch].list`` and ``*.md5sums`` become
``PackageFiles`` that the scanner attaches to the package after merging.

Distroless names each ``status.d`` stanza file by its package (``base``, ``libc6``,
``python3.11``) and may put the package's control files beside it (``libc6.md5sums``,
``libc6.preinst``…): only the stanzas are parsed as status, the ``.md5sums``/``.list`` file
lists as file lists, and maintainer scripts not at all. A file at a status path whose stanzas
are vcpkg's (the same RFC-822 shape, ``Architecture: x64-windows``) is not a dpkg database: it
gets a warning saying so, never Debian packages.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.model import Package, PackageFiles, ScanWarning

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
INFO = "var/lib/dpkg/info/"
#: status files beyond this are not read whole (the largest real ones are a few MiB)
MAX_STATUS = 64 << 20

_SOURCE_RE = re.compile(r"^(\S+)(?:\s+\(([^()]*)\))?\s*$")
#: dpkg control files kept beside a package's stanza; file lists are read, the rest skipped
_FILE_LISTS = (".md5sums", ".list")
_COMPANIONS = (*_FILE_LISTS, ".preinst", ".postinst", ".prerm", ".postrm", ".conffiles",
               ".shlibs", ".symbols", ".triggers", ".templates", ".config")
#: a vcpkg triplet (cpu-os[-linkage]): dpkg's architectures are never spelled x64/x86, nor
#: name windows, osx, mingw... (its own os-cpu names read the other way: hurd-i386)
_VCPKG_TRIPLET_RE = re.compile(
    r"^(?:x64|x86|arm|arm64|arm64ec|wasm32)-(?:windows|uwp|mingw|osx|linux|android|ios|"
    r"freebsd|openbsd|emscripten|xbox)(?:-|$)"
)
_METADATA_FIELDS = {
    "maintainer": "maintainer",
    "installed-size": "installed_size",
    "multi-arch": "multi_arch",
    "section": "section",
    "priority": "priority",
    "homepage": "homepage",
    "depends": "depends",
    "pre-depends": "pre_depends",
    "provides": "provides",
    "status": "status",
}


@dataclass
class Paragraph:
    """One RFC-822 style stanza: lower-cased field name -> value (continuations joined)."""

    fields: dict[str, str] = field(default_factory=dict)
    line: int = 0  # 1-based line of its first field


def parse_paragraphs(text: str) -> tuple[list[Paragraph], list[str]]:
    """Split a control file into paragraphs; returns them plus problems found.

    A file that ends in the middle of a line has its last paragraph dropped (it was
    truncated, so its fields cannot be trusted) and gets one warning wherever the cut
    landed: the cut line itself is not parsed, so it never adds a second one. A line that
    is neither a field nor a continuation is reported and ignored."""
    problems: list[str] = []
    lines = text.split("\n")
    truncated = not text.endswith("\n") and text != ""
    lines.pop()  # the empty string after the final newline, or the cut line
    cut_line = len(lines) + 1
    paragraphs: list[Paragraph] = []
    cur: Paragraph | None = None
    last_key = ""
    for no, line in enumerate(lines, 1):
        if not line.strip():
            if cur is not None:
                paragraphs.append(cur)
            cur, last_key = None, ""
            continue
        if line[0] in " \t":
            if cur is None or not last_key:
                problems.append(f"line {no}: continuation line outside a field")
                continue
            cur.fields[last_key] += "\n" + line[1:]
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            problems.append(f"line {no}: not a 'Field: value' line")
            continue
        if cur is None:
            cur = Paragraph(line=no)
        last_key = key.strip().lower()
        cur.fields[last_key] = value.strip()
    if truncated:
        start = cur.line if cur is not None else cut_line
        problems.append(
            f"file ends mid-line (truncated); the paragraph from line {start} was dropped"
        )
    elif cur is not None:
        paragraphs.append(cur)
    return paragraphs, problems


def source_of(fields: dict[str, str]) -> tuple[str, str]:
    """``Source: name`` or ``Source: name (version)``; absent parts default to the binary's."""
    name, version = fields.get("package", ""), fields.get("version", "")
    src = fields.get("source", "").strip()
    if src:
        m = _SOURCE_RE.match(src)
        if m:
            return m.group(1), m.group(2).strip() if m.group(2) else version
    return name, version


def package_from_paragraph(p: Paragraph, location: str) -> Package:
    f = p.fields
    src_name, src_version = source_of(f)
    metadata = {out: f[k] for k, out in _METADATA_FIELDS.items() if k in f}
    return Package(
        type="deb",
        name=f["package"],
        version=f["version"],
        arch=f.get("architecture", ""),
        source_name=src_name,
        source_version=src_version,
        locations=(location,),
        metadata=metadata,
    )


def is_installed(fields: dict[str, str]) -> bool:
    """dpkg's Status is ``want flag status``; only ``installed`` counts. No Status at all
    (distroless status.d) means installed."""
    status = fields.get("status")
    if status is None:
        return True
    words = status.split()
    return len(words) == 3 and words[2] == "installed"


def _file_list(text: str, md5sums: bool) -> list[str]:
    """Absolute paths from a ``.list`` (one path a line) or ``.md5sums`` (``md5  path``)."""
    out = []
    for line in text.splitlines():
        if md5sums:
            _digest, sep, path = line.partition("  ")
            if not sep:
                parts = line.split(None, 1)
                if len(parts) != 2:
                    continue
                path = parts[1]
        else:
            path = line
        path = path.strip("\r")
        if not path or path == "/.":
            continue
        if not path.startswith("/"):
            path = "/" + path
        out.append(path)
    return out


def vcpkg_stanza(fields: dict[str, str]) -> bool:
    """Whether a stanza is vcpkg's: its Architecture is a vcpkg triplet, or it carries the
    ``Abi`` hash that every vcpkg port stanza has and no dpkg stanza does."""
    return bool(_VCPKG_TRIPLET_RE.match(fields.get("architecture", ""))) or "abi" in fields


def _name_arch(base: str) -> tuple[str, str]:
    name, _, arch = base.partition(":")
    return name, arch


class DpkgAnalyzer(Analyzer):
    """Installed Debian packages and their file lists."""

    name = "dpkg"
    version = 2  # 2: issue 15 (results changed; cached layers are re-analyzed)
    description = "dpkg status, distroless status.d and info/*.list file lists"
    max_read = MAX_STATUS

    def required(self, info: FileInfo) -> bool:
        if not info.is_regular:
            return False
        p = info.path
        if p == STATUS:
            return True
        if p.startswith(STATUS_D):
            name = p[len(STATUS_D):]
            return "/" not in name and (name.endswith(_FILE_LISTS)
                                        or not name.endswith(_COMPANIONS))
        if p.startswith(INFO) and "/" not in p[len(INFO):]:
            return p.endswith((".list", ".md5sums"))
        return False

    def analyze(self, file: FileInput) -> AnalysisResult:
        result = AnalysisResult()
        location = "/" + file.info.path
        data = file.read(self.max_read)
        if file.info.size > self.max_read:
            self._warn(result, location, f"file larger than {self.max_read} bytes; read cut")
        text = data.decode("utf-8", errors="replace")
        base = posixpath.basename(file.info.path)
        if file.info.path.startswith(INFO) or base.endswith(_FILE_LISTS):
            md5 = base.endswith(".md5sums")
            name, arch = _name_arch(base.rsplit(".", 1)[0])
            files = _file_list(text, md5)
            if name:
                result.package_files.append(
                    PackageFiles(type="deb", name=name, files=tuple(files), arch=arch)
                )
            return result
        paragraphs, problems = parse_paragraphs(text)
        vcpkg = next((p for p in paragraphs if vcpkg_stanza(p.fields)), None)
        if vcpkg is not None:
            arch = vcpkg.fields.get("architecture", "")
            self._warn(result, location,
                       f"not a dpkg database: its stanzas are vcpkg's (line {vcpkg.line}: "
                       f"Package: {vcpkg.fields.get('package', '?')}, Architecture: {arch}); "
                       "no Debian packages read from it")
            return result
        for msg in problems:
            self._warn(result, location, msg)
        for p in paragraphs:
            if "package" not in p.fields or "version" not in p.fields:
                self._warn(result, location,
                           f"paragraph at line {p.line} has no Package or no Version")
                continue
            if not p.fields["package"] or not p.fields["version"]:
                self._warn(result, location, f"paragraph at line {p.line}: empty Package/Version")
                continue
            if is_installed(p.fields):
                result.packages.append(package_from_paragraph(p, location))
        return result

    def _warn(self, result: AnalysisResult, path: str, message: str) -> None:
        result.warnings.append(ScanWarning(message=message, path=path, analyzer=self.name))
