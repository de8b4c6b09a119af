"""``EntryTable``: one layer's entry index as columns, not one object per entry.

A layer may hold hundreds of thousands of entries (300,000 empty files is a crafted layer a
scanner must survive). As ``FileInfo`` objects in a list, with their path strings and boxed
integers, that is ~500 bytes an entry; here it is the path's bytes plus ~45 bytes of arrays:
paths in one blob with offsets, kinds and numbers in typed arrays, the rare fields (link
targets, xattrs, device numbers) in side dicts keyed by row. ``FileInfo`` values are made
on demand, one at a time, for code that wants one.

Rows are sorted by path *components* (``/`` sorts before any other byte), so a directory's
descendants are one contiguous run of rows, and a path is found by bisection: no dict of
path strings. Several rows may share a path only when one is content and the others are
the layer's whiteout or opaque markers for it.
"""

from __future__ import annotations

import bisect
import heapq
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

from imgscan.fileinfo import FileInfo, FileKind

KINDS = list(FileKind)
_CODE = {k: i for i, k in enumerate(KINDS)}
_MARKERS = MARKER_CODES = frozenset((_CODE[FileKind.WHITEOUT], _CODE[FileKind.OPAQUE]))
_DIR = _CODE[FileKind.DIR]
_REGULAR = frozenset((_CODE[FileKind.FILE], _CODE[FileKind.HARDLINK]))
_I64 = (1 << 63) - 1
_NO_XATTRS: Mapping[str, bytes] = FileInfo("", FileKind.FILE).xattrs


def _clamp(n: int) -> int:
    """Crafted tar headers may carry any integer; a column holds a signed 64-bit one."""
    return n if -_I64 <= n <= _I64 else (_I64 if n > 0 else -_I64)


