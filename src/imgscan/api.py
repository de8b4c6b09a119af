"""The Python API: everything the CLI does, callable from code.

>>> import imgscan
>>> rec = imgscan.pull("oci:./layout:1.0", root="/tmp/store")
>>> report = imgscan.scan("app:1.0", root="/tmp/store")
>>> result = imgscan.audit(root="/tmp/store", formats=["json", "html"], output_dir="audit",
...                        gate=imgscan.GateConfig.load(fail_on="high"))
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypedDict, Unpack

from imgscan.errors import ImageError, UsageError
from imgscan.otherstores import (
    SOURCES,
    mount_other,
    open_other_source,
    umount_other,
)
from imgscan.otherstores import (
    is_other_store_ref as is_other_store_ref,
)

if TYPE_CHECKING:  # imported on first use: `imgscan mount` loads no analyzer and no writer
    from imgscan.analyzers.cache import ResultCache
    from imgscan.analyzers.interface import ScanOptions
    from imgscan.gate import GateConfig as GateConfig
    from imgscan.images.interface import Platform, RegistryOptions, SourceImage
    from imgscan.inventory import ImageRow
    from imgscan.layers.stored import StoredLayer
    from imgscan.model import ImageSummary, Report
    from imgscan.mount.mounts import MountRecord
    from imgscan.pipeline import AuditEntry as AuditEntry
    from imgscan.pipeline import AuditResult as AuditResult
    from imgscan.pipeline import OutputSpec as OutputSpec
    from imgscan.pipeline import WriterOptions as WriterOptions
    from imgscan.pipeline import audit as audit
    from imgscan.pipeline import gate_and_write as gate_and_write
    from imgscan.pipeline import plan_outputs as plan_outputs
    from imgscan.pipeline import scan_atomic as scan_atomic
    from imgscan.scanner import Scanner
    from imgscan.store.records import ImageRecord, Problem
    from imgscan.store.store import Store

__all__ = ["SOURCES", "mount_other", "umount_other"]

TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker://", "dir:",
              "containers-storage:", "docker-daemon:")


def is_transport_ref(ref: str) -> bool:
    """Does ``ref`` name an image outside the store (``oci:…``, ``docker://…``)?"""
    return ref.startswith(TRANSPORTS)


def open_store(root: str | None = None, *, max_layer_size: int | None = None,
               max_entries: int | None = None, jobs: int | None = None,
               create: bool = True) -> Store:
    """The store at ``root`` (default: ``$IMGSCAN_ROOT``, else the user's or the system's),
    refusing layers over ``max_layer_size`` uncompressed bytes or ``max_entries`` entries."""
    from imgscan.store.limits import ExtractLimits
    from imgscan.store.store import Store

    limits = ExtractLimits()
    if max_layer_size or max_entries:
        limits = ExtractLimits(max_bytes=max_layer_size or limits.max_bytes,
                               max_entries=max_entries or limits.max_entries)
    return Store(root, limits=limits, jobs=jobs, create=create)


def scan_options(analyzers: Sequence[str] | None = None, *, scan_binaries: bool = False,
                 hidden: bool = True, show_secrets: bool = False,
                 rule_dirs: Sequence[str] = (), disabled_rules: Sequence[str] = (),
                 extra: Mapping[str, Any] | None = None) -> ScanOptions:
    """``ScanOptions`` for a scan of ``analyzers`` (None: all). When the secrets analyzers
    run, the rules are loaded now, so that a bad rule file is a usage error (exit 2) before
    anything is pulled or scanned."""
    from imgscan.analyzers.interface import ScanOptions

    if rule_dirs or disabled_rules or analyzers is None or \
            any(n.startswith("secrets") for n in analyzers):
        from imgscan.secrets.rulecache import content_key, is_cached

        key = content_key(tuple(rule_dirs), tuple(disabled_rules))
        if key is None or not is_cached(key):  # cached: loaded (validated) before
            from imgscan.secrets.rules import load_rules

            load_rules(tuple(rule_dirs), tuple(disabled_rules))
    return ScanOptions(scan_binaries=scan_binaries, hidden=hidden, show_secrets=show_secrets,
                       rule_dirs=tuple(rule_dirs), disabled_rules=tuple(disabled_rules),
                       extra=dict(extra or {}))


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
                **registry_opts: Unpack[RegistryOptions]) -> SourceImage:
    """Open ``ref`` (``oci:…``, ``docker://…``, ...) in place, verified; nothing is stored."""
    from imgscan.images.interface import Platform
    from imgscan.images.open import open_image

    if isinstance(platform, str):
        platform = Platform.parse(platform)
    if is_other_store_ref(ref):
        return open_other_source(ref, platform)
    return open_image(ref, platform, **registry_opts)


