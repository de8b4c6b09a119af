"""A small, bounded ELF reader for the Go and Rust catalogers.

Both only need a handful of facts from a binary: which sections exist, where a named section
lies in the file, and how virtual addresses map to file offsets (old Go build info stores
pointers). Reading exactly those tables with explicit caps keeps a hostile or truncated file
from costing more than a few reads, which a general ELF library does not promise.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

from imgscan.analyzers.interface import FileInput

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PF_X = 1
PF_W = 2
SHT_NOBITS = 8

#: more headers than this is not a real binary
MAX_SECTIONS = 4096
MAX_SEGMENTS = 1024
#: binaries larger than this are not looked at
MAX_BINARY = 2 << 30
#: a non-seekable stream is copied to memory up to this many bytes
MAX_UNSEEKABLE = 256 << 20
#: a section-name string table larger than this is refused
MAX_SHSTRTAB = 1 << 20


class ELFError(ValueError):
    """The file is not an ELF file we can read (truncated, corrupt, unsupported)."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int


@dataclass(frozen=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int


@dataclass
class ELFFile:
    """The headers of one ELF file, with the stream kept for bounded reads."""

    stream: BinaryIO
    file_size: int
    is64: bool
    little: bool
    sections: list[Section]
    segments: list[Segment]

    @property
    def endian(self) -> str:
        return "<" if self.little else ">"

    @property
    def ptr_size(self) -> int:
        return 8 if self.is64 else 4

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def read_at(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset``; short when the file ends earlier."""
        if offset < 0 or size <= 0 or offset >= self.file_size:
            return b""
        self.stream.seek(offset)
        return self.stream.read(min(size, self.file_size - offset))

    def read_section(self, sec: Section, limit: int) -> bytes:
        """The section's bytes, refusing sections larger than ``limit``."""
        if sec.type == SHT_NOBITS:
            return b""
        if sec.size > limit:
            raise ELFError(f"section {sec.name} is {sec.size} bytes, over the {limit} cap")
        data = self.read_at(sec.offset, sec.size)
        if len(data) != sec.size:
            raise ELFError(f"section {sec.name} is truncated")
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


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def _file_size(stream: BinaryIO) -> int:
    pos = stream.tell()
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(pos)
    return size


def parse_elf(stream: BinaryIO) -> ELFFile:
    """Read the ELF, section and program headers from a seekable stream.

    Raises ELFError for anything unreadable; never reads more than the header tables (capped).
    """
    size = _file_size(stream)
    stream.seek(0)
    ident = stream.read(64)
    if len(ident) < 52 or not is_elf(ident):
        raise ELFError("not an ELF file or truncated header")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ELFError("unknown ELF class or data encoding")
    is64 = cls == 2
    e = "<" if data == 1 else ">"
    if is64:
        if len(ident) < 64:
            raise ELFError("truncated ELF64 header")
        (phoff, shoff) = struct.unpack_from(e + "QQ", ident, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", ident, 0x36)
    else:
        (phoff, shoff) = struct.unpack_from(e + "II", ident, 0x1C)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(e + "HHHHH", ident, 0x2A)
    elf = ELFFile(stream, size, is64, data == 1, [], [])
    elf.segments = _read_segments(elf, phoff, phentsize, phnum)
    elf.sections = _read_sections(elf, shoff, shentsize, shnum, shstrndx)
    return elf


def _read_segments(elf: ELFFile, off: int, entsize: int, num: int) -> list[Segment]:
    if num == 0 or off == 0:
        return []
    want = 56 if elf.is64 else 32
    if num > MAX_SEGMENTS or not want <= entsize <= 4 * want:
        raise ELFError("implausible program header table")
    table = elf.read_at(off, entsize * num)
    if len(table) < entsize * num:
        raise ELFError("truncated program header table")
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
    elf: ELFFile, off: int, entsize: int, num: int, strndx: int
) -> list[Section]:
    if num == 0 or off == 0:
        return []
    want = 64 if elf.is64 else 40
    if num > MAX_SECTIONS or not want <= entsize <= 4 * want:
        raise ELFError("implausible section header table")
    table = elf.read_at(off, entsize * num)
    if len(table) < entsize * num:
        raise ELFError("truncated section header table")
    e = elf.endian
    raw = []
    for i in range(num):
        base = i * entsize
        if elf.is64:
            name, stype, _fl, addr, soff, ssize = struct.unpack_from(e + "IIQQQQ", table, base)
        else:
            name, stype, _fl, addr, soff, ssize = struct.unpack_from(e + "IIIIII", table, base)
        raw.append((name, stype, addr, soff, ssize))
    names = b""
    if 0 < strndx < num:
        _n, _t, _a, soff, ssize = raw[strndx]
        if ssize > MAX_SHSTRTAB:
            raise ELFError("section name table too large")
        names = elf.read_at(soff, ssize)
    out = []
    for name_off, stype, addr, soff, ssize in raw:
        name = ""
        if name_off < len(names):
            end = names.find(b"\0", name_off)
            name = names[name_off : end if end >= 0 else len(names)].decode("latin-1")
        out.append(Section(name, stype, addr, soff, ssize))
    return out


def exec_candidate(path: str, mode: int, size: int, max_size: int) -> bool:
    """Shared ``required()`` rule for binary catalogers: a plausible executable by mode or
    directory, big enough to be an ELF and small enough to be worth a look."""
    if size < 64 or size > max_size:
        return False
    if mode & 0o111:
        return True
    parts = path.split("/")
    return any(p in ("bin", "sbin", "libexec") for p in parts[:-1])


class open_seekable:
    """Context manager giving a seekable stream over a FileInput: the file's own stream, or
    a capped in-memory copy when the source cannot seek."""

    def __init__(self, file: FileInput, cap: int = MAX_UNSEEKABLE) -> None:
        self.file = file
        self.cap = cap
        self.stream: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        f = self.file.open()
        if f.seekable():
            self.stream = f
        else:
            data = f.read(self.cap)
            f.close()
            self.stream = io.BytesIO(data)
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()
