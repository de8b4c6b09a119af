"""Read header blobs from an rpm SQLite database (``rpmdb.sqlite``) without touching it.

SQLite writes beside any database it opens (``-shm``, ``-journal``, a WAL checkpoint on close),
and ``immutable=1`` would ignore a ``-wal`` file that holds committed transactions. So the
database and its ``-wal`` (when the layer has one) are copied into a private temporary
directory, and only that copy is opened, read-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from imgscan.analyzers.rpm.errors import RpmDbError

SQLITE_MAGIC = b"SQLite format 3\0"
#: a database larger than this is not an rpm database anyone would ship
MAX_DB_SIZE = 4 << 30


def _copy(src: BinaryIO, dst_path: str, limit: int) -> int:
    total = 0
    with open(dst_path, "wb") as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                return total
            total += len(chunk)
            if total > limit:
                raise RpmDbError(f"database larger than {limit} bytes")
            dst.write(chunk)


def read_sqlite_blobs(db: BinaryIO, wal: BinaryIO | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(hnum, blob)`` for every row of ``Packages``; raise RpmDbError when the file
    is not an SQLite database or has no ``Packages(hnum, blob)`` table."""
    head = db.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise RpmDbError("not an SQLite database (bad magic)")
    with tempfile.TemporaryDirectory(prefix="imgscan-rpmdb-") as tmp:
        path = os.path.join(tmp, "rpmdb.sqlite")
        with open(path, "wb") as dst:
            dst.write(head)
        with open(path, "ab") as dst:
            shutil.copyfileobj(db, dst, 1 << 20)
        if os.path.getsize(path) > MAX_DB_SIZE:
            raise RpmDbError(f"database larger than {MAX_DB_SIZE} bytes")
        if wal is not None:
            _copy(wal, path + "-wal", MAX_DB_SIZE)
        uri = "file:" + path + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as e:
            raise RpmDbError(f"cannot open the SQLite database: {e}") from None
        try:
            with contextlib.closing(conn):
                try:
                    cur = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")
                    for hnum, blob in cur:
                        if isinstance(blob, bytes | memoryview):
                            yield int(hnum), bytes(blob)
                except sqlite3.Error as e:
                    raise RpmDbError(f"cannot read the Packages table: {e}") from None
        finally:
            conn.close()
