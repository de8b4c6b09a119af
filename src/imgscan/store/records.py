"""The store's metadata records: layers, images, the ``store.json`` document, and the
problems ``store check`` reports.

Plain values and pure functions over them, so that the import pipeline, maintenance and the
mount records can share them without importing one another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from imgscan.errors import StoreError
from imgscan.hexid import hex_of
from imgscan.store.refs import normalize_name as normalize_name
from imgscan.store.refs import resolve_ref

STORE_VERSION = 1


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


@dataclass(frozen=True)
class LayerRecord:
    """One stored layer, keyed by chain id so that images sharing a base share its files."""

    chain_id: str
    diff_id: str
    parent: str | None
    size: int
    entries: int
    link: str
    whiteouts: str  # "chardev" or "wh-files"
    created: float = 0.0


@dataclass(frozen=True)
class ImageRecord:
    """One stored image: its names, digests and layer chain, enough to list, scan or mount
    it without reading its manifest again."""

    id: str  # config digest
    names: tuple[str, ...]
    manifest_digest: str
    layers: tuple[str, ...]  # chain ids, base first
    diff_ids: tuple[str, ...]
    layer_digests: tuple[str | None, ...]
    layer_sizes: tuple[int, ...]  # compressed blob sizes
    os: str = ""
    architecture: str = ""
    variant: str = ""
    created: str = ""
    pulled: float = 0.0
    index_digest: str | None = None
    layer_media_types: tuple[str, ...] = ()
    source: str = ""

    @property
    def short_id(self) -> str:
        return hex_of(self.id)[:12]


@dataclass
class StoreMeta:
    """The whole ``store.json``: read under a lock, replaced atomically by writers."""

    images: dict[str, ImageRecord] = field(default_factory=dict)
    layers: dict[str, LayerRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def enc(rec: Any) -> dict[str, Any]:
            return {k: list(v) if isinstance(v, tuple) else v for k, v in rec.__dict__.items()}

        return {
            "version": STORE_VERSION,
            "images": {k: enc(v) for k, v in sorted(self.images.items())},
            "layers": {k: enc(v) for k, v in sorted(self.layers.items())},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StoreMeta:
        if doc.get("version") != STORE_VERSION:
            raise StoreError(f"store metadata has unsupported version {doc.get('version')!r}")
        images = {}
        for k, v in doc.get("images", {}).items():
            v = {f: tuple(x) if isinstance(x, list) else x for f, x in v.items()}
            images[k] = ImageRecord(**v)
        layers = {k: LayerRecord(**v) for k, v in doc.get("layers", {}).items()}
        return cls(images, layers)

    def copy(self) -> StoreMeta:
        """A copy whose dicts a writer may change before committing it."""
        return StoreMeta(dict(self.images), dict(self.layers))

    def layer_users(self, chain_id: str) -> list[ImageRecord]:
        return [i for i in self.images.values() if chain_id in i.layers]


def meta_from_doc(doc: Any) -> StoreMeta:
    """The metadata of a parsed ``store.json``, or a StoreError saying what is wrong."""
    try:
        return StoreMeta.from_json(doc)
    except (TypeError, KeyError, AttributeError) as e:
        raise StoreError(f"store metadata is malformed: {e}") from None


@dataclass(frozen=True)
class Problem:
    """Something ``store check`` found; ``repairable`` ones are fixed by ``--repair``."""

    kind: str
    path: str
    message: str
    repairable: bool = True


def resolve_image(meta: StoreMeta, ref: str) -> ImageRecord:
    """An image by name[:tag], full or unique-prefix id (with or without ``sha256:``), or
    manifest digest."""
    return resolve_ref(meta.images.values(), ref)


def with_names(img: ImageRecord, names: list[str]) -> ImageRecord:
    return replace(img, names=tuple(names))


def claim_names(meta: StoreMeta, image_id: str, names: Iterable[str]) -> list[str]:
    """The names an image will have: its old ones plus ``names``, each taken away from any
    other image that had it (a name points at one image). Changes ``meta`` in place."""
    old = meta.images.get(image_id)
    all_names = list(old.names) if old else []
    for n in names:
        for other_id, other in list(meta.images.items()):
            if other_id != image_id and n in other.names:
                meta.images[other_id] = with_names(other, [x for x in other.names if x != n])
        if n not in all_names:
            all_names.append(n)
    return all_names
