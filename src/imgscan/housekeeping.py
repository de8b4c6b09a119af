"""What needs both the store and the mount records: removal that respects mounts, and a
``store check`` that covers mount records too.

``imgscan.store`` knows nothing of mounts and ``imgscan.mount`` nothing of the store's
internals; the command line and the API call these functions, which put the two together
under the store's lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from imgscan.errors import ImageInUseError
from imgscan.mount.mounts import MountTable
from imgscan.store.records import ImageRecord, Problem

if TYPE_CHECKING:
    from imgscan.store.store import Store


def remove_images(store: Store, refs: Iterable[str], force: bool = False) -> list[ImageRecord]:
    """Remove images and the layers no other image uses. A mounted image is refused (naming
    the mount point) unless ``force``, which unmounts it first: removing the layers under a
    scanner's mount is the failure imgscan exists to avoid."""
    mounts = MountTable(store)

    def release(img: ImageRecord, force: bool) -> None:
        mounts.clear_strays_for(img.id)
        rec = mounts.record_for(img.id)
        if rec is None:
            return
        if not force:
            # one umount only decrements a count above one: say what really frees it
            how = (f"'imgscan umount {rec.path}'" if rec.count == 1 else
                   f"'imgscan umount --force {rec.path}' (it is mounted {rec.count} "
                   "times; a plain umount only lowers the count)")
            raise ImageInUseError(
                f"image {img.short_id} ({', '.join(img.names) or 'no name'}) is "
                f"mounted at {rec.path} (mount count {rec.count}); run {how} first, "
                "or use --force"
            )
        mounts.unmount_locked(img.id, force=True)

    return store.remove(refs, force, guard=release)


def check_store(store: Store, repair: bool = False) -> list[Problem]:
    """The store's own checks and the mount records', under one lock."""
    mounts = MountTable(store)

    def check_mounts(repair: bool) -> list[Problem]:
        return [Problem(p.kind, p.path, p.message, p.repairable)
                for p in mounts.check_locked(repair)]

    return store.check(repair, also=check_mounts)


def collect_garbage(store: Store) -> list[str]:
    """Drop layers no image uses. A mount holds its image, and an image its layers, so no
    mounted layer is ever unused: gc needs no mount records, only the store's lock."""
    return store.gc()
