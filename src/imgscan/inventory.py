"""What the store holds, as plain values: an image's size and the rows of ``imgscan images``.

One place for the size so that the listing and a scan's report agree on it. The store is
handed in as a value (anything with ``images()`` and ``layer(chain_id)``); nothing here
imports it, so the scanner can use this module without depending on the store.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from imgscan.store.records import ImageRecord
    from imgscan.store.store import Store


class ImageRow(TypedDict):
    """One stored image as ``imgscan images --format json`` lists it."""

    id: str
    names: list[str]
    digest: str
    layers: int
    size: int
    created: str
    platform: str


def image_size(store: Store, image: ImageRecord) -> int:
    """The sum of the image's stored layer sizes; a layer whose record cannot be read counts
    as 0 rather than failing a listing or a scan over a size."""
    size = 0
    for chain in image.layers:
        with contextlib.suppress(Exception):
            size += store.layer(chain).size
    return size


def image_rows(store: Store) -> list[ImageRow]:
    """One dict per stored image (id, names, digest, layers, size, created, platform): the
    JSON of ``imgscan images --format json``."""
    return [{"id": r.id, "names": list(r.names), "digest": r.manifest_digest,
             "layers": len(r.layers), "size": image_size(store, r), "created": r.created,
             "platform": "/".join(p for p in (r.os, r.architecture, r.variant) if p)}
            for r in store.images()]
