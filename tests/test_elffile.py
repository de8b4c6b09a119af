"""The one ELF reader: a binary is parsed once per walk, whoever asks for it.

Uses the machine's own ``/usr/bin/ls`` (any dynamic ELF would do); the counts come from the
file input itself, not from patching the reader.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO, ClassVar

import pytest

from analyzerharness import LocalFileInput, info_from_stat
from imgscan.analyzers.dispatch import WorkItem, analyze_items
from imgscan.analyzers.elf import ElfAnalyzer
from imgscan.analyzers.elffile import ElfError, ElfFile, is_elf_candidate
from imgscan.analyzers.gobinary import GoBinaryAnalyzer
from imgscan.analyzers.interface import (
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    FileKind,
)
from imgscan.analyzers.rust import RustAuditableAnalyzer

HOST_BIN = "/usr/bin/ls"


class _OpenCounting(LocalFileInput):
    """Counts the streams opened on the file (each parse opens one)."""

    opens = 0

    def open(self) -> BinaryIO:
        self.opens += 1
        return super().open()


def _input(tmp_path: Path, data: bytes | None = None) -> _OpenCounting:
    p = tmp_path / "usr/bin/x"
    p.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        shutil.copy(HOST_BIN, p)
    else:
        p.write_bytes(data)
    p.chmod(0o755)
    return _OpenCounting(str(p), info_from_stat("usr/bin/x", p.stat()))


def test_three_analyzers_one_parse(tmp_path: Path) -> None:
    fi = _input(tmp_path)
    elf = fi.elf()
    for an in (ElfAnalyzer(), GoBinaryAnalyzer(), RustAuditableAnalyzer()):
        assert an.required(fi.info)
        an.analyze(fi)
    assert fi.opens == 1
    assert fi.elf() is elf
    fi.close()
    assert elf.stream.closed


def test_broken_elf_fails_once_for_everyone(tmp_path: Path) -> None:
    fi = _input(tmp_path, Path(HOST_BIN).read_bytes()[:100])
    for _ in range(3):
        with pytest.raises(ElfError):
            fi.elf()
    assert fi.opens == 1
    res = ElfAnalyzer().analyze(fi)
    assert res is not None and res.warnings[0].message.startswith("malformed ELF")
    assert RustAuditableAnalyzer().analyze(fi) is None
    assert fi.opens == 1
    # gobinary then looks for the build-info magic in the raw bytes (its own read, no parse)
    assert GoBinaryAnalyzer().analyze(fi) is None


class _Recorder(Analyzer):
    """Remembers which ElfFile object each file gave it."""

    name: ClassVar[str] = "rec-a"
    version: ClassVar[int] = 1
    seen: ClassVar[dict[str, list[int]]] = {}

    def required(self, info: FileInfo) -> bool:
        return is_elf_candidate(info)

    def analyze(self, file: FileInput) -> AnalysisResult | None:
        self.seen.setdefault(file.info.path, []).append(id(file.elf()))
        return None


class _Recorder2(_Recorder):
    name: ClassVar[str] = "rec-b"


def test_dispatcher_shares_one_parse(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(HOST_BIN, root / "usr/bin/a")
    shutil.copy(HOST_BIN, root / "usr/bin/b")
    infos = [info_from_stat(f"usr/bin/{n}", (root / "usr/bin" / n).stat()) for n in "ab"]
    _Recorder.seen.clear()
    analyze_items(str(root), None, [_Recorder(), _Recorder2()],
                  [WorkItem(i, (0, 1)) for i in infos])
    assert set(_Recorder.seen) == {"usr/bin/a", "usr/bin/b"}
    for ids in _Recorder.seen.values():
        assert len(ids) == 2 and ids[0] == ids[1]


def test_one_candidate_rule() -> None:
    def f(path: str, mode: int, size: int = 10_000, kind: FileKind = FileKind.FILE) -> bool:
        return is_elf_candidate(FileInfo(path, kind, mode, size=size))

    assert f("usr/bin/app", 0o755)
    assert f("opt/x/bin/app", 0o644)
    assert f("usr/lib/x86_64-linux-gnu/libz.so.1", 0o644)
    assert f("srv/plugin.so", 0o644)
    assert not f("etc/passwd", 0o644)
    assert not f("usr/bin/tiny", 0o755, size=10)
    assert not f("usr/bin/huge", 0o755, size=3 << 30)
    assert not f("usr/bin/link", 0o777, kind=FileKind.SYMLINK)


def test_parse_exposes_what_the_analyzers_read() -> None:
    with open(HOST_BIN, "rb") as f:
        elf = ElfFile.parse(f)
        assert elf.type_name == "ET_DYN" and elf.is64
        assert elf.section(".dynsym") is not None and elf.dynsym
        assert elf.dynamic is not None and "libc.so.6" in elf.dynamic.needed
        text = elf.section(".text")
        assert text is not None and elf.read_vaddr(text.addr, 16) == elf.read_at(text.offset, 16)
