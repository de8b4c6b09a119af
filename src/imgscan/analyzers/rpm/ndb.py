"""Read header blobs from an rpm NDB ``Packages.db`` (SUSE), little-endian throughout.

Layout: a 32-byte file header (``'RpmP'`` magic, version, generation, number of 4 KiB slot
pages, next package index) shares the first slot page with the slots; each slot is 16 bytes
``{'Slot', pkgidx, blkoff, blkcnt}`` (pkgidx 0 = free). A used slot points at ``blkcnt``
16-byte blocks from ``blkoff * 16``: a 16-byte blob head ``{'BlbS', pkgidx, checksum-or-stamp,
bloblen}``, ``bloblen`` bytes of header blob, and a 12-byte tail. Every slot and blob is
checked against the file size and against its own claims before being read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

from imgscan.analyzers.rpm.errors import RpmDbError


def _magic(s: bytes) -> int:
    return struct.unpack("<I", s)[0]


NDB_MAGIC = _magic(b"RpmP")
SLOT_MAGIC = _magic(b"Slot")
BLOB_MAGIC = _magic(b"BlbS")
HEADER_SIZE = 32
SLOT_PAGE = 4096
SLOT_SIZE = 16
BLOCK = 16
BLOB_HEAD = 16
BLOB_TAIL = 12
#: 2048 slot pages = ~500k packages, far beyond any real image
MAX_SLOT_PAGES = 2048
MAX_BLOB = 256 << 20


def read_ndb_blobs(f: BinaryIO, warn: Callable[[str], None]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(pkgidx, blob)`` per installed package; RpmDbError when not an NDB file."""
    try:
        size = os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE or _magic(head[:4]) != NDB_MAGIC:
        raise RpmDbError("not an rpm NDB database (bad magic)")
    version, _generation, npages = struct.unpack_from("<III", head, 4)
    if version != 0:
        raise RpmDbError(f"unsupported NDB version {version}")
    if npages == 0 or npages > MAX_SLOT_PAGES:
        raise RpmDbError(f"implausible slot page count {npages}")
    slots_end = npages * SLOT_PAGE
    if slots_end > size:
        raise RpmDbError(f"{npages} slot pages need {slots_end} bytes; the file has {size}")
    f.seek(0)
    slot_area = f.read(slots_end)
    if len(slot_area) != slots_end:
        raise RpmDbError("slot pages are truncated")
    for off in range(HEADER_SIZE, slots_end, SLOT_SIZE):
        magic, pkgidx, blkoff, blkcnt = struct.unpack_from("<IIII", slot_area, off)
        if magic != SLOT_MAGIC:
            warn(f"slot at {off} has a bad magic; stopping")
            return
        if pkgidx == 0:
            continue
        start = blkoff * BLOCK
        length = blkcnt * BLOCK
        if start < slots_end or length < BLOB_HEAD + BLOB_TAIL or start + length > size \
                or length > MAX_BLOB + BLOB_HEAD + BLOB_TAIL + BLOCK:
            warn(f"package {pkgidx}: blob at block {blkoff} (+{blkcnt}) is out of bounds")
            continue
        f.seek(start)
        blob_head = f.read(BLOB_HEAD)
        bmagic, bidx, _sum, bloblen = struct.unpack("<IIII", blob_head)
        if bmagic != BLOB_MAGIC or bidx != pkgidx:
            warn(f"package {pkgidx}: bad blob header at {start}")
            continue
        if BLOB_HEAD + bloblen + BLOB_TAIL > length:
            warn(f"package {pkgidx}: blob length {bloblen} exceeds its {blkcnt} blocks")
            continue
        blob = f.read(bloblen)
        if len(blob) != bloblen:
            warn(f"package {pkgidx}: blob truncated")
            continue
        yield pkgidx, blob
