"""Streamed dispatch: analyze a layer straight from its members, in one walk.

Each member that an analyzer asked for (``required``) becomes a ``StreamFileInput`` whose
bytes are taken from the walk at most once, on first use, and shared by every analyzer:
held in memory up to ``MEMORY_BOUND``, spooled to a private temporary file (unlinked, gone
when closed) above it, so analyzers that read at random (rpm databases, ELF, jars, sqlite)
get a seekable file while memory stays flat. The spool is sparse (runs of zeros are holes:
a layer of a few MB that inflates to GiBs of zeros costs no disk), and a file above
``MAX_SPOOL`` is not analyzed at all in a streamed scan (a warning says so). The walk also
records the layer's entry index (what the merge needs: paths, whiteouts, modes) and captures
the few small files that image-wide analyzers open through the merged view (``/etc/passwd``,
the libc).

Hard links carry no bytes in a tar. A wanted hard link whose target was among the files
read last (``RECENT_BYTES``) is analyzed on the spot; otherwise after the walk, when the
layer is walked a second time for just those targets (rare).

Layers are analyzed in parallel processes (tar parsing is Python: threads would queue on
the GIL), one layer per process, results sent back as plain values.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from imgscan.analyzers.interface import (
    DEFAULT_MAX_READ,
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    FileKind,
)
from imgscan.entrytable import EntryTable, TableBuilder
from imgscan.layers.interface import Layer, LayerMember
from imgscan.model import LayerRef, ScanWarning
from imgscan.sparse import copy_sparse

#: a wanted file up to this size is held in memory; above, it is spooled to a temp file
MEMORY_BOUND = 8 << 20
#: a wanted file above this size is not analyzed in a streamed scan (a warning names it):
#: even sparse, a spool of real content costs its size in temporary disk
MAX_SPOOL = 4 << 30
#: the most a captured file (for image-wide analyzers) may weigh
MAX_CAPTURE = 16 << 20
#: the bytes of the most recently read wanted files are kept up to this total, so that a
#: hard link to one of them (GNU tar writes the link right after its target in a sorted
#: tar: ``perl`` then ``perl5.36.0``) needs no second walk
RECENT_BYTES = 24 << 20
#: files the built-in image-wide analyzers open through the merged view (fnmatch on the
#: relative path), captured whichever analyzers are selected: the captures are cached with
#: the entry index under a key made of these patterns, so one walk serves every selection
#: (third-party PostAnalyzers' ``reads`` extend the set, and the key)
DEFAULT_CAPTURES = ("etc/passwd", "etc/group", "lib/*/libc.so.6", "usr/lib/*/libc.so.6",
                    "lib64/libc.so.6", "usr/lib64/libc.so.6", "lib/libc.so.6",
                    "usr/lib/libc.so.6", "lib/ld-musl-*", "usr/lib/ld-musl-*",
                    "lib*/libc-*.so", "usr/lib*/libc-*.so", "lib/*/libc-*.so",
                    "usr/lib/*/libc-*.so")

Results = dict[str, dict[str, AnalysisResult]]


class StreamFileInput(FileInput):
    """A file taken from a layer walk; see the module docstring."""

    def __init__(self, info: FileInfo, layer: LayerRef | None,
                 source: Callable[[], BinaryIO] | bytes) -> None:
        self.info = info
        self.layer = layer
        self._source = source
        self._data: bytes | None = source if isinstance(source, bytes) else None
        self._spool: str | None = None

    def _materialize(self) -> None:
        if self._data is not None or self._spool is not None:
            return
        assert callable(self._source)
        with self._source() as src:
            if self.info.size <= MEMORY_BOUND:
                self._data = src.read()
                return
            fd, path = tempfile.mkstemp(prefix="imgscan-spool-")
            try:
                os.fchmod(fd, 0o600)
                copy_sparse(src, fd)  # sparse: zeros take no disk
            except BaseException:
                os.unlink(path)  # never a half copy left behind, or given to analyzers
                raise
            finally:
                os.close(fd)
            self._spool = path

    def read(self, limit: int = DEFAULT_MAX_READ) -> bytes:
        self._materialize()
        if self._data is not None:
            return self._data[:limit]
        with open(self._spool, "rb") as f:  # type: ignore[arg-type]
            return f.read(limit)

    def open(self) -> BinaryIO:
        self._materialize()
        if self._data is not None:
            return io.BytesIO(self._data)
        assert self._spool is not None  # materialized: in memory or spooled
        return cast(BinaryIO, open(self._spool, "rb"))

    def close(self) -> None:
        """Drop the bytes (and the spool file) once every analyzer has had them."""
        if self._spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
            self._spool = None
        self._data = None


@dataclass
class LayerOutcome:
    """What one walk of a layer gives: per-analyzer results, the entry index, captures."""

    results: Results = field(default_factory=dict)
    entries: EntryTable = field(default_factory=EntryTable)
    captured: dict[str, bytes] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def capture_matcher(patterns: Iterable[str]) -> Callable[[FileInfo], bool]:
    """Does an image-wide analyzer need this file's bytes later (glob on the path)?"""
    exact = {p for p in patterns if not any(c in p for c in "*?[")}
    globs = [p for p in patterns if p not in exact]

    def wants(info: FileInfo) -> bool:
        if info.size > MAX_CAPTURE:
            return False
        return info.path in exact or any(fnmatch.fnmatchcase(info.path, g) for g in globs)

    return wants


