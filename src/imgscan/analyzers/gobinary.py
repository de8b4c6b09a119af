"""Go binaries: the toolchain, main module and dependencies from embedded build info.

The Go linker writes a 32-byte header starting ``\\xff Go buildinf:`` into ``.go.buildinfo``
(or the first writable, non-executable PT_LOAD). Go >= 1.18 follows it with two
varint-prefixed strings; older Go stores pointers to two Go string headers instead, which
we resolve through the program headers (FORMATS.md §5.7). Only the headers and those few
blocks are read, so a large binary costs a handful of seeks.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

from imgscan.analyzers.elffile import (
    PF_W,
    PF_X,
    PT_LOAD,
    ElfCandidates,
    ElfError,
    ElfFile,
    elf_of,
)
from imgscan.analyzers.gosymbols import PclntabError, names_from_elf, symbol_index
from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInput
from imgscan.model import Package, ScanWarning

BUILDINFO_MAGIC = b"\xff Go buildinf:"
#: how far into the build-info area the header may start
SEARCH_WINDOW = 64 << 10
#: the biggest module list we accept (real ones are a few KiB to a few hundred KiB)
MAX_MODINFO = 4 << 20
MAX_VERSION = 1024
#: ``ScanOptions.extra`` key that asks for function names, and the fact table they go to
SYMBOLS_OPTION = "go_symbols"
SYMBOLS_FACT = "go-symbols"


class BuildInfoError(ValueError):
    """Build info was found but could not be decoded."""


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise BuildInfoError("bad varint in build info")


def _buildinfo_area(elf: ElfFile) -> tuple[int, bytes]:
    """File offset and first bytes of the area that holds the build-info header."""
    sec = elf.section(".go.buildinfo")
    if sec is not None:
        return sec.offset, elf.read_at(sec.offset, min(sec.size, SEARCH_WINDOW))
    for seg in elf.segments:
        if seg.type == PT_LOAD and seg.flags & PF_W and not seg.flags & PF_X:
            return seg.offset, elf.read_at(seg.offset, min(seg.filesz, SEARCH_WINDOW))
    return 0, b""


def _find_header(area: bytes) -> int:
    """Offset of the magic at a 16-byte boundary with a whole header after it, or -1."""
    pos = 0
    while True:
        i = area.find(BUILDINFO_MAGIC, pos)
        if i < 0 or len(area) - i < 32:
            return -1
        if i % 16 == 0:
            return i
        pos = i + 1


def _read_go_string(elf: ElfFile, addr: int, ptr: int, little: bool, cap: int) -> str:
    fmt = ("<" if little else ">") + ("Q" if ptr == 8 else "I")
    hdr = elf.read_vaddr(addr, 2 * ptr)
    if len(hdr) < 2 * ptr:
        raise BuildInfoError("string header outside the loaded segments")
    data_addr = struct.unpack_from(fmt, hdr, 0)[0]
    length = struct.unpack_from(fmt, hdr, ptr)[0]
    if length > cap:
        raise BuildInfoError(f"build info string of {length} bytes is over the cap")
    data = elf.read_vaddr(data_addr, length)
    if len(data) != length:
        raise BuildInfoError("build info string outside the loaded segments")
    return data.decode("utf-8", "replace")


def read_buildinfo(elf: ElfFile) -> tuple[str, str] | None:
    """(Go version, raw module info) or None when the binary carries no Go build info."""
    area_off, area = _buildinfo_area(elf)
    at = _find_header(area)
    if at < 0:
        return None
    hdr = area[at:]
    ptr, flags = hdr[14], hdr[15]
    if flags & 2:
        return _read_inline(elf, area_off + at, hdr)
    if ptr not in (4, 8):
        raise BuildInfoError(f"bad pointer size {ptr} in build info header")
    little = not flags & 1
    fmt = ("<" if little else ">") + ("Q" if ptr == 8 else "I")
    vers_addr = struct.unpack_from(fmt, hdr, 16)[0]
    mod_addr = struct.unpack_from(fmt, hdr, 16 + ptr)[0]
    vers = _read_go_string(elf, vers_addr, ptr, little, MAX_VERSION)
    mod = _read_go_string(elf, mod_addr, ptr, little, MAX_MODINFO)
    return vers, mod


def _read_inline(elf: ElfFile, hdr_off: int, hdr: bytes) -> tuple[str, str]:
    """Go >= 1.18: two varint-prefixed strings right after the 32-byte header."""
    pos = 32
    n, pos = _uvarint(hdr, pos)
    if n > MAX_VERSION or pos + n > len(hdr):
        raise BuildInfoError("Go version string overruns the build info")
    vers = hdr[pos : pos + n].decode("utf-8", "replace")
    pos += n
    n, pos = _uvarint(hdr, pos)
    if n > MAX_MODINFO:
        raise BuildInfoError("module info is over the cap")
    mod = hdr[pos : pos + n]
    if len(mod) < n:  # runs past the search window: read it from the file
        mod = elf.read_at(hdr_off + pos, n)
        if len(mod) < n:
            raise BuildInfoError("module info is truncated")
    return vers, mod.decode("utf-8", "replace")


def strip_modinfo(mod: str) -> str:
    """Remove the 16-byte sentinels; '' when the binary was not built in module mode."""
    if len(mod) >= 33 and mod[-17] == "\n":
        return mod[16:-16]
    return ""


def _unquote(text: str) -> str:
    """Undo Go's strconv.Quote on a build-setting key or value (JSON covers the common
    escapes; anything else is kept as written, minus the quotes)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text[1:-1]
        return value if isinstance(value, str) else text[1:-1]
    return text


