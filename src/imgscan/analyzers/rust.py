"""Rust binaries built with cargo-auditable: crates from the ``.dep-v0`` ELF section.

The section is zlib-compressed JSON (FORMATS.md §5.8). Decompression is capped at 8 MiB so a
crafted section cannot inflate without bound; a binary without the section yields nothing,
since nothing else in a Rust binary lists its crates reliably.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from imgscan.analyzers.elffile import ElfCandidates, ElfError, elf_of
from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInput
from imgscan.model import Package, ScanWarning

SECTION = ".dep-v0"
MAX_DECOMPRESSED = 8 << 20
#: compressed data above this is refused before reading (zlib cannot shrink below ~1/1000)
MAX_COMPRESSED = 8 << 20


class AuditDataError(ValueError):
    """The section exists but does not hold valid cargo-auditable data."""


def decode_section(data: bytes, limit: int = MAX_DECOMPRESSED) -> dict[str, Any]:
    """Inflate and parse the section, refusing more than ``limit`` decompressed bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise AuditDataError(f"not zlib data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise AuditDataError(f"dependency data inflates beyond {limit} bytes")
    try:
        doc = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuditDataError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("packages"), list):
        raise AuditDataError("JSON has no 'packages' list")
    return doc


def crates(doc: dict[str, Any], loc: str) -> tuple[list[Package], list[str]]:
    """Packages from a decoded document, and problems found while validating it."""
    problems: list[str] = []
    pkgs: list[Package] = []
    entries = doc["packages"]
    roots = 0
    fmt = doc.get("format")
    for i, ent in enumerate(entries):
        if not isinstance(ent, dict):
            problems.append(f"package #{i} is not an object")
            continue
        name, version = ent.get("name"), ent.get("version")
        if not isinstance(name, str) or not name or not isinstance(version, str):
            problems.append(f"package #{i} lacks a name or version")
            continue
        meta: dict[str, Any] = {"source": str(ent.get("source", ""))}
        meta["kind"] = str(ent.get("kind", "runtime"))
        if fmt is not None:
            meta["format"] = fmt
        if ent.get("root"):
            meta["root"] = True
            roots += 1
        deps = ent.get("dependencies", [])
        if not isinstance(deps, list) or not all(
            isinstance(j, int) and 0 <= j < len(entries) and j != i for j in deps
        ):
            problems.append(f"package {name} has bad dependency indices")
        pkgs.append(Package(type="cargo", name=name, version=version, locations=(loc,),
                            metadata=meta))
    if pkgs and roots != 1:
        problems.append(f"expected exactly one root package, found {roots}")
    return pkgs, problems


class RustAuditableAnalyzer(ElfCandidates, Analyzer):
    name = "cargo-auditable"
    version = 1
    description = "Rust crates from the .dep-v0 section that cargo-auditable embeds"

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        path = file.info.abspath
        try:
            elf = elf_of(file)
        except ElfError:
            return None  # an unreadable ELF: the ELF analyzers report that, not us
        except OSError as exc:
            return self._warn(path, f"cannot read: {exc}")
        try:
            sec = elf.section(SECTION) if elf is not None else None
            if elf is None or sec is None:
                return None
            doc = decode_section(elf.read_section(sec, MAX_COMPRESSED))
        except (ElfError, AuditDataError) as exc:
            return self._warn(path, str(exc))  # the section itself is cut or bad
        except (OSError, struct.error) as exc:
            return self._warn(path, f"cannot read: {exc}")
        pkgs, problems = crates(doc, path)
        result = AnalysisResult(packages=pkgs)
        for msg in problems:
            result.warnings.append(ScanWarning(f"cargo-auditable: {msg}", path, self.name))
        return result

    def _warn(self, path: str, msg: str) -> AnalysisResult:
        return AnalysisResult(warnings=[ScanWarning(f"cargo-auditable: {msg}", path, self.name)])
