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
        from imgscan.images.compression import open_decompressed
        from imgscan.images.digest import HashingReader
        from imgscan.layers.tarwalk import walk_tar  # not imported on a report-cache hit

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
    summary = ImageSummary(
        name=names[0] if names else (image.names[0] if image.names else ""),
        id=image.image_id,
        digest=image.manifest_digest,
        os=str(c.get("os") or ""),
        architecture=str(c.get("architecture") or ""),
        variant=str(c.get("variant") or ""),
        created=str(c.get("created") or ""),
        size=sum(lay.size for lay in image.layers),
        user=str((c.get("config") or {}).get("User") or ""),
        names=tuple(names or image.names),
        source="image",
    )
    return c, layers, summary
