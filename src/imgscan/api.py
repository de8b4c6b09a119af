"""The Python API: everything the CLI does, callable from code.

>>> import imgscan
>>> rec = imgscan.pull("oci:./layout:1.0", root="/tmp/store")
>>> report = imgscan.scan("app:1.0", root="/tmp/store")
>>> result = imgscan.audit(root="/tmp/store", formats=["json", "html"], output_dir="audit",
...                        gate=imgscan.GateConfig.load(fail_on="high"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgscan.errors import ImageError
from imgscan.images.interface import BlobSource, Platform, SourceImage
from imgscan.model import Report

TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker://", "dir:")


def is_transport_ref(ref: str) -> bool:
    """Does ``ref`` name an image outside the store (``oci:…``, ``docker://…``)?"""
    return ref.startswith(TRANSPORTS)


def open_store(root: str | None = None, **kw: Any) -> Any:
    from imgscan.store.store import Store

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
         jobs: int | None = None, **registry_opts: Any) -> Report:
    """Scan an image: a store name or id, a transport reference (pulled first and kept), or
    ``dir:PATH`` for an unpacked root filesystem."""
    from imgscan.scan import Scanner

    scanner = Scanner(analyzers, options, jobs=jobs)
    if ref.startswith("dir:"):
        return scanner.scan_dir(ref[4:])
    from imgscan.store.leases import leased

    store = store or open_store(root)
    if is_transport_ref(ref):
        ref = pull(ref, platform=platform, store=store, **registry_opts).id
    with leased(store, ref) as image:  # `rmi` refuses (or waits) while the scan reads
        return scanner.scan_image(store, image)


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


def split_name(name: str) -> tuple[str, str | None]:
    """``repo:tag`` → (``repo``, ``tag``); no ``:`` → (name, None). Splits at the last
    colon, as the store's names always end in a tag."""
    repo, sep, tag = name.rpartition(":")
    return (repo, tag) if sep else (name, None)


@dataclass(frozen=True)
class InspectTarget:
    """An image to show, with the name, tag and repository tags skopeo inspect reports."""

    image: SourceImage
    name: str
    tag: str | None
    repo_tags: list[str]


def inspect_target(ref: str, store: Any = None, root: str | None = None,
                   platform: str | Platform | None = None, list_tags: bool = True,
                   **registry_opts: Any) -> InspectTarget:
    """Open ``ref`` for inspection without importing anything: a transport reference is read
    in place (a registry's tags are listed unless ``list_tags`` is false), a stored image
    from what the store keeps of it."""
    if is_transport_ref(ref):
        img = open_source(ref, platform, **registry_opts)
        if not ref.startswith("docker://"):
            return InspectTarget(img, "", None, [])
        from imgscan.images.registry import list_tags as registry_tags
        from imgscan.images.registry import parse_reference

        r = parse_reference(ref[len("docker://"):])
        tags = registry_tags(r, **registry_opts) if list_tags else []
        return InspectTarget(img, r.name, r.tag, tags)
    store = store or open_store(root)
    rec = store.lookup(ref)
    name, tag = split_name(rec.names[0]) if rec.names else ("", None)
    return InspectTarget(stored_image(store, rec), name, tag,
                         [t for t in (split_name(n)[1] for n in rec.names) if t is not None])


def list_images(store: Any = None, root: str | None = None) -> list[dict[str, Any]]:
    """The stored images as ``imgscan images --format json`` lists them."""
    from imgscan.inventory import image_rows

    return image_rows(store or open_store(root))


def __getattr__(name: str) -> Any:
    """The audit and gate entry points, imported on first use so that ``import imgscan.api``
    does not load the gate and the writer registry."""
    if name in _PIPELINE:
        from imgscan import pipeline

        return getattr(pipeline, name)
    if name == "GateConfig":
        from imgscan.gate import GateConfig

        return GateConfig
    raise AttributeError(name)


_PIPELINE = {"AuditEntry", "AuditResult", "OutputSpec", "WriterOptions", "audit",
             "gate_and_write", "plan_outputs", "scan_atomic"}