def parse_modinfo(text: str) -> dict[str, Any]:
    """Parse ``debug.BuildInfo`` text into path, main module, deps and build settings.

    Each module is ``{"path", "version", "sum", "replace": {...} | None}``; a ``=>`` line
    attaches to the module on the line before it. Unknown lines are ignored, as Go does
    for forward compatibility.
    """
    info: dict[str, Any] = {"path": "", "main": None, "deps": [], "settings": {}}
    last: dict[str, Any] | None = None
    for line in text.split("\n"):
        fields = line.split("\t")
        kind = fields[0]
        if kind == "path" and len(fields) >= 2:
            info["path"] = fields[1]
        elif kind in ("mod", "dep") and len(fields) >= 3:
            last = {
                "path": fields[1],
                "version": fields[2],
                "sum": fields[3] if len(fields) > 3 else "",
                "replace": None,
            }
            if kind == "mod":
                info["main"] = last
            else:
                info["deps"].append(last)
        elif kind == "=>" and len(fields) >= 2 and last is not None:
            last["replace"] = {
                "path": fields[1],
                "version": fields[2] if len(fields) > 2 else "",
                "sum": fields[3] if len(fields) > 3 else "",
            }
            last = None
        elif kind == "build" and len(fields) >= 2:
            key, sep, value = fields[1].partition("=")
            if sep:
                info["settings"][_unquote(key)] = _unquote(value)
    return info


def _module_package(mod: dict[str, Any], loc: str, go_version: str, main: bool) -> Package:
    """A module as a package; a replaced module is reported as its replacement (that is the
    code in the binary), with the original kept in metadata."""
    meta: dict[str, Any] = {"go_version": go_version}
    if main:
        meta["main_module"] = True
    name, version, h1 = mod["path"], mod["version"], mod["sum"]
    rep = mod.get("replace")
    if rep:
        meta["replaces"] = {"path": name, "version": version}
        name, version, h1 = rep["path"], rep["version"], rep["sum"]
    if h1:
        meta["h1_digest"] = h1
    return Package(type="golang", name=name, version=version, locations=(loc,), metadata=meta)


class GoBinaryAnalyzer(ElfCandidates, Analyzer):
    name = "gobinary"
    version = 1
    description = "Go toolchain and modules from the build info embedded in Go binaries"

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        path = file.info.abspath
        try:
            elf = elf_of(file)
            if elf is None:
                return None
            found = read_buildinfo(elf)
            symbols = self._symbols(elf) if found is not None and self.wants_symbols else None
        except (ElfError, BuildInfoError, OSError, struct.error) as exc:
            if isinstance(exc, ElfError) and not _looks_go(file):
                return None  # a broken non-Go ELF is not this analyzer's business
            return AnalysisResult(warnings=[ScanWarning(f"Go build info: {exc}", path, self.name)])
        if found is None:
            return None
        go_version, raw = found
        result = self._packages(path, go_version, raw)
        if isinstance(symbols, str):
            result.warnings.append(ScanWarning(f"Go symbols: {symbols}", path, self.name))
        elif symbols is not None:
            result.facts[SYMBOLS_FACT] = [{"path": path, "symbols": symbols}]
        return result

    @property
    def wants_symbols(self) -> bool:
        """Set by ``--vulns`` (``ScanOptions.extra["go_symbols"]``): reachability needs the
        function names, and reading them here, while the file is open, costs one bounded
        read instead of a second pass over every binary."""
        return bool(self.options.extra.get(SYMBOLS_OPTION))

    def cache_key(self) -> str:
        return "symbols" if self.wants_symbols else ""

    @staticmethod
    def _symbols(elf: ElfFile) -> list[str] | str:
        """Sorted normalised symbols, or the reason there are none (a warning, not a
        failure: the modules are still reported and their findings stay reachable)."""
        try:
            return sorted(symbol_index(names_from_elf(elf)))
        except (PclntabError, ElfError, struct.error) as exc:
            return str(exc)

    def _packages(self, path: str, go_version: str, raw: str) -> AnalysisResult:
        result = AnalysisResult()
        short = go_version.split(" ")[0]
        stdlib_meta: dict[str, Any] = {"go_version": go_version}
        result.packages.append(
            Package(type="golang", name="stdlib", version=short, locations=(path,),
                    metadata=stdlib_meta)
        )
        mod = strip_modinfo(raw)
        if not mod:
            return result
        info = parse_modinfo(mod)
        if info["main"] is not None:
            pkg = _module_package(info["main"], path, short, True)
            meta = dict(pkg.metadata)
            meta["main_path"] = info["path"]
            meta["build_settings"] = info["settings"]
            result.packages.append(dataclasses.replace(pkg, metadata=meta))
        for dep in info["deps"]:
            result.packages.append(_module_package(dep, path, short, False))
        return result


def _looks_go(file: FileInput) -> bool:
    """Whether a file we failed to parse as ELF mentions Go build info at all (bounded)."""
    try:
        with file.open() as f:
            return BUILDINFO_MAGIC in f.read(4 << 20)
    except OSError:
        return False
