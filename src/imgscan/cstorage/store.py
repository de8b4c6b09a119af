"""``ContainersStorage``: podman/buildah/CRI-O images read where they are.

Reads ``overlay-images/images.json`` and ``overlay-layers/layers.json`` (plus
``volatile-layers.json``) under the same fcntl read locks containers/storage takes, layers
before images as c/storage orders them, and reloads them only when a lock's last-writer id
(or a JSON file's mtime, c/storage's own belt and braces) changed. Nothing is written here;
mount records are ``mount.py``'s business. Only the overlay driver is read.
"""

from __future__ import annotations

import contextlib
import os

from imgscan.cstorage.conf import StoreConfig, search_registries
from imgscan.cstorage.locks import LockFile, get_lock
from imgscan.errors import BadReferenceError, ImageError, StoreError
from imgscan.jsonlite import loads
from imgscan.plainrecord import PlainRecord

TYPE_CHECKING = False  # no typing, re, base64 or dataclasses at run time: `imgscan mount`
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SUPPORTED_DRIVERS = ("overlay",)


class CSLayer(PlainRecord):
    """One record of layers.json: ``diff_id`` is the uncompressed digest."""

    _fields = ("id", "parent", "diff_id", "compressed_digest", "compressed_size", "size",
               "uid_set", "incomplete")
    __slots__ = _fields
    _frozen = True
    id: str
    parent: str
    diff_id: str
    compressed_digest: str
    compressed_size: int
    size: int  # uncompressed bytes
    uid_set: tuple[int, ...]
    incomplete: bool

    def __init__(self, id: str, parent: str, diff_id: str, compressed_digest: str,
                 compressed_size: int, size: int, uid_set: tuple[int, ...] = (),
                 incomplete: bool = False) -> None:
        self._init(id=id, parent=parent, diff_id=diff_id, compressed_digest=compressed_digest,
                   compressed_size=compressed_size, size=size, uid_set=uid_set,
                   incomplete=incomplete)


class CSImage(PlainRecord):
    """One record of images.json (``id`` is the config digest's hex)."""

    _fields = ("id", "names", "top_layer", "digest", "created", "big_data")
    __slots__ = _fields
    _frozen = True
    id: str
    names: tuple[str, ...]
    top_layer: str
    digest: str  # manifest digest
    created: str
    big_data: tuple[str, ...]

    def __init__(self, id: str, names: tuple[str, ...], top_layer: str,
                 digest: str, created: str, big_data: tuple[str, ...] = ()) -> None:
        self._init(id=id, names=names, top_layer=top_layer, digest=digest, created=created,
                   big_data=big_data)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def _is_hex_id(ref: str) -> bool:
    """``^[0-9a-f]{1,64}$`` (``re`` is not imported for it: ``imgscan mount``)."""
    return 0 < len(ref) <= 64 and all(c in "0123456789abcdef" for c in ref)


def big_data_name(key: str) -> str:
    """The file name c/storage gives an image's big-data item (``makeBigDataBaseName``)."""
    import re

    if re.match(r"^[0-9a-z.]*$", key):
        return key
    import base64

    return "=" + base64.b64encode(key.encode()).decode()


