"""Digests, and readers that verify bytes against a digest while they stream.

Verification happens on the bytes as they pass, so nothing is held in memory and nothing is
committed before the last byte has been checked.
"""

from __future__ import annotations

import re
from typing import Protocol

from imgscan.errors import DigestMismatch, ImageError
from imgscan.hexid import hex_of as hex_of

_DIGEST_RE = re.compile(r"^(?P<alg>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<enc>[a-zA-Z0-9=_-]+)$")
_HEX = {"sha256": 64, "sha512": 128}


def parse_digest(digest: object) -> tuple[str, str]:
    """Split ``alg:hex`` and check it; raise ImageError for anything malformed or unsupported."""
    if not isinstance(digest, str):
        raise ImageError(f"digest is not a string: {digest!r}")
    m = _DIGEST_RE.match(digest)
    if not m:
        raise ImageError(f"malformed digest {digest!r}")
    alg, enc = m["alg"], m["enc"]
    if alg not in _HEX:
        raise ImageError(f"unsupported digest algorithm {alg!r} in {digest!r}")
    if len(enc) != _HEX[alg] or not re.fullmatch(r"[0-9a-f]+", enc):
        raise ImageError(f"malformed {alg} digest {digest!r}")
    return alg, enc


def sha256_digest(data: bytes) -> str:
    import hashlib  # imported on use: mounting needs only the helpers on names

    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, what: str, size: int | None = None) -> None:
    """Check size first, then hash, as the OCI spec asks."""
    alg, enc = parse_digest(digest)
    if size is not None and size >= 0 and len(data) != size:
        raise DigestMismatch(f"{what}: size {len(data)} does not match descriptor size {size}")
    import hashlib

    got = hashlib.new(alg, data).hexdigest()
    if got != enc:
        raise DigestMismatch(f"{what}: digest mismatch (expected {digest}, got {alg}:{got})")


class ByteReader(Protocol):
    """What the stream readers need of what they wrap: a file, a response body, another
    reader. ``read(n)`` returns at most ``n`` bytes, ``b""`` only at the end."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class HashingReader:
    """A file-like wrapper that hashes what is read and checks digest and size at EOF.

    ``expected`` may be None to only compute the digest (``digest()`` after EOF).
    """

    def __init__(
        self,
        raw: ByteReader,
        expected: str | None,
        what: str,
        size: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._raw = raw
        self._what = what
        self._alg = parse_digest(expected)[0] if expected else "sha256"
        self._expected = expected
        self._size = size if size is not None and size >= 0 else None
        self._max = max_bytes
        import hashlib

        self._hash = hashlib.new(self._alg)
        self.count = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hash.update(data)
            self.count += len(data)
            if self._size is not None and self.count > self._size:
                raise DigestMismatch(f"{self._what}: longer than its descriptor size {self._size}")
            if self._max is not None and self.count > self._max:
                raise ImageError(f"{self._what}: larger than the limit of {self._max} bytes")
        elif n != 0:
            self._finish()
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._size is not None and self.count != self._size:
            raise DigestMismatch(
                f"{self._what}: truncated ({self.count} of {self._size} bytes)"
            )
        if self._expected is not None:
            got = f"{self._alg}:{self._hash.hexdigest()}"
            if got != self._expected:
                raise DigestMismatch(
                    f"{self._what}: digest mismatch (expected {self._expected}, got {got})"
                )

    def drain(self) -> None:
        """Read to EOF so that the check runs even if the consumer stopped early."""
        while self.read(1 << 20):
            pass
        self._finish()

    def digest(self) -> str:
        return f"{self._alg}:{self._hash.hexdigest()}"

    def close(self) -> None:
        self._raw.close()
