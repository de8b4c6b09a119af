"""Mount records: which images are mounted where, with a count, shared by all processes.

The records live in the store's ``run/mounts.json`` and change only under the store's
exclusive lock. A record is never trusted blindly: if its mount point is no longer in
``/proc/self/mountinfo`` (unmounted from outside, ``umount -l``) or it was written before the
last boot, it is stale and is dropped (and the image mounted afresh when asked).

This package does not import the store: a ``MountTable`` works on any object shaped like
``LayerStore`` below (``imgscan.store.store.Store`` is one), so the store stays unaware of
mounts while ``imgscan.housekeeping`` composes the two.
"""

from __future__ import annotations

import errno
import os

from imgscan.atomic import write_json_atomic
from imgscan.errors import MountError
from imgscan.hexid import hex_of
from imgscan.mount import overlay
from imgscan.plainrecord import PlainRecord

TYPE_CHECKING = False  # typing, contextlib and dataclasses are not imported at run time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager
    from typing import Protocol

    from imgscan.mount.problems import MountProblem

    class StoreLock(Protocol):
        """The store's re-entrant fcntl lock with its last-writer token."""

        def shared(self) -> AbstractContextManager[None]: ...
        def exclusive(self) -> AbstractContextManager[None]: ...
        def record_write(self) -> bytes: ...

    class StoredImage(Protocol):
        """What a mount needs to know of an image: its id and its layers' chain ids."""

        @property
        def id(self) -> str: ...
        @property
        def layers(self) -> tuple[str, ...]: ...
        @property
        def short_id(self) -> str: ...

    class StoredLayer(Protocol):
        """A layer's short link name (``l/<link>``) and how its whiteouts are stored."""

        @property
        def link(self) -> str: ...
        @property
        def whiteouts(self) -> str: ...

    class LayerStore(Protocol):
        """The store as mounting sees it; its lookups take the (re-entrant) shared lock."""

        @property
        def root(self) -> str: ...
        @property
        def lock(self) -> StoreLock: ...

        def path(self, *parts: str) -> str: ...
        def lookup(self, ref: str) -> StoredImage: ...
        def layer(self, chain_id: str) -> StoredLayer: ...
        def images(self) -> Sequence[StoredImage]: ...

DRIVERS = ("auto", "overlay", "fuse-overlayfs")


class MountRecord(PlainRecord):
    """One image's mount: where, how many users, which driver, in which boot (a plain
    record: ``dataclasses`` would import ``inspect`` into every ``imgscan mount``).
    ``as_dict`` is the record as ``mounts.json`` and ``imgscan mounts --format json`` show
    it."""

    _fields = ("image_id", "path", "count", "driver", "boot_id", "managed")
    __slots__ = _fields

    def __init__(self, image_id: str, path: str, count: int, driver: str, boot_id: str,
                 managed: bool = True) -> None:
        self.image_id, self.path, self.count = image_id, path, count
        self.driver, self.boot_id = driver, boot_id
        self.managed = managed  # the mount point directory was made by imgscan


_boot_id: str | None = None


def boot_id() -> str:
    """This boot's id (read once per process: it cannot change while the process lives)."""
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _boot_id = f.read().strip()
        except OSError:
            _boot_id = ""
    return _boot_id


