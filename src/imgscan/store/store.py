"""The copy-on-write layer store: content-addressed layers shared between images.

``Store`` puts the store's parts together for callers: the core (paths, locked metadata,
names, staging; core.py), the import pipeline (importer.py) and maintenance (removal, gc,
check and repair; maintenance.py). It knows nothing of mounts: ``imgscan.housekeeping``
composes removal and checks that must respect them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from imgscan.errors import ImageError
from imgscan.store.core import StoreCore, default_root

if TYPE_CHECKING:  # imported lazily: `imgscan mount` and a scan that streams its layers
    # need none of the import or maintenance machinery (nor the records, re-exported below)
    from imgscan.images.interface import SourceImage
    from imgscan.store.importer import ImportHooks
    from imgscan.store.maintenance import ExtraCheck, RemoveGuard
    from imgscan.store.records import (
        ImageRecord,
        LayerRecord,
        Problem,
        StoreMeta,
        chain_ids,
        normalize_name,
        resolve_image,
    )


class Store(StoreCore):
    """A store of images at ``root``. Safe to use from any number of processes at once."""

    #: where an import may be observed; None (no-op hooks) unless a test harness sets it
    import_hooks: ImportHooks | None = None

    def import_image(self, img: SourceImage, names: Iterable[str] = (),
                     source: str = "") -> ImageRecord:
        """Import ``img`` (verifying every blob and diff_id) and name it; idempotent."""
        from imgscan.store.importer import Importer

        return Importer(self, self.import_hooks).import_image(img, names, source)

    def adopt(self, other: StoreCore, image: ImageRecord,
              names: Iterable[str] = ()) -> ImageRecord:
        """Move an image from another store on the same filesystem (the quarantine of
        ``pull --vet``) into this one: its layers are renamed, not copied or re-downloaded."""
        from imgscan.store.importer import Importer

        return Importer(self, self.import_hooks).adopt(other, image, names)

    @contextlib.contextmanager
    def quarantine(self) -> Iterator[Store]:
        """A throw-away store inside this one's staging area (same filesystem, so an image
        that passes vetting moves in by rename). It disappears when the block ends; if the
        process dies, ``check --repair`` removes it like any abandoned staging directory."""
        staging = self.new_staging()
        try:
            q = Store(os.path.join(staging.path, "quarantine"), limits=self.limits,
                      jobs=self.jobs)
            q.import_hooks = self.import_hooks
            yield q
        finally:
            staging.discard()

    def remove(self, refs: Iterable[str], force: bool = False,
               guard: RemoveGuard | None = None) -> list[ImageRecord]:
        """Remove images and the layers no other image uses. The store alone does not know
        mounts: ``imgscan.housekeeping.remove_images`` refuses a mounted image (or with
        ``force`` unmounts it first) through ``guard``."""
        from imgscan.store import maintenance

        return maintenance.remove(self, refs, force, guard)

    def drop_stale_cache(self) -> None:
        """Forget analyzer results of layers no longer in the store."""
        from imgscan.store import maintenance

        maintenance.drop_stale_cache(self)

    def check(self, repair: bool = False, also: ExtraCheck | None = None) -> list[Problem]:
        """Find what a crash left half done; with ``repair`` remove it. Mount records are
        checked too by ``imgscan.housekeeping.check_store``, through ``also``."""
        from imgscan.store import maintenance

        return maintenance.check(self, repair, also)

    def gc(self) -> list[str]:
        """Drop layers that no image uses, and stale cache entries; returns the chain ids."""
        from imgscan.store import maintenance

        return maintenance.gc(self)


__all__ = ["ImageError", "ImageRecord", "LayerRecord", "Problem", "Store", "StoreMeta",
           "chain_ids", "default_root", "normalize_name", "resolve_image"]


_RECORDS = {"ImageRecord", "LayerRecord", "Problem", "StoreMeta", "chain_ids",
            "normalize_name", "resolve_image"}


def __getattr__(name: str) -> object:
    """The record types and helpers, from ``imgscan.store.records`` on first use."""
    if name in _RECORDS:
        from imgscan.store import records

        return getattr(records, name)
    raise AttributeError(name)
