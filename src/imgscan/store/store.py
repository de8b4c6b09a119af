"""The copy-on-write layer store: content-addressed layers shared between images.

Layout under the store root::

    store.lock              fcntl lock + last-writer token (see lock.py)
    store.json              images and layers, written atomically under the exclusive lock
    layers/<chain-hex>/diff   a layer's files;  layers/<chain-hex>/index  its tar metadata
    l/<short-id>            -> ../layers/<chain-hex>/diff (short names for long overlay stacks)
    images/<id-hex>/        the raw manifest and config of an image
    staging/<random>/       imports in progress, each guarded by an owner lock
    trash/                  removed layers waiting to be deleted outside the lock
    cache/                  per-layer analyzer results
    run/                    mount records and mount points (see mount/mounts.py)

Writers never hold the lock while downloading or decompressing: layers are staged first,
then the exclusive lock is taken only to rename them into place and write ``store.json``.
A process killed at any point leaves the store readable; ``check(repair=True)`` (or the
next writer) removes what is incomplete.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from imgscan.errors import ImageError, ImageInUseError, ReferenceError_, StoreError
from imgscan.images.digest import hex_of
from imgscan.atomic import write_atomic, write_json_atomic
from imgscan.store.limits import ExtractLimits
from imgscan.store.lock import OwnerLock, StoreLock, is_abandoned

if TYPE_CHECKING:  # imported lazily: `imgscan mount` needs none of the import machinery
    from imgscan.images.interface import LayerInfo, SourceImage

STORE_VERSION = 1
SHORT_ID_LEN = 10


def _fault(point: str) -> None:
    """Crash-test hook: ``IMGSCAN_CRASH_AT=<point>`` kills this process with SIGKILL there,
    so tests can prove that a pull killed at any stage leaves a readable, repairable store.
    Points: ``stage`` (staging made, nothing extracted), ``extract`` (inside a layer),
    ``commit`` (layers renamed into place, metadata not yet written)."""
    if os.environ.get("IMGSCAN_CRASH_AT") == point:
        import signal

        if _IN_WORKER:  # a layer worker: the pull as a whole dies, as with a real kill -9
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


#: set in the forked processes that extract layers in parallel
_IN_WORKER = False
#: what a forked layer worker needs: (store, image, staging dir, parents); set before forking
_FORK_JOB: tuple[Any, ...] | None = None


def _worker_init() -> None:
    """Layer workers die with the pull that forked them (PR_SET_PDEATHSIG): a pull killed
    with SIGKILL must not leave orphans extracting into a staging directory."""
    global _IN_WORKER
    _IN_WORKER = True
    from imgscan.procs import die_with_parent

    die_with_parent()


def _stage_in_worker(item: tuple[str, Any]) -> tuple[str, LayerRecord]:
    assert _FORK_JOB is not None
    store, img, staging, parents = _FORK_JOB
    chain, layer = item
    return chain, store._stage_layer(img, staging, chain, layer, parents[chain])


def default_root() -> str:
    """``$IMGSCAN_ROOT``, else /var/lib/imgscan for root, else the XDG data directory."""
    env = os.environ.get("IMGSCAN_ROOT")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/imgscan"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "imgscan")


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def normalize_name(name: str) -> str:
    """``name`` -> ``name:latest``; a name with a tag or digest is kept as it is."""
    if not name or any(c.isspace() for c in name):
        raise ReferenceError_(f"invalid image name {name!r}")
    last = name.rsplit("/", 1)[-1]
    if "@" in last or ":" in last:
        return name
    return name + ":latest"


@dataclass(frozen=True)
class LayerRecord:
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

    def layer_users(self, chain_id: str) -> list[ImageRecord]:
        return [i for i in self.images.values() if chain_id in i.layers]


@dataclass(frozen=True)
class Problem:
    """Something ``store check`` found; ``repairable`` ones are fixed by ``--repair``."""

    kind: str
    path: str
    message: str
    repairable: bool = True


class Store:
    """A store of images at ``root``. Safe to use from any number of processes at once."""

    def __init__(self, root: str | None = None, *, limits: ExtractLimits | None = None,
                 jobs: int | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self.limits = limits or ExtractLimits()
        self.jobs = jobs or min(4, os.cpu_count() or 1)
        try:
            for d in ("layers", "l", "images", "staging", "trash", "cache", "run"):
                os.makedirs(os.path.join(self.root, d), exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store at {self.root}: {e.strerror}") from None
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
        try:
            with open(self.path("store.json"), "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return StoreMeta()
        except (ValueError, OSError) as e:
            raise StoreError(f"store metadata {self.path('store.json')} is unreadable: {e}") \
                from None
        try:
            return StoreMeta.from_json(doc)
        except (TypeError, KeyError, AttributeError) as e:
            raise StoreError(f"store metadata is malformed: {e}") from None

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
            meta = self.meta()
            new = StoreMeta(dict(meta.images), dict(meta.layers))
            yield new
            self._write_meta(new)

    # -- queries ---------------------------------------------------------------------------
    def images(self) -> list[ImageRecord]:
        with self.reading() as meta:
            return sorted(meta.images.values(), key=lambda i: (-i.pulled, i.id))

    def lookup(self, ref: str) -> ImageRecord:
        with self.reading() as meta:
            return resolve_image(meta, ref)

    def layer(self, chain_id: str) -> LayerRecord:
        with self.reading() as meta:
            rec = meta.layers.get(chain_id)
        if rec is None:
            raise StoreError(f"layer {chain_id} is not in the store")
        return rec

    def raw_manifest(self, image: ImageRecord) -> bytes:
        return _read(os.path.join(self.image_dir(image.id), "manifest.json"))

    def raw_config(self, image: ImageRecord) -> bytes:
        return _read(os.path.join(self.image_dir(image.id), "config.json"))

    def config(self, image: ImageRecord) -> dict[str, Any]:
        return json.loads(self.raw_config(image))

    # -- import ----------------------------------------------------------------------------
    def import_image(self, img: SourceImage, names: Iterable[str] = (),
                     source: str = "") -> ImageRecord:
        """Import ``img`` (verifying every blob and diff_id) and name it; idempotent."""
        names = [normalize_name(n) for n in names]
        layers = img.layers
        chains = chain_ids(lay.diff_id for lay in layers)
        image_id = img.image_id
        staging = self._new_staging()
        try:
            wanted: dict[str, LayerInfo] = dict(zip(chains, layers, strict=True))
            staged: dict[str, LayerRecord] = {}
            write_atomic(os.path.join(staging.path, "manifest.json"), img.raw_manifest)
            write_atomic(os.path.join(staging.path, "config.json"), img.raw_config)
            _fault("stage")
            for _attempt in range(5):
                with self.reading() as meta:
                    missing = [c for c in chains if c not in meta.layers and c not in staged]
                staged.update(self._stage_layers(img, staging.path,
                                                 [(c, wanted[c]) for c in missing], chains))
                with self.lock.exclusive():
                    meta = self.meta()
                    gone = [c for c in chains if c not in meta.layers and c not in staged]
                    if gone:  # removed by another process since we looked: stage them too
                        continue
                    new = StoreMeta(dict(meta.images), dict(meta.layers))
                    self._commit_layers(new, staged, staging.path)
                    _fault("commit")
                    rec = self._image_record(img, image_id, chains, names, new, source)
                    self._commit_image_files(staging.path, image_id)
                    new.images[image_id] = rec
                    self._write_meta(new)
                    return rec
            raise StoreError("could not commit the image: its layers kept being removed")
        finally:
            staging.discard()

    @staticmethod
    def _claim_names(meta: StoreMeta, image_id: str, names: Iterable[str]) -> list[str]:
        """The names an image will have: its old ones plus ``names``, each taken away from
        any other image that had it (a name points at one image)."""
        old = meta.images.get(image_id)
        all_names = list(old.names) if old else []
        for n in names:
            for other_id, other in list(meta.images.items()):
                if other_id != image_id and n in other.names:
                    meta.images[other_id] = _with_names(other, [x for x in other.names
                                                                if x != n])
            if n not in all_names:
                all_names.append(n)
        return all_names

    def _image_record(self, img: SourceImage, image_id: str, chains: list[str],
                      names: list[str], meta: StoreMeta, source: str) -> ImageRecord:
        old = meta.images.get(image_id)
        all_names = self._claim_names(meta, image_id, names)
        c = img.config
        return ImageRecord(
            id=image_id,
            names=tuple(all_names),
            manifest_digest=img.manifest_digest,
            layers=tuple(chains),
            diff_ids=tuple(lay.diff_id for lay in img.layers),
            layer_digests=tuple(lay.digest for lay in img.layers),
            layer_sizes=tuple(lay.size for lay in img.layers),
            os=str(c.get("os") or ""),
            architecture=str(c.get("architecture") or ""),
            variant=str(c.get("variant") or ""),
            created=str(c.get("created") or ""),
            pulled=time.time(),
            index_digest=img.index_digest,
            layer_media_types=tuple(lay.media_type for lay in img.layers),
            source=source or (old.source if old else ""),
        )

    def _commit_layers(self, meta: StoreMeta, staged: dict[str, LayerRecord],
                       staging: str) -> None:
        for chain, rec in staged.items():
            if chain in meta.layers:
                continue  # another process committed the same layer first
            dest = self.layer_path(chain)
            if os.path.lexists(dest):  # left by a crash between rename and metadata write
                self._to_trash(dest)
            os.rename(os.path.join(staging, hex_of(chain)), dest)
            link = self.path("l", rec.link)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(f"../layers/{hex_of(chain)}/diff", link)
            meta.layers[chain] = rec

    def _commit_image_files(self, staging: str, image_id: str) -> None:
        dest = self.image_dir(image_id)
        os.makedirs(dest, exist_ok=True)
        for name in ("manifest.json", "config.json"):
            os.replace(os.path.join(staging, name), os.path.join(dest, name))

    def _stage_layers(self, img: SourceImage, staging: str,
                      todo: list[tuple[str, LayerInfo]], chains: list[str]
                      ) -> dict[str, LayerRecord]:
        if not todo:
            return {}
        parents = {c: (chains[i - 1] if i else None) for i, c in enumerate(chains)}

        def one(item: tuple[str, LayerInfo]) -> tuple[str, LayerRecord]:
            chain, layer = item
            return chain, self._stage_layer(img, staging, chain, layer, parents[chain])

        from imgscan.progress import Progress

        out: dict[str, LayerRecord] = {}
        with Progress("importing layers", len(todo)) as bar:
            if len(todo) == 1 or self.jobs == 1:
                for t in todo:
                    chain, rec = one(t)
                    out[chain] = rec
                    bar.advance()
                return out
            for chain, rec in self._parallel(img, staging, todo, parents):
                out[chain] = rec
                bar.advance()
        return out

    def _parallel(self, img: SourceImage, staging: str, todo: list[tuple[str, LayerInfo]],
                  parents: dict[str, str | None]) -> Iterator[tuple[str, LayerRecord]]:
        """Extract several layers at once, one process per core: tar parsing is Python, so
        threads would queue on the GIL. Sources that survive a fork (files read with pread
        or opened per blob) are read by the workers directly; a registry, whose connection
        pool must not be shared across a fork, is downloaded first by threads."""
        import concurrent.futures as cf
        import multiprocessing

        workers = min(self.jobs, len(todo))
        biggest_first = sorted(todo, key=lambda t: -t[1].size)
        source: Any = img
        if not getattr(img.source, "fork_safe", True):
            # a registry: download the blobs first (threads, verified), then extract the
            # local copies in processes like any file source
            source = _DownloadedLayers(img, os.path.join(staging, ".blobs"),
                                       [lay for _, lay in biggest_first], workers)
        global _FORK_JOB
        _FORK_JOB = (self, source, staging, parents)
        try:
            with cf.ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                                        initializer=_worker_init) as pool:
                yield from pool.map(_stage_in_worker, biggest_first)
        finally:
            _FORK_JOB = None

    def _stage_layer(self, img: SourceImage, staging: str, chain: str, layer: LayerInfo,
                     parent: str | None) -> LayerRecord:
        from imgscan.images.compression import open_decompressed
        from imgscan.images.digest import HashingReader
        from imgscan.store.extract import extract_layer
        from imgscan.store.layerindex import save_index

        ldir = os.path.join(staging, hex_of(chain))
        if os.path.exists(ldir):
            shutil.rmtree(ldir)
        os.makedirs(os.path.join(ldir, "diff"))
        what = f"layer {layer.index} ({layer.diff_id})"
        with img.open_layer(layer) as raw:
            tar_stream = HashingReader(
                open_decompressed(raw, what), layer.diff_id, f"{what}: diff_id",
                max_bytes=self.limits.max_bytes,
            )
            # tarfile reads 10 KiB at a time: a buffer serves those reads in C, while the
            # decompressor and the hashes below it work on 1 MiB chunks
            stream: Any = io.BufferedReader(_RawReader(tar_stream), 1 << 20)
            if os.environ.get("IMGSCAN_CRASH_AT") == "extract":
                stream = _CrashAfter(stream, 256 << 10)
            result = extract_layer(stream, os.path.join(ldir, "diff"), self.limits)
            tar_stream.drain()
            if isinstance(raw, HashingReader):
                raw.drain()
        save_index(os.path.join(ldir, "index"), result.entries)
        return LayerRecord(
            chain_id=chain,
            diff_id=layer.diff_id,
            parent=parent,
            size=tar_stream.count,
            entries=len(result.entries),
            link=_short_id(),
            whiteouts=result.whiteout_format,
            created=time.time(),
        )

    def adopt(self, other: Store, image: ImageRecord, names: Iterable[str] = ()) -> ImageRecord:
        """Move an image from another store on the same filesystem (the quarantine of
        ``pull --vet``) into this one: its layers are renamed, not copied or re-downloaded."""
        names = [normalize_name(n) for n in names]
        with other.reading() as theirs:
            layer_recs = {c: theirs.layers[c] for c in image.layers}
        with self.lock.exclusive():
            meta = self.meta()
            new = StoreMeta(dict(meta.images), dict(meta.layers))
            for chain in image.layers:
                if chain in new.layers:
                    continue
                rec = replace(layer_recs[chain], link=_short_id())
                dest = self.layer_path(chain)
                if os.path.lexists(dest):
                    self._to_trash(dest)
                os.rename(other.layer_path(chain), dest)
                os.symlink(f"../layers/{hex_of(chain)}/diff", self.path("l", rec.link))
                new.layers[chain] = rec
            dest_dir = self.image_dir(image.id)
            os.makedirs(dest_dir, exist_ok=True)
            for name in ("manifest.json", "config.json"):
                write_atomic(os.path.join(dest_dir, name),
                             _read(os.path.join(other.image_dir(image.id), name)))
            all_names = self._claim_names(new, image.id, [*image.names, *names])
            adopted = replace(image, names=tuple(all_names), pulled=time.time())
            new.images[image.id] = adopted
            self._write_meta(new)
        self.empty_trash()
        return adopted

    # -- staging and trash -----------------------------------------------------------------
    def _new_staging(self) -> _Staging:
        return _Staging(self.path("staging", secrets.token_hex(8)))

    @contextlib.contextmanager
    def quarantine(self) -> Iterator[Store]:
        """A throw-away store inside this one's staging area (same filesystem, so an image
        that passes vetting moves in by rename). It disappears when the block ends; if the
        process dies, ``check --repair`` removes it like any abandoned staging directory."""
        staging = self._new_staging()
        try:
            yield Store(os.path.join(staging.path, "quarantine"), limits=self.limits,
                        jobs=self.jobs)
        finally:
            staging.discard()

    def _to_trash(self, path: str) -> None:
        os.rename(path, self.path("trash", f"{os.path.basename(path)}-{secrets.token_hex(4)}"))

    def empty_trash(self) -> None:
        trash = self.path("trash")
        for name in os.listdir(trash):
            _rmtree(os.path.join(trash, name))

    # -- tag and remove --------------------------------------------------------------------
    def tag(self, ref: str, name: str) -> ImageRecord:
        name = normalize_name(name)
        with self.writing() as meta:
            image = resolve_image(meta, ref)
            for other in list(meta.images.values()):
                if other.id != image.id and name in other.names:
                    meta.images[other.id] = _with_names(other, [x for x in other.names
                                                                if x != name])
            if name not in image.names:
                image = _with_names(image, [*image.names, name])
            meta.images[image.id] = image
        return image

    def remove(self, refs: Iterable[str], force: bool = False) -> list[ImageRecord]:
        """Remove images and the layers no other image uses. A mounted image is refused
        (naming the mount point) unless ``force``, which unmounts it first."""
        from imgscan.mount.mounts import MountTable

        refs = list(refs)
        mounts = MountTable(self)
        with self.lock.exclusive():
            meta = self.meta()
            targets = []
            for ref in refs:
                img = resolve_image(meta, ref)
                if img not in targets:
                    targets.append(img)
            for img in targets:
                mounts.clear_strays_for(img.id)
                rec = mounts.record_for(img.id)
                if rec is not None:
                    if not force:
                        raise ImageInUseError(
                            f"image {img.short_id} ({', '.join(img.names) or 'no name'}) is "
                            f"mounted at {rec.path} (mount count {rec.count}); run "
                            f"'imgscan umount {rec.path}' first, or use --force"
                        )
                    mounts.unmount_locked(img.id, force=True)
            new = StoreMeta(dict(meta.images), dict(meta.layers))
            for img in targets:
                del new.images[img.id]
            doomed = [c for c in new.layers if not new.layer_users(c)]
            for c in doomed:
                del new.layers[c]
            self._write_meta(new)
            for c in doomed:
                self._drop_layer_files(c, meta.layers[c])
            for img in targets:
                with contextlib.suppress(FileNotFoundError):
                    self._to_trash(self.image_dir(img.id))
        self.empty_trash()
        self.drop_stale_cache()
        return targets

    def _drop_layer_files(self, chain: str, rec: LayerRecord) -> None:
        link = self.path("l", rec.link)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        with contextlib.suppress(FileNotFoundError):
            self._to_trash(self.layer_path(chain))

    def drop_stale_cache(self) -> None:
        """Forget analyzer results of layers no longer in the store (results are keyed by
        diff_id, which several chains may share, so only unused diff_ids go)."""
        with self.reading() as meta:
            live = {rec.diff_id for rec in meta.layers.values()}
        cache = self.path("cache")
        for name in os.listdir(cache):
            if "sha256:" + name not in live and len(name) == 64:
                _rmtree(os.path.join(cache, name))

    # -- check, repair, gc -----------------------------------------------------------------
    def check(self, repair: bool = False) -> list[Problem]:
        """Find what a crash left half done; with ``repair`` remove it."""
        problems: list[Problem] = []
        for name in sorted(os.listdir(self.path("staging"))):
            sdir = self.path("staging", name)
            if is_abandoned(os.path.join(sdir, ".owner")):
                problems.append(Problem("staging", sdir, "abandoned import (process died)"))
                if repair:
                    _rmtree(sdir)
        for name in sorted(os.listdir(self.path("trash"))):
            problems.append(Problem("trash", self.path("trash", name), "removal not finished"))
        if repair:
            self.empty_trash()
        with self.lock.exclusive() if repair else self.lock.shared():
            meta = self.meta()
            known = {hex_of(c) for c in meta.layers}
            for name in sorted(os.listdir(self.path("layers"))):
                if name not in known:
                    p = self.path("layers", name)
                    problems.append(Problem("orphan-layer", p, "layer directory not in metadata"))
                    if repair:
                        self._to_trash(p)
            links = {rec.link for rec in meta.layers.values()}
            for name in sorted(os.listdir(self.path("l"))):
                if name not in links:
                    p = self.path("l", name)
                    problems.append(Problem("orphan-link", p, "short link of no layer"))
                    if repair:
                        os.unlink(p)
            for chain, rec in sorted(meta.layers.items()):
                d = self.diff_path(chain)
                if not os.path.isdir(d) or not os.path.isfile(self.index_path(chain)):
                    problems.append(Problem("missing-layer", d, f"layer {chain} is missing "
                                            "its files; re-pull the images that use it",
                                            repairable=False))
                link = self.path("l", rec.link)
                if os.path.islink(link) is False:
                    problems.append(Problem("missing-link", link, "short link missing"))
                    if repair and os.path.isdir(d):
                        os.symlink(f"../layers/{hex_of(chain)}/diff", link)
            ids = {hex_of(i) for i in meta.images}
            for name in sorted(os.listdir(self.path("images"))):
                if name not in ids:
                    p = self.path("images", name)
                    problems.append(Problem("orphan-image-files", p, "image files not in "
                                            "metadata"))
                    if repair:
                        self._to_trash(p)
            for img in meta.images.values():
                for c in img.layers:
                    if c not in meta.layers:
                        problems.append(Problem("dangling-image", img.id, f"image needs layer "
                                                f"{c}, which is not in the store",
                                                repairable=False))
                if not os.path.isfile(os.path.join(self.image_dir(img.id), "config.json")):
                    problems.append(Problem("missing-config", img.id, "image config missing",
                                            repairable=False))
            from imgscan.mount.mounts import MountTable

            problems.extend(MountTable(self).check_locked(repair))
        if repair:
            self.empty_trash()
        return problems

    def gc(self) -> list[str]:
        """Drop layers that no image uses, and stale cache entries; returns the chain ids."""
        with self.writing() as meta:
            doomed = [c for c in meta.layers if not meta.layer_users(c)]
            old = dict(meta.layers)
            for c in doomed:
                del meta.layers[c]
        for c in doomed:
            self._drop_layer_files(c, old[c])
        self.empty_trash()
        self.drop_stale_cache()
        return doomed


class _DownloadedLayers:
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


class _RawReader(io.RawIOBase):
    """Lets ``io.BufferedReader`` sit on any object with ``read``."""

    def __init__(self, src: Any) -> None:
        self.src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.src.read(len(buf))
        n = len(data)
        buf[:n] = data
        return n


class _CrashAfter:
    """Crash-test hook: SIGKILL once ``limit`` bytes of a layer were read (mid-extraction)."""

    def __init__(self, raw: Any, limit: int) -> None:
        self.raw, self.left = raw, limit

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.left -= len(data)
        if self.left < 0:
            _fault("extract")
        return data


class _Staging:
    """A staging directory owned by this process for as long as it exists."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path)
        self.owner = OwnerLock(os.path.join(path, ".owner"))

    def discard(self) -> None:
        _rmtree(self.path)
        self.owner.release()


