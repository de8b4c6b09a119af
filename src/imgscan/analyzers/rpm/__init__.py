"""The rpm cataloger: one database file (SQLite, Berkeley DB hash or NDB) to packages.

Which backend a file is read with follows its name (``rpmdb.sqlite``, ``Packages``,
``Packages.db``), and each backend checks its own magic, so a misnamed file is a warning.
Every header blob is parsed with the bounds-checked ``header`` parser; a broken blob costs
that one package (and a warning), never the scan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import posixpath
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.analyzers.rpm import header as h
from imgscan.analyzers.rpm.bdb import read_bdb_values
from imgscan.analyzers.rpm.errors import RpmDbError
from imgscan.analyzers.rpm.ndb import read_ndb_blobs
from imgscan.analyzers.rpm.sqlite import read_sqlite_blobs
from imgscan.model import Package, ScanWarning

_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm", "usr/share/rpm")
_NAMES = ("rpmdb.sqlite", "Packages", "Packages.db")
#: the database files the analyzer reads (FORMATS.md §5.3)
RPM_DB_PATHS = frozenset(f"{d}/{n}" for d in _DIRS for n in _NAMES)

#: caps against hostile databases: files per package and over the whole database
MAX_FILES_PER_PACKAGE = 500_000
MAX_FILES_PER_DB = 5_000_000
#: largest BDB/NDB file copied when the input stream cannot seek
MAX_DB_COPY = 4 << 30

_WANTED = frozenset({
    h.TAG_NAME, h.TAG_VERSION, h.TAG_RELEASE, h.TAG_EPOCH, h.TAG_ARCH, h.TAG_LICENSE,
    h.TAG_VENDOR, h.TAG_SOURCERPM, h.TAG_MODULARITYLABEL, h.TAG_DIRINDEXES, h.TAG_BASENAMES,
    h.TAG_DIRNAMES, h.TAG_OLDFILENAMES, h.TAG_SIZE,
})


def split_sourcerpm(sourcerpm: str) -> tuple[str, str, str]:
    """``openssl-3.0.7-27.el9.src.rpm`` -> (``openssl``, ``3.0.7``, ``27.el9``); names may
    contain dashes, version and release may not. ('', '', '') when it has no such shape."""
    base = sourcerpm
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    parts = base.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return "", "", ""
    return parts[0], parts[1], parts[2]


def evr(epoch: int | None, version: str, release: str) -> str:
    """rpm's ``%{EVR}``: the epoch only when the header has one (``Epoch: 0`` shows ``0:``)."""
    s = f"{version}-{release}" if release else version
    return f"{epoch}:{s}" if epoch is not None else s


def package_files(hdr: h.Header) -> list[str]:
    """Absolute paths from DIRNAMES[DIRINDEXES[i]] + BASENAMES[i], or OLDFILENAMES."""
    basenames = hdr.strings(h.TAG_BASENAMES)
    if not basenames:
        return hdr.strings(h.TAG_OLDFILENAMES)[:MAX_FILES_PER_PACKAGE]
    dirnames = hdr.strings(h.TAG_DIRNAMES)
    indexes = hdr.ints(h.TAG_DIRINDEXES)
    if len(indexes) != len(basenames):
        raise h.HeaderError(f"{len(basenames)} basenames but {len(indexes)} dirindexes")
    if len(basenames) > MAX_FILES_PER_PACKAGE:
        raise h.HeaderError(f"{len(basenames)} files exceed the cap of {MAX_FILES_PER_PACKAGE}")
    out = []
    for base, idx in zip(basenames, indexes, strict=True):
        if not 0 <= idx < len(dirnames):
            raise h.HeaderError(f"dirindex {idx} outside {len(dirnames)} dirnames")
        out.append(dirnames[idx] + base)
    return out