def _enc(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def sort_key(path: str | bytes) -> bytes:
    """The rows' order: by components, so ``a/b``'s descendants follow it without a gap."""
    raw = _enc(path) if isinstance(path, str) else path
    return raw.replace(b"/", b"\0")


class EntryTable(Sequence[FileInfo]):
    """An immutable, sorted entry index (see the module docstring). Build one with
    ``EntryTable.build(infos)`` or ``TableBuilder``; ``table[i]`` is a ``FileInfo``."""

    __slots__ = ("_blob", "_dev", "_gid", "_kind", "_link", "_mode", "_mtime", "_off",
                 "_size", "_uid", "_xattrs")

    def __init__(self) -> None:
        self._blob: bytes | bytearray = b""
        self._off = array("Q", [0])
        self._kind = bytearray()
        self._mode = array("q")
        self._uid = array("q")
        self._gid = array("q")
        self._size = array("q")
        self._mtime = array("q")
        self._link: dict[int, str] = {}
        self._xattrs: dict[int, Mapping[str, bytes]] = {}
        self._dev: dict[int, tuple[int, int]] = {}

    @classmethod
    def build(cls, infos: Iterable[FileInfo]) -> EntryTable:
        b = TableBuilder()
        for info in infos:
            b.add(info)
        return b.finish(dedupe=False)

    # -- rows ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._kind)

    @overload
    def __getitem__(self, i: int) -> FileInfo: ...

    @overload
    def __getitem__(self, i: slice) -> list[FileInfo]: ...

    def __getitem__(self, i: int | slice) -> FileInfo | list[FileInfo]:
        if isinstance(i, slice):
            return [self.info(r) for r in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.info(i)

    def __iter__(self) -> Iterator[FileInfo]:
        for r in range(len(self)):
            yield self.info(r)

    def info(self, r: int) -> FileInfo:
        path = self._blob[self._off[r]:self._off[r + 1]].decode("utf-8", "surrogateescape")
        if not (self._link or self._xattrs or self._dev):  # most layers: no side fields
            return FileInfo(path, KINDS[self._kind[r]], self._mode[r], self._uid[r],
                            self._gid[r], self._size[r], "", self._mtime[r])
        major, minor = self._dev.get(r, (0, 0))
        return FileInfo(path, KINDS[self._kind[r]], self._mode[r], self._uid[r],
                        self._gid[r], self._size[r], self._link.get(r, ""), self._mtime[r],
                        self._xattrs.get(r, _NO_XATTRS), major, minor)

    def path(self, r: int) -> str:
        return self._blob[self._off[r]:self._off[r + 1]].decode("utf-8", "surrogateescape")

    def kind(self, r: int) -> FileKind:
        return KINDS[self._kind[r]]

    def is_marker(self, r: int) -> bool:
        return self._kind[r] in _MARKERS

    def is_dir(self, r: int) -> bool:
        return self._kind[r] == _DIR

    def is_regular(self, r: int) -> bool:
        return self._kind[r] in _REGULAR

    def _key(self, r: int) -> bytes:
        return bytes(self._blob[self._off[r]:self._off[r + 1]]).replace(b"/", b"\0")

    # -- lookups ---------------------------------------------------------------------------
    def find(self, path: str) -> int:
        """The content row (not a whiteout or opaque marker) of ``path``, or -1."""
        key = sort_key(path)
        r = bisect.bisect_left(range(len(self)), key, key=self._key)
        while r < len(self) and self._key(r) == key:
            if not self.is_marker(r):
                return r
            r += 1
        return -1

    def below(self, path: str) -> range:
        """The rows strictly below directory ``path`` ("" is the root: every row)."""
        if not path:
            return range(len(self))
        key = sort_key(path) + b"\0"
        lo = bisect.bisect_left(range(len(self)), key, key=self._key)
        hi = bisect.bisect_left(range(lo, len(self)), key[:-1] + b"\1", key=self._key)
        return range(lo, lo + hi)

    def markers(self) -> tuple[list[str], list[str]]:
        """(opaque directories, whiteout-deleted paths) of this layer."""
        opq: list[str] = []
        wh: list[str] = []
        code_opq = _CODE[FileKind.OPAQUE]
        for r, k in enumerate(self._kind):
            if k in _MARKERS:
                (opq if k == code_opq else wh).append(self.path(r))
        return opq, wh

    # -- storage ---------------------------------------------------------------------------
    def chunks(self) -> list[bytes | bytearray | memoryview]:
        """The binary form (the store's index format 2, before compression) in pieces, so
        a writer can compress them one by one instead of joining a second copy."""
        import json

        rare = json.dumps({
            "link": {str(r): v for r, v in self._link.items()},
            "xattrs": {str(r): {k: v.hex() for k, v in x.items()}
                       for r, x in self._xattrs.items()},
            "dev": {str(r): list(d) for r, d in self._dev.items()},
        }, separators=(",", ":")).encode("utf-8", "surrogateescape")
        parts: list[bytes | bytearray | memoryview] = [
            memoryview(self._off).cast("B"), bytes(self._kind),
            *(memoryview(c).cast("B") for c in (self._mode, self._uid, self._gid,
                                                 self._size, self._mtime)),
            self._blob, rare]
        head = struct.pack("<Q", len(self)) + b"".join(struct.pack("<Q", len(p))
                                                        for p in parts)
        crc = 0
        for p in parts:
            crc = zlib.crc32(p, crc)
        return [head, *parts, struct.pack("<I", crc)]

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> EntryTable:
        """The inverse of ``to_bytes``; ``ValueError`` for anything truncated or corrupt.
        Each column is copied once, straight from ``raw`` (no intermediate slices)."""
        import json

        mv = memoryview(raw)
        try:
            (n,) = struct.unpack_from("<Q", mv, 0)
            lens = struct.unpack_from("<9Q", mv, 8)
            pos = 8 + 72
            end = pos + sum(lens)
            if end + 4 != len(mv):
                raise ValueError("length mismatch")
            if struct.unpack_from("<I", mv, end)[0] != zlib.crc32(mv[pos:end]):
                raise ValueError("checksum mismatch")
            parts = []
            for ln in lens:
                parts.append(mv[pos:pos + ln])
                pos += ln
            t = cls()
            t._off = array("Q")
            t._off.frombytes(parts[0])
            t._kind = bytearray(parts[1])
            for name, part in zip(("_mode", "_uid", "_gid", "_size", "_mtime"), parts[2:7],
                                  strict=True):
                col = array("q")
                col.frombytes(part)
                setattr(t, name, col)
            t._blob = bytes(parts[7])
            rare = json.loads(bytes(parts[8]).decode("utf-8", "surrogateescape"))
            t._link = {int(r): str(v) for r, v in rare["link"].items()}
            t._xattrs = {int(r): {str(k): bytes.fromhex(v) for k, v in x.items()}
                         for r, x in rare["xattrs"].items()}
            t._dev = {int(r): (int(d[0]), int(d[1])) for r, d in rare["dev"].items()}
        except (struct.error, TypeError, KeyError, AttributeError, IndexError,
                UnicodeDecodeError) as e:
            raise ValueError(f"corrupt entry table: {e}") from None
        cols = (t._mode, t._uid, t._gid, t._size, t._mtime)
        if (len(t._off) != n + 1 or len(t._kind) != n or any(len(c) != n for c in cols)
                or t._off[0] != 0 or t._off[n] != len(t._blob)
                or any(k >= len(KINDS) for k in t._kind)
                or any(t._off[i] > t._off[i + 1] for i in range(n))):
            raise ValueError("corrupt entry table: inconsistent columns")
        return t


def compress_chunks(chunks: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """One zstd frame of the chunks, without joining them first (a table is tens of MB)."""
    import zstandard

    z = zstandard.ZstdCompressor(level=3).compressobj()
    out = [z.compress(c) for c in chunks]
    out.append(z.flush())
    return b"".join(out)


class TableBuilder:
    """Rows appended as a walk or an extraction meets them, kept as columns (never as
    ``FileInfo`` objects; paths in one growing blob); ``finish`` sorts them into an
    ``EntryTable``, consuming the builder."""

    def __init__(self) -> None:
        self._t = EntryTable()
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._t._kind)

    def _raw(self, r: int) -> bytes:
        off = self._t._off
        return bytes(self._buf[off[r]:off[r + 1]])

    def info(self, r: int) -> FileInfo:
        """Row ``r`` as added (rows are numbered in the order they were added)."""
        t = self._t
        major, minor = t._dev.get(r, (0, 0))
        return FileInfo(self._raw(r).decode("utf-8", "surrogateescape"), KINDS[t._kind[r]],
                        t._mode[r], t._uid[r], t._gid[r], t._size[r], t._link.get(r, ""),
                        t._mtime[r], t._xattrs.get(r, _NO_XATTRS), major, minor)

    def add(self, info: FileInfo) -> int:
        """Append a row; its number."""
        t, r = self._t, len(self._t._kind)
        self._buf += _enc(info.path)
        t._off.append(len(self._buf))
        t._kind.append(_CODE[info.kind])
        t._mode.append(_clamp(info.mode))
        t._uid.append(_clamp(info.uid))
        t._gid.append(_clamp(info.gid))
        t._size.append(_clamp(info.size))
        t._mtime.append(_clamp(info.mtime))
        if info.linkname:
            t._link[r] = info.linkname
        if info.xattrs:
            t._xattrs[r] = dict(info.xattrs)
        if info.devmajor or info.devminor:
            t._dev[r] = (info.devmajor, info.devminor)
        return r

    def _key(self, r: int) -> bytes:
        return self._raw(r).replace(b"/", b"\0")

    def finish(self, dedupe: bool = True, implicit_dirs: bool = False,
               rows: Iterable[int] | None = None) -> EntryTable:
        """The sorted table. ``dedupe`` applies a layer's own order, as extraction does: of
        several rows of one path the last wins, and a whiteout drops the content rows of its
        path that came before it. ``implicit_dirs`` adds the parents no row lists (0755,
        root), as extraction creates them. ``rows`` limits the table to those rows (the
        others were replaced).

        Most tars are written directory by directory, already in this order with no path
        twice: then the rows are taken as they are, with no key list and no copy of a
        column."""
        kinds = self._t._kind
        order: Sequence[int] = range(len(self)) if rows is None else list(rows)
        state = self._in_order(order)  # 2: sorted, no path twice; 1: sorted; 0: neither
        if not state:
            order = sorted(order, key=self._key)
        if dedupe and state != 2:
            order = self._dedupe(order)
        elif state != 2:  # each run of one path in order: content first, then markers
            order = [r for group in self._groups(order)
                     for r in sorted(group, key=lambda r: kinds[r] in _MARKERS)]
        if implicit_dirs:
            extra = sorted((self.add(info) for info in self._missing_parents(order)),
                           key=self._key)
            if extra:  # rare, and few: merged in, the rest stays as it is
                order = list(heapq.merge(order, extra, key=lambda r: (
                    self._key(r), kinds[r] in _MARKERS)))
        return self._take(order)

    def _in_order(self, rows: Sequence[int]) -> int:
        """2 when ``rows`` are sorted with no path twice, 1 when sorted, else 0; checked
        pairwise, so the common case builds no key list."""
        prev, state = None, 2
        for r in rows:
            key = self._key(r)
            if prev is not None:
                if key < prev:
                    return 0
                if key == prev:
                    state = 1
            prev = key
        return state

    def _groups(self, order: Sequence[int]) -> Iterator[Sequence[int]]:
        """The runs of rows of one path in ``order``."""
        i = 0
        while i < len(order):
            j = i + 1
            first = self._raw(order[i])
            while j < len(order) and self._raw(order[j]) == first:
                j += 1
            yield order[i:j]
            i = j

    def _dedupe(self, order: Sequence[int]) -> list[int]:
        kinds = self._t._kind
        keep: list[int] = []
        for group in self._groups(order):  # rows of one path, by arrival
            wh = max((r for r in group if kinds[r] == _CODE[FileKind.WHITEOUT]), default=-1)
            content = [r for r in group if kinds[r] not in _MARKERS]
            if content and max(content) > wh:
                keep.append(max(content))
            for code in (_CODE[FileKind.WHITEOUT], _CODE[FileKind.OPAQUE]):
                marks = [r for r in group if kinds[r] == code]
                if marks:
                    keep.append(max(marks))
        return keep

    def _missing_parents(self, order: Sequence[int]) -> list[FileInfo]:
        """Parents of rows (and opaque directories themselves) that no content row lists;
        one pass over the component-sorted order with a stack of the ancestors seen."""
        kinds = self._t._kind
        present: list[bytes] = []  # the content directories on the current path
        added: list[FileInfo] = []
        made: set[bytes] = set()
        for r in order:
            p = self._raw(r)
            while present and not (p == present[-1] or p.startswith(present[-1] + b"/")):
                present.pop()  # (equal: an opaque marker of a directory just listed)
            parent = p if kinds[r] == _CODE[FileKind.OPAQUE] else p.rpartition(b"/")[0]
            chain = []
            while parent and parent not in made and parent not in present:  # (shallow)
                chain.append(parent)
                parent = parent.rpartition(b"/")[0]
            for q in reversed(chain):
                made.add(q)
                added.append(FileInfo(q.decode("utf-8", "surrogateescape"), FileKind.DIR,
                                      mode=0o755))
            if kinds[r] not in _MARKERS:
                present.append(p)
        return added

    def _position(self, order: Sequence[int], r: int) -> int:
        """Where row ``r`` is in the sorted ``order``, or -1 when it was left out."""
        key = self._key(r)
        i = bisect.bisect_left(order, key, key=self._key)
        while i < len(order) and self._key(order[i]) == key:
            if order[i] == r:
                return i
            i += 1
        return -1

    def _take(self, order: Sequence[int]) -> EntryTable:
        """The table of ``order``'s rows. The builder is consumed: an identity order hands
        its columns over as they are; otherwise each column is copied, and the old one
        dropped, one at a time."""
        src = self._t
        if len(order) == len(self) and all(r == i for i, r in enumerate(order)):
            src._blob = self._buf  # handed over, not copied (a bytearray reads the same)
            self._buf = bytearray()
            self._t = EntryTable()
            return src
        t = EntryTable()
        t._off = array("Q", [0])
        blob = bytearray()
        for r in order:
            blob += self._buf[src._off[r]:src._off[r + 1]]
            t._off.append(len(blob))
        self._buf = bytearray()
        t._blob = blob
        t._kind = bytearray(src._kind[r] for r in order)
        for name in ("_mode", "_uid", "_gid", "_size", "_mtime"):
            col = getattr(src, name)
            setattr(t, name, array("q", (col[r] for r in order)))
            setattr(src, name, array("q"))
        for name in ("_link", "_xattrs", "_dev"):  # few rows: each found by bisection
            side = getattr(src, name)
            moved = {}
            for r, v in side.items():
                i = self._position(order, r)
                if i >= 0:
                    moved[i] = v
            setattr(t, name, moved)
        self._t = EntryTable()
        return t


def as_table(index: Sequence[FileInfo]) -> EntryTable:
    """A layer's index as a table; a plain list gets its implicit parent directories, as
    extraction and the streamed walk record them."""
    if isinstance(index, EntryTable):
        return index
    b = TableBuilder()
    for info in index:
        b.add(info)
    return b.finish(dedupe=False, implicit_dirs=True)
