"""A layer's original tar, byte for byte, from its ``diff/`` and c/storage's tar-split.

When containers/storage applies a layer it keeps ``overlay-layers/<id>.tar-split.gz``: JSON
lines of the tar's own bytes (headers, padding, end blocks: ``{"type":2,"payload":B64}``)
and its file entries (``{"type":1,"name":…,"size":N}``) whose contents are the files in
``diff/``. Replaying it gives exactly the tar that was applied, so the stream hashes to the
layer's diff_id: that is how ``podman save`` and ``podman push`` rebuild layers, and how
imgscan verifies what it copies out of a store.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from typing import Any

from imgscan.errors import ImageError

_CHUNK = 1 << 20


def tar_split_path(graph_root: str, layer_id: str) -> str:
    return os.path.join(graph_root, "overlay-layers", f"{layer_id}.tar-split.gz")


def _entries(path: str, what: str) -> Iterator[dict]:
    with gzip.open(path, "rb") as f:
        try:
            for line in f:
                if line.strip():
                    yield json.loads(line)
        except FileNotFoundError:
            raise ImageError(f"{what}: no tar-split (the layer cannot be copied "
                             "byte for byte)") from None
        except (OSError, EOFError, zlib.error, ValueError) as e:
            raise ImageError(f"{what}: corrupt tar-split: {e}") from None


def layer_chunks(graph_root: str, layer_id: str, diff: str, what: str) -> Iterator[bytes]:
    """The layer tar's bytes in order."""
    path = tar_split_path(graph_root, layer_id)
    if not os.path.exists(path):
        raise ImageError(f"{what}: no tar-split (the layer cannot be copied byte for byte)")
    for e in _entries(path, what):
        kind = e.get("type")
        if kind == 2:
            payload = e.get("payload")
            if payload:
                yield base64.b64decode(payload)
        elif kind == 1:
            size = int(e.get("size") or 0)
            if size <= 0:
                continue
            raw = e.get("name_raw")
            name = base64.b64decode(raw) if raw else str(e.get("name") or "").encode()
            rel = os.path.normpath(b"/" + name).lstrip(b"/")
            full = os.path.join(os.fsencode(diff), rel)
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except PermissionError:
                raise ImageError(f"{what}: {os.fsdecode(rel)}: permission denied (a "
                                 "rootless store's private files can only be read inside "
                                 "its user namespace; `imgscan scan` does that)") from None
            except OSError as err:
                raise ImageError(f"{what}: {os.fsdecode(rel)}: {err.strerror} (the layer "
                                 "changed or vanished while it was read)") from None
            try:
                left = size
                while left:
                    chunk = os.read(fd, min(left, _CHUNK))
                    if not chunk:
                        raise ImageError(f"{what}: {os.fsdecode(rel)} is shorter than its "
                                         "tar entry (the layer changed while it was read)")
                    left -= len(chunk)
                    yield chunk
            finally:
                os.close(fd)
        else:
            raise ImageError(f"{what}: corrupt tar-split (entry type {kind!r})")


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            try:
                self._buf = next(self._it)
            except StopIteration:
                self._eof = True
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        super().close()


def open_layer_tar(graph_root: str, layer_id: str, diff: str, what: str) -> io.BufferedReader:
    return io.BufferedReader(ChunkReader(layer_chunks(graph_root, layer_id, diff, what)),
                             _CHUNK)
