"""Function names from a Go binary's pclntab, for vulnerability reachability.

The Go runtime needs pclntab for stack traces, so it survives ``-ldflags='-s -w'`` (which only
drops the ELF symbol table and DWARF): a stripped binary still names every function compiled
into it. The function-name table also holds inlined functions, so a vulnerable function that
was inlined into its caller is still seen. Two ways in: ``function_names`` takes a whole
file's bytes (tests, tools); ``names_from_elf`` reads only the pclntab through the ELF reader the
``gobinary`` analyzer already has (the ``ElfFile`` memoised on the ``FileInput``), so a scan with
``--vulns`` pays one extra bounded read per Go binary and never a second parse of the file.
"""

from __future__ import annotations

import io
import re
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgscan.analyzers.elffile import ElfFile

_MAGICS = {0xFFFFFFF1: "1.20", 0xFFFFFFF0: "1.18", 0xFFFFFFFA: "1.16", 0xFFFFFFFB: "1.2"}
_GENERIC = re.compile(r"\[[^\[\]]*\]")


class PclntabError(ValueError):
    """No pclntab, or one whose header does not hold together."""


def find_pclntab(data: bytes) -> bytes:
    """The ``.gopclntab`` section, or (PIE builds put it inside ``.data.rel.ro``) the first
    spot where a pclntab header with sane offsets starts."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        sec = ELFFile(io.BytesIO(data)).get_section_by_name(".gopclntab")
    except (ELFError, struct.error) as e:
        raise PclntabError(f"not an ELF file: {e}") from None
    if sec is not None and sec["sh_type"] != "SHT_NOBITS":
        return bytes(sec.data())
    return _search(data)


def _search(data: bytes) -> bytes:
    """The first spot in ``data`` where a pclntab header with sane offsets starts."""
    for magic in _MAGICS:
        pat = struct.pack("<I", magic) + b"\x00\x00"
        pos = data.find(pat)
        while pos != -1:
            try:
                _header(data[pos:])
                return data[pos:]
            except PclntabError:
                pos = data.find(pat, pos + 1)
    raise PclntabError("no Go pclntab")


def _header(tab: bytes) -> tuple[str, int, list[int]]:
    if len(tab) < 16:
        raise PclntabError("pclntab too short")
    magic = struct.unpack_from("<I", tab)[0]
    if magic not in _MAGICS or tab[4:6] != b"\0\0" or tab[6] not in (1, 2, 4) \
            or tab[7] not in (4, 8):
        raise PclntabError("bad pclntab header")
    ptr = tab[7]
    nwords = {"1.20": 8, "1.18": 8, "1.16": 7, "1.2": 1}[_MAGICS[magic]]
    fmt = "<" + ("Q" if ptr == 8 else "I") * nwords
    if len(tab) < 8 + ptr * nwords:
        raise PclntabError("pclntab header truncated")
    words = list(struct.unpack_from(fmt, tab, 8))
    if nwords > 1:
        name_off, cu_off = (words[3], words[4]) if nwords == 8 else (words[2], words[3])
        if not 8 + ptr * nwords <= name_off <= cu_off <= len(tab):
            raise PclntabError("pclntab offsets out of range")
    return _MAGICS[magic], ptr, words


def function_names(data: bytes) -> frozenset[str]:
    """Every function name in the binary's pclntab (``net/http.(*Client).Do``…)."""
    return names_from_table(find_pclntab(data))


#: the most pclntab bytes read from one binary (Kubernetes-sized binaries have ~40 MiB)
MAX_PCLNTAB = 256 << 20
_SHT_NOBITS = 8


def names_from_elf(elf: ElfFile) -> frozenset[str]:
    """Function names through an open ``elffile.ElfFile``: ``.gopclntab`` when the section is
    there, else (PIE builds) a search of ``.data.rel.ro``."""
    for name, search in ((".gopclntab", False), (".data.rel.ro", True)):
        sec = elf.section(name)
        if sec is None or sec.type == _SHT_NOBITS:
            continue
        data = elf.read_section(sec, MAX_PCLNTAB)
        return names_from_table(_search(data) if search else data)
    raise PclntabError("no Go pclntab")


def names_from_table(tab: bytes) -> frozenset[str]:
    """Function names from the bytes of a pclntab, starting at its header."""
    version, ptr, words = _header(tab)
    if version == "1.2":
        return _names_go12(tab, ptr, words[0])
    name_off, cu_off = (words[3], words[4]) if version in ("1.18", "1.20") else (words[2],
                                                                                  words[3])
    raw = tab[name_off:cu_off]
    return frozenset(n.decode("utf-8", "replace") for n in raw.split(b"\0") if n)


def _names_go12(tab: bytes, ptr: int, nfunc: int) -> frozenset[str]:
    """Go 1.2 to 1.15: walk the function table; each entry points at a func struct whose
    ``nameoff`` is an offset of a NUL-terminated name within the table."""
    word = "<Q" if ptr == 8 else "<I"
    names = set()
    base = 8 + ptr
    for i in range(min(nfunc, (len(tab) - base) // (2 * ptr))):
        funcoff = struct.unpack_from(word, tab, base + (2 * i + 1) * ptr)[0]
        if funcoff + ptr + 4 > len(tab):
            continue
        nameoff = struct.unpack_from("<i", tab, funcoff + ptr)[0]
        if 0 < nameoff < len(tab):
            end = tab.find(b"\0", nameoff)
            names.add(tab[nameoff:end].decode("utf-8", "replace"))
    return frozenset(names)


def normalize_symbol(name: str) -> str:
    """``pkg.(*T).M`` and ``pkg.T[...].M`` -> ``pkg.T.M``: the form the Go vulnerability
    database's ``imports[].path`` + ``.`` + ``symbols[]`` produce."""
    name = _GENERIC.sub("", name)
    return name.replace("(*", "").replace(")", "")


def symbol_index(names: frozenset[str]) -> frozenset[str]:
    """Normalised names plus the import path of each, for "is the package linked at all"."""
    out = set()
    for n in names:
        s = normalize_symbol(n)
        out.add(s)
        slash = s.rfind("/")
        dot = s.find(".", slash + 1)
        if dot > 0:
            out.add("pkg:" + s[:dot])
    return frozenset(out)
