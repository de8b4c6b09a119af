"""Mounting, as public API light enough for a command typed in a loop.

``imgscan mount`` and ``umount`` are start-up bound: the mount itself takes microseconds and
the interpreter milliseconds. ``imgscan.api`` serves every use of imgscan and imports
accordingly; this module imports only the mount records (``imgscan.mount.mounts``) and a
lean view of the store (``imgscan.store.view``), which follow the store's locking and
record rules. ``imgscan.api.mount`` and ``unmount`` come here when handed no open store.
"""

from __future__ import annotations

from imgscan.otherstores import is_other_store_ref as is_other_store_ref
from imgscan.otherstores import mount_other as mount_other
from imgscan.otherstores import umount_other as umount_other

TYPE_CHECKING = False
if TYPE_CHECKING:
    from imgscan.mount.mounts import LayerStore, MountRecord

__all__ = ["is_other_store_ref", "mount", "mount_other", "umount_other", "unmount"]


def mount(ref: str, mountpoint: str | None = None, driver: str = "auto",
          root: str | None = None, store: LayerStore | None = None) -> MountRecord:
    """Mount an image of the store at ``root`` (or of an open ``store``) read-only, or count
    one more user of its mount; its record."""
    from imgscan.mount.mounts import MountTable

    return MountTable(store or _view(root)).mount(ref, mountpoint, driver)


def unmount(target: str, force: bool = False, root: str | None = None,
            store: LayerStore | None = None) -> MountRecord | None:
    """Count one user less of an image's mount (an image or its path), unmounting at zero."""
    from imgscan.mount.mounts import MountTable

    return MountTable(store or _view(root)).unmount(target, force=force)


def _view(root: str | None) -> LayerStore:
    """The lean view of the store at ``root``: what a mount reads, as the store reads it."""
    from imgscan.store.view import StoreView

    return StoreView(root)
