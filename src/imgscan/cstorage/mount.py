"""Mount a containers/storage image as podman does, so that podman knows the mount.

``podman image mount IMAGE`` mounts the image's top layer read-only at
``<graph>/overlay/<id>/merged`` (lower dirs: the top layer's ``diff`` then its ``lower``
links under ``l/``; a single layer gets the layer's ``empty`` dir as second lower) and counts
it in ``<run>/overlay-layers/mountpoints.json`` under ``mountpoints.lock``. imgscan does the
same, under the same locks (layers.lock, then mountpoints.lock, both for writing, as
c/storage's ``store.Mount`` takes them), in the same record format and order, so that
``podman image mount`` lists imgscan's mount, either tool's second mount increments the
count and either tool's umount undoes one. The mount itself is the ``mount(2)`` helper of
``imgscan.mount.overlay``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

from imgscan.atomic import mkstemp
from imgscan.cstorage.locks import get_lock
from imgscan.errors import MountError
from imgscan.jsonlite import dumps, loads
from imgscan.mount.overlay import kernel_mount, libc, mounted_paths, unmount
from imgscan.plainrecord import PlainRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from imgscan.cstorage.store import ContainersStorage, CSImage

MS_BIND = 0x1000
MS_PRIVATE = 1 << 18


class CSMount(PlainRecord):
    """A layer's mount record: where, and how many mounts are counted."""

    _fields = ("id", "path", "count")
    __slots__ = _fields
    _frozen = True
    id: str
    path: str
    count: int

    def __init__(self, id: str, path: str, count: int) -> None:
        self._init(id=id, path=path, count=count)


def _mounts_file(cs: ContainersStorage) -> str:
    return cs.run_path("overlay-layers", "mountpoints.json")


def _mounts_lock_path(cs: ContainersStorage) -> str:
    return cs.run_path("overlay-layers", "mountpoints.lock")


