"""Layer compression: detect it by magic bytes and decompress as a stream (FORMATS.md §1.6).

Media types lie (docker-archives from containerd, mislabelled layers), so the bytes decide:
gzip starts ``1f 8b``, zstd ``28 b5 2f fd``, xz ``fd 37 7a 58 5a 00`` (docker-archives that
``docker save | xz`` made, and their layers: docker and containers/image read xz too), anything
else is taken as a plain tar.

Every decompressor bounds its output per call, so a small hostile blob cannot make one
``read`` allocate gigabytes, and its decoder memory (zstd's window, xz's dictionary); each
turns every truncation or corruption into an ``ImageError`` (a zstd stream reader on its own
ends silently on truncated input, so the frame structure is tracked alongside it).
"""

from __future__ import annotations

import io
import lzma
import zlib
from types import ModuleType
from typing import BinaryIO

try:  # ISA-L inflates gzip 2-3x faster than zlib, with zlib's interface
    from isal import isal_zlib as _isal_zlib

    _inflate: ModuleType = _isal_zlib
except ImportError:  # pragma: no cover - a platform without isal wheels
    _inflate = zlib

from imgscan.errors import ImageError
from imgscan.images.digest import ByteReader

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
#: bytes of a blob's head that ``detect_compression`` needs (the longest magic)
HEAD_SIZE = len(XZ_MAGIC)
#: how much compressed input is read at a time
READ_SIZE = 1 << 20
#: the most output one inflate call may produce
MAX_CHUNK = 1 << 20
#: zstd's own default limit for decoders (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27)
ZSTD_MAX_WINDOW = 1 << 27
#: the most memory an xz decoder may use: ``xz -9`` needs 65 MiB, far below it; a header
#: that asks for more (a dictionary up to 1.5 GiB is legal) is refused, as zstd's window is
XZ_MEMLIMIT = 1 << 28


def detect_compression(head: bytes) -> str | None:
    """``"gzip"``, ``"zstd"``, ``"xz"`` or None (plain) from the first ``HEAD_SIZE`` bytes
    of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return None


def _read_head(raw: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        chunk = raw.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


class _WrappingReader(io.RawIOBase):
    """A readable raw stream over ``self._raw`` whose subclasses define ``read``: serves
    ``readinto`` from it and closes the source with itself."""

    _raw: ByteReader

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _Prefixed(_WrappingReader):
    """Gives back bytes already read from a stream before the rest of it."""

    def __init__(self, head: bytes, raw: ByteReader) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            # to the end, reading until the source itself says EOF (so that a verifying
            # reader underneath runs its check)
            parts, self._head = [self._head], b""
            while chunk := self._raw.read(READ_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)


class _Decompressed(_WrappingReader):
    """Common part of the decompressing readers: a pending output buffer served by ``read``."""

    what = "compressed"

    def __init__(self, raw: ByteReader, label: str) -> None:
        self._raw = raw
        self._label = label
        self._out = b""
        self._pos = 0  # served up to here: small reads never copy the rest of the chunk
        self._eof = False

    def _produce(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._out[self._pos:]]
            self._out, self._pos = b"", 0
            while not self._eof:
                parts.append(self._produce())
            return b"".join(parts)
        if n == 0:
            return b""
        while self._pos >= len(self._out) and not self._eof:
            self._out, self._pos = self._produce(), 0
        start = self._pos
        if start == 0 and len(self._out) <= n:
            data, self._out = self._out, b""
            return data
        self._pos = min(start + n, len(self._out))
        return self._out[start:self._pos]


class GzipReader(_Decompressed):
    """Streams a (possibly multi-member) gzip; trailing NUL padding is tolerated."""

    def __init__(self, raw: ByteReader, label: str = "gzip stream") -> None:
        super().__init__(raw, label)
        self._d = _inflate.decompressobj(wbits=31)
        self._in = b""  # compressed input not yet given to the decompressor
        self._member_started = False
        self._raw_eof = False

    def _fail(self, why: str) -> ImageError:
        return ImageError(f"{self._label}: truncated or corrupt gzip ({why})")

    def _produce(self) -> bytes:
        d = self._d
        if d.unconsumed_tail:
            src = d.unconsumed_tail
        elif self._in:
            src, self._in = self._in, b""
        else:
            src = b"" if self._raw_eof else self._raw.read(READ_SIZE)
            if not src:
                self._raw_eof = True
                if self._member_started:
                    raise self._fail("unexpected end of data")
                self._eof = True
                return b""
        if not self._member_started:
            # Between members: NUL padding may follow the last one, as gzip(1) allows;
            # anything else must be the start of another member.
            stripped = src.lstrip(b"\x00")
            if not stripped:
                return b""
            if stripped[0] != GZIP_MAGIC[0]:
                raise self._fail("trailing garbage after the last member")
            src = stripped
            self._member_started = True
        try:
            out = d.decompress(src, MAX_CHUNK)
        except (zlib.error, _inflate.error) as e:
            raise self._fail(str(e)) from None
        if d.eof:
            self._in = d.unused_data
            self._d = _inflate.decompressobj(wbits=31)
            self._member_started = False
        return out


class _ZstdFrameTracker(io.RawIOBase):
    """Passes compressed bytes through while following the zstd frame/block structure.

    Only headers are looked at (three bytes per block of up to 128 KiB), so the cost is tiny;
    it lets the reader tell a clean end of stream from a truncated one, and reject garbage
    after the last frame.
    """

    def __init__(self, raw: ByteReader, label: str) -> None:
        self._raw = raw
        self._label = label
        self._skip = 0  # payload bytes to pass over before the next header
        self._hdr = bytearray()
        self._need = 4  # header bytes wanted for the current state
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def readable(self) -> bool:
        return True

    def _fail(self, why: str) -> ImageError:
        return ImageError(f"{self._label}: truncated or corrupt zstd ({why})")

    def _header(self, h: bytes) -> None:
        st = self._state
        if st == "magic":
            magic = int.from_bytes(h, "little")
            if magic == 0xFD2FB528:
                self._state, self._need = "fhd", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = "skippable", 4
            else:
                raise self._fail("data after the last frame is not a zstd frame")
        elif st == "skippable":
            self._skip = int.from_bytes(h, "little")
            self._state, self._need = "magic", 4
        elif st == "fhd":
            fhd = h[0]
            fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
            if fhd & 0x08:
                raise self._fail("reserved bit set in frame header")
            self._checksum = bool((fhd >> 2) & 1)
            fcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs
            self._state, self._need = "block", 3
        elif st == "block":
            v = int.from_bytes(h, "little")
            last, btype, bsize = v & 1, (v >> 1) & 3, v >> 3
            if btype == 3:
                raise self._fail("reserved block type")
            self._skip = 1 if btype == 1 else bsize
            if last:
                if self._checksum:
                    self._skip += 4
                self.frames += 1
                self._state, self._need = "magic", 4
            else:
                self._need = 3

    def _track(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
                continue
            take = min(self._need - len(self._hdr), n - pos)
            self._hdr += data[pos : pos + take]
            pos += take
            if len(self._hdr) == self._need:
                h = bytes(self._hdr)
                self._hdr.clear()
                self._header(h)

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n if n is not None and n >= 0 else READ_SIZE)
        if data:
            self._track(data)
        elif n != 0:
            clean = self._state == "magic" and not self._hdr and not self._skip
            if not clean or not self.frames:
                raise self._fail("unexpected end of data")
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class ZstdReader(_Decompressed):
    """Streams every frame of a zstd blob, with zstd's default window limit."""

    def __init__(self, raw: ByteReader, label: str = "zstd stream") -> None:
        import zstandard  # imported here: `imgscan mount` of a gzip image never needs it

        super().__init__(raw, label)
        self._zstd_error = zstandard.ZstdError
        self._tracker = _ZstdFrameTracker(raw, label)
        self._reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            self._tracker,  # type: ignore[arg-type]  # zstandard needs only read()
            read_size=READ_SIZE, read_across_frames=True, closefd=False
        )

    def _produce(self) -> bytes:
        try:
            out = self._reader.read(MAX_CHUNK)
        except self._zstd_error as e:
            raise ImageError(f"{self._label}: truncated or corrupt zstd ({e})") from None
        if not out:
            self._eof = True
        return out