def _run(analyzers: Sequence[Analyzer], wanted: Sequence[int], file: StreamFileInput,
         out: LayerOutcome) -> None:
    for i in wanted:
        a = analyzers[i]
        out.calls[a.name] = out.calls.get(a.name, 0) + 1
        try:
            r = a.analyze(file)
        except Exception as e:  # a plugin bug must not end the scan
            r = AnalysisResult(warnings=[ScanWarning(
                f"analyzer failed: {type(e).__name__}: {e}", file.info.abspath, a.name,
                file.layer)])
        if r is not None and not r.is_empty():
            out.results[a.name][file.info.path] = r


def _wanted(analyzers: Sequence[Analyzer], info: FileInfo) -> tuple[int, ...]:
    out = []
    for i, a in enumerate(analyzers):
        try:
            if a.required(info):
                out.append(i)
        except Exception:
            continue
    return tuple(out)


def analyze_layer(layer: Layer, analyzers: Sequence[Analyzer],
                  capture: Callable[[FileInfo], bool], with_index: bool = True
                  ) -> LayerOutcome:
    """Walk ``layer`` once, running ``analyzers`` on the files they want (see module)."""
    outcome_for = getattr(layer, "outcome_for", None)
    if outcome_for is not None:  # analyzed as its stream passed (``analyzers.sequential``)
        return cast(LayerOutcome, outcome_for(analyzers))
    out = LayerOutcome(results={a.name: {} for a in analyzers})
    index = TableBuilder()  # columns, not a FileInfo per entry (300,000-entry layers)
    links: list[tuple[FileInfo, tuple[int, ...], bool]] = []
    recent: collections.OrderedDict[str, bytes] = collections.OrderedDict()
    held = 0
    with layer.members() as members:
        for m in members:
            info = m.info
            if with_index:  # finish() applies the layer's own order, as extraction does
                index.add(info)
            if not info.is_regular:
                continue
            wanted = _wanted(analyzers, info) if analyzers else ()
            cap = capture(info)
            if not wanted and not cap:
                continue
            if info.kind == FileKind.HARDLINK:
                data = recent.get(info.linkname)
                if data is None:
                    links.append((info, wanted, cap))
                else:
                    _take(_BytesMember(info, data), info, layer.ref, analyzers, wanted, cap,
                          out)
                continue
            data = _take(m, info, layer.ref, analyzers, wanted, cap, out)
            if data is not None and len(data) <= RECENT_BYTES:
                recent[info.path] = data
                held += len(data)
                while held > RECENT_BYTES:
                    held -= len(recent.popitem(last=False)[1])
    if links:
        _resolve_links(layer, analyzers, links, out)
    if with_index:
        out.entries = index.finish(dedupe=True, implicit_dirs=True)
    return out


def _take(m: LayerMember, info: FileInfo, ref: LayerRef, analyzers: Sequence[Analyzer],
          wanted: Sequence[int], cap: bool, out: LayerOutcome) -> bytes | None:
    """Run the wanted analyzers on one member; its bytes when they were held in memory."""
    if info.size > MAX_SPOOL:
        if wanted:
            name = analyzers[wanted[0]].name
            out.results[name][info.path] = AnalysisResult(warnings=[ScanWarning(
                f"not analyzed: {info.size} bytes is above a streamed scan's per-file cap "
                f"of {MAX_SPOOL} bytes (pull the image, or scan with --keep, to analyze it)",
                info.abspath, name, ref)])
        return None
    file = StreamFileInput(info, ref, m.open)
    try:
        _run(analyzers, wanted, file, out)
        if cap:
            with contextlib.suppress(OSError):
                out.captured[info.path] = file.read(MAX_CAPTURE)
        return file._data
    finally:
        file.close()


