"""The store's core: paths, locked metadata, queries, names, staging and trash.

Layout under the store root::

    store.lock              fcntl lock + last-writer token (see lock.py)
    store.json              images and layers, written atomically under the exclusive lock
    layers/<chain-hex>/diff   a layer's files;  layers/<chain-hex>/index  its tar metadata
    l/<short-id>            -> ../layers/<chain-hex>/diff (short names for long overlay stacks)
    images/<id-hex>/        the raw manifest and config of an image
    staging/<random>/       imports in progress, each guarded by an owner lock
    trash/                  removed layers waiting to be deleted outside the lock
    cache/                  per-layer analyzer results
    run/                    mount records and mount points (see imgscan.mount.mounts)

The import pipeline (importer.py) and maintenance (maintenance.py) build on this class;
``Store`` (store.py) puts them together. Nothing here knows about mounts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from imgscan.atomic import write_json_atomic
from imgscan.errors import StoreError
from imgscan.images.digest import hex_of
from imgscan.store.limits import ExtractLimits
from imgscan.store.lock import OwnerLock, StoreLock
from imgscan.store.root import default_root as default_root
from imgscan.store.root import prepare_root, read_store_json

if TYPE_CHECKING:  # the records are imported when the metadata is read: a scan that streams
    # its layers only needs the store's paths
    from imgscan.entrytable import EntryTable
    from imgscan.store.records import ImageRecord, LayerRecord, StoreMeta

SHORT_ID_LEN = 10


class StoreCore:
    """A store of images at ``root``. Safe to use from any number of processes at once."""

    def __init__(self, root: str | None = None, *, limits: ExtractLimits | None = None,
                 jobs: int | None = None, create: bool = True) -> None:
        self.limits = limits or ExtractLimits()
        self.jobs = jobs or min(4, os.cpu_count() or 1)
        self.root = prepare_root(root, create)
        self.lock = StoreLock(self.path("store.lock"))
        self._meta: StoreMeta | None = None
        self._token: bytes | None = None

    # -- paths -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def layer_path(self, chain_id: str) -> str:
        return self.path("layers", hex_of(chain_id))

    def diff_path(self, chain_id: str) -> str:
        return os.path.join(self.layer_path(chain_id), "diff")

    def index_path(self, chain_id: str) -> str:
        return os.path.join(self.layer_path(chain_id), "index")

    def layer_entries(self, chain_id: str) -> EntryTable:
        """The layer's tar entries with their original metadata (its index), for a scan."""
        from imgscan.store.layerindex import load_index

        return load_index(self.index_path(chain_id))

    def image_dir(self, image_id: str) -> str:
        return self.path("images", hex_of(image_id))

    # -- metadata --------------------------------------------------------------------------
    def meta(self) -> StoreMeta:
        """The metadata, reloaded only when another process committed since (token check).
        Call with a lock held."""
        token = self.lock.token()
        if self._meta is None or token != self._token:
            self._meta = self._read_meta()
            self._token = token
        return self._meta

    def _read_meta(self) -> StoreMeta:
        from imgscan.store.records import StoreMeta, meta_from_doc

        doc = read_store_json(self.path("store.json"))
        return StoreMeta() if doc is None else meta_from_doc(doc)

    def _write_meta(self, meta: StoreMeta) -> None:
        """Under the exclusive lock: token first, then the atomic rename of store.json."""
        self._token = self.lock.record_write()
        write_json_atomic(self.path("store.json"), meta.to_json())
        self._meta = meta

    @contextlib.contextmanager
    def reading(self) -> Iterator[StoreMeta]:
        with self.lock.shared():
            yield self.meta()

    @contextlib.contextmanager
    def writing(self) -> Iterator[StoreMeta]:
        """Exclusive access; the yielded metadata is written back when the block succeeds."""
        with self.lock.exclusive():
            new = self.meta().copy()
            yield new
            self._write_meta(new)

    # -- queries ---------------------------------------------------------------------------
    def images(self) -> list[ImageRecord]:
        with self.reading() as meta:
            return sorted(meta.images.values(), key=lambda i: (-i.pulled, i.id))

    def lookup(self, ref: str) -> ImageRecord:
        from imgscan.store.records import resolve_image

        with self.reading() as meta:
            return resolve_image(meta, ref)

    def layer(self, chain_id: str) -> LayerRecord:
        with self.reading() as meta:
            rec = meta.layers.get(chain_id)
        if rec is None:
            raise StoreError(f"layer {chain_id} is not in the store")
        return rec

    def raw_manifest(self, image: ImageRecord) -> bytes:
        return read_file(os.path.join(self.image_dir(image.id), "manifest.json"))

    def raw_config(self, image: ImageRecord) -> bytes:
        return read_file(os.path.join(self.image_dir(image.id), "config.json"))

    def config(self, image: ImageRecord) -> dict[str, Any]:
        return json.loads(self.raw_config(image))

    # -- names -----------------------------------------------------------------------------
    def tag(self, ref: str, name: str) -> ImageRecord:
        from imgscan.store.records import claim_names, normalize_name, resolve_image, with_names

        name = normalize_name(name)
        with self.writing() as meta:
            image = resolve_image(meta, ref)
            image = with_names(image, claim_names(meta, image.id, [name]))
            meta.images[image.id] = image
        return image

    # -- staging and trash -----------------------------------------------------------------
    def new_staging(self) -> Staging:
        return Staging(self.path("staging", os.urandom(8).hex()))

    def to_trash(self, path: str) -> None:
        os.rename(path, self.path("trash", f"{os.path.basename(path)}-{os.urandom(4).hex()}"))

    def empty_trash(self) -> None:
        trash = self.path("trash")
        for name in os.listdir(trash):
            rmtree(os.path.join(trash, name))

    def link_layer(self, chain_id: str, link: str) -> None:
        """The short name ``l/<link>`` of a layer's files, for long overlay stacks."""
        os.symlink(f"../layers/{hex_of(chain_id)}/diff", self.path("l", link))


class Staging:
    """A staging directory owned by this process for as long as it exists."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path)
        self.owner = OwnerLock(os.path.join(path, ".owner"))

    def discard(self) -> None:
        rmtree(self.path)
        self.owner.release()


def short_id() -> str:
    return base64.b32encode(os.urandom(10)).decode()[:SHORT_ID_LEN]


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None


def rmtree(path: str) -> None:
    """Remove a tree even where the image made directories read-only, and however deep it
    is (a layer may nest thousands of directories; shutil.rmtree recurses once per level
    and ends in RecursionError)."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    # several processes may empty the trash at once: what another removed is not an error
    stack: list[tuple[str, bool]] = [(path, False)]
    while stack:
        p, emptied = stack.pop()
        if emptied:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(p)
            continue
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IRWXU)  # a read-only directory of the image
        stack.append((p, True))
        try:
            it = os.scandir(p)
        except FileNotFoundError:
            continue
        with it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
