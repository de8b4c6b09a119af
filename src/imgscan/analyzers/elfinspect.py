"""Hardening properties of one ELF file, read from its headers (FORMATS.md §6).

This module is the pure "what is in this ELF" half of the ELF analyzer: it knows nothing of
images, layers or findings. It judges an ``ElfFile`` (``elffile``, the one ELF reader), which
reads only what the verdicts need -- the headers, the dynamic section and the symbol tables
-- so a 200 MB binary costs a few hundred kilobytes of reads, never a full load.

Verdicts follow Debian's checksec 2.6 ``filecheck()`` (the reference the tests compare
with), except where checksec would report a false "missing":

* ``relro``: ``full`` (PT_GNU_RELRO and bind-now: DT_BIND_NOW, DF_BIND_NOW or DF_1_NOW),
  ``partial``, ``no``; ``n/a`` without program headers or for a static binary (no
  PT_DYNAMIC) that has no PT_GNU_RELRO -- there is no lazily bound GOT to protect.
* ``canary``: ``yes`` when a symbol named like ``__stack_chk_fail``/``__stack_chk_guard``/
  ``__intel_security_cookie`` exists in .dynsym or .symtab; ``n/a`` for Go binaries (the Go
  toolchain never emits stack protectors; it checks stack bounds itself); ``unknown`` for a
  stripped static binary (the evidence would be in the stripped .symtab); else ``no``.
* ``nx``: ``no`` when PT_GNU_STACK is executable or absent (glibc then maps an executable
  stack), ``yes`` otherwise, ``n/a`` without program headers.
* ``pie``: ``no`` (ET_EXEC), ``yes`` (ET_DYN with DT_DEBUG or DF_1_PIE), ``dso`` (other
  ET_DYN), ``rel`` (ET_REL).
* FORTIFY needs the image's libc, so this module only collects the inputs:
  ``fortify_chk`` (dynamic symbol names ending ``_chk``) and ``fortify_plain`` (names that
  glibc has a ``__<name>_chk`` for), both with leading underscores stripped and with
  multiplicity, exactly as checksec counts them; ``fortify_verdict`` finishes the job.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, BinaryIO

from imgscan.analyzers.elffile import (
    PF_X,
    PT_DYNAMIC,
    PT_GNU_RELRO,
    PT_GNU_STACK,
    PT_INTERP,
    SHT_GNU_VERSYM,
    SHT_SYMTAB,
    ElfError,
    ElfFile,
)

#: symbol-name fragments that mean "stack protector in use" (checksec's list)
CANARY_MARKERS = (b"__stack_chk_fail", b"__stack_chk_guard", b"__intel_security_cookie")

#: glibc's ``__<name>_chk`` functions (2.36 plus the 2.38 strlcpy family), as plain names. A
#: superset is enough: the post step intersects with what the image's own libc exports.
_GLIBC_CHK_BASES = """asprintf confstr dprintf explicit_bzero fdelt fgets fgets_unlocked fgetws
    fgetws_unlocked fprintf fread fread_unlocked fwprintf getcwd getdomainname getgroups
    gethostname getlogin_r gets getwd longjmp mbsnrtowcs mbsrtowcs mbstowcs memcpy memmove
    mempcpy memset obstack_printf obstack_vprintf poll ppoll pread64 pread printf ptsname_r
    read readlink readlinkat realpath recv recvfrom snprintf sprintf stpcpy stpncpy strcat
    strcpy strncat strncpy swprintf syslog ttyname_r vasprintf vdprintf vfprintf vfwprintf
    vprintf vsnprintf vsprintf vswprintf vsyslog vwprintf wcpcpy wcpncpy wcrtomb wcscat
    wcscpy wcsncat wcsncpy wcsnrtombs wcsrtombs wcstombs wctomb wmemcpy wmemmove wmempcpy
    wmemset wprintf strlcpy strlcat wcslcpy wcslcat"""
GLIBC_FORTIFIABLE = frozenset(_GLIBC_CHK_BASES.split())

#: sections only the Go toolchain writes
GO_SECTIONS = frozenset({".go.buildinfo", ".gopclntab", ".note.go.buildid", ".gosymtab"})

_DF_BIND_NOW = 0x8
_DF_1_NOW = 0x1
_DF_1_PIE = 0x08000000
_DT_DEBUG, _DT_BIND_NOW, _DT_FLAGS, _DT_FLAGS_1 = 21, 24, 30, 0x6FFFFFFB


def _guarded(what: str, elf_or_stream: ElfFile | BinaryIO, fn: Any) -> Any:
    """Run ``fn(elf)``, turning anything a hostile file makes ``struct`` raise into ElfError."""
    try:
        elf = elf_or_stream if isinstance(elf_or_stream, ElfFile) else ElfFile.parse(
            elf_or_stream)
        return fn(elf)
    except ElfError:
        raise
    except (struct.error, ValueError, OverflowError, IndexError, KeyError, MemoryError) as e:
        raise ElfError(f"{what}: {type(e).__name__}: {e}") from None


def inspect_elf(elf: ElfFile | BinaryIO) -> dict[str, Any]:
    """The hardening facts of one ELF (parsed, or a seekable stream to parse), as a
    JSON-ready dict (see the module docstring).

    Raises ``ElfError`` for anything malformed; callers turn that into a warning.
    """
    return _guarded("malformed", elf, _inspect)


def _inspect(elf: ElfFile) -> dict[str, Any]:
    has_phdrs = bool(elf.segments)
    gnu_relro = has_dynamic_seg = has_interp = False
    gnu_stack_flags: int | None = None
    for seg in elf.segments:
        if seg.type == PT_GNU_RELRO:
            gnu_relro = True
        elif seg.type == PT_GNU_STACK:
            gnu_stack_flags = seg.flags
        elif seg.type == PT_DYNAMIC:
            has_dynamic_seg = True
        elif seg.type == PT_INTERP:
            has_interp = True

    dyn = elf.dynamic
    bind_now = has_debug = pie_flag = False
    for d_tag, d_val in dyn.tags if dyn is not None else ():
        if d_tag == _DT_BIND_NOW:
            bind_now = True
        elif d_tag == _DT_FLAGS:
            bind_now |= bool(d_val & _DF_BIND_NOW)
        elif d_tag == _DT_FLAGS_1:
            bind_now |= bool(d_val & _DF_1_NOW)
            pie_flag |= bool(d_val & _DF_1_PIE)
        elif d_tag == _DT_DEBUG:
            has_debug = True
    dyn_names = elf.dynsym

    sections = elf.by_name
    is_go = any(name in sections for name in GO_SECTIONS)
    static = not has_dynamic_seg if has_phdrs else False
    symtab = sections.get(".symtab")
    stripped = symtab is None

    # checksec greps readelf -s output for the markers: names containing them, anywhere
    markers = tuple(m.decode() for m in CANARY_MARKERS)
    canary_found = any(any(m in n for m in markers) for _, n, _ in dyn_names)
    if (not canary_found and symtab is not None and symtab.type == SHT_SYMTAB
            and 0 < symtab.link < len(elf.sections)):
        strsec = elf.sections[symtab.link]
        canary_found = elf.stream_contains(strsec.offset, strsec.size, CANARY_MARKERS)

    e_type = elf.type_name
    if e_type == "ET_EXEC":
        pie, kind = "no", "exec"
    elif e_type == "ET_DYN":
        pie = "yes" if (has_debug or pie_flag) else "dso"
        kind = "pie" if pie == "yes" else "dyn"
    elif e_type == "ET_REL":
        pie, kind = "rel", "rel"
    else:
        pie, kind = "n/a", e_type.removeprefix("ET_").lower()

    if not has_phdrs:
        relro = nx = "n/a"
    else:
        relro = ("full" if bind_now else "partial") if gnu_relro else (
            "n/a" if static else "no")
        nx = "yes" if gnu_stack_flags is not None and not gnu_stack_flags & PF_X else "no"

    if is_go:
        canary = "n/a"
    elif canary_found:
        canary = "yes"
    elif static and stripped:
        canary = "unknown"
    else:
        canary = "no"

    chk: list[str] = []
    plain: list[str] = []
    for _i, name, _defined in dyn_names:
        s = name.lstrip("_")
        if s.endswith("_chk"):
            chk.append(s)
        elif s in GLIBC_FORTIFIABLE:
            plain.append(s)

    return {
        "type": kind,
        "machine": elf.machine_name.removeprefix("EM_"),
        "bits": 64 if elf.is64 else 32,
        "relro": relro,
        "canary": canary,
        "nx": nx,
        "pie": pie,
        "execstack": has_phdrs and kind != "rel" and (
            gnu_stack_flags is None or bool(gnu_stack_flags & PF_X)),
        "gnu_stack": gnu_stack_flags is not None,
        "rpath": list(dyn.rpath) if dyn is not None else [],
        "runpath": list(dyn.runpath) if dyn is not None else [],
        "needed": list(dyn.needed) if dyn is not None else [],
        "interp": has_interp,
        "stripped": stripped,
        "static": static,
        "go": is_go,
        "fortify_chk": sorted(chk),
        "fortify_plain": sorted(plain),
    }


def libc_chk_functions(elf: ElfFile | BinaryIO) -> set[str]:
    """The ``_chk`` functions a libc exports (defined, default-version .dynsym entries),
    as checksec names them: ``__memcpy_chk`` -> ``memcpy_chk``."""
    return _guarded("libc", elf, _libc_chk)


def _libc_chk(elf: ElfFile) -> set[str]:
    if elf.section(".dynsym") is None:
        return set()
    hidden = _hidden_versions(elf)
    out: set[str] = set()
    for i, name, defined in elf.dynsym:
        if defined and "__" in name and name.endswith("_chk") and i not in hidden:
            out.add(name.rsplit("__", 1)[1])
    return out


def _hidden_versions(elf: ElfFile) -> set[int]:
    """Symbol indices whose .gnu.version entry has the hidden bit: readelf prints them as
    ``name@VER`` (a compatibility version), and checksec only takes ``name@@VER``."""
    versym = elf.first_of_type(SHT_GNU_VERSYM)
    if versym is None:
        return set()
    raw = elf.read_exact(versym.offset, versym.size)
    fmt = elf.endian + "H"
    return {i for i, (v,) in enumerate(struct.iter_unpack(fmt, raw[: len(raw) & ~1]))
            if v & 0x8000}


def fortify_verdict(
    chk: Iterable[str], plain: Iterable[str], libc_chk: set[str], applicable: bool = True
) -> dict[str, Any]:
    """Finish FORTIFY with the image libc's ``_chk`` set, counting like checksec 2.6.

    fortified = imported names that are one of libc's ``_chk`` functions; fortifiable =
    fortified + imported plain names that libc has a ``_chk`` for. Verdict ``yes`` when any
    ``_chk`` name is imported, ``no`` when none is but something was fortifiable, ``n/a``
    when nothing could be (static, Go, a libc without ``_chk`` functions such as musl).
    """
    chk = list(chk)
    plain_libc = {c.replace("_chk", "") for c in libc_chk}
    fortified = sum(1 for c in chk if c in libc_chk)
    unchecked = sum(1 for p in plain if p in plain_libc)
    total = fortified + unchecked
    if not applicable or not libc_chk:
        verdict = "n/a"
    elif chk:
        verdict = "yes"
    elif total:
        verdict = "no"
    else:
        verdict = "n/a"
    return {"fortify": verdict, "fortified": fortified, "fortifiable": total}
