"""Importing an image into the store: stage every layer, then commit under the lock.

Writers never hold the lock while downloading or decompressing: layers are extracted into a
staging directory first (several at once, in forked processes), then the exclusive lock is
taken only to rename them into place and write ``store.json``. A process killed at any point
leaves the store readable; ``store check --repair`` (or the next writer) removes the rest.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imgscan.atomic import write_atomic
from imgscan.errors import StoreError
from imgscan.images.digest import hex_of
from imgscan.store.core import StoreCore, read_file, short_id
from imgscan.store.records import (
    ImageRecord,
    LayerRecord,
    StoreMeta,
    chain_ids,
    claim_names,
    normalize_name,
)

if TYPE_CHECKING:  # imported lazily: `imgscan mount` needs none of the import machinery
    from imgscan.images.interface import LayerInfo, SourceImage


class ImportHooks:
    """Points in an import where a test may step in; here they do nothing.

    The crash tests (tests/crashhooks.py) kill the process at these points to prove that a
    pull killed at any stage leaves a readable, repairable store. Points: ``stage`` (staging
    made, nothing extracted), ``commit`` (layers renamed into place, metadata not written);
    ``layer_stream`` wraps each uncompressed layer as it is extracted."""

    def at(self, point: str) -> None:
        """Called when the import reaches ``point``."""

    def layer_stream(self, stream: Any) -> Any:
        """The stream a layer is extracted from; a test may wrap it."""
        return stream


class Importer:
    """One import into ``store``: owns its staging directory and its pool of layer workers."""

    def __init__(self, store: StoreCore, hooks: ImportHooks | None = None) -> None:
        self.store = store
        self.hooks = hooks or ImportHooks()

    def import_image(self, img: SourceImage, names: Iterable[str] = (),
                     source: str = "") -> ImageRecord:
        """Import ``img`` (verifying every blob and diff_id) and name it; idempotent."""
        store = self.store
        names = [normalize_name(n) for n in names]
        layers = img.layers
        chains = chain_ids(lay.diff_id for lay in layers)
        image_id = img.image_id
        staging = store.new_staging()
        try:
            wanted: dict[str, LayerInfo] = dict(zip(chains, layers, strict=True))
            staged: dict[str, LayerRecord] = {}
            write_atomic(os.path.join(staging.path, "manifest.json"), img.raw_manifest)
            write_atomic(os.path.join(staging.path, "config.json"), img.raw_config)
            self.hooks.at("stage")
            for _attempt in range(5):
                with store.reading() as meta:
                    missing = [c for c in chains if c not in meta.layers and c not in staged]
                staged.update(self._stage_layers(img, staging.path,
                                                 [(c, wanted[c]) for c in missing], chains))
                with store.lock.exclusive():
                    meta = store.meta()
                    gone = [c for c in chains if c not in meta.layers and c not in staged]
                    if gone:  # removed by another process since we looked: stage them too
                        continue
                    new = meta.copy()
                    self._commit_layers(new, staged, staging.path)
                    self.hooks.at("commit")
                    rec = _image_record(img, image_id, chains, names, new, source)
                    self._commit_image_files(staging.path, image_id)
                    new.images[image_id] = rec
                    store._write_meta(new)
                    return rec
            raise StoreError("could not commit the image: its layers kept being removed")
        finally:
            staging.discard()

    def adopt(self, other: StoreCore, image: ImageRecord,
              names: Iterable[str] = ()) -> ImageRecord:
        """Move an image from another store on the same filesystem (the quarantine of
        ``pull --vet``) into this one: its layers are renamed, not copied or re-downloaded."""
        store = self.store
        names = [normalize_name(n) for n in names]
        with other.reading() as theirs:
            layer_recs = {c: theirs.layers[c] for c in image.layers}
        with store.lock.exclusive():
            new = store.meta().copy()
            for chain in image.layers:
                if chain in new.layers:
                    continue
                rec = replace(layer_recs[chain], link=short_id())
                dest = store.layer_path(chain)
                if os.path.lexists(dest):
                    store.to_trash(dest)
                os.rename(other.layer_path(chain), dest)
                store.link_layer(chain, rec.link)
                new.layers[chain] = rec
            dest_dir = store.image_dir(image.id)
            os.makedirs(dest_dir, exist_ok=True)
            for name in ("manifest.json", "config.json"):
                write_atomic(os.path.join(dest_dir, name),
                             read_file(os.path.join(other.image_dir(image.id), name)))
            all_names = claim_names(new, image.id, [*image.names, *names])
            adopted = replace(image, names=tuple(all_names), pulled=time.time())
            new.images[image.id] = adopted
            store._write_meta(new)
        store.empty_trash()
        return adopted

    # -- commit ----------------------------------------------------------------------------
    def _commit_layers(self, meta: StoreMeta, staged: dict[str, LayerRecord],
                       staging: str) -> None:
        store = self.store
        for chain, rec in staged.items():
            if chain in meta.layers:
                continue  # another process committed the same layer first
            dest = store.layer_path(chain)
            if os.path.lexists(dest):  # left by a crash between rename and metadata write
                store.to_trash(dest)
            os.rename(os.path.join(staging, hex_of(chain)), dest)
            link = store.path("l", rec.link)
            if os.path.lexists(link):
                os.unlink(link)
            store.link_layer(chain, rec.link)
            meta.layers[chain] = rec

    def _commit_image_files(self, staging: str, image_id: str) -> None:
        dest = self.store.image_dir(image_id)
        os.makedirs(dest, exist_ok=True)
        for name in ("manifest.json", "config.json"):
            os.replace(os.path.join(staging, name), os.path.join(dest, name))

    # -- staging ---------------------------------------------------------------------------
    def _stage_layers(self, img: SourceImage, staging: str,
                      todo: list[tuple[str, LayerInfo]], chains: list[str]
                      ) -> dict[str, LayerRecord]:
        if not todo:
            return {}
        parents = {c: (chains[i - 1] if i else None) for i, c in enumerate(chains)}
        from imgscan.progress import Progress

        out: dict[str, LayerRecord] = {}
        with Progress("importing layers", len(todo)) as bar:
            if len(todo) == 1 or self.store.jobs == 1:
                staged: Iterable[tuple[str, LayerRecord]] = (
                    (chain, self._stage_layer(img, staging, chain, layer, parents[chain]))
                    for chain, layer in todo)
            else:
                staged = self._parallel(img, staging, todo, parents)
            for chain, rec in staged:
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

        from imgscan.store.download import DownloadedLayers

        workers = min(self.store.jobs, len(todo))
        biggest_first = sorted(todo, key=lambda t: -t[1].size)
        source: Any = img
        if not getattr(img.source, "fork_safe", True):
            # a registry: download the blobs first (threads, verified), then extract the
            # local copies in processes like any file source
            source = DownloadedLayers(img, os.path.join(staging, ".blobs"),
                                      [lay for _, lay in biggest_first], workers)
        # the job reaches each worker through the fork itself (initargs are not pickled by
        # the fork context), so two imports in one process never share it
        job = _WorkerJob(self, source, staging, parents)
        with cf.ProcessPoolExecutor(workers, multiprocessing.get_context("fork"),
                                    initializer=_WorkerJob.enter, initargs=(job,)) as pool:
            yield from pool.map(_WorkerJob.run, biggest_first)

    def _stage_layer(self, img: SourceImage, staging: str, chain: str, layer: LayerInfo,
                     parent: str | None) -> LayerRecord:
        from imgscan.images.compression import open_decompressed
        from imgscan.images.digest import HashingReader
        from imgscan.store.extract import extract_layer
        from imgscan.store.layerindex import save_index

        limits = self.store.limits
        ldir = os.path.join(staging, hex_of(chain))
        if os.path.exists(ldir):
            shutil.rmtree(ldir)
        os.makedirs(os.path.join(ldir, "diff"))
        what = f"layer {layer.index} ({layer.diff_id})"
        with img.open_layer(layer) as raw:
            tar_stream = HashingReader(
                open_decompressed(raw, what), layer.diff_id, f"{what}: diff_id",
                max_bytes=limits.max_bytes,
            )
            # tarfile reads 10 KiB at a time: a buffer serves those reads in C, while the
            # decompressor and the hashes below it work on 1 MiB chunks
            stream: Any = io.BufferedReader(_RawReader(tar_stream), 1 << 20)
            stream = self.hooks.layer_stream(stream)
            result = extract_layer(stream, os.path.join(ldir, "diff"), limits)
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
            link=short_id(),
            whiteouts=result.whiteout_format,
            created=time.time(),
        )


class _WorkerJob:
    """What a forked layer worker needs: the importer, the source, staging dir, parents."""

    #: set once in each forked worker by ``enter``; never set in the importing process
    current: _WorkerJob | None = None

    def __init__(self, importer: Importer, source: Any, staging: str,
                 parents: dict[str, str | None]) -> None:
        self.importer, self.source, self.staging, self.parents = importer, source, staging, \
            parents

    @staticmethod
    def enter(job: _WorkerJob) -> None:
        """Layer workers die with the pull that forked them (PR_SET_PDEATHSIG): a pull
        killed with SIGKILL must not leave orphans extracting into a staging directory."""
        from imgscan.procs import die_with_parent

        die_with_parent()
        _WorkerJob.current = job

    @staticmethod
    def run(item: tuple[str, Any]) -> tuple[str, LayerRecord]:
        job = _WorkerJob.current
        assert job is not None
        chain, layer = item
        return chain, job.importer._stage_layer(job.source, job.staging, chain, layer,
                                                job.parents[chain])


def _image_record(img: SourceImage, image_id: str, chains: list[str], names: list[str],
                  meta: StoreMeta, source: str) -> ImageRecord:
    old = meta.images.get(image_id)
    all_names = claim_names(meta, image_id, names)
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