def pull(ref: str, root: str | None = None, platform: str | Platform | None = None,
         names: Sequence[str] | None = None, store: Store | None = None,
         **registry_opts: Unpack[RegistryOptions]) -> ImageRecord:
    """Import an image into the store (verified, deduplicated by layer) and return its
    ``ImageRecord``. Pulling an image that is already there only adds names."""
    store = store or open_store(root)
    image = open_source(ref, platform, **registry_opts)
    try:
        return store.import_image(image, names if names is not None else
                                  default_names(ref, image), source=ref)
    finally:
        image.source.close()


def vulns_db_path(root: str | None = None, db: str | os.PathLike[str] | None = None) -> Path:
    """``db`` when given, else ``<store root>/vulns/osv.sqlite``: one database per store."""
    if db is not None:
        return Path(db)
    from imgscan.store.core import default_root

    return Path(root or default_root()) / "vulns" / "osv.sqlite"


def import_vulns(paths: Sequence[str | os.PathLike[str]], root: str | None = None,
                 db: str | os.PathLike[str] | None = None) -> Any:
    """``imgscan db import``: OSV exports into the database (``imgscan.vulns.ImportResult``)."""
    from imgscan.vulns import import_paths

    return import_paths(vulns_db_path(root, db), paths)


def vulns_status(root: str | None = None, db: str | os.PathLike[str] | None = None) -> Any:
    """``imgscan db status``: ``imgscan.vulns.Status`` (``DatabaseError`` when none)."""
    from imgscan.vulns import status

    return status(vulns_db_path(root, db))


def scan(ref: str, root: str | None = None, analyzers: Sequence[str] | None = None,
         options: ScanOptions | None = None, platform: str | Platform | None = None,
         store: Store | None = None, jobs: int | None = None, keep: bool = False, *,
         cache: ResultCache | None = None, vulns: bool = False,
         vulns_db: str | os.PathLike[str] | None = None, only_fixed: bool = False,
         strict_reachability: bool = False,
         **registry_opts: Unpack[RegistryOptions]) -> Report:
    """Scan an image: a store name or id, a transport reference, or ``dir:PATH`` for an
    unpacked root filesystem.

    A transport reference is analyzed straight from its layer blobs: nothing is unpacked
    and nothing enters the store (only per-layer results go to the store's cache). With
    ``keep`` it is imported first (the layers are decompressed once, by the import) and
    the stored image is scanned.

    ``cache`` is a shared second level for per-layer results behind the store's (a
    ``ResultCache``: ``imgscan.server.open_cache("redis://…")`` for a fleet).

    ``vulns=True`` matches the packages against the offline OSV database (``vulns_db``, else
    the store's) through ``imgscan.vulns.match_report``; the database is opened before the
    image is read, so a missing one fails fast (``DatabaseError``, exit 3) and asks the Go
    analyzer for function names so that Go findings carry their reachability."""
    from imgscan.scanner import Scanner

    db_path = None
    if vulns:
        from imgscan.analyzers.interface import ScanOptions
        from imgscan.vulns import check

        db_path = vulns_db_path(root if store is None else getattr(store, "root", root),
                                vulns_db)
        check(db_path)  # exists and is of a known schema
        options = options or ScanOptions()
        options = dataclasses.replace(options, extra={**options.extra, "go_symbols": True})
    scanner = Scanner(analyzers, options, jobs=jobs, shared_cache=cache)
    if ref.startswith("dir:"):
        report = scanner.scan_dir(ref[4:])
    else:
        store = store or open_store(root)
        report = _scan_image_ref(scanner, ref, store, platform, keep, registry_opts)
    if db_path is None:
        return report
    from imgscan.vulns import match_report

    return match_report(report, db_path, only_fixed=only_fixed,
                        strict_reachability=strict_reachability)


