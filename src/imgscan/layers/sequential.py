"""``ArrivingLayer``: a layer of a stream that carries a whole image (a Docker Engine's save
stream), walked once while it passes.

Its tar is hashed on the way (a layer's diff_id is the digest of its uncompressed tar), so
once the walk or a ``skip()`` has read it, ``diff_id`` says which layer it really was; a
compressed blob is also checked against the digest its name states. The stream cannot go
back: a second walk yields nothing (the analysis of hard links whose target was not kept
then finds no target).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imgscan.layers.blob import walk_verified
from imgscan.layers.interface import Layer, LayerLimits, LayerMember
from imgscan.model import LayerRef


class ArrivingLayer(Layer):
    """``arrival`` (an ``images.docker_stream.Arrival``) as a ``Layer`` named ``ref``."""

    fork_safe = False  # its bytes come from this process's connection

    def __init__(self, arrival: Any, ref: LayerRef, limits: LayerLimits, what: str) -> None:
        from imgscan.images.compression import HEAD_SIZE, detect_compression
        from imgscan.images.digest import HashingReader

        self.ref = ref
        self.size = arrival.size
        self._what = f"{what}: {arrival.name}"
        self._limits = limits
        self._expected = arrival.diff_id
        self._raw: Any = arrival.stream
        self.compressed = bool(detect_compression(arrival.stream.peek(HEAD_SIZE)[:HEAD_SIZE]))
        if self.compressed:  # the blob's own digest: stated by its name, else computed
            self._raw = HashingReader(arrival.stream, arrival.blob_digest or None,
                                      f"{self._what}: digest", size=arrival.size)
        self._passed = False
        #: the digest of the uncompressed tar, once read
        self.diff_id = ""
        self.digest = ""

    @contextmanager
    def members(self) -> Iterator[Iterator[LayerMember]]:
        if self._passed:
            yield iter(())
            return
        self._passed = True
        walk, tar_stream = walk_verified(self._raw, self._expected, self._what, self._limits)

        def done() -> Iterator[LayerMember]:
            yield from walk
            self._read(tar_stream)

        yield done()

    def skip(self) -> None:
        """Read the layer without walking it: it is still hashed and verified."""
        from imgscan.images.compression import open_decompressed
        from imgscan.images.digest import HashingReader

        if self._passed:
            return
        self._passed = True
        tar_stream = HashingReader(open_decompressed(self._raw, self._what),
                                   self._expected or None, f"{self._what}: diff_id",
                                   max_bytes=self._limits.max_bytes)
        tar_stream.drain()
        if self.compressed:
            self._raw.drain()
        self._read(tar_stream)

    def _read(self, tar_stream: Any) -> None:
        self.diff_id = tar_stream.digest()
        self.digest = self._raw.digest() if self.compressed else self.diff_id
