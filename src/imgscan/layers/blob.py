"""``BlobLayer``: a layer read straight from its blob (any image source), never unpacked.

The blob is verified against its digest and the decompressed tar against the diff_id as
they stream by; a mismatch is an ``ImageError`` at the end of the walk, so results of a
layer that fails verification are never used (the scanner caches only after a clean walk).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from imgscan.layers.interface import Layer, LayerLimits, LayerMember
from imgscan.layers.tarwalk import walk_tar
from imgscan.model import LayerRef


class _Raw(io.RawIOBase):
    """Lets ``io.BufferedReader`` serve tarfile's small reads in C from 1 MiB chunks."""

    def __init__(self, src: Any) -> None:
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._src.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class BlobLayer(Layer):
    """Layer ``layer`` (a ``LayerInfo``) of ``image`` (a ``SourceImage``)."""

    def __init__(self, image: Any, layer: Any, ref: LayerRef,
                 limits: LayerLimits | None = None) -> None:
        self.image = image
        self.layer = layer
        self.ref = ref
        self.digest = layer.digest or ""
        self.size = layer.size
        self.limits = limits or LayerLimits()
        self.fork_safe = bool(getattr(image.source, "fork_safe", True))
        #: uncompressed tar bytes of the last complete walk
        self.tar_size = 0

    @contextmanager
    def members(self) -> Iterator[Iterator[LayerMember]]:
        from imgscan.images.compression import open_decompressed
        from imgscan.images.digest import HashingReader

        what = f"layer {self.layer.index} ({self.layer.diff_id})"
        with self.image.open_layer(self.layer) as raw:
            tar_stream = HashingReader(open_decompressed(raw, what), self.layer.diff_id,
                                       f"{what}: diff_id", max_bytes=self.limits.max_bytes)
            stream: BinaryIO = io.BufferedReader(_Raw(tar_stream), 1 << 20)

            def walk() -> Iterator[LayerMember]:
                yield from walk_tar(stream, self.limits)
                # the walk is complete only once both digests are checked
                tar_stream.drain()
                if isinstance(raw, HashingReader):
                    raw.drain()
                self.tar_size = tar_stream.count

            yield walk()