def _scan_image_ref(scanner: Scanner, ref: str, store: Store, platform: str | Platform | None,
                    keep: bool, registry_opts: RegistryOptions) -> Report:
    """A stored image from the store; a transport reference streamed from its blobs (or,
    with ``keep``, imported first and then read from the store). ``containers-storage:``
    is read in place and ``docker-daemon:`` as its save stream arrives, unless ``keep``."""
    if is_other_store_ref(ref) and not keep:
        from imgscan.otherstores import scan_other

        return scan_other(ref, scanner, store)
    if is_transport_ref(ref) and not keep:
        image = open_source(ref, platform, **registry_opts)
        try:
            config, layers, summary = streamed_layers(image, default_names(ref, image),
                                                      getattr(store, "limits", None))
            return scanner.scan_layers(config, layers, summary, store.path("cache"))
        finally:
            image.source.close()
    if is_transport_ref(ref):
        ref = pull(ref, platform=platform, store=store, **registry_opts).id
    from imgscan.store.leases import leased

    with leased(store, ref) as record:  # `rmi` refuses (or waits) while the scan reads
        return scanner.scan_image(store, record)


def streamed_layers(image: SourceImage, names: Sequence[str] = (), limits: Any = None
                    ) -> tuple[dict[str, Any], list[Any], Any]:
    """An image from a source as the scanner takes it: config, ``BlobLayer``s, summary."""
    from imgscan.layers.blob import source_image_layers

    return source_image_layers(image, names, limits)


def stored_layers(store: Store, image: ImageRecord
                  ) -> tuple[dict[str, Any], list[StoredLayer], ImageSummary]:
    """A stored image as the scanner takes it: config, ``StoredLayer``s, summary."""
    from imgscan.layers.stored import stored_image_layers

    return stored_image_layers(store, image)


@functools.cache
def _stored_config_source() -> Any:
    """``StoredConfigSource``, defined on first use (the image interfaces are not imported
    by commands that need none, such as ``imgscan mount``)."""
    from imgscan.images.interface import BlobSource

    class StoredConfigSource(BlobSource):
        """Serves an imported image's config from the store (layer blobs are not kept)."""

        def __init__(self, config: bytes, config_digest: str) -> None:
            self.description = "store"
            self._config = config
            self._digest = config_digest

        def open_blob(self, digest: str) -> BinaryIO:
            if digest != self._digest:
                raise ImageError(f"blob {digest} is not kept in the store (only the config is)")
            return io.BytesIO(self._config)

    return StoredConfigSource


def stored_image(store: Store, image: ImageRecord) -> SourceImage:
    """A ``SourceImage`` over what the store keeps of an image (manifest and config)."""
    from imgscan.images.interface import SourceImage

    return SourceImage(_stored_config_source()(store.raw_config(image), image.id),
                       store.raw_manifest(image), image.manifest_digest, names=image.names,
                       index_digest=image.index_digest)


def vetted_pull(ref: str, store: Store, decide: Callable[[Report], int], *,
                platform: str | Platform | None = None, names: Sequence[str] | None = None,
                analyzers: Sequence[str] | None = None, options: ScanOptions | None = None,
                jobs: int | None = None,
                **registry_opts: Unpack[RegistryOptions]) -> tuple[ImageRecord | None, Report, int]:
    """Pull into a quarantine inside the store, scan there, and move the image into the
    store only if ``decide(report) -> exit code`` returns 0. Returns (record or None,
    report, exit code). Whatever happens, nothing but a passing image enters the store."""
    from imgscan.scanner import Scanner

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


def vet_config(ref: str, analyzers: Sequence[str] | None = None,
               options: ScanOptions | None = None, platform: str | Platform | None = None,
               **registry_opts: Unpack[RegistryOptions]) -> Report:
    """A report from what the manifest and config alone tell (no layer is fetched): the
    image-wide analyzers that read the config (root user, secrets in Env and history, ...)."""
    from imgscan.scanner import Scanner

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


def inspect_target(ref: str, store: Store | None = None, root: str | None = None,
                   platform: str | Platform | None = None, list_tags: bool = True,
                   **registry_opts: Unpack[RegistryOptions]) -> InspectTarget:
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