class MountTable:
    def __init__(self, store: LayerStore) -> None:
        self.store = store
        self.file = store.path("run", "mounts.json")

    # -- records (call with the store lock held) -------------------------------------------
    def _load(self) -> dict[str, MountRecord]:
        from imgscan.jsonlite import loads

        try:
            with open(self.file) as f:
                doc = loads(f.read())
            return {k: MountRecord(**v) for k, v in doc.items()}  # type: ignore[attr-defined]
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError):
            return {}  # unreadable records: treated as none, mounts are then found as strays

    def _save(self, recs: dict[str, MountRecord]) -> None:
        self.store.lock.record_write()
        # not fsynced: a record does not outlive the boot it names (see _is_live), and the
        # rename is atomic for every process of this boot
        write_json_atomic(self.file, {k: v.as_dict() for k, v in sorted(recs.items())},
                          durable=False)

    def _is_live(self, rec: MountRecord, mounted: dict[str, str] | None = None) -> bool:
        mounted = overlay.mounted_paths() if mounted is None else mounted
        return rec.boot_id == boot_id() and rec.path in mounted

    def record_for(self, image_id: str) -> MountRecord | None:
        """The live record of an image, or None (a stale one is ignored here and dropped by
        the next writer)."""
        rec = self._load().get(image_id)
        return rec if rec is not None and self._is_live(rec) else None

    def clear_strays_for(self, image_id: str) -> None:
        """Under the exclusive lock: detach a mount at the image's own mount point that no
        live record accounts for (a record from before a reboot, a lost record), so that its
        layers are never removed from under a mount."""
        path = self.store.path("run", "mnt", hex_of(image_id)[:12])
        rec = self._load().get(image_id)
        if rec is not None and self._is_live(rec):
            return
        _clear_strays(path)

    def records(self) -> list[MountRecord]:
        with self.store.lock.shared():
            mounted = overlay.mounted_paths()
            return [r for r in self._load().values() if self._is_live(r, mounted)]

    # -- mount and unmount -----------------------------------------------------------------
    def mount(self, ref: str, mountpoint: str | None = None, driver: str = "auto") -> MountRecord:
        if driver not in DRIVERS:
            raise MountError(f"unknown mount driver {driver!r} (one of {', '.join(DRIVERS)})")
        with self.store.lock.exclusive():
            image = self.store.lookup(ref)
            recs = self._load()
            rec = recs.get(image.id)
            if rec is not None and self._is_live(rec):
                if mountpoint and os.path.realpath(mountpoint) != rec.path:
                    raise MountError(f"image {image.short_id} is already mounted at {rec.path}")
                rec.count += 1
                self._save(recs)
                return rec
            if rec is not None:
                recs.pop(image.id)
            path, managed = self._mountpoint(image, mountpoint)
            used = self._do_mount(image, path, driver)
            rec = MountRecord(image.id, path, 1, used, boot_id(), managed)
            recs[image.id] = rec
            self._save(recs)
            return rec

    def _mountpoint(self, image: StoredImage, mountpoint: str | None) -> tuple[str, bool]:
        if mountpoint:
            path = os.path.realpath(mountpoint)
            if not os.path.isdir(path):
                raise MountError(f"mount point {mountpoint} is not a directory")
            if path in overlay.mounted_paths():
                raise MountError(f"something is already mounted at {path}")
            return path, False
        path = self.store.path("run", "mnt", hex_of(image.id)[:12])
        os.makedirs(path, exist_ok=True)
        _clear_strays(path)
        return path, True

    def _do_mount(self, image: StoredImage, path: str, driver: str) -> str:
        layers = [self.store.layer(c) for c in image.layers]
        lowers = [f"l/{rec.link}" for rec in reversed(layers)]
        if len(lowers) == 1:
            empty = self.store.path("run", "empty")
            os.makedirs(empty, exist_ok=True)
            lowers.append("run/empty")
        if len(lowers) > 500:
            raise MountError(f"image has {len(layers)} layers; overlayfs stacks at most 500")
        kernel_ok = all(rec.whiteouts == "chardev" for rec in layers)
        errors = []
        if driver in ("auto", "overlay"):
            if not kernel_ok:
                errors.append("kernel overlay: the layers were imported without root, so "
                              "their whiteouts are '.wh.' files the kernel does not read")
            else:
                try:
                    overlay.kernel_mount(self.store.root, lowers, path)
                    return "overlay"
                except OSError as e:
                    why = ("needs root (CAP_SYS_ADMIN)" if e.errno == errno.EPERM
                           else e.strerror)
                    errors.append(f"kernel overlay: {why}")
        if driver in ("auto", "fuse-overlayfs"):
            fuse_problem = _fuse_problem()
            if fuse_problem:
                errors.append(f"fuse-overlayfs: {fuse_problem}")
            else:
                try:
                    overlay.fuse_mount(self.store.root, lowers, path)
                    return "fuse-overlayfs"
                except (MountError, OSError) as e:
                    errors.append(f"fuse-overlayfs: {e}")
        self._cleanup_mountpoint(path)
        raise MountError(
            f"cannot mount image {image.short_id}: " + "; ".join(errors)
            + ". Run as root for a kernel overlay mount, or give this user fuse-overlayfs with "
            "access to /dev/fuse. 'imgscan scan' works without any mount."
        )

    def _cleanup_mountpoint(self, path: str) -> None:
        if path.startswith(self.store.path("run", "mnt") + os.sep):
            try:  # noqa: SIM105 (no contextlib on the mount path)
                os.rmdir(path)
            except OSError:
                pass

    def unmount(self, ref_or_path: str, force: bool = False) -> MountRecord | None:
        """Decrement the count of an image's mount; unmount at zero (``force``: now).
        Returns the record as it is after the call (count 0 when unmounted)."""
        with self.store.lock.exclusive():
            recs = self._load()
            target = os.path.realpath(ref_or_path) if os.path.isabs(ref_or_path) or \
                os.path.isdir(ref_or_path) else None
            image_id = None
            if target:
                image_id = next((k for k, r in recs.items() if r.path == target), None)
            if image_id is None:
                try:
                    image_id = self.store.lookup(ref_or_path).id
                except Exception:
                    raise MountError(f"{ref_or_path} is not a mounted image or mount point") \
                        from None
            return self._unmount_id(recs, image_id, force)

    def unmount_locked(self, image_id: str, force: bool) -> None:
        """For callers that already hold the exclusive lock (``rmi --force``)."""
        self._unmount_id(self._load(), image_id, force)

    def _unmount_id(self, recs: dict[str, MountRecord], image_id: str,
                    force: bool) -> MountRecord | None:
        rec = recs.get(image_id)
        if rec is None:
            raise MountError(f"image {hex_of(image_id)[:12]} is not mounted")
        if not self._is_live(rec):
            recs.pop(image_id)
            self._save(recs)
            self._cleanup_mountpoint(rec.path)
            rec.count = 0
            return rec
        if rec.count > 1 and not force:
            rec.count -= 1
            self._save(recs)
            return rec
        try:
            overlay.unmount(rec.path, detach=False)
        except OSError as e:
            if e.errno == errno.EBUSY and force:
                overlay.unmount(rec.path, detach=True)
            elif e.errno == errno.EBUSY:
                raise MountError(f"{rec.path} is busy (a process uses it); close it or use "
                                 "--force to detach it now") from None
            elif e.errno != errno.EINVAL:  # EINVAL: not mounted any more
                raise MountError(f"cannot unmount {rec.path}: {e.strerror}") from None
        recs.pop(image_id)
        self._save(recs)
        if rec.managed:
            self._cleanup_mountpoint(rec.path)
        rec.count = 0
        return rec

    # -- repair ----------------------------------------------------------------------------
    def check_locked(self, repair: bool) -> list[MountProblem]:
        """Under the store's lock: records of images gone, records whose mount is gone,
        and mounts on the store's own mount points that no record knows."""
        from imgscan.mount.problems import MountProblem

        problems = []
        images = {i.id for i in self.store.images()}
        recs = self._load()
        mounted = overlay.mounted_paths()
        changed = False
        for image_id, rec in list(recs.items()):
            if image_id not in images:
                problems.append(MountProblem("mount-of-unknown-image", rec.path,
                                             "mount record of an image not in the store"))
                if repair:
                    if rec.path in mounted:
                        try:  # noqa: SIM105 (no contextlib on the mount path)
                            overlay.unmount(rec.path, detach=True)
                        except OSError:
                            pass
                    recs.pop(image_id)
                    changed = True
            elif not self._is_live(rec, mounted):
                problems.append(MountProblem("stale-mount-record", rec.path,
                                             "mount record whose mount is gone"))
                if repair:
                    recs.pop(image_id)
                    self._cleanup_mountpoint(rec.path)
                    changed = True
        known = {r.path for r in recs.values()}
        mnt_root = self.store.path("run", "mnt")
        for mp in sorted(mounted):
            if mp.startswith(mnt_root + os.sep) and mp not in known:
                problems.append(MountProblem("stray-mount", mp,
                                             "mounted, but no record knows it"))
                if repair:
                    _clear_strays(mp)
                    self._cleanup_mountpoint(mp)
        if changed:
            self._save(recs)
        return problems


def _clear_strays(path: str, limit: int = 64) -> None:
    """Detach whatever is mounted on one of the store's own mount points without a record
    (a store wiped while mounted, a crash between mount and record): mounting on top would
    stack a new overlay over the stale one."""
    for _ in range(limit):
        if path not in overlay.mounted_paths():
            return
        try:
            overlay.unmount(path, detach=True)
        except OSError:
            return


def _fuse_problem() -> str:
    import shutil

    if shutil.which("fuse-overlayfs") is None:
        return "not installed"
    # open it, as fuse-overlayfs will: os.access answers from the mode bits, which say yes
    # to root even where a device cgroup or a missing CAP_DAC_OVERRIDE makes open() fail
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"/dev/fuse cannot be opened by this user ({e.strerror})"
    return ""
