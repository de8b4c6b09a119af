"""Copying file bytes with runs of zeros left as holes.

A layer of a few megabytes may inflate to gigabytes of zeros. Both the store's extraction
and a streamed scan's spool write what a layer holds to disk; written sparse, zeros cost
no disk at all. Imports nothing of imgscan's: the store and the analyzers both use it.
"""

from __future__ import annotations

import os
from typing import IO

#: the granule: a block of this many zero bytes becomes a hole instead of a write
BLOCK = 1 << 16
_ZEROS = bytes(BLOCK)


def copy_sparse(src: IO[bytes], fd: int, chunk_size: int = 1 << 20) -> int:
    """Copy ``src`` to the file descriptor ``fd`` (at its offset, normally 0 of a new
    file), seeking over every ``BLOCK`` of zeros; returns the number of bytes copied. The
    file is truncated to its full length, so one that ends in a hole keeps its size."""
    size = 0
    start = os.lseek(fd, 0, os.SEEK_CUR)
    while chunk := src.read(chunk_size):
        view = memoryview(chunk)
        for off in range(0, len(view), BLOCK):
            block = view[off:off + BLOCK]
            if block == _ZEROS[:len(block)]:
                os.lseek(fd, len(block), os.SEEK_CUR)
                continue
            while block:
                n = os.write(fd, block)
                block = block[n:]
        size += len(chunk)
    os.ftruncate(fd, start + size)
    return size