def _resolve_links(layer: Layer, analyzers: Sequence[Analyzer],
                   links: list[tuple[FileInfo, tuple[int, ...], bool]],
                   out: LayerOutcome) -> None:
    """Analyze wanted hard links with their target's bytes: from the captures when the
    target was captured, else from a second walk that keeps just the targets."""
    targets = {info.linkname for info, _, _ in links} - set(out.captured)
    kept: dict[str, StreamFileInput] = {}
    try:
        if targets:
            with layer.members() as members:
                for m in members:
                    if (m.info.kind == FileKind.FILE and m.info.path in targets
                            and m.info.size <= MAX_SPOOL):
                        f = kept.pop(m.info.path, None)
                        if f is not None:
                            f.close()
                        f = StreamFileInput(m.info, layer.ref, m.open)
                        f.read(0)  # take the bytes now: the walk moves on
                        kept[m.info.path] = f
        for info, wanted, cap in links:
            base = kept.get(info.linkname)
            member: LayerMember
            if base is not None:  # its bytes as kept (a big one stays on disk)
                member = _BytesMember(info, b"", base.open)
            elif info.linkname in out.captured:
                member = _BytesMember(info, out.captured[info.linkname])
            elif info.size > MAX_SPOOL:
                member = _BytesMember(info, b"")  # never opened: _take says it is too big
            else:
                continue  # target not in this layer: nothing to read (a broken link)
            _take(member, info, layer.ref, analyzers, wanted, cap, out)
    finally:
        for f in kept.values():
            f.close()


class _BytesMember(LayerMember):
    """A hard link's member: its target's bytes, or an opener of the target's kept copy."""

    def __init__(self, info: FileInfo, data: bytes,
                 opener: Callable[[], BinaryIO] | None = None) -> None:
        self.info = info
        self._data = data
        self._opener = opener

    def open(self) -> BinaryIO:
        return self._opener() if self._opener is not None else io.BytesIO(self._data)


# -- parallel layers --------------------------------------------------------------------------
_JOB: tuple[Sequence[Layer], Sequence[Sequence[Analyzer]], Callable[[FileInfo], bool],
            Sequence[bool]] | None = None


def _job(i: int) -> tuple[int, LayerOutcome]:
    from imgscan.procs import die_with_parent

    die_with_parent()
    assert _JOB is not None
    layers, analyzers, capture, with_index = _JOB
    return i, analyze_layer(layers[i], analyzers[i], capture, with_index[i])


def analyze_layers(layers: Sequence[Layer], analyzers: Sequence[Sequence[Analyzer]],
                   capture: Callable[[FileInfo], bool], with_index: Sequence[bool],
                   jobs: int) -> dict[int, LayerOutcome]:
    """Analyze ``layers[i]`` with ``analyzers[i]``, layers in parallel processes (biggest
    first); a layer whose source cannot be forked is walked in this process."""
    global _JOB
    todo = sorted(range(len(layers)), key=lambda i: -layers[i].size)
    forkable = [i for i in todo if layers[i].fork_safe]
    here = [i for i in todo if not layers[i].fork_safe]
    out: dict[int, LayerOutcome] = {}
    if jobs <= 1 or len(forkable) <= 1:
        here = todo
        forkable = []
    pool = None
    futures = []
    if forkable:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _JOB = (layers, analyzers, capture, with_index)
        pool = ProcessPoolExecutor(min(jobs, len(forkable)),
                                   mp_context=multiprocessing.get_context("fork"))
        futures = [pool.submit(_job, i) for i in forkable]
    try:
        for i in here:
            out[i] = analyze_layer(layers[i], analyzers[i], capture, with_index[i])
        for fut in futures:
            i, outcome = fut.result()
            out[i] = outcome
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        _JOB = None
    return out


def _covered(pattern: str) -> bool:
    """Is ``pattern`` (a built-in analyzer's) already captured by the defaults?"""
    return pattern in DEFAULT_CAPTURES or any(
        fnmatch.fnmatchcase(pattern, d) for d in DEFAULT_CAPTURES)


def capture_patterns(post_analyzers: Iterable[Any]) -> tuple[str, ...]:
    """What a streamed walk keeps for the image-wide analyzers (sorted: a cache key)."""
    pats = set(DEFAULT_CAPTURES)
    for p in post_analyzers:
        pats.update(r for r in getattr(p, "reads", ()) or () if not _covered(r))
    return tuple(sorted(pats))
