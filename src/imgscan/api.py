"""The Python API: everything the CLI does, callable from code.

>>> import imgscan
>>> rec = imgscan.pull("oci:./layout:1.0", root="/tmp/store")
>>> report = imgscan.scan("app:1.0", root="/tmp/store")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from imgscan.errors import ImageError
from imgscan.images.interface import BlobSource, Platform, SourceImage
from imgscan.model import Report

TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker://", "dir:")


def is_transport_ref(ref: str) -> bool:
    """Does ``ref`` name an image outside the store (``oci:…``, ``docker://…``)?"""
    return ref.startswith(TRANSPORTS)


def open_store(root: str | None = None, **kw: Any) -> Any:
    from imgscan.mount.store import Store

    return Store(root, **kw)


def default_names(ref: str, image: SourceImage) -> list[str]:
    """Names for a pulled image: the source's own (RepoTags, a full reference) or, for a
    bare OCI tag like ``latest``, ``<layout directory name>:<tag>``."""
    out = []
    for n in image.names:
        if "/" in n or ":" in n or "@" in n:
            out.append(n)
        elif n:
            path = ref.split(":", 1)[1]
            for sep in (":", "@"):
                if path.endswith(sep + n):
                    path = path[: -len(n) - 1]
            base = os.path.basename(os.path.normpath(path)) or "image"
            base = base.lower().replace(" ", "-")
            for suffix in (".tar", ".oci"):
                base = base.removesuffix(suffix)
            out.append(f"localhost/{base}:{n}")
    return out


def open_source(ref: str, platform: str | Platform | None = None,
                **registry_opts: Any) -> SourceImage:
    from imgscan.images.open import open_image

    if isinstance(platform, str):
        platform = Platform.parse(platform)
    return open_image(ref, platform, **registry_opts)


def pull(ref: str, root: str | None = None, platform: str | Platform | None = None,
         names: Sequence[str] | None = None, store: Any = None,
         **registry_opts: Any) -> Any:
    """Import an image into the store (verified, deduplicated by layer) and return its
    ``ImageRecord``. Pulling an image that is already there only adds names."""
    store = store or open_store(root)
    image = open_source(ref, platform, **registry_opts)
    try:
        return store.import_image(image, names if names is not None else
                                  default_names(ref, image), source=ref)
    finally:
        image.source.close()


def scan(ref: str, root: str | None = None, analyzers: Sequence[str] | None = None,
         options: Any = None, platform: str | Platform | None = None, store: Any = None,
         jobs: int | None = None, keep: bool = False, **registry_opts: Any) -> Report:
    """Scan an image: a store name or id, a transport reference, or ``dir:PATH`` for an
    unpacked root filesystem.

    A transport reference is analyzed straight from its layer blobs: nothing is unpacked
    and nothing enters the store (only per-layer results go to the store's cache). With
    ``keep`` it is imported first (the layers are decompressed once, by the import) and
    the stored image is scanned."""
    from imgscan.scan import Scanner

    scanner = Scanner(analyzers, options, jobs=jobs)
    if ref.startswith("dir:"):
        return scanner.scan_dir(ref[4:])
    store = store or open_store(root)
    if is_transport_ref(ref) and not keep:
        image = open_source(ref, platform, **registry_opts)
        try:
            config, layers, summary = streamed_layers(image, default_names(ref, image),
                                                      getattr(store, "limits", None))
            return scanner.scan_layers(config, layers, summary, store.path("cache"))
        finally:
            image.source.close()
    image = pull(ref, platform=platform, store=store, **registry_opts) \
        if is_transport_ref(ref) else store.lookup(ref)
    return scanner.scan_image(store, image)


def streamed_layers(image: SourceImage, names: Sequence[str] = (), limits: Any = None
                    ) -> tuple[dict[str, Any], list[Any], Any]:
    """An image from a source as the scanner takes it: config, ``BlobLayer``s, summary."""
    from imgscan.images.interface import layer_history
    from imgscan.layers.blob import BlobLayer
    from imgscan.layers.interface import LayerLimits
    from imgscan.model import ImageSummary, LayerRef

    lim = LayerLimits(limits.max_bytes, limits.max_entries, limits.max_path) if limits \
        else LayerLimits()
    history = layer_history(image.config)
    layers = [BlobLayer(image, lay, LayerRef(lay.index, lay.diff_id,
                                             history[i] if i < len(history) else ""), lim)
              for i, lay in enumerate(image.layers)]
    c = image.config
    summary = ImageSummary(
        name=names[0] if names else (image.names[0] if image.names else ""),
        id=image.image_id,
        digest=image.manifest_digest,
        os=str(c.get("os") or ""),
        architecture=str(c.get("architecture") or ""),
        variant=str(c.get("variant") or ""),
        created=str(c.get("created") or ""),
        size=sum(lay.size for lay in image.layers),
        user=str((c.get("config") or {}).get("User") or ""),
        names=tuple(names or image.names),
        source="image",
    )
    return c, layers, summary


def stored_layers(store: Any, image: Any) -> tuple[dict[str, Any], list[Any], Any]:
    """A stored image as the scanner takes it: config, ``StoredLayer``s, summary."""
    import contextlib
    import functools

    from imgscan.images.interface import layer_history
    from imgscan.layers.stored import StoredLayer
    from imgscan.model import ImageSummary, LayerRef
    from imgscan.mount.layerindex import load_index

    config = store.config(image)
    history = layer_history(config)
    layers = []
    size = 0
    for i, chain in enumerate(image.layers):
        ref = LayerRef(i, image.diff_ids[i], history[i] if i < len(history) else "")
        lsize = 0
        with contextlib.suppress(Exception):
            lsize = store.layer(chain).size
        size += lsize
        layers.append(StoredLayer(ref, store.diff_path(chain),
                                  functools.partial(load_index, store.index_path(chain)),
                                  digest=image.layer_digests[i] or "", size=lsize))
    summary = ImageSummary(
        name=image.names[0] if image.names else image.short_id,
        id=image.id,
        digest=image.manifest_digest,
        os=image.os,
        architecture=image.architecture,
        variant=image.variant,
        created=image.created,
        size=size,
        user=str((config.get("config") or {}).get("User") or ""),
        names=tuple(image.names),
        source="image",
    )
    return config, layers, summary


class StoredConfigSource(BlobSource):
    """Serves an imported image's config from the store (layer blobs are not kept)."""

    def __init__(self, config: bytes, config_digest: str) -> None:
        self.description = "store"
        self._config = config
        self._digest = config_digest

    def open_blob(self, digest: str) -> Any:
        import io

        if digest != self._digest:
            raise ImageError(f"blob {digest} is not kept in the store (only the config is)")
        return io.BytesIO(self._config)


def stored_image(store: Any, image: Any) -> SourceImage:
    """A ``SourceImage`` over what the store keeps of an image (manifest and config)."""
    return SourceImage(StoredConfigSource(store.raw_config(image), image.id),
                       store.raw_manifest(image), image.manifest_digest, names=image.names,
                       index_digest=image.index_digest)


def vetted_pull(ref: str, store: Any, decide: Any, *, platform: str | Platform | None = None,
                names: Sequence[str] | None = None, analyzers: Sequence[str] | None = None,
                options: Any = None, jobs: int | None = None,
                **registry_opts: Any) -> tuple[Any, Report, int]:
    """Pull into a quarantine inside the store, scan there, and move the image into the
    store only if ``decide(report) -> exit code`` returns 0. Returns (record or None,
    report, exit code). Whatever happens, nothing but a passing image enters the store."""
    from imgscan.scan import Scanner

    image = open_source(ref, platform, **registry_opts)
    try:
        with store.quarantine() as q:
            rec = q.import_image(image, [], source=ref)
            report = Scanner(analyzers, options, jobs=jobs).scan_image(q, rec)
            code = decide(report)
            if code != 0:
                return None, report, code
            final = store.adopt(q, rec, names if names is not None else
                                default_names(ref, image))
            return final, report, 0
    finally:
        image.source.close()


def vet_config(ref: str, analyzers: Sequence[str] | None = None, options: Any = None,
               platform: str | Platform | None = None, **registry_opts: Any) -> Report:
    """A report from what the manifest and config alone tell (no layer is fetched): the
    image-wide analyzers that read the config (root user, secrets in Env and history, ...)."""
    from imgscan.scan import Scanner

    image = open_source(ref, platform, **registry_opts)
    try:
        return Scanner(analyzers, options).scan_config_only(image)
    finally:
        image.source.close()
