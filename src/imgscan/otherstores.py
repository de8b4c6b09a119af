"""Images kept by other tools: ``containers-storage:`` (podman, buildah, CRI-O) and
``docker-daemon:`` (a Docker Engine). ``imgscan.api`` re-exports these entry points.

* ``containers-storage:[driver@graph+run:opts]IMAGE`` is read in place: scanned from the
  layers' ``diff/`` directories, mounted as podman mounts, copied by rebuilding each
  layer's original tar (verified against its diff_id);
* ``docker-daemon:IMAGE`` is read over the Engine API socket (``$DOCKER_HOST`` or
  ``/var/run/docker.sock``): scanned from the save stream as it arrives, pulled through a
  spooled copy of it.
"""

from __future__ import annotations

from imgscan.errors import UsageError

TYPE_CHECKING = False  # no typing at run time: `imgscan mount` imports this module
if TYPE_CHECKING:
    from typing import Any

    from imgscan.images.interface import SourceImage
    from imgscan.inventory import ImageRow
    from imgscan.model import Report

CS_PREFIX = "containers-storage:"
DAEMON_PREFIX = "docker-daemon:"
PREFIXES = (CS_PREFIX, DAEMON_PREFIX)
SOURCES = ("imgscan", "containers-storage", "docker-daemon")


def is_other_store_ref(ref: str) -> bool:
    return ref.startswith(PREFIXES)


def open_containers_storage(ref: str) -> tuple[Any, str]:
    """The store a ``containers-storage:`` reference names, and its image part."""
    from imgscan.cstorage.conf import resolve_store
    from imgscan.cstorage.store import ContainersStorage

    conf, image = resolve_store(ref[len(CS_PREFIX):])
    if not image:
        raise UsageError(f"{ref}: no image named after the store")
    return ContainersStorage(conf), image


def open_other_source(ref: str, platform: Any = None) -> SourceImage:
    """A ``SourceImage`` for ``containers-storage:`` or ``docker-daemon:`` (``pull`` and
    ``inspect`` read it; the caller closes ``image.source``)."""
    if ref.startswith(CS_PREFIX):
        from imgscan.cstorage.source import open_cs_image

        cs, image = open_containers_storage(ref)
        return open_cs_image(cs, image)
    from imgscan.images.docker_daemon import open_daemon_image

    return open_daemon_image(ref[len(DAEMON_PREFIX):], platform)


def scan_containers_storage(ref: str, scanner: Any, store: Any) -> Report:
    """Scan a containers/storage image in place; layers share imgscan's per-layer cache."""
    from imgscan.cstorage.scan import scan_in_place

    cs, image = open_containers_storage(ref)
    from imgscan.cstorage.userns import in_store_namespace, needs_namespace

    if needs_namespace(cs.graph_root):  # a rootless store: read it as podman unshare would
        return in_store_namespace(scan_in_place, cs, image, scanner, store.path("cache"))
    return scan_in_place(cs, image, scanner, store.path("cache"))


def scan_other(ref: str, scanner: Any, store: Any) -> Report:
    """Scan an image of another tool's store where it is (see the two below)."""
    if ref.startswith(CS_PREFIX):
        return scan_containers_storage(ref, scanner, store)
    return scan_docker_daemon(ref, scanner, store)


def scan_docker_daemon(ref: str, scanner: Any, store: Any) -> Report:
    """Scan a Docker Engine's image as its save stream arrives (``imgscan.daemonscan``);
    layers share imgscan's per-layer cache, nothing of the image is written."""
    from imgscan.daemonscan import scan_daemon_image

    return scan_daemon_image(ref[len(DAEMON_PREFIX):], scanner, store.path("cache"),
                             getattr(store, "limits", None))


def mount_other(ref: str) -> tuple[str, int]:
    """``imgscan mount containers-storage:IMAGE``: (path, mount count), as podman counts."""
    if not ref.startswith(CS_PREFIX):
        raise UsageError(f"{ref}: only containers-storage: images can be mounted in place "
                         "(pull a docker-daemon: image first, then mount it)")
    from imgscan.cstorage.mount import mount_image

    cs, image = open_containers_storage(ref)
    rec = mount_image(cs, image)
    return rec.path, rec.count


def umount_other(ref: str) -> tuple[str, int]:
    """``imgscan umount containers-storage:IMAGE``: (path, remaining count)."""
    if not ref.startswith(CS_PREFIX):
        raise UsageError(f"{ref}: only containers-storage: images are mounted in place")
    from imgscan.cstorage.mount import umount_image

    cs, image = open_containers_storage(ref)
    with cs.reading():
        path = _mount_path(cs, image)
    rec = umount_image(cs, image)
    return path, rec.count


def _mount_path(cs: Any, image: str) -> str:
    import os

    return os.path.join(cs.layer_dir(cs.lookup(image).top_layer), "merged")


def cs_image_rows(spec: str = "") -> list[ImageRow]:
    """``imgscan images --source containers-storage``: the rows of ``imgscan images``.
    ``spec`` is an optional ``[driver@graph+run]`` store part."""
    cs, _ = open_containers_storage(CS_PREFIX + spec + "x") if spec else \
        open_containers_storage(CS_PREFIX + "x")
    rows: list[ImageRow] = []
    with cs.reading():
        for img in cs.images():
            try:
                chain = cs.chain(img)
                config = cs.config(img)
            except Exception:
                chain, config = [], {}
            rows.append({
                "id": "sha256:" + img.id, "names": list(img.names), "digest": img.digest,
                "layers": len(chain), "size": sum(lay.size for lay in chain),
                "created": str(config.get("created") or img.created),
                "platform": "/".join(p for p in (str(config.get("os") or ""),
                                                 str(config.get("architecture") or ""),
                                                 str(config.get("variant") or "")) if p)})
    return rows


def daemon_image_rows() -> list[ImageRow]:
    from imgscan.images.docker_daemon import image_rows

    return image_rows()
