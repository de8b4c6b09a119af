"""The one ELF reader: headers, sections, segments, dynamic entries and symbol names.

Every analyzer that reads ELF (``elf``, ``gobinary``, ``cargo-auditable``) reads it through
``ElfFile``, and through ``FileInput.elf()`` a file is parsed once per walk however many of
them asked. Only the tables that are needed are read, with explicit caps, on a seekable
stream: a hostile or truncated file costs a few bounded reads, a 200 MB binary a few hundred
kilobytes -- which a general ELF library does not promise, and which is why this is not
pyelftools. Anything unreadable is an ``ElfError``; callers turn it into a warning.
"""

from __future__ import annotations

import posixpath
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from imgscan.analyzers.seekable import open_seekable
from imgscan.errors import ImgscanError
from imgscan.fileinfo import FileInfo

if TYPE_CHECKING:
    from imgscan.analyzers.interface import FileInput

ELF_MAGIC = b"\x7fELF"

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PT_GNU_STACK, PT_GNU_RELRO = 0x6474E551, 0x6474E552
PF_X, PF_W = 1, 2
SHT_SYMTAB, SHT_DYNAMIC, SHT_NOBITS, SHT_DYNSYM = 2, 6, 8, 11
SHT_GNU_VERSYM = 0x6FFFFFFF
DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 1, 4, 5, 6, 10, 11
DT_RPATH, DT_RUNPATH = 15, 29
DT_GNU_HASH = 0x6FFFFEF5

#: more headers than this is not a real binary
MAX_SECTIONS = 4096
MAX_SEGMENTS = 1024
#: binaries larger than this are not looked at
MAX_BINARY = 2 << 30
#: a section-name string table larger than this is refused
MAX_SHSTRTAB = 1 << 20
#: never decode more than this much of one symbol or string table (a hostile sh_size)
MAX_TABLE = 64 << 20
#: dynamic tags read at most
MAX_TAGS = 4096

#: directories whose files are worth a magic check even without an exec bit
LIB_DIRS = ("lib/", "lib32/", "lib64/", "usr/lib/", "usr/lib32/", "usr/lib64/",
            "usr/local/lib/", "usr/libexec/", "opt/")
_EXEC_DIRS = frozenset({"bin", "sbin", "libexec"})
_E_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_CHUNK = 1 << 20


class ElfError(ImgscanError, ValueError):
    """The file is not an ELF we can read: not ELF at all, truncated, corrupt or over a cap."""


def is_elf_candidate(info: FileInfo) -> bool:
    """The one cheap pre-filter, from tar metadata, for every ELF analyzer: a regular file
    big enough for an ELF header and small enough to look at, that is executable, named or
    placed like a library, or sits in a ``bin``/``sbin``/``libexec`` directory."""
    if not info.is_regular or not 64 <= info.size <= MAX_BINARY:
        return False
    if info.mode & 0o111:
        return True
    path = info.path
    if ".so" in posixpath.basename(path) or path.startswith(LIB_DIRS):
        return True
    return any(p in _EXEC_DIRS for p in path.split("/")[:-1])


class ElfCandidates:
    """Mixin for the analyzers that read ELF: the one candidate rule, and no more than the
    magic through ``read()`` (the rest is parsed once, through ``FileInput.elf()``)."""

    max_read: ClassVar[int] = 64

    def required(self, info: FileInfo) -> bool:
        return is_elf_candidate(info)


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int = 0


@dataclass(frozen=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int


@dataclass(frozen=True)
class DynamicEntries:
    """The ``PT_DYNAMIC`` tags that analyzers look at, strings already resolved."""

    tags: list[tuple[int, int]] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)