class XzReader(_Decompressed):
    """Streams a (possibly multi-stream) xz, with stream padding between and after streams
    (xz(1) writes and reads both); the decoder's memory is capped at ``XZ_MEMLIMIT``."""

    def __init__(self, raw: ByteReader, label: str = "xz stream") -> None:
        super().__init__(raw, label)
        self._d = self._decoder()
        self._in = b""  # compressed input not yet given to the decoder
        self._stream_started = False

    @staticmethod
    def _decoder() -> lzma.LZMADecompressor:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)

    def _fail(self, why: str) -> ImageError:
        return ImageError(f"{self._label}: truncated or corrupt xz ({why})")

    def _produce(self) -> bytes:
        d = self._d
        if self._stream_started and not d.needs_input:
            src = b""  # output held back by max_length: drain it first
        elif self._in:
            src, self._in = self._in, b""
        else:
            src = self._raw.read(READ_SIZE)
            if not src:
                if self._stream_started:
                    raise self._fail("unexpected end of data")
                self._eof = True
                return b""
        if not self._stream_started:
            # between streams only NUL padding may come; anything else starts another stream
            stripped = src.lstrip(b"\x00")
            if not stripped:
                return b""
            if not XZ_MAGIC.startswith(stripped[:len(XZ_MAGIC)]):
                raise self._fail("trailing garbage after the last stream")
            src = stripped
            self._stream_started = True
        try:
            out = d.decompress(src, MAX_CHUNK)
        except (lzma.LZMAError, EOFError) as e:
            raise self._fail(str(e)) from None
        if d.eof:
            self._in = d.unused_data
            self._d = self._decoder()
            self._stream_started = False
        return out


def open_decompressed(raw: BinaryIO, label: str = "layer") -> BinaryIO:
    """The uncompressed stream of ``raw`` whatever its compression; closing it closes ``raw``.

    ``label`` names the blob in error messages.
    """
    head = _read_head(raw, HEAD_SIZE)
    src = _Prefixed(head, raw)
    kind = detect_compression(head)
    if kind == "gzip":
        return GzipReader(src, label)  # type: ignore[return-value]
    if kind == "zstd":
        return ZstdReader(src, label)  # type: ignore[return-value]
    if kind == "xz":
        return XzReader(src, label)  # type: ignore[return-value]
    return src  # type: ignore[return-value]