def package_from_header(hdr: h.Header, location: str) -> Package | None:
    """One Package from a parsed header; None for ``gpg-pubkey`` pseudo-packages."""
    name = hdr.string(h.TAG_NAME)
    if not name:
        raise h.HeaderError("header has no NAME")
    if name == "gpg-pubkey":
        return None
    version = hdr.string(h.TAG_VERSION)
    release = hdr.string(h.TAG_RELEASE)
    epoch = hdr.int(h.TAG_EPOCH)
    sourcerpm = hdr.string(h.TAG_SOURCERPM)
    src_name, src_ver, src_rel = split_sourcerpm(sourcerpm)
    license_ = hdr.string(h.TAG_LICENSE)
    metadata: dict[str, object] = {"epoch": epoch, "version": version, "release": release}
    for key, tag in (("vendor", h.TAG_VENDOR), ("sourcerpm", h.TAG_SOURCERPM),
                     ("modularitylabel", h.TAG_MODULARITYLABEL)):
        value = hdr.string(tag)
        if value:
            metadata[key] = value
    size = hdr.int(h.TAG_SIZE)
    if size is not None:
        metadata["size"] = size
    return Package(
        type="rpm",
        name=name,
        version=evr(epoch, version, release),
        arch=hdr.string(h.TAG_ARCH),
        source_name=src_name,
        source_version=evr(epoch, src_ver, src_rel) if src_name else "",
        licenses=(license_,) if license_ else (),
        locations=(location,),
        metadata=metadata,
        files=tuple(package_files(hdr)),
    )


@contextlib.contextmanager
def _seekable(file: FileInput) -> Iterator[BinaryIO]:
    """The file as a seekable stream, copied to a temporary file when the source streams."""
    stream = file.open()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stream)
        if stream.seekable():
            yield stream
            return
        tmp = stack.enter_context(tempfile.TemporaryFile(prefix="imgscan-rpmdb-"))
        copied = 0
        while chunk := stream.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_DB_COPY:
                raise RpmDbError(f"database larger than {MAX_DB_COPY} bytes")
            tmp.write(chunk)
        tmp.seek(0)
        yield tmp


class RpmAnalyzer(Analyzer):
    """Installed rpm packages from rpmdb.sqlite, Packages (BDB) and Packages.db (NDB)."""

    name = "rpm"
    version = 1
    description = "rpm installed-package databases (SQLite, Berkeley DB, NDB)"

    def required(self, info: FileInfo) -> bool:
        return info.is_regular and info.path in RPM_DB_PATHS

    def analyze(self, file: FileInput) -> AnalysisResult:
        result = AnalysisResult()
        location = "/" + file.info.path
        seen_files = 0

        def warn(message: str) -> None:
            result.warnings.append(ScanWarning(message=message, path=location, analyzer=self.name))

        try:
            for ident, blob in self._blobs(file, warn):
                try:
                    pkg = package_from_header(h.parse_header(blob, _WANTED), location)
                except h.HeaderError as e:
                    warn(f"rpm header {ident}: {e}")
                    continue
                if pkg is None:
                    continue
                seen_files += len(pkg.files)
                if seen_files > MAX_FILES_PER_DB and pkg.files:
                    if seen_files - len(pkg.files) <= MAX_FILES_PER_DB:
                        warn(f"more than {MAX_FILES_PER_DB} files in the database; "
                             "further file lists dropped")
                    pkg = dataclasses.replace(pkg, files=())
                result.packages.append(pkg)
        except (RpmDbError, OSError) as e:
            warn(f"cannot read rpm database: {e}")
        except (struct.error, ValueError) as e:  # a reader bug on odd input must not kill a scan
            warn(f"cannot read rpm database (unexpected structure): {e}")
        return result

    def _blobs(
        self, file: FileInput, warn: Callable[[str], None]
    ) -> Iterator[tuple[object, bytes]]:
        """(identifier, header blob) pairs from whichever backend the file name says."""
        base = posixpath.basename(file.info.path)
        if base == "rpmdb.sqlite":
            wal = file.open_sibling("rpmdb.sqlite-wal")
            with file.open() as db, (wal or contextlib.nullcontext()):
                yield from read_sqlite_blobs(db, wal)
        elif base == "Packages":
            with _seekable(file) as f:
                for key, value in read_bdb_values(f, warn):
                    if len(key) == 4 and key == b"\0\0\0\0":
                        continue  # rpm's bookkeeping record, not a header
                    yield int.from_bytes(key[:4], "little"), value
        else:
            with _seekable(file) as f:
                yield from read_ndb_blobs(f, warn)


__all__ = ["RPM_DB_PATHS", "RpmAnalyzer", "package_from_header", "split_sourcerpm"]
