"""Decompression by magic bytes: round trips, multi-member/multi-frame streams checked against
gzip(1) and zstd(1), and every truncation or corruption turning into ImageError."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import random
import subprocess

import pytest
import zstandard

from imgscan.errors import ImageError
from imgscan.images import compression
from imgscan.images.compression import MAX_CHUNK, detect_compression, open_decompressed


def _payload(n: int = 300_000, tail: int = 20_000) -> bytes:
    rnd = random.Random(7)
    words = [bytes(rnd.choices(b"abcdefghij", k=rnd.randint(1, 12))) for _ in range(500)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    out += os.urandom(tail)  # an incompressible tail
    return bytes(out)


def _read_all(stream, size: int) -> bytes:
    parts = []
    while True:
        b = stream.read(size)
        if not b:
            return b"".join(parts)
        assert len(b) <= size
        parts.append(b)


def _tool(args: list[str], data: bytes) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def test_detect() -> None:
    assert detect_compression(b"\x1f\x8b\x08\x00") == "gzip"
    assert detect_compression(b"\x28\xb5\x2f\xfd") == "zstd"
    assert detect_compression(b"\xfd7zXZ\x00") == "xz"
    assert detect_compression(b"\xfd7zXY\x00") is None
    assert detect_compression(b"ustar") is None
    assert detect_compression(b"") is None


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20, -1])
@pytest.mark.parametrize("how", ["gzip", "zstd", "xz", "plain"])
def test_round_trip_with_tools(how: str, chunk: int) -> None:
    data = _payload(60_000 if chunk == 1 else 300_000)
    if how == "gzip":
        blob = _tool(["gzip", "-c", "-n"], data)
    elif how == "zstd":
        blob = _tool(["zstd", "-c", "-q"], data)
    elif how == "xz":
        blob = _tool(["xz", "-c", "-T1"], data)
    else:
        blob = data
    with open_decompressed(io.BytesIO(blob)) as f:
        got = f.read() if chunk == -1 else _read_all(f, chunk)
    assert got == data


def test_tiny_and_empty_plain() -> None:
    assert open_decompressed(io.BytesIO(b"")).read() == b""
    assert open_decompressed(io.BytesIO(b"ab")).read() == b"ab"
    assert _read_all(open_decompressed(io.BytesIO(b"abcdefg")), 3) == b"abcdefg"


def test_gzip_multi_member_as_gzip_tool_reads_it() -> None:
    a, b = _payload(50_000), b"second member " * 1000
    blob = gzip.compress(a) + _tool(["gzip", "-c"], b) + gzip.compress(b"")
    expected = _tool(["gzip", "-dc"], blob)
    assert expected == a + b
    assert open_decompressed(io.BytesIO(blob)).read() == expected


def test_gzip_trailing_nul_padding_ok_garbage_not() -> None:
    blob = gzip.compress(b"hello")
    assert open_decompressed(io.BytesIO(blob + bytes(512))).read() == b"hello"
    with pytest.raises(ImageError, match="trailing garbage"):
        open_decompressed(io.BytesIO(blob + b"junk")).read()


def test_gzip_every_truncation_is_an_image_error() -> None:
    blob = gzip.compress(_payload(3000, tail=300))
    for cut in range(2, len(blob)):
        with pytest.raises(ImageError, match="truncated or corrupt gzip"):
            open_decompressed(io.BytesIO(blob[:cut]), "layer 0").read()


def test_gzip_corruption_is_an_image_error() -> None:
    blob = bytearray(gzip.compress(_payload(50_000)))
    for pos in (12, len(blob) // 2, len(blob) - 6):  # header area, deflate data, CRC
        bad = bytearray(blob)
        bad[pos] ^= 0xFF
        with pytest.raises(ImageError, match="layer 3: truncated or corrupt gzip"):
            _read_all(open_decompressed(io.BytesIO(bytes(bad)), "layer 3"), 65536)


def test_gzip_output_is_bounded_per_read() -> None:
    # 64 MiB of zeros compress to ~64 KiB; a read must not inflate it all at once
    blob = gzip.compress(bytes(64 << 20), 9)
    f = open_decompressed(io.BytesIO(blob))
    first = f.read(1 << 30)
    assert 0 < len(first) <= MAX_CHUNK
    assert len(first) + len(_read_all(f, 1 << 22)) == 64 << 20


def test_zstd_multi_frame_and_skippable() -> None:
    a, b = _payload(40_000), b"frame two" * 999
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    blob = (zstandard.ZstdCompressor(write_checksum=True).compress(a) + skippable
            + _tool(["zstd", "-c", "-q"], b))
    expected = _tool(["zstd", "-dc", "-q"], blob)
    assert expected == a + b
    assert _read_all(open_decompressed(io.BytesIO(blob)), 10_000) == expected


def test_zstd_every_truncation_is_an_image_error() -> None:
    blob = zstandard.ZstdCompressor(write_checksum=True).compress(_payload(3000, tail=300))
    for cut in range(4, len(blob)):
        with pytest.raises(ImageError, match="truncated or corrupt zstd"):
            open_decompressed(io.BytesIO(blob[:cut])).read()


def test_zstd_garbage_and_corruption() -> None:
    blob = zstandard.ZstdCompressor(write_checksum=True).compress(_payload(50_000))
    with pytest.raises(ImageError, match="not a zstd frame"):
        open_decompressed(io.BytesIO(blob + b"junkjunk")).read()
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="zstd"):
        open_decompressed(io.BytesIO(bytes(bad))).read()


def test_zstd_window_over_limit_refused() -> None:
    params = zstandard.ZstdCompressionParameters(window_log=30, write_content_size=False)
    co = zstandard.ZstdCompressor(compression_params=params).compressobj()
    blob = co.compress(_payload(10_000)) + co.flush()
    assert zstandard.get_frame_parameters(blob).window_size == 1 << 30
    with pytest.raises(ImageError, match="zstd"):
        open_decompressed(io.BytesIO(blob)).read()


def test_xz_multi_stream_and_padding_as_xz_tool_reads_it() -> None:
    a, b = _payload(40_000), b"stream two " * 999
    blob = lzma.compress(a) + bytes(8) + _tool(["xz", "-c", "-T1"], b) + bytes(4)
    expected = _tool(["xz", "-dc"], blob)
    assert expected == a + b
    assert _read_all(open_decompressed(io.BytesIO(blob)), 10_000) == expected


def test_xz_every_truncation_and_garbage_is_an_image_error() -> None:
    blob = lzma.compress(_payload(3000, tail=300))
    for cut in range(6, len(blob)):
        with pytest.raises(ImageError, match="layer 2: truncated or corrupt xz"):
            open_decompressed(io.BytesIO(blob[:cut]), "layer 2").read()
    with pytest.raises(ImageError, match="trailing garbage"):
        open_decompressed(io.BytesIO(blob + b"junkjunk")).read()
    bad = bytearray(lzma.compress(_payload(50_000)))
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="corrupt xz"):
        _read_all(open_decompressed(io.BytesIO(bytes(bad))), 65536)


def test_xz_output_and_memory_are_bounded(monkeypatch) -> None:
    blob = lzma.compress(bytes(64 << 20), preset=9)  # a 64 MiB dictionary
    f = open_decompressed(io.BytesIO(blob))
    first = f.read(1 << 30)
    assert 0 < len(first) <= MAX_CHUNK
    assert len(first) + len(_read_all(f, 1 << 22)) == 64 << 20
    monkeypatch.setattr(compression, "XZ_MEMLIMIT", 16 << 20)  # below what the header asks
    with pytest.raises(ImageError, match="corrupt xz"):
        open_decompressed(io.BytesIO(blob)).read(1)