def resolve_image(meta: StoreMeta, ref: str) -> ImageRecord:
    """An image by name[:tag], full or unique-prefix id (with or without ``sha256:``), or
    manifest digest."""
    if not ref:
        raise ReferenceError_("empty image reference")
    for candidate in (ref, normalize_name(ref) if "@" not in ref else ref):
        for img in meta.images.values():
            if candidate in img.names:
                return img
    key = ref[7:] if ref.startswith("sha256:") else ref
    if len(key) >= 3 and all(c in "0123456789abcdef" for c in key):
        matches = [i for i in meta.images.values()
                   if hex_of(i.id).startswith(key) or hex_of(i.manifest_digest) == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(sorted(m.short_id for m in matches))
            raise ReferenceError_(f"image id prefix {ref!r} is ambiguous: it matches {ids}")
    for img in meta.images.values():
        if ref == img.manifest_digest:
            return img
    raise ReferenceError_(f"no image {ref!r} in the store (see 'imgscan images')")


def _with_names(img: ImageRecord, names: list[str]) -> ImageRecord:
    return replace(img, names=tuple(names))


def _short_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode()[:SHORT_ID_LEN]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None


def _rmtree(path: str) -> None:
    """Remove a tree even where the image made directories read-only."""

    def onerror(func: Any, p: str, exc: Any) -> None:
        parent = os.path.dirname(p)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IRWXU)
        with contextlib.suppress(OSError):
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
                shutil.rmtree(p, onerror=onerror)
            else:
                os.unlink(p)

    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=onerror)
        else:
            os.unlink(path)


__all__ = ["ImageError", "ImageRecord", "LayerRecord", "Problem", "Store", "chain_ids"]
