"""Blob bodies from a registry: streamed, verified against their digest, and resumed with
``Range`` when a connection drops. Private to ``imgscan.images.registry``."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import urllib3
from urllib3.exceptions import ProtocolError, ReadTimeoutError, SSLError

from imgscan.images.digest import HashingReader
from imgscan.images.registry.errors import RegistryConnectionError, RegistryProtocolError
from imgscan.images.registry.transport import discard

if TYPE_CHECKING:
    from imgscan.images.registry.client import RegistryClient

log = logging.getLogger("imgscan.images.registry.client")


class BlobReader(HashingReader):
    """A HashingReader usable as a context manager (``BlobSource.read_blob`` needs one)."""

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True


class _ResumableBody:
    """A blob body that reconnects with ``Range: bytes=N-`` when the connection drops.

    The bytes are handed on in order, so the HashingReader on top verifies the concatenated
    stream: a registry that resumes at the wrong offset fails verification.
    """

    def __init__(self, client: RegistryClient, repository: str, digest: str, what: str) -> None:
        self._client = client
        self._repo = repository
        self._digest = digest
        self._what = what
        self._pos = 0
        self._resumes = 0
        self._closed = False
        self._resp = client._blob_response(repository, digest, what, 0)
        self._total = self._length(self._resp)

    @staticmethod
    def _length(resp: urllib3.BaseHTTPResponse) -> int | None:
        v = resp.headers.get("Content-Length")
        return int(v) if v and v.isdigit() else None

    def _reopen(self, cause: str) -> None:
        client = self._client
        self._resumes += 1
        if self._resumes > client.options.max_resumes or self._total is None:
            raise client._err(RegistryConnectionError,
                              f"{cause} reading blob {self._what} at byte {self._pos}")
        log.debug("registry %s: %s at byte %d of %s, resuming",
                  client.registry, cause, self._pos, self._what)
        discard(self._resp)
        resp = client._blob_response(self._repo, self._digest, self._what, self._pos)
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range") or "")
            if not m or int(m.group(1)) != self._pos:
                discard(resp)
                raise client._err(RegistryProtocolError,
                                  f"resume of {self._what} at byte {self._pos}: bad Content-Range")
        else:  # the server ignored Range: skip what we already have
            skip = self._pos
            while skip:
                chunk = resp.read(min(skip, 1 << 20))
                if not chunk:
                    break
                skip -= len(chunk)
        self._resp = resp

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks: list[bytes] = []
            while True:
                c = self.read(1 << 20)
                if not c:
                    return b"".join(chunks)
                chunks.append(c)
        while True:
            try:
                data = self._resp.read(n)
            except (ProtocolError, ReadTimeoutError, SSLError, OSError) as e:
                cause = "timed out" if isinstance(e, ReadTimeoutError) else "connection lost"
                self._reopen(cause)
                continue
            if not data and n and self._total is not None and self._pos < self._total:
                self._reopen("connection closed early")
                continue
            self._pos += len(data)
            return data

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            discard(self._resp)