class ContainersStorage:
    """A containers/storage store (overlay driver) opened for reading."""

    def __init__(self, conf: StoreConfig) -> None:
        self.conf = conf
        self.graph_root = conf.graph_root
        self.run_root = conf.run_root
        self.driver = self._check_driver()
        self._layers_lock = self._lock(self.path("overlay-layers", "layers.lock"))
        self._images_lock = self._lock(self.path("overlay-images", "images.lock"))
        self._layers: dict[str, CSLayer] = {}
        self._layer_order: list[str] = []
        self._images: list[CSImage] = []
        self._layers_seen: tuple[bytes, tuple[float, ...]] | None = None
        self._images_seen: tuple[bytes, tuple[float, ...]] | None = None

    # -- paths and driver ----------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.graph_root, *parts)

    def run_path(self, *parts: str) -> str:
        return os.path.join(self.run_root, *parts)

    def _check_driver(self) -> str:
        g = self.graph_root
        if not os.path.isdir(g):
            raise StoreError(f"containers-storage {g}: no such directory")
        driver = self.conf.driver
        present = sorted(n[: -len("-images")] for n in os.listdir(g) if n.endswith("-images"))
        if not driver:
            driver = "overlay" if "overlay" in present or not present else present[0]
        if driver not in SUPPORTED_DRIVERS:
            raise StoreError(f"containers-storage {g}: the {driver!r} driver is not supported "
                             f"(only {', '.join(SUPPORTED_DRIVERS)})")
        if not os.path.isfile(self.path("overlay-layers", "layers.lock")):
            raise StoreError(f"containers-storage {g}: not a containers/storage store "
                             "(no overlay-layers/layers.lock)")
        return driver

    @staticmethod
    def _lock(path: str) -> LockFile:
        return get_lock(path, readonly=not os.access(path, os.W_OK))

    def layer_dir(self, layer: CSLayer | str) -> str:
        lid = layer if isinstance(layer, str) else layer.id
        return self.path("overlay", lid)

    def diff_path(self, layer: CSLayer | str) -> str:
        """The layer's files as the overlay driver keeps them (whiteouts as 0/0 devices)."""
        return os.path.join(self.layer_dir(layer), "diff")

    # -- locking and loading -------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[ContainersStorage]:
        """Hold layers.lock and images.lock shared (in c/storage's order) with fresh records.

        Holding it keeps layers from being deleted: a ``podman rmi`` waits, as it waits for
        ``podman save``."""
        with self._layers_lock.shared(), self._images_lock.shared():
            self._reload()
            yield self

    @contextlib.contextmanager
    def reading_for_write(self) -> Iterator[ContainersStorage]:
        """layers.lock exclusive (as c/storage's ``store.Mount`` takes it), images.lock
        shared, fresh records. Nothing in the graph root is written under it."""
        with self._layers_lock.exclusive(), self._images_lock.shared():
            self._reload()
            yield self

    @contextlib.contextmanager
    def layers_held(self) -> Iterator[ContainersStorage]:
        """Hold only layers.lock shared: what a scan keeps while it reads layer content."""
        with self._layers_lock.shared():
            yield self

    def _mtimes(self, *paths: str) -> tuple[float, ...]:
        out = []
        for p in paths:
            try:
                out.append(os.stat(p).st_mtime)
            except FileNotFoundError:
                out.append(0.0)
        return tuple(out)

    def _reload(self) -> None:
        lpaths = (self.path("overlay-layers", "layers.json"),
                  self.path("overlay-layers", "volatile-layers.json"))
        seen = (self._layers_lock.last_write(), self._mtimes(*lpaths))
        if seen != self._layers_seen:
            layers: dict[str, CSLayer] = {}
            order: list[str] = []
            for p in lpaths:
                for rec in _read_json_list(p, required=p == lpaths[0]):
                    lay = _layer_from_json(rec, p)
                    if lay.id not in layers:
                        order.append(lay.id)
                    layers[lay.id] = lay
            self._layers, self._layer_order, self._layers_seen = layers, order, seen
        ipath = self.path("overlay-images", "images.json")
        seen = (self._images_lock.last_write(), self._mtimes(ipath))
        if seen != self._images_seen:
            self._images = [_image_from_json(r, ipath)
                            for r in _read_json_list(ipath, required=False)]
            self._images_seen = seen

    # -- records (call inside reading()) -------------------------------------------------
    def images(self) -> list[CSImage]:
        return list(self._images)

    def layer(self, layer_id: str) -> CSLayer:
        lay = self._layers.get(layer_id)
        if lay is None:
            raise ImageError(f"containers-storage: layer {layer_id[:12]} is missing")
        if lay.incomplete:
            raise ImageError(f"containers-storage: layer {layer_id[:12]} is incomplete "
                             "(being written or deleted)")
        return lay

    def layer_order(self) -> list[str]:
        """Layer ids in layers.json order (c/storage writes mount records in this order)."""
        return list(self._layer_order)

    def chain(self, image: CSImage) -> list[CSLayer]:
        """The image's layers, base first, each checked to have its ``diff/``."""
        out: list[CSLayer] = []
        lid = image.top_layer
        while lid:
            if len(out) > 1000:
                raise ImageError(f"containers-storage: image {image.short_id}: layer loop")
            lay = self.layer(lid)
            if not os.path.isdir(self.diff_path(lay)):
                raise ImageError(f"containers-storage: layer {lay.id[:12]} of image "
                                 f"{image.short_id} has no diff/ directory")
            out.append(lay)
            lid = lay.parent
        out.reverse()
        return out

    def big_data(self, image: CSImage, key: str, limit: int = 64 << 20) -> bytes:
        p = self.path("overlay-images", image.id, big_data_name(key))
        try:
            with open(p, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise ImageError(f"containers-storage: image {image.short_id}: cannot read "
                             f"{key!r}: {e.strerror}") from None
        if len(data) > limit:
            raise ImageError(f"containers-storage: image {image.short_id}: {key!r} too large")
        return data

    def raw_config(self, image: CSImage) -> bytes:
        return self.big_data(image, "sha256:" + image.id)

    def config(self, image: CSImage) -> dict[str, Any]:
        try:
            doc = loads(self.raw_config(image))
        except ValueError:
            raise ImageError(f"containers-storage: image {image.short_id}: config is not "
                             "JSON") from None
        if not isinstance(doc, dict):
            raise ImageError(f"containers-storage: image {image.short_id}: bad config")
        return doc

    def raw_manifest(self, image: CSImage) -> bytes:
        return self.big_data(image, "manifest")

    # -- lookup --------------------------------------------------------------------------
    def lookup(self, ref: str) -> CSImage:
        """The image ``ref`` names, as podman resolves it: a full id or unique id prefix,
        an exact name, then for short names ``localhost/NAME`` and each unqualified-search
        registry; ``:latest`` is implied."""
        ref = ref.removeprefix("sha256:")
        if not ref:
            raise BadReferenceError("containers-storage: empty image reference")
        by_name = {n: img for img in self._images for n in img.names}
        if ref in by_name:
            return by_name[ref]
        if _is_hex_id(ref):
            hits = [img for img in self._images if img.id.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise BadReferenceError(f"containers-storage: id prefix {ref!r} is ambiguous "
                                      f"({len(hits)} images)")
        for cand in candidate_names(ref):
            if cand in by_name:
                return by_name[cand]
        # libimage's last resort for a short name: a stored name whose repository ends in
        # "/" + the short repository, with the same tag or digest
        wanted = candidate_names(ref)[0].removeprefix("localhost/")
        if not _is_qualified(ref):
            found = {img.id: img for n, img in by_name.items() if n.endswith("/" + wanted)}
            if len(found) == 1:
                return next(iter(found.values()))
            if len(found) > 1:
                raise BadReferenceError(f"containers-storage: short name {ref!r} matches "
                                        f"{len(found)} images; give the full name")
        raise BadReferenceError(f"containers-storage: no image {ref!r} in "
                              f"{self.graph_root}")


def candidate_names(ref: str) -> list[str]:
    """Fully qualified names a reference may mean, in podman's order."""
    name, sep, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if not sep and ":" not in last:
        name += ":latest"
    tail = f"@{digest}" if sep else ""
    first = name.split("/", 1)[0]
    if _is_qualified(name):
        out = [name + tail]
        if first == "docker.io" and name.count("/") == 1:
            out.append(name.replace("docker.io/", "docker.io/library/", 1) + tail)
        return out
    out = [f"localhost/{name}{tail}"]
    for reg in search_registries():
        out.append(f"{reg}/{name}{tail}")
        if reg == "docker.io" and "/" not in name:
            out.append(f"docker.io/library/{name}{tail}")
    return out


def _is_qualified(ref: str) -> bool:
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")


def _read_json_list(path: str, required: bool) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if required:
            raise StoreError(f"{path}: missing; not a containers/storage store") from None
        return []
    except OSError as e:
        raise StoreError(f"{path}: cannot read: {e.strerror}") from None
    if not raw.strip():
        return []
    try:
        doc = loads(raw)
    except ValueError:
        raise StoreError(f"{path}: not valid JSON") from None
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise StoreError(f"{path}: not a list of records")
    return doc


def _layer_from_json(r: dict[str, Any], where: str) -> CSLayer:
    lid = r.get("id")
    if not isinstance(lid, str) or not lid:
        raise StoreError(f"{where}: a layer record has no id")
    flags = r.get("flags") or {}
    return CSLayer(
        id=lid,
        parent=str(r.get("parent") or ""),
        diff_id=str(r.get("diff-digest") or ""),
        compressed_digest=str(r.get("compressed-diff-digest") or ""),
        compressed_size=int(r.get("compressed-size") or 0),
        size=int(r.get("diff-size") or 0),
        uid_set=tuple(int(u) for u in r.get("uidset") or ()),
        incomplete=bool(isinstance(flags, dict) and flags.get("incomplete")),
    )


def _image_from_json(r: dict[str, Any], where: str) -> CSImage:
    iid = r.get("id")
    if not isinstance(iid, str) or not iid:
        raise StoreError(f"{where}: an image record has no id")
    return CSImage(
        id=iid,
        names=tuple(str(n) for n in r.get("names") or ()),
        top_layer=str(r.get("layer") or ""),
        digest=str(r.get("digest") or ""),
        created=str(r.get("created") or ""),
        big_data=tuple(str(n) for n in r.get("big-data-names") or ()),
    )
