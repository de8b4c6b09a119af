"""Layer blobs downloaded before a parallel import, for sources that cannot cross a fork.

A registry's connection pool must not be shared by forked processes, so its blobs are
fetched by threads into the staging directory first; the forked layer workers then read
the local copies like any file source.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgscan.images.interface import LayerInfo, SourceImage


class DownloadedLayers:
    """Layer blobs fetched into the staging directory, each verified against its digest as
    it arrives; ``open_layer`` then reads the local copy (verified again as it is read)."""

    def __init__(self, img: SourceImage, directory: str, layers: list[LayerInfo],
                 workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.img = img
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self._fetch, layers))

    def _path(self, layer: LayerInfo) -> str:
        return os.path.join(self.directory, f"layer-{layer.index}")

    def _fetch(self, layer: LayerInfo) -> None:
        with self.img.open_layer(layer) as src, open(self._path(layer), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            if hasattr(src, "drain"):
                src.drain()

    @contextlib.contextmanager
    def open_layer(self, layer: LayerInfo) -> Iterator[Any]:
        from imgscan.images.digest import HashingReader

        with open(self._path(layer), "rb") as f:
            if layer.digest is None:
                yield f
            else:
                yield HashingReader(f, layer.digest, f"layer {layer.index} ({layer.digest})",
                                    size=layer.size)
