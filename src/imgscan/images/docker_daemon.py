"""``docker-daemon:IMAGE``: images of a running Docker Engine, read over its API socket.

No docker CLI: the small GETs as plain HTTP/1.0 on the socket, the stream through a
real HTTP client (urllib3: ``images.enginepool``): ``GET /_ping``
checks that the socket is an Engine, ``GET /images/json`` lists, ``GET /images/{name}/get``
streams the image as ``docker save`` writes it. The socket is ``$DOCKER_HOST``
(``unix://PATH``) or ``/var/run/docker.sock``.

``scan`` reads the save stream as it arrives (``save_stream``: ``images.docker_stream`` walks
it, ``analyzers.sequential`` analyzes each layer as it passes): nothing of the image is written.
``pull`` and ``inspect`` (``open_daemon_image``) need the image as a source read by digest, in
any order, so they spool the stream to a private, already-unlinked temp file first and read
that as a docker-archive (a pull writes the image to disk anyway).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import quote

from imgscan.errors import BadReferenceError, ImageError, UsageError
from imgscan.images.interface import Platform, SourceImage

DEFAULT_SOCKET = "/var/run/docker.sock"
_CHUNK = 1 << 20
#: the most a small answer (``/_ping``, inspect, the image list) may be: a hostile socket
#: that streams forever is an error, not a process that eats the memory
_SMALL_MAX = 64 << 20


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST") or ""
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    raise UsageError(f"DOCKER_HOST={host}: only unix:// sockets are supported")


class _BadAnswer(Exception):
    """What came back is not an HTTP answer (or not a whole one)."""


class _Answer:
    """A small answer, read completely: status, headers (names in lower case), body."""

    def __init__(self, data: bytes) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = lines[0].split(None, 2)
        if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/1.") or \
                not (status[1].isdigit() and len(status[1]) == 3):
            raise _BadAnswer(f"not an HTTP answer: {bytes(data[:60])!r}" if data
                             else "no answer")
        self.status = int(status[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                self.headers[name.strip().lower()] = value.strip()
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = _dechunk(body)
        elif self.headers.get("content-length", "").isdigit():
            n = int(self.headers["content-length"])
            if len(body) < n:
                raise _BadAnswer(f"the answer ends after {len(body)} of {n} bytes")
            body = body[:n]
        self.data = body


def _dechunk(body: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = body.find(b"\r\n", at)
        size = body[at:end].split(b";", 1)[0].strip() if end >= 0 else b""
        try:
            n = int(size, 16)
        except ValueError:
            raise _BadAnswer("a bad chunk in the answer") from None
        if n == 0:
            return bytes(out)
        if end + 2 + n > len(body):
            raise _BadAnswer("the answer ends inside a chunk")
        out += body[end + 2:end + 2 + n]
        at = end + 4 + n


def _small_get(path: str, url: str, timeout: float) -> _Answer:
    """``GET url`` as HTTP/1.0 on a connection of its own, read to its end: for two small
    answers on a warm scan, cheaper than importing ``http.client`` (and its email parser)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("ascii"))
        data = bytearray()
        while chunk := sock.recv(1 << 16):
            data += chunk
            if len(data) > _SMALL_MAX:
                raise _BadAnswer(f"the answer to {url} is over {_SMALL_MAX} bytes")
    finally:
        sock.close()
    return _Answer(bytes(data))