def list_images(store: Store | None = None, root: str | None = None,
                source: str = "imgscan") -> list[ImageRow]:
    """The stored images as ``imgscan images --format json`` lists them; ``source`` lists
    another tool's images in the same rows instead: ``containers-storage`` (optionally
    ``containers-storage:[driver@graph+run]``) or ``docker-daemon``."""
    if source.startswith("containers-storage"):
        from imgscan.otherstores import cs_image_rows

        return cs_image_rows(source[len("containers-storage:"):])
    if source == "docker-daemon":
        from imgscan.otherstores import daemon_image_rows

        return daemon_image_rows()
    if source != "imgscan":
        raise UsageError(f"unknown image source {source!r} (one of {', '.join(SOURCES)})")
    from imgscan.inventory import image_rows

    return image_rows(store or open_store(root))


def inspect_document(target: InspectTarget) -> dict[str, Any]:
    """What ``imgscan inspect`` prints: skopeo inspect's keys, plus user, ports, history."""
    from imgscan.images.inspect import inspect_dict

    return inspect_dict(target.image, target.name, target.tag, target.repo_tags)


def list_tags(repository: str, **registry_opts: Unpack[RegistryOptions]) -> list[str]:
    """Every tag of a registry repository (``HOST/REPO``), all pages."""
    from imgscan.images.registry import list_tags as registry_tags

    return registry_tags(repository, **registry_opts)


def list_rules(rule_dirs: Sequence[str] = (),
               disabled_rules: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The secret rules, built-in and from ``rule_dirs``: id, severity, title, source."""
    from imgscan.secrets.rules import load_rules

    return load_rules(tuple(rule_dirs), tuple(disabled_rules)).listing()


class AnalyzerRow(TypedDict):
    """One installed analyzer plugin, as ``imgscan analyzers --format json`` lists it."""

    name: str
    version: int
    kind: str  # "file" (per file, per layer) or "image" (once over the merged image)
    distribution: str
    description: str


def list_analyzers() -> list[AnalyzerRow]:
    """The installed analyzer plugins: name, version, kind, distribution, description."""
    from imgscan.analyzers.registry import load_all

    return [{"name": p.name, "version": p.version, "kind": "image" if p.is_post else "file",
             "distribution": f"{p.spec.distribution} {p.spec.dist_version}",
             "description": p.cls.description} for p in load_all()]


# -- the store's housekeeping and mounts ---------------------------------------------------
def remove_images(refs: Iterable[str], force: bool = False, store: Store | None = None,
                  root: str | None = None) -> list[ImageRecord]:
    """Remove images and the layers no other image uses; a mounted image is refused unless
    ``force`` (which unmounts it first)."""
    from imgscan.housekeeping import remove_images as remove

    return remove(store or open_store(root), refs, force=force)


def check_store(repair: bool = False, store: Store | None = None,
                root: str | None = None) -> list[Problem]:
    """What a crash left half done, in the store and its mount records; with ``repair``,
    removed."""
    from imgscan.housekeeping import check_store as check

    return check(store or open_store(root), repair=repair)


def collect_garbage(store: Store | None = None, root: str | None = None) -> list[str]:
    """Drop the layers no image uses (and their cached results); their chain ids."""
    from imgscan.housekeeping import collect_garbage as gc

    return gc(store or open_store(root))


def mount(ref: str, mountpoint: str | None = None, driver: str = "auto",
          store: Store | None = None, root: str | None = None) -> MountRecord:
    """Mount an image read-only (or count one more user of its mount); its record."""
    from imgscan import mounting

    return mounting.mount(ref, mountpoint, driver, root, store=store)


def unmount(target: str, force: bool = False, store: Store | None = None,
            root: str | None = None) -> MountRecord | None:
    """Count one user less of an image's mount (an image or its path), unmounting at zero."""
    from imgscan import mounting

    return mounting.unmount(target, force, root, store=store)


def list_mounts(store: Store | None = None, root: str | None = None) -> list[MountRecord]:
    """The live mounts of the store's images."""
    from imgscan.mount.mounts import MountTable

    return MountTable(store or open_store(root)).records()


def __getattr__(name: str) -> object:
    """The audit and gate entry points, imported on first use so that ``import imgscan.api``
    does not load the gate and the writer registry."""
    if name == "StoredConfigSource":
        return _stored_config_source()
    if name in _PIPELINE:
        from imgscan import pipeline

        return getattr(pipeline, name)
    if name == "GateConfig":
        from imgscan.gate import GateConfig

        return GateConfig
    raise AttributeError(name)


_PIPELINE = {"AuditEntry", "AuditResult", "OutputSpec", "WriterOptions", "audit",
             "gate_and_write", "plan_outputs", "scan_atomic"}
