"""A lean, read-only view of a store's metadata: what ``imgscan mount`` and ``umount`` need.

Why not ``StoreCore``: the full store brings the import pipeline, maintenance, leases and the
record dataclasses (``dataclasses`` imports ``inspect``), which cost a mount more than the
mount itself, and it builds a record object for every image and layer of ``store.json``.
This view opens the root as the store does (``imgscan.store.root``), takes the same lock
(``StoreLock``, with the same last-writer token check before a re-read), and resolves
references with the same code (``imgscan.store.refs``); records are plain attribute bags
with the same field names and defaults.

A ``store.json`` this view does not recognise as well-formed (an unknown or missing field,
a wrong shape) is handed to the full parser, so the error is exactly the store's.
"""

from __future__ import annotations

import os

from imgscan.errors import StoreError
from imgscan.hexid import hex_of
from imgscan.store.lock import StoreLock
from imgscan.store.refs import resolve_ref
from imgscan.store.root import prepare_root, read_store_json

STORE_VERSION = 1  # the version imgscan.store.records writes and reads

#: ImageRecord's fields with their defaults (None: required); a test compares with records
IMAGE_FIELDS: dict[str, object] = {
    "id": None, "names": None, "manifest_digest": None, "layers": None, "diff_ids": None,
    "layer_digests": None, "layer_sizes": None, "os": "", "architecture": "", "variant": "",
    "created": "", "pulled": 0.0, "index_digest": None, "layer_media_types": (), "source": "",
}
IMAGE_REQUIRED = frozenset(("id", "names", "manifest_digest", "layers", "diff_ids",
                            "layer_digests", "layer_sizes"))
#: LayerRecord's fields with their defaults
LAYER_FIELDS: dict[str, object] = {
    "chain_id": None, "diff_id": None, "parent": None, "size": None, "entries": None,
    "link": None, "whiteouts": None, "created": 0.0,
}
LAYER_REQUIRED = frozenset(("chain_id", "diff_id", "parent", "size", "entries", "link",
                            "whiteouts"))


class ImageView:
    """An image record of ``store.json`` (the fields of ``ImageRecord``)."""

    id: str
    names: tuple[str, ...]
    manifest_digest: str
    layers: tuple[str, ...]
    pulled: float

    def __init__(self, fields: dict[str, object]) -> None:
        self.__dict__.update(fields)

    @property
    def short_id(self) -> str:
        return hex_of(self.id)[:12]


class LayerView:
    """A layer record of ``store.json`` (the fields of ``LayerRecord``)."""

    chain_id: str
    link: str
    whiteouts: str

    def __init__(self, fields: dict[str, object]) -> None:
        self.__dict__.update(fields)


class _Meta:
    def __init__(self, images: dict[str, ImageView], layers: dict[str, LayerView]) -> None:
        self.images, self.layers = images, layers


class _Unrecognised(Exception):
    """A document the lean reader leaves to the store's own parser."""


class StoreView:
    """The store at ``root`` as mounting reads it; opening it makes its directories, as
    opening the store does."""

    def __init__(self, root: str | None = None) -> None:
        self.root = prepare_root(root)
        self.lock = StoreLock(self.path("store.lock"))
        self._meta: _Meta | None = None
        self._token: bytes | None = None

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _current(self) -> _Meta:
        """The metadata, re-read only when a writer committed since (call with a lock)."""
        token = self.lock.token()
        if self._meta is None or token != self._token:
            self._meta = _read(self.path("store.json"))
            self._token = token
        return self._meta

    def lookup(self, ref: str) -> ImageView:
        with self.lock.shared():
            return resolve_ref(self._current().images.values(), ref)

    def layer(self, chain_id: str) -> LayerView:
        with self.lock.shared():
            rec = self._current().layers.get(chain_id)
        if rec is None:
            raise StoreError(f"layer {chain_id} is not in the store")
        return rec

    def images(self) -> list[ImageView]:
        with self.lock.shared():
            return sorted(self._current().images.values(), key=lambda i: (-i.pulled, i.id))


def _read(path: str) -> _Meta:
    doc = read_store_json(path)
    if doc is None:
        return _Meta({}, {})
    try:
        return _lean(doc)
    except _Unrecognised:
        from imgscan.store.records import meta_from_doc

        full = meta_from_doc(doc)  # raises the store's own error for a bad document
        return _Meta({k: ImageView(v.__dict__) for k, v in full.images.items()},
                     {k: LayerView(v.__dict__) for k, v in full.layers.items()})


def _lean(doc: object) -> _Meta:
    if not isinstance(doc, dict) or doc.get("version") != STORE_VERSION:
        raise _Unrecognised
    images, layers = doc.get("images", {}), doc.get("layers", {})
    if not isinstance(images, dict) or not isinstance(layers, dict):
        raise _Unrecognised
    return _Meta({k: ImageView(_fields(v, IMAGE_FIELDS, IMAGE_REQUIRED, True))
                  for k, v in images.items()},
                 {k: LayerView(_fields(v, LAYER_FIELDS, LAYER_REQUIRED, False))
                  for k, v in layers.items()})


def _fields(rec: object, known: dict[str, object], required: frozenset[str],
            tuples: bool) -> dict[str, object]:
    """A record's fields with the defaults filled in (image lists as tuples, as
    ``StoreMeta.from_json`` makes them), or _Unrecognised."""
    if not isinstance(rec, dict) or not required <= rec.keys() or not rec.keys() <= known.keys():
        raise _Unrecognised
    out = {k: v for k, v in known.items() if k not in rec}
    for k, v in rec.items():
        out[k] = tuple(v) if tuples and isinstance(v, list) else v
    return out