class Engine:
    """A Docker Engine API client on one Unix socket: small GETs as HTTP/1.0 (``_small_get``),
    the image stream and loads through urllib3 (``images.enginepool``, imported only then)."""

    def __init__(self, path: str | None = None, timeout: float = 60.0) -> None:
        self.path = path or socket_path()
        self.what = f"docker-daemon {self.path}"
        if not os.path.exists(self.path):
            raise ImageError(f"{self.what}: no such socket (is dockerd running? set "
                             "DOCKER_HOST=unix://PATH)")
        self._timeout = timeout
        self._pool: Any = None
        self._checked = False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _request(self, method: str, url: str, stream: bool = False, **kw: Any) -> Any:
        """A request through the urllib3 pool (the stream, loads)."""
        from imgscan.images import enginepool

        if self._pool is None:
            self._pool = enginepool.UnixPool(self.path, self._timeout)
        return enginepool.request(self._pool, self._failed, method, url, stream, **kw)

    def _failed(self, e: Exception) -> ImageError:
        """A transport failure in one line: after ``/_ping`` answered, the daemon went away;
        before, the socket is not an Engine's (or cannot be reached)."""
        if isinstance(e, OSError):
            return ImageError(f"{self.what}: {e.strerror or e}")
        if self._checked:
            return ImageError(f"{self.what}: the daemon dropped the connection "
                              f"({type(e).__name__}; did it stop?)")
        # the socket's words, escaped: whatever it sent stays on one line
        return ImageError(f"{self.what}: not a Docker Engine API socket "
                          f"({type(e).__name__}: {ascii(str(e))[1:-1][:200]})")

    def _get(self, url: str) -> _Answer:
        """A small GET, read completely (errors worded as the pool's)."""
        try:
            return _small_get(self.path, url, self._timeout)
        except (_BadAnswer, OSError) as e:
            raise self._failed(e) from None

    def check(self) -> None:
        """``GET /_ping``: an Engine answers ``OK`` with an ``Api-Version`` header."""
        if self._checked:
            return
        r = self._get("/_ping")
        if r.status != 200 or "api-version" not in r.headers or r.data.strip() != b"OK":
            raise ImageError(f"{self.what}: not a Docker Engine API socket (/_ping answered "
                             f"{r.status})")
        self._checked = True

    def _json(self, url: str, what: str) -> Any:
        self.check()
        r = self._get(url)
        if r.status == 404:
            raise BadReferenceError(f"{self.what}: {what}: {_message(r.data)}")
        if r.status != 200:
            raise ImageError(f"{self.what}: {what}: HTTP {r.status}: {_message(r.data)}")
        try:
            return json.loads(r.data)
        except ValueError:
            raise ImageError(f"{self.what}: {what}: the answer is not JSON") from None

    def images(self) -> list[dict[str, Any]]:
        doc = self._json("/images/json", "image list")
        if not isinstance(doc, list):
            raise ImageError(f"{self.what}: /images/json is not a list")
        return [d for d in doc if isinstance(d, dict)]

    def image(self, name: str) -> dict[str, Any]:
        doc = self._json(f"/images/{quote(name, safe='/:@')}/json", name)
        if not isinstance(doc, dict):
            raise ImageError(f"{self.what}: image {name}: bad answer")
        return doc

    def load(self, data: Any) -> str:
        """``POST /images/load`` of a docker-archive (bytes or a file); the daemon's answer."""
        self.check()
        r = self._request("POST", "/images/load?quiet=1", body=data,
                          headers={"Content-Type": "application/x-tar"}, read_timeout=600)
        text = r.data.decode("utf-8", "replace")
        if r.status != 200 or '"error"' in text:
            raise ImageError(f"{self.what}: load failed: HTTP {r.status}: {text[:300]}")
        return text

    @contextmanager
    def save_stream(self, name: str) -> Iterator[BinaryIO]:
        """``GET /images/{name}/get`` as a stream, read as it arrives. A connection that
        breaks is an ``ImageError`` at that read and at every later one (an analyzer that
        swallows the first cannot hide it), and again when the context ends."""
        import io

        from imgscan.images.enginepool import Wire

        self.check()
        r = self._request("GET", f"/images/{quote(name, safe='/:@')}/get", stream=True,
                          read_timeout=600)
        try:
            if r.status == 404:
                raise BadReferenceError(f"{self.what}: {name}: {_message(r.read())}")
            if r.status != 200:
                raise ImageError(f"{self.what}: {name}: HTTP {r.status}: "
                                 f"{_message(r.read())}")
            wire = Wire(r, f"{self.what}: {name}")
            yield io.BufferedReader(wire, _CHUNK)
            if wire.broken:
                raise ImageError(wire.broken)
        finally:
            r.release_conn()

    def save_to(self, name: str, out: Any) -> int:
        """Write ``GET /images/{name}/get`` to ``out``; the byte count (``pull`` only)."""
        n = 0
        with self.save_stream(name) as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                n += len(chunk)
        if n == 0:
            raise ImageError(f"{self.what}: {name}: empty image stream")
        return n


def _message(data: bytes) -> str:
    try:
        doc = json.loads(data)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    except ValueError:
        pass
    return data[:200].decode("utf-8", "replace").strip() or "no message"


def open_daemon_image(name: str, platform: Platform | None = None,
                      engine: Engine | None = None) -> SourceImage:
    """Image ``name`` of the Engine as a verified ``SourceImage``, spooled (see the module;
    the caller closes its source)."""
    from imgscan.images.archive import open_docker_archive

    if not name:
        raise UsageError("docker-daemon: needs an image name or id")
    eng = engine or Engine()
    try:
        with tempfile.TemporaryFile(prefix="imgscan-docker-") as spool:
            eng.save_to(name, spool)
            spool.flush()
            # the archive reopens the unlinked file through /proc; it stays while open
            img = open_docker_archive(f"/proc/self/fd/{spool.fileno()}", None, 0, platform)
    finally:
        if engine is None:
            eng.close()
    img.source.description = f"docker-daemon {name}"
    return img


def image_rows(engine: Engine | None = None) -> list[Any]:
    """The Engine's images in the rows of ``imgscan images --format json``."""
    import datetime

    eng = engine or Engine()
    try:
        rows = []
        for d in eng.images():
            iid = str(d.get("Id") or "")
            info = eng.image(iid)
            layers = ((info.get("RootFS") or {}).get("Layers")) or []
            created = d.get("Created")
            when = datetime.datetime.fromtimestamp(int(created), datetime.UTC) \
                .strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(created, int) else ""
            tags = [t for t in d.get("RepoTags") or [] if t and t != "<none>:<none>"]
            digests = [x.split("@", 1)[1] for x in d.get("RepoDigests") or [] if "@" in x]
            rows.append({
                "id": iid, "names": tags, "digest": digests[0] if digests else "",
                "layers": len(layers), "size": int(d.get("Size") or 0), "created": when,
                "platform": "/".join(p for p in (str(info.get("Os") or ""),
                                                 str(info.get("Architecture") or ""),
                                                 str(info.get("Variant") or "")) if p)})
        return rows
    finally:
        if engine is None:
            eng.close()
