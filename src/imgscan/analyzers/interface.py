"""What an analyzer plugin is, and what it is given.

Two kinds, after Trivy's analyzer core:

* ``Analyzer`` is offered single files, layer by layer. It says which files it wants with the
  cheap ``required(info)`` (called for every entry, from tar metadata alone) and turns each
  wanted file into an ``AnalysisResult``. Its results are cached per layer under
  (diff_id, name, version, ``cache_key()``), so it must depend on nothing but the file.
* ``PostAnalyzer`` runs once per image over the merged view (``ImageView``), with the
  packages already found; for work that needs several files or the image config (which
  package owns this setuid file, FORTIFY against the image's own libc, risky config).

Third parties register either under the entry-point group ``imgscan.analyzers``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from imgscan.errors import ImgscanError
from imgscan.fileinfo import FileInfo, FileKind
from imgscan.model import (
    Finding,
    LayerRef,
    OSInfo,
    Package,
    PackageFiles,
    ScanWarning,
)

if TYPE_CHECKING:
    from imgscan.analyzers.elffile import ElfFile

__all__ = [
    "DEFAULT_MAX_READ",
    "AnalysisResult",
    "Analyzer",
    "AnalyzerError",
    "FileInfo",
    "FileInput",
    "FileKind",
    "ImageView",
    "PostAnalyzer",
    "ScanOptions",
    "ViewEntry",
]

#: The most any analyzer gets from ``FileInput.read()``; larger files must be streamed.
DEFAULT_MAX_READ = 64 << 20


class FileInput(ABC):
    """A wanted file, handed to every analyzer that asked for it.

    ``read()`` returns the content (up to ``limit``) and is shared: the bytes are read from
    disk at most once whatever the number of analyzers. ``open()`` streams, for large files.
    """

    info: FileInfo
    layer: LayerRef | None

    @abstractmethod
    def read(self, limit: int = DEFAULT_MAX_READ) -> bytes:
        """The first ``limit`` bytes of the file (all of it when smaller)."""

    @abstractmethod
    def open(self) -> BinaryIO:
        """A fresh binary stream over the whole file."""

    def open_sibling(self, name: str) -> BinaryIO | None:
        """Open a regular file next to this one in the same layer (``rpmdb.sqlite-wal``
        beside ``rpmdb.sqlite``), or None when there is none. Never follows symlinks."""
        return None

    def elf(self) -> ElfFile:
        """The file parsed as ELF, memoised: ``elf``, ``gobinary`` and ``cargo-auditable``
        all want the same headers, and one walk parses a binary once for all of them.
        Raises ``ElfError`` (not ELF, malformed) or ``OSError``, the same one to each asker."""
        memo = self.__dict__.get("_elf_memo")
        if memo is None:
            from imgscan.analyzers.elffile import ElfError, parse_file  # only ELF readers pay

            try:
                memo = parse_file(self)
            except (ElfError, OSError) as e:
                memo = e
            self._elf_memo: ElfFile | Exception = memo
        if isinstance(memo, Exception):
            raise memo
        return memo

    def close(self) -> None:
        """Release what the memo holds open (the walk calls this after the last analyzer)."""
        memo = self.__dict__.pop("_elf_memo", None)
        if memo is not None and not isinstance(memo, Exception):
            memo.stream.close()


@dataclass
class AnalysisResult:
    """What an analyzer found in one file (or, for a PostAnalyzer, in the image)."""

    packages: list[Package] = field(default_factory=list)
    package_files: list[PackageFiles] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    os: OSInfo | None = None
    #: per-file facts for tables (``facts["elf"]`` = one row per binary)
    facts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def merge(self, other: AnalysisResult | None) -> None:
        if other is None:
            return
        self.packages.extend(other.packages)
        self.package_files.extend(other.package_files)
        self.findings.extend(other.findings)
        self.warnings.extend(other.warnings)
        if other.os is not None:
            self.os = other.os
        for k, rows in other.facts.items():
            self.facts.setdefault(k, []).extend(rows)

    def is_empty(self) -> bool:
        return not (self.packages or self.package_files or self.findings or self.warnings
                    or self.os or self.facts)


@dataclass(frozen=True)
class ScanOptions:
    """Options that analyzers may read; anything that changes results belongs in
    ``Analyzer.cache_key`` too."""

    scan_binaries: bool = False
    hidden: bool = True
    show_secrets: bool = False
    rule_dirs: tuple[str, ...] = ()
    disabled_rules: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


class _Base(ABC):
    #: unique, short, lower-case (``dpkg``, ``secrets``)
    name: ClassVar[str]
    #: bump when results change for the same input: invalidates cached layer results
    version: ClassVar[int]
    description: ClassVar[str] = ""
    #: run even when ``--analyzers`` leaves this one out, because the scan relies on what it
    #: finds for everyone (os-release: package purls name the distribution)
    always_run: ClassVar[bool] = False

    def __init__(self, options: ScanOptions | None = None) -> None:
        self.options = options or ScanOptions()


class Analyzer(_Base):
    """A per-file analyzer; see the module docstring."""

    #: how many bytes ``FileInput.read()`` may return to this analyzer
    max_read: ClassVar[int] = DEFAULT_MAX_READ
    #: also run over files that later layers hide (secrets want this; package catalogers
    #: get them anyway, since the per-layer results are merged with the whiteout rules)
    wants_hidden: ClassVar[bool] = False

    @abstractmethod
    def required(self, info: FileInfo) -> bool:
        """Cheap: decide from the path and metadata alone whether to read this file."""

    @abstractmethod
    def analyze(self, file: FileInput) -> AnalysisResult | None:
        """Turn one file into results. Raise nothing for bad content: return warnings."""

    def cache_key(self) -> str:
        """Extra cache-key material (a rules digest); empty when results depend only on
        the file and ``version``."""
        return ""

    @classmethod
    def choose_os(cls, candidates: Mapping[str, OSInfo]) -> OSInfo | None:
        """The image's OS from the ``AnalysisResult.os`` this analyzer gave for the visible
        files (path → OS). The analyzer that detects the OS knows which of its files to
        trust, so the choice is its own; by default, the first one."""
        return next(iter(candidates.values()), None)


class ImageView(ABC):
    """The merged image as analyzers see it after whiteouts, plus what layers hid.

    Paths are relative (``etc/os-release``). ``open`` and ``read`` resolve symlinks inside
    the image root, never on the host, and refuse anything but regular files.
    """

    config: Mapping[str, Any]
    layers: Sequence[LayerRef]

    @abstractmethod
    def entries(self) -> Iterator[ViewEntry]:
        """Every visible entry of the final image, in path order."""

    @abstractmethod
    def hidden_entries(self) -> Iterator[ViewEntry]:
        """Entries that a later layer deleted or replaced (``hidden_by`` set)."""

    @abstractmethod
    def lookup(self, path: str) -> ViewEntry | None:
        """The visible entry at ``path`` (no symlink resolution), or None."""

    @abstractmethod
    def resolve(self, path: str) -> ViewEntry | None:
        """Follow symlinks inside the image root; None if missing, looping or escaping."""

    @abstractmethod
    def open(self, entry: ViewEntry) -> BinaryIO:
        """Open a regular file entry (visible or hidden) for reading."""

    def read(self, path: str, limit: int = DEFAULT_MAX_READ) -> bytes | None:
        """Read a regular file by path, following in-image symlinks; None when absent."""
        entry = self.resolve(path)
        if entry is None or not entry.info.is_regular:
            return None
        with self.open(entry) as f:
            return f.read(limit)


@dataclass(frozen=True)
class ViewEntry:
    """A file of the merged image view, with the layer it comes from (and the one that
    hid it, for content a later layer deleted or replaced)."""

    info: FileInfo
    layer: LayerRef
    hidden_by: LayerRef | None = None


class PostAnalyzer(_Base):
    """An image-wide analyzer; see the module docstring."""

    #: fact tables of the per-file analyzers this one reads; the framework puts them in
    #: ``self.facts`` (visible files only) before calling ``post_analyze``
    facts_wanted: ClassVar[tuple[str, ...]] = ()
    #: the fact table that this analyzer's own table (``facts[name]``) completes row by row,
    #: matched on ``path``: its rows are merged into that table's, and its table is dropped
    refines: ClassVar[str | None] = None
    facts: dict[str, list[dict[str, Any]]]
    #: files (fnmatch patterns on the relative path) this analyzer opens through the view:
    #: a streamed scan keeps their bytes while it walks the layers (nothing else can be
    #: opened afterwards: ``view.open`` raises OSError for it)
    reads: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def post_analyze(
        self, view: ImageView, packages: Sequence[Package], os: OSInfo | None
    ) -> AnalysisResult:
        """Look at the merged image. Raise nothing for bad content: return warnings."""


class AnalyzerError(ImgscanError):
    """An analyzer plugin could not be loaded or is not a valid analyzer: the installation
    is broken, so it is the environment that cannot be used (exit code 3), said plainly
    and naming the distribution, never an "unexpected" crash."""

    exit_code = 3
