"""Read record values out of a Berkeley DB *hash* file (rpm's ``Packages`` up to RHEL 8).

Written from the on-disk layout: page 0 is the hash metadata page (magic 0x00061561 at
byte 12, in the writer's byte order; page size at 20; last page number at 32). Every other
page starts with a 26-byte header (``pgno`` 8, ``prev`` 12, ``next`` 16, ``entries`` u16 at
20, ``hf_offset`` u16 at 22, ``level`` 24, ``type`` 25) followed by ``entries`` u16 item
offsets. Hash pages (type 13, or 2 in old files) hold key/data item pairs; an item's first
byte is its kind: 1 inline bytes, 3 off-page (``pgno`` at +4, total length at +8). Off-page
values live in chains of overflow pages (type 7) whose ``hf_offset`` is the byte count on
that page. rpm keys each header by its 4-byte instance number; key 0 is bookkeeping.

Rather than walking buckets, every page of the file is visited once and the hash pages are
read in file order, which needs no hash function and still finds every live record. Pages,
chains and lengths are checked so a hostile file cannot loop or read out of bounds.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from imgscan.analyzers.rpm.errors import RpmDbError

HASH_MAGIC = 0x00061561
PAGE_HEADER = 26
P_HASH_UNSORTED = 2
P_OVERFLOW = 7
P_HASHMETA = 8
P_HASH = 13
H_KEYDATA = 1
H_OFFPAGE = 3
#: the largest value we are willing to assemble (rpm's header limit)
MAX_VALUE = 256 << 20


class _Pages:
    def __init__(self, f: BinaryIO, size: int, pagesize: int, order: str) -> None:
        self.f = f
        self.pagesize = pagesize
        self.count = size // pagesize
        self.order = order

    def read(self, pgno: int) -> bytes:
        if not 0 <= pgno < self.count:
            raise RpmDbError(f"page {pgno} outside the file ({self.count} pages)")
        self.f.seek(pgno * self.pagesize)
        page = self.f.read(self.pagesize)
        if len(page) != self.pagesize:
            raise RpmDbError(f"page {pgno} is truncated")
        return page


def _file_size(f: BinaryIO) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        pos = f.seek(0, os.SEEK_END)
        return pos


def read_bdb_values(
    f: BinaryIO, warn: Callable[[str], None]
) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(key, value)`` for every record of a BDB hash file; RpmDbError when the file
    is not one, ``warn`` for single records that cannot be read."""
    size = _file_size(f)
    f.seek(0)
    meta = f.read(512)
    if len(meta) < 72:
        raise RpmDbError("too short for a Berkeley DB metadata page")
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", meta, 12)[0] == HASH_MAGIC:
            break
    else:
        raise RpmDbError("not a Berkeley DB hash file (bad magic)")
    pagesize = struct.unpack_from(order + "I", meta, 20)[0]
    if pagesize < 512 or pagesize > 65536 or pagesize & (pagesize - 1):
        raise RpmDbError(f"implausible page size {pagesize}")
    if meta[24] != 0:
        raise RpmDbError("encrypted Berkeley DB files are not supported")
    if meta[25] != P_HASHMETA:
        raise RpmDbError(f"metadata page has type {meta[25]}, not hash metadata")
    if meta[26] & 0x01:
        raise RpmDbError("checksummed Berkeley DB pages are not supported")
    pages = _Pages(f, size, pagesize, order)
    if pages.count < 2:
        raise RpmDbError("Berkeley DB file has no data pages")
    if size % pagesize:
        warn(f"file size {size} is not a multiple of the page size {pagesize}; "
             "the last page is truncated")
    for pgno in range(1, pages.count):
        page = pages.read(pgno)
        if page[25] not in (P_HASH, P_HASH_UNSORTED):
            continue
        try:
            items = _items(page, pgno, order)
        except RpmDbError as e:
            warn(str(e))
            continue
        for i in range(0, len(items) - 1, 2):
            try:
                key = _value(pages, items[i])
                value = _value(pages, items[i + 1])
            except RpmDbError as e:
                warn(f"page {pgno} item {i}: {e}")
                continue
            yield key, value


def _items(page: bytes, pgno: int, order: str) -> list[bytes]:
    """The raw items of a hash page, in index order, each bounded by its neighbours."""
    pagesize = len(page)
    entries = struct.unpack_from(order + "H", page, 20)[0]
    if PAGE_HEADER + 2 * entries > pagesize:
        raise RpmDbError(f"page {pgno}: {entries} entries cannot fit")
    offsets = struct.unpack_from(f"{order}{entries}H", page, PAGE_HEADER)
    items = []
    index_end = PAGE_HEADER + 2 * entries
    for i, off in enumerate(offsets):
        end = pagesize if i == 0 else offsets[i - 1]
        if not index_end <= off < end <= pagesize:
            raise RpmDbError(f"page {pgno}: item {i} at {off} is outside the page")
        items.append(page[off:end])
    return items


def _value(pages: _Pages, item: bytes) -> bytes:
    kind = item[0]
    if kind == H_KEYDATA:
        return item[1:]
    if kind != H_OFFPAGE:
        raise RpmDbError(f"unsupported hash item kind {kind}")
    if len(item) < 12:
        raise RpmDbError("off-page item too short")
    pgno, total = struct.unpack_from(pages.order + "II", item, 4)
    if total > MAX_VALUE:
        raise RpmDbError(f"value of {total} bytes exceeds the {MAX_VALUE} byte limit")
    parts: list[bytes] = []
    have = 0
    seen: set[int] = set()
    while have < total:
        if pgno == 0 or pgno in seen:
            raise RpmDbError(f"overflow chain broken after {have} of {total} bytes")
        seen.add(pgno)
        page = pages.read(pgno)
        if page[25] != P_OVERFLOW:
            raise RpmDbError(f"page {pgno} in an overflow chain has type {page[25]}")
        n = struct.unpack_from(pages.order + "H", page, 22)[0]
        if n > pages.pagesize - PAGE_HEADER or have + n > total:
            raise RpmDbError(f"overflow page {pgno} claims {n} bytes")
        parts.append(page[PAGE_HEADER : PAGE_HEADER + n])
        have += n
        pgno = struct.unpack_from(pages.order + "I", page, 16)[0]
    return b"".join(parts)