@dataclass(eq=False)
class ElfFile:
    """One parsed ELF file: its header tables, with the stream kept for bounded reads of
    whatever else an analyzer asks for (computed once, then cached on the object)."""

    stream: BinaryIO
    file_size: int
    is64: bool
    little: bool
    e_type: int
    e_machine: int
    sections: list[Section]
    segments: list[Segment]

    @classmethod
    def parse(cls, stream: BinaryIO) -> ElfFile:
        """Read the ELF, section and program headers from a seekable stream."""
        try:
            return _parse(stream)
        except struct.error as e:
            raise ElfError(f"truncated header: {e}") from None

    @property
    def endian(self) -> str:
        return "<" if self.little else ">"

    @property
    def ptr_size(self) -> int:
        return 8 if self.is64 else 4

    @property
    def type_name(self) -> str:
        """``ET_EXEC``-style name of ``e_type`` (the number as text when unknown)."""
        return _E_TYPES.get(self.e_type, str(self.e_type))

    @property
    def machine_name(self) -> str:
        """``EM_X86_64``-style name of ``e_machine``, as readelf and pyelftools spell it."""
        return _machine_names().get(self.e_machine, str(self.e_machine))

    @cached_property
    def by_name(self) -> dict[str, Section]:
        """The first section of each name."""
        out: dict[str, Section] = {}
        for s in self.sections:
            out.setdefault(s.name, s)
        return out

    def section(self, name: str) -> Section | None:
        return self.by_name.get(name)

    def first_of_type(self, sh_type: int) -> Section | None:
        return next((s for s in self.sections if s.type == sh_type), None)

    def linked(self, sec: Section) -> Section:
        """The section ``sec.sh_link`` names (its string table)."""
        if not 0 < sec.link < len(self.sections):
            raise ElfError(f"{sec.name or 'section'} links to section {sec.link}")
        return self.sections[sec.link]

    def read_at(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset``; short when the file ends earlier."""
        if offset < 0 or size <= 0 or offset >= self.file_size:
            return b""
        self.stream.seek(offset)
        return self.stream.read(min(size, self.file_size - offset))

    def read_exact(self, offset: int, size: int, limit: int = MAX_TABLE) -> bytes:
        """Exactly ``size`` bytes at ``offset``, refusing more than ``limit``."""
        if size < 0 or size > limit:
            raise ElfError(f"table of {size} bytes at {offset} is out of bounds")
        data = self.read_at(offset, size)
        if len(data) != size:
            raise ElfError(f"truncated: wanted {size} bytes at offset {offset}")
        return data

    def read_section(self, sec: Section, limit: int) -> bytes:
        """The section's bytes, refusing sections larger than ``limit``."""
        if sec.type == SHT_NOBITS:
            return b""
        if sec.size > limit:
            raise ElfError(f"section {sec.name} is {sec.size} bytes, over the {limit} cap")
        data = self.read_at(sec.offset, sec.size)
        if len(data) != sec.size:
            raise ElfError(f"section {sec.name} is truncated")
        return data

    def vaddr_to_offset(self, addr: int) -> tuple[int, int] | None:
        """File offset of a virtual address and the bytes available from there in its
        PT_LOAD segment, or None when no loaded segment holds it."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= addr < seg.vaddr + seg.filesz:
                delta = addr - seg.vaddr
                return seg.offset + delta, seg.filesz - delta
        return None

    def read_vaddr(self, addr: int, size: int) -> bytes:
        """Read ``size`` bytes at a virtual address, within one segment; b"" if unmapped."""
        mapped = self.vaddr_to_offset(addr)
        if mapped is None:
            return b""
        off, avail = mapped
        return self.read_at(off, min(size, avail))

    def stream_contains(self, offset: int, size: int, needles: tuple[bytes, ...]) -> bool:
        """Search a file range for any needle in 1 MiB chunks (a .strtab can be huge)."""
        overlap = max(len(n) for n in needles) - 1
        self.stream.seek(offset)
        tail = b""
        left = size
        while left > 0:
            chunk = self.stream.read(min(_CHUNK, left))
            if not chunk:
                raise ElfError(f"truncated: string table at {offset} ends early")
            left -= len(chunk)
            buf = tail + chunk
            if any(n in buf for n in needles):
                return True
            tail = buf[-overlap:] if overlap else b""
        return False

    @cached_property
    def dynamic(self) -> DynamicEntries | None:
        """The dynamic tags: from the SHT_DYNAMIC section when there is one, else from
        PT_DYNAMIC (sstripped files); None when the file has neither."""
        return _read_dynamic(self)

    @cached_property
    def dynsym(self) -> list[tuple[int, str, bool]]:
        """(index, name, defined) for every named dynamic symbol."""
        return _dynamic_symbols(self)


def symbol_names(symtab: bytes, strtab: bytes, is64: bool, little: bool
                 ) -> list[tuple[int, str, bool]]:
    """(index, name, defined) for every named symbol of a raw symbol table (defined:
    st_shndx is not SHN_UNDEF). Decoded with ``struct``: pyelftools' per-symbol objects
    are where almost all the time went (libc has ~3000 symbols)."""
    endian = "<" if little else ">"
    if is64:
        fmt, entsize, shndx_i = endian + "IBBHQQ", 24, 3
    else:
        fmt, entsize, shndx_i = endian + "IIIBBH", 16, 5
    usable = len(symtab) - len(symtab) % entsize
    out: list[tuple[int, str, bool]] = []
    for i, ent in enumerate(struct.iter_unpack(fmt, symtab[:usable])):
        off = ent[0]
        if off == 0 or off >= len(strtab):
            continue
        end = strtab.find(b"\0", off)
        name = strtab[off:end if end >= 0 else len(strtab)]
        if name:
            out.append((i, name.decode("latin-1"), ent[shndx_i] != 0))
    return out


def _dyn_source(elf: ElfFile) -> tuple[int, int, bytes | None] | None:
    """(file offset, size, string table or None to resolve DT_STRTAB) of the dynamic tags."""
    sec = elf.first_of_type(SHT_DYNAMIC)
    if sec is not None:
        strsec = elf.linked(sec)
        return sec.offset, sec.size, elf.read_exact(strsec.offset, strsec.size)
    seg = next((s for s in elf.segments if s.type == PT_DYNAMIC), None)
    return None if seg is None else (seg.offset, seg.filesz, None)


def _read_dynamic(elf: ElfFile) -> DynamicEntries | None:
    src = _dyn_source(elf)
    if src is None:
        return None
    offset, size, strtab = src
    entsize = 16 if elf.is64 else 8
    raw = elf.read_exact(offset, min(size, (MAX_TAGS + 1) * entsize) // entsize * entsize)
    fmt = elf.endian + ("qQ" if elf.is64 else "iI")
    tags: list[tuple[int, int]] = []
    for n, (d_tag, d_val) in enumerate(struct.iter_unpack(fmt, raw)):
        if n >= MAX_TAGS:
            raise ElfError("dynamic section without DT_NULL")
        if d_tag == DT_NULL:
            break
        tags.append((d_tag, d_val))
    out = DynamicEntries(tags)
    strings = [(t, v) for t, v in tags if t in (DT_NEEDED, DT_RPATH, DT_RUNPATH)]
    if not strings:
        return out
    if strtab is None:
        strtab = _vaddr_table(elf, tags, DT_STRTAB, DT_STRSZ)
    for t, v in strings:
        if v >= len(strtab):
            raise ElfError(f"dynamic string at {v} is outside the string table")
        end = strtab.find(b"\0", v)
        text = strtab[v:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
        if t == DT_NEEDED:
            out.needed.append(text)
        else:
            (out.rpath if t == DT_RPATH else out.runpath).extend(text.split(":"))
    return out


def _vaddr_table(elf: ElfFile, tags: list[tuple[int, int]], addr_tag: int, size_tag: int
                 ) -> bytes:
    """A table that dynamic tags locate by virtual address and size (sstripped files)."""
    values = dict(tags)
    if addr_tag not in values or size_tag not in values:
        raise ElfError("dynamic table without its address or size")
    mapped = elf.vaddr_to_offset(values[addr_tag])
    if mapped is None:
        raise ElfError("dynamic table outside the loaded segments")
    return elf.read_exact(mapped[0], values[size_tag])


def _dynamic_symbols(elf: ElfFile) -> list[tuple[int, str, bool]]:
    dynsym = elf.first_of_type(SHT_DYNSYM)
    if dynsym is not None:
        strsec = elf.linked(dynsym)
        return symbol_names(elf.read_exact(dynsym.offset, dynsym.size),
                            elf.read_exact(strsec.offset, strsec.size), elf.is64, elf.little)
    dyn = elf.dynamic
    if dyn is None or elf.first_of_type(SHT_DYNAMIC) is not None:
        return []
    values = dict(dyn.tags)
    count = _symbol_count(elf, values)
    if not count or DT_SYMTAB not in values:
        return []
    entsize = values.get(DT_SYMENT, 24 if elf.is64 else 16)
    mapped = elf.vaddr_to_offset(values[DT_SYMTAB])
    if mapped is None:
        raise ElfError("dynamic symbol table outside the loaded segments")
    return symbol_names(elf.read_exact(mapped[0], count * entsize),
                        _vaddr_table(elf, dyn.tags, DT_STRTAB, DT_STRSZ), elf.is64, elf.little)


def _symbol_count(elf: ElfFile, values: dict[int, int]) -> int:
    """Number of dynamic symbols, from DT_HASH's nchain or by walking DT_GNU_HASH."""
    e = elf.endian
    if DT_HASH in values:
        mapped = elf.vaddr_to_offset(values[DT_HASH])
        if mapped is None:
            raise ElfError("DT_HASH outside the loaded segments")
        return int(struct.unpack(e + "I", elf.read_exact(mapped[0] + 4, 4))[0])
    if DT_GNU_HASH not in values:
        return 0
    mapped = elf.vaddr_to_offset(values[DT_GNU_HASH])
    if mapped is None:
        raise ElfError("DT_GNU_HASH outside the loaded segments")
    base = mapped[0]
    nbuckets, symoffset, bloom_size, _shift = struct.unpack(e + "4I", elf.read_exact(base, 16))
    buckets_at = base + 16 + bloom_size * elf.ptr_size
    buckets = struct.unpack(f"{e}{nbuckets}I", elf.read_exact(buckets_at, 4 * nbuckets))
    top = max(buckets, default=0)
    if top < symoffset:
        return int(symoffset)
    chain_at = buckets_at + 4 * nbuckets + (top - symoffset) * 4
    for _ in range(MAX_TABLE // 4):
        (h,) = struct.unpack(e + "I", elf.read_exact(chain_at, 4))
        if h & 1:
            return int(top + 1)
        top += 1
        chain_at += 4
    raise ElfError("DT_GNU_HASH chain without an end")


_MACHINES: dict[int, str] = {}


def _machine_names() -> dict[int, str]:
    if not _MACHINES:
        from elftools.elf.enums import ENUM_E_MACHINE

        _MACHINES.update({v: k for k, v in ENUM_E_MACHINE.items() if k != "_default_"})
    return _MACHINES


def _file_size(stream: BinaryIO) -> int:
    pos = stream.tell()
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(pos)
    return size


def _parse(stream: BinaryIO) -> ElfFile:
    size = _file_size(stream)
    stream.seek(0)
    ident = stream.read(64)
    if len(ident) < 52 or ident[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file or truncated header")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfError("unknown ELF class or data encoding")
    is64 = cls == 2
    e = "<" if data == 1 else ">"
    e_type, e_machine = struct.unpack_from(e + "HH", ident, 16)
    if is64:
        if len(ident) < 64:
            raise ElfError("truncated ELF64 header")
        (phoff, shoff) = struct.unpack_from(e + "QQ", ident, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", ident, 0x36)
    else:
        (phoff, shoff) = struct.unpack_from(e + "II", ident, 0x1C)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", ident, 0x2A)
    elf = ElfFile(stream, size, is64, data == 1, e_type, e_machine, [], [])
    elf.segments = _read_segments(elf, phoff, phentsize, phnum)
    elf.sections = _read_sections(elf, shoff, shentsize, shnum, shstrndx)
    return elf


def _header_table(elf: ElfFile, off: int, entsize: int, num: int, want: int, limit: int,
                  what: str) -> bytes:
    """The bytes of a program or section header table, refusing an implausible count or
    entry size (a hostile header must not make us read gigabytes) and a truncated table."""
    if num > limit or not want <= entsize <= 4 * want:
        raise ElfError(f"implausible {what}")
    table = elf.read_at(off, entsize * num)
    if len(table) < entsize * num:
        raise ElfError(f"truncated {what}")
    return table


def _read_segments(elf: ElfFile, off: int, entsize: int, num: int) -> list[Segment]:
    if num == 0 or off == 0:
        return []
    table = _header_table(elf, off, entsize, num, 56 if elf.is64 else 32, MAX_SEGMENTS,
                          "program header table")
    e = elf.endian
    out = []
    for i in range(num):
        base = i * entsize
        if elf.is64:
            ptype, flags, poff, vaddr, _pa, filesz = struct.unpack_from(e + "IIQQQQ", table, base)
        else:
            ptype, poff, vaddr, _pa, filesz, _memsz, flags = struct.unpack_from(
                e + "IIIIIII", table, base
            )
        out.append(Segment(ptype, flags, poff, vaddr, filesz))
    return out


def _read_sections(
    elf: ElfFile, off: int, entsize: int, num: int, strndx: int
) -> list[Section]:
    if num == 0 or off == 0:
        return []
    table = _header_table(elf, off, entsize, num, 64 if elf.is64 else 40, MAX_SECTIONS,
                          "section header table")
    e = elf.endian
    fmt = e + ("IIQQQQI" if elf.is64 else "IIIIIII")
    raw = [struct.unpack_from(fmt, table, i * entsize) for i in range(num)]
    names = b""
    if 0 < strndx < num:
        ssize = raw[strndx][5]
        if ssize > MAX_SHSTRTAB:
            raise ElfError("section name table too large")
        names = elf.read_at(raw[strndx][4], ssize)
    out = []
    for name_off, stype, _fl, addr, soff, ssize, link in raw:
        name = ""
        if name_off < len(names):
            end = names.find(b"\0", name_off)
            name = names[name_off : end if end >= 0 else len(names)].decode("latin-1")
        out.append(Section(name, stype, addr, soff, ssize, link))
    return out


def elf_of(file: FileInput) -> ElfFile | None:
    """The file's memoised ``ElfFile``, or None when it does not start with the ELF magic
    (not an ELF: no analyzer's business). Raises ElfError (a broken ELF) or OSError."""
    if file.read(4)[:4] != ELF_MAGIC:
        return None
    return file.elf()


def parse_file(file: FileInput) -> ElfFile:
    """Parse a FileInput as ELF, keeping its stream open on the result (the caller, the
    memo in ``FileInput.elf()``, closes it). Raises ElfError or OSError."""
    if file.read(4)[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    opener = open_seekable(file)
    stream = opener.__enter__()
    try:
        return ElfFile.parse(stream)
    except BaseException:
        stream.close()
        raise
