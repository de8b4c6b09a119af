"""The Docker Engine client's streaming half: urllib3 over a Unix socket.

``GET /images/{name}/get`` (hundreds of megabytes, read as it arrives) and
``POST /images/load`` need a client that streams bodies and pools connections; the small
GETs (``/_ping``, inspect, the image list) are plain HTTP/1.0 in ``images.docker_daemon``,
so a warm ``scan docker-daemon:`` (answered from the report cache after an inspect) never
imports urllib3, http.client or ssl.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from http.client import HTTPException
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError

from imgscan.errors import ImageError


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, **kw: Any) -> None:
        super().__init__("localhost", **kw)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        t = self.timeout
        sock.settimeout(t if isinstance(t, (int, float)) else None)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class UnixPool(urllib3.HTTPConnectionPool):
    """A connection pool on one Unix socket; no retries (a retried /get would restart)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=2, retries=False)
        self.unix_path = path

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self.unix_path, timeout=self.timeout.connect_timeout)


def request(pool: UnixPool, fail: Callable[[Exception], ImageError], method: str, url: str,
            stream: bool = False, read_timeout: float | None = None, **kw: Any) -> Any:
    """One request; a transport failure is ``fail(e)`` (the Engine words it)."""
    if read_timeout is not None:
        kw["timeout"] = urllib3.Timeout(connect=10, read=read_timeout)
    try:
        return pool.request(method, url, preload_content=not stream, **kw)
    except (HTTPError, OSError) as e:
        raise fail(e) from None


class Wire(io.RawIOBase):
    """A response body as a raw stream; a broken connection is sticky (an analyzer that
    swallows the first ``ImageError`` cannot hide it)."""

    def __init__(self, response: Any, what: str) -> None:
        self._r = response
        self._what = what
        self.count = 0
        self.broken = ""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.broken:
            raise ImageError(self.broken)
        try:
            data = self._r.read(len(buf))
        except (HTTPError, HTTPException, OSError) as e:
            self.broken = (f"{self._what}: the stream broke off after {self.count} bytes "
                           f"({type(e).__name__}; did the daemon stop?)")
            raise ImageError(self.broken) from None
        buf[: len(data)] = data
        self.count += len(data)
        return len(data)
