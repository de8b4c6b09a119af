"""Removing images, collecting garbage, and finding and repairing what a crash left.

Functions over a store's core, knowing nothing of mounts: where a mount must stop a removal
or be checked with the store, the caller hands in a ``guard`` or ``also`` that runs under the
same lock (``imgscan.housekeeping`` does, for the command line).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

from imgscan.errors import ImageInUseError
from imgscan.images.digest import hex_of
from imgscan.store import leases
from imgscan.store.core import StoreCore, rmtree
from imgscan.store.lock import is_abandoned
from imgscan.store.records import ImageRecord, LayerRecord, Problem, resolve_image

#: called under the exclusive lock with each image about to be removed and ``force``;
#: it raises to refuse, or releases whatever holds the image
RemoveGuard = Callable[[ImageRecord, bool], None]
#: more checks run under the same lock as the store's own, with ``repair``
ExtraCheck = Callable[[bool], list[Problem]]


def remove(store: StoreCore, refs: Iterable[str], force: bool = False,
           guard: RemoveGuard | None = None) -> list[ImageRecord]:
    """Remove images and the layers no other image uses; ``guard`` sees each one first.

    An image that a process is reading (a lease, see leases.py) is refused, naming the
    process; with ``force`` the removal waits for the readers to finish, outside the lock
    they may need, and looks again."""
    refs = list(refs)
    while True:
        targets, readers = _try_remove(store, refs, force, guard)
        if not readers:
            break
        for holder in readers:
            leases.wait_for(holder)
    store.empty_trash()
    drop_stale_cache(store)
    return targets


def _try_remove(store: StoreCore, refs: list[str], force: bool, guard: RemoveGuard | None,
                ) -> tuple[list[ImageRecord], list[leases.LeaseHolder]]:
    """One attempt under the exclusive lock: the removed images, or (with ``force``) the
    leases to wait for before trying again."""
    with store.lock.exclusive():
        meta = store.meta()
        targets: list[ImageRecord] = []
        for ref in refs:
            img = resolve_image(meta, ref)
            if img not in targets:
                targets.append(img)
        busy = [(img, h) for img in targets for h in leases.holders(store, img.id)]
        if busy and force and all(h.pid != os.getpid() for _, h in busy):
            return [], [h for _, h in busy]
        if busy:
            raise ImageInUseError(_in_use_message(busy))
        if guard is not None:
            for img in targets:
                guard(img, force)
        new = meta.copy()
        for img in targets:
            del new.images[img.id]
        doomed = [c for c in new.layers if not new.layer_users(c)]
        for c in doomed:
            del new.layers[c]
        store._write_meta(new)
        for c in doomed:
            _drop_layer_files(store, c, meta.layers[c])
        for img in targets:
            with contextlib.suppress(FileNotFoundError):
                store.to_trash(store.image_dir(img.id))
    return targets, []


def _in_use_message(busy: list[tuple[ImageRecord, leases.LeaseHolder]]) -> str:
    img = busy[0][0]
    readers = ", ".join(h.describe() for _, h in busy)
    what = "it finishes" if len(busy) == 1 else "they finish"
    return (f"image {img.short_id} ({', '.join(img.names) or 'no name'}) is in use by "
            f"{readers}; wait until {what}, or use --force to wait for "
            f"{'it' if len(busy) == 1 else 'them'} and then remove")


def _drop_layer_files(store: StoreCore, chain: str, rec: LayerRecord) -> None:
    link = store.path("l", rec.link)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    with contextlib.suppress(FileNotFoundError):
        store.to_trash(store.layer_path(chain))


def drop_stale_cache(store: StoreCore) -> None:
    """Forget analyzer results of layers no longer in the store (results are keyed by
    diff_id, which several chains may share, so only unused diff_ids go)."""
    with store.reading() as meta:
        live = {rec.diff_id for rec in meta.layers.values()}
    cache = store.path("cache")
    for name in os.listdir(cache):
        if "sha256:" + name not in live and len(name) == 64:
            rmtree(os.path.join(cache, name))


def gc(store: StoreCore) -> list[str]:
    """Drop layers that no image uses, and stale cache entries; returns the chain ids."""
    with store.writing() as meta:
        doomed = [c for c in meta.layers if not meta.layer_users(c)]
        old = dict(meta.layers)
        for c in doomed:
            del meta.layers[c]
    for c in doomed:
        _drop_layer_files(store, c, old[c])
    store.empty_trash()
    drop_stale_cache(store)
    return doomed


def check(store: StoreCore, repair: bool = False,
          also: ExtraCheck | None = None) -> list[Problem]:
    """Find what a crash left half done; with ``repair`` remove it. ``also`` runs under the
    same lock as the metadata checks, so what it sees agrees with them."""
    problems: list[Problem] = []
    for name in sorted(os.listdir(store.path("staging"))):
        sdir = store.path("staging", name)
        if is_abandoned(os.path.join(sdir, ".owner")):
            problems.append(Problem("staging", sdir, "abandoned import (process died)"))
            if repair:
                rmtree(sdir)
    for name in sorted(os.listdir(store.path("trash"))):
        problems.append(Problem("trash", store.path("trash", name), "removal not finished"))
    if repair:
        store.empty_trash()
    with store.lock.exclusive() if repair else store.lock.shared():
        problems += _check_layers(store, repair)
        problems += _check_images(store, repair)
        problems += _check_leases(store, repair)
        if also is not None:
            problems += also(repair)
    if repair:
        store.empty_trash()
    return problems


def _check_layers(store: StoreCore, repair: bool) -> list[Problem]:
    """Layer directories and short links against the metadata (under a lock)."""
    meta = store.meta()
    problems = _orphans(store, "layers", {hex_of(c) for c in meta.layers}, "orphan-layer",
                        "layer directory not in metadata", store.to_trash if repair else None)
    problems += _orphans(store, "l", {rec.link for rec in meta.layers.values()},
                         "orphan-link", "short link of no layer", os.unlink if repair else None)
    for chain, rec in sorted(meta.layers.items()):
        d = store.diff_path(chain)
        if not os.path.isdir(d) or not os.path.isfile(store.index_path(chain)):
            problems.append(Problem("missing-layer", d, f"layer {chain} is missing "
                                    "its files; re-pull the images that use it",
                                    repairable=False))
        link = store.path("l", rec.link)
        if os.path.islink(link) is False:
            problems.append(Problem("missing-link", link, "short link missing"))
            if repair and os.path.isdir(d):
                store.link_layer(chain, rec.link)
    return problems


def _check_images(store: StoreCore, repair: bool) -> list[Problem]:
    """Image files and layer chains against the metadata (under a lock)."""
    meta = store.meta()
    problems = _orphans(store, "images", {hex_of(i) for i in meta.images},
                        "orphan-image-files", "image files not in metadata",
                        store.to_trash if repair else None)
    for img in meta.images.values():
        for c in img.layers:
            if c not in meta.layers:
                problems.append(Problem("dangling-image", img.id, f"image needs layer "
                                        f"{c}, which is not in the store", repairable=False))
        if not os.path.isfile(os.path.join(store.image_dir(img.id), "config.json")):
            problems.append(Problem("missing-config", img.id, "image config missing",
                                    repairable=False))
    return problems


def _check_leases(store: StoreCore, repair: bool) -> list[Problem]:
    """Lease files of readers that died (SIGKILL, a crash): harmless to ``rmi``, which
    sweeps them, but worth reporting and removing here (under a lock)."""
    problems = []
    for holder, why in leases.stale(store):
        problems.append(Problem("stale-lease", holder.path, why))
        if repair:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(holder.path)
    return problems


def _orphans(store: StoreCore, folder: str, known: set[str], kind: str, message: str,
             drop: Callable[[str], None] | None) -> list[Problem]:
    """Entries of ``folder`` that the metadata does not know; ``drop`` (when repairing)
    removes each one."""
    problems = []
    for name in sorted(os.listdir(store.path(folder))):
        if name not in known:
            p = store.path(folder, name)
            problems.append(Problem(kind, p, message))
            if drop is not None:
                drop(p)
    return problems
