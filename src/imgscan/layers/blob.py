"""``BlobLayer``: a layer read straight from its blob (any image source), never unpacked.

The blob is verified against its digest and the decompressed tar against the diff_id as
they stream by; a mismatch is an ``ImageError`` at the end of the walk, so results of a
layer that fails verification are never used (the scanner caches only after a clean walk).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from imgscan.layers.interface import Layer, LayerLimits, LayerMember
from imgscan.model import ImageSummary, LayerRef


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
        what = f"layer {self.layer.index} ({self.layer.diff_id})"
        with self.image.open_layer(self.layer) as raw:
            walk, tar_stream = walk_verified(raw, self.layer.diff_id, what, self.limits)

            def counted() -> Iterator[LayerMember]:
                yield from walk
                self.tar_size = tar_stream.count

            yield counted()


def walk_verified(raw: Any, diff_id: str | None, what: str, limits: LayerLimits
                  ) -> tuple[Iterator[LayerMember], Any]:
    """The members of ``raw`` (a layer blob, decompressed as it streams) and the reader that
    hashes the tar: the walk is complete only once both digests are checked — the tar
    against ``diff_id`` (only computed when None: ``digest()`` afterwards), ``raw`` against
    its own when it is a ``HashingReader``."""
    from imgscan.images.compression import open_decompressed
    from imgscan.images.digest import HashingReader
    from imgscan.layers.tarwalk import walk_tar  # not imported on a report-cache hit

    tar_stream = HashingReader(open_decompressed(raw, what), diff_id or None,
                               f"{what}: diff_id", max_bytes=limits.max_bytes)
    stream: BinaryIO = io.BufferedReader(_Raw(tar_stream), 1 << 20)

    def walk() -> Iterator[LayerMember]:
        yield from walk_tar(stream, limits)
        tar_stream.drain()
        if isinstance(raw, HashingReader):
            raw.drain()

    return walk(), tar_stream


def source_image_layers(image: Any, names: Sequence[str] = (), limits: Any = None
                        ) -> tuple[dict[str, Any], list[BlobLayer], ImageSummary]:
    """An image from a source (``SourceImage``) as the scanner takes it: its config, a
    ``BlobLayer`` per layer (nothing read yet) and its summary."""
    from imgscan.images.interface import layer_history

    lim = LayerLimits(limits.max_bytes, limits.max_entries, limits.max_path) if limits \
        else LayerLimits()
    history = layer_history(image.config)
    layers = [BlobLayer(image, lay, LayerRef(lay.index, lay.diff_id,
                                             history[i] if i < len(history) else ""), lim)
              for i, lay in enumerate(image.layers)]
    c = image.config
    summary = image_summary(c, image.image_id, image.manifest_digest,
                            names or image.names, sum(lay.size for lay in image.layers))
    return c, layers, summary


def image_summary(config: dict[str, Any], image_id: str, digest: str, names: Sequence[str],
                  size: int) -> ImageSummary:
    """The report's image summary of an image read from a source (not from a store)."""
    return ImageSummary(
        name=names[0] if names else "",
        id=image_id,
        digest=digest,
        os=str(config.get("os") or ""),
        architecture=str(config.get("architecture") or ""),
        variant=str(config.get("variant") or ""),
        created=str(config.get("created") or ""),
        size=size,
        user=str((config.get("config") or {}).get("User") or ""),
        names=tuple(names),
        source="image",
    )