def _load(cs: ContainersStorage) -> dict[str, CSMount]:
    try:
        with open(_mounts_file(cs), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        return {}
    try:
        doc = loads(raw)
    except ValueError:
        raise MountError(f"{_mounts_file(cs)}: not valid JSON") from None
    out = {}
    for r in doc if isinstance(doc, list) else []:
        if isinstance(r, dict) and r.get("id"):
            out[str(r["id"])] = CSMount(str(r["id"]), str(r.get("path") or ""),
                                        int(r.get("count") or 0))
    return out


def _save(cs: ContainersStorage, recs: dict[str, CSMount]) -> None:
    """Write records as c/storage's ``saveMounts``: live ones only, in layers.json order,
    compact JSON, atomically with mode 0600; the last-writer id is recorded first."""
    order = {lid: i for i, lid in enumerate(cs.layer_order())}
    live = sorted((r for r in recs.values() if r.path and r.count > 0),
                  key=lambda r: order.get(r.id, len(order)))
    data = dumps([{"id": r.id, "path": r.path, "count": r.count} for r in live],
                 separators=(",", ":")).encode()
    path = _mounts_file(cs)
    fd, tmp = mkstemp(os.path.dirname(path), prefix=".tmp-mountpoints.json")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _why_no_mount() -> str | None:
    if os.geteuid() != 0:
        return ("mounting needs root: the kernel overlay with lower dirs only is refused to "
                "other users outside a user namespace, and /dev/fuse is root-only here; "
                "`imgscan scan` reads the layers without mounting")
    return None


def _ensure_private_home(home: str) -> None:
    """Make the driver home a private bind mount of itself, as c/storage's overlay driver
    does (``mount.MakePrivate``) before it mounts a layer. Podman mounts layers on top of
    that bind, so a layer mounted beside it would be hidden from podman and from users."""
    if home in mounted_paths():
        return
    lib = libc()
    for src, flags in ((home.encode(), MS_BIND), (None, MS_PRIVATE)):
        if lib.mount(src, home.encode(), b"none", flags, None) != 0:
            err = ctypes.get_errno()
            raise MountError(f"cannot make {home} a private mount: {os.strerror(err)}")


def _release_home(home: str) -> None:
    """Drop the home's bind when nothing is mounted under it any more (c/storage's driver
    ``Cleanup``); EBUSY means some tool still has a layer mounted there, and it stays."""
    if home in mounted_paths() and not any(p.startswith(home + "/") for p in mounted_paths()):
        with contextlib.suppress(OSError):
            unmount(home)


def _lowers(cs: ContainersStorage, layer_id: str) -> list[str]:
    """Lower dirs relative to ``<graph>/overlay``, top first, as c/storage builds them."""
    lowers = [f"{layer_id}/diff"]
    try:
        with open(os.path.join(cs.layer_dir(layer_id), "lower"), encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        text = ""
    if text:
        for link in text.split(":"):
            if not link.startswith("l/") or "/" in link[2:] or not os.path.isdir(
                    cs.path("overlay", link)):
                raise MountError(f"layer {layer_id[:12]}: lower link {link!r} is missing")
            lowers.append(link)
    else:
        lowers.append(f"{layer_id}/empty")
        if not os.path.isdir(cs.path("overlay", layer_id, "empty")):
            raise MountError(f"layer {layer_id[:12]}: no 'empty' dir for a one-layer mount")
    return lowers


def mount_image(cs: ContainersStorage, ref: str) -> CSMount:
    """``podman image mount REF``: mount (or count one more mount of) the image's top layer."""
    why = _why_no_mount()
    if why:
        raise MountError(f"containers-storage: cannot mount {ref}: {why}")
    mlock = get_lock(_mounts_lock_path(cs))
    with cs.reading_for_write(), mlock.exclusive():
        image = cs.lookup(ref)
        top = cs.layer(image.top_layer)
        recs = _load(cs)
        target = os.path.join(cs.layer_dir(top), "merged")
        rec = recs.get(top.id)
        live = rec is not None and rec.count > 0 and rec.path in mounted_paths()
        if live and rec is not None:
            new = CSMount(top.id, rec.path, rec.count + 1)
        else:
            cs.chain(image)  # every layer present, with its diff/
            lowers = _lowers(cs, top.id)
            # c/storage's overlay Get creates merged/ (0700) and Put removes it again
            with contextlib.suppress(FileExistsError):
                os.mkdir(target, 0o700)
            _ensure_private_home(cs.path("overlay"))
            try:
                kernel_mount(cs.path("overlay"), lowers, target)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.rmdir(target)
                raise MountError(f"cannot mount {ref} at {target}: {e.strerror}") from None
            new = CSMount(top.id, target, 1)
        recs[top.id] = new
        mlock.record_write()
        _save(cs, recs)
        return new


def umount_image(cs: ContainersStorage, ref: str) -> CSMount:
    """``podman image umount REF``: undo one mount; unmount when the count reaches zero."""
    mlock = get_lock(_mounts_lock_path(cs))
    with cs.reading_for_write(), mlock.exclusive():
        image: CSImage = cs.lookup(ref)
        recs = _load(cs)
        rec = recs.get(image.top_layer)
        if rec is None or rec.count <= 0:
            raise MountError(f"containers-storage: image {ref} is not mounted")
        if rec.count > 1 and rec.path in mounted_paths():
            new = CSMount(rec.id, rec.path, rec.count - 1)
        else:
            if rec.path in mounted_paths():
                try:
                    unmount(rec.path)
                except OSError as e:
                    raise MountError(f"cannot unmount {rec.path}: {e.strerror}") from None
                with contextlib.suppress(OSError):
                    os.rmdir(rec.path)
                _release_home(cs.path("overlay"))
            new = CSMount(rec.id, "", 0)
        recs[rec.id] = new
        mlock.record_write()
        _save(cs, recs)
        return new


def mounts(cs: ContainersStorage) -> list[tuple[CSImage, CSMount]]:
    """Mounted images (``podman image mount`` without arguments)."""
    mlock = get_lock(_mounts_lock_path(cs))
    with cs.reading(), mlock.shared():
        recs = _load(cs)
        live = mounted_paths()
        return [(img, recs[img.top_layer]) for img in cs.images()
                if img.top_layer in recs and recs[img.top_layer].count > 0
                and recs[img.top_layer].path in live]
