"""Scan a containers/storage image in place: its layers' ``diff/`` directories as ``Layer``s.

Each layer is an ``imgscan.layers`` source like any other: a ``StoredLayer`` whose directory
is the layer's ``diff/`` and whose entry index is ``layerwalk``'s walk of it (the same
entries the layer's tar gives: whiteouts, opaque markers, hard links, owners as the
container sees them). The scanner takes them as plain values (``Scanner.scan_layers``), with
imgscan's per-layer cache keyed by diff_id, so a layer already analyzed from a
``docker-archive:`` is not analyzed again.

layers.lock is held shared from resolving the image until the last byte is read, as
``podman save`` holds it: a concurrent ``podman rmi`` waits, and the result is complete.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from imgscan.cstorage.layerwalk import IdMapping, store_mappings, walk_layer
from imgscan.cstorage.store import ContainersStorage, CSImage, CSLayer
from imgscan.errors import ImageError
from imgscan.fileinfo import FileInfo
from imgscan.images.interface import layer_history
from imgscan.layers.stored import StoredLayer
from imgscan.model import ImageSummary, LayerRef, Report


def _walker(diff: str, lay: CSLayer, uid_map: Sequence[IdMapping] | None,
            gid_map: Sequence[IdMapping] | None) -> Any:
    def load() -> list[FileInfo]:
        try:
            return walk_layer(diff, uid_map, gid_map)
        except FileNotFoundError:
            raise ImageError(f"containers-storage: layer {lay.id[:12]} vanished while it "
                             "was read") from None
        except PermissionError as e:
            raise ImageError(f"containers-storage: layer {lay.id[:12]}: {e.filename}: "
                             "permission denied") from None

    return load


def diff_layers(cs: ContainersStorage, image: CSImage, chain: Sequence[CSLayer],
                config: dict[str, Any]) -> list[StoredLayer]:
    """The image's layers as ``Layer``s read from their ``diff/`` directories."""
    maps = store_mappings(cs.graph_root)
    uid_map, gid_map = maps if maps else (None, None)
    history = layer_history(config)
    digests = _manifest_digests(cs, image)
    return [StoredLayer(LayerRef(i, lay.diff_id, history[i] if i < len(history) else ""),
                        cs.diff_path(lay), _walker(cs.diff_path(lay), lay, uid_map, gid_map),
                        digest=digests[i] if i < len(digests) else lay.compressed_digest,
                        size=lay.size)
            for i, lay in enumerate(chain)]


def scan_in_place(cs: ContainersStorage, ref: str, scanner: Any, cache_root: str) -> Report:
    """Scan image ``ref`` of ``cs`` reading its layers' ``diff/`` directly (no mount)."""
    with cs.layers_held():
        with cs.reading():
            image = cs.lookup(ref)
            chain = cs.chain(image)
            config = cs.config(image)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if diff_ids != [lay.diff_id for lay in chain]:
            raise ImageError(f"containers-storage: image {image.short_id}: config diff_ids "
                             "do not match its layers")
        layers = diff_layers(cs, image, chain, config)
        inner = config.get("config") or {}
        summary = ImageSummary(
            name=image.names[0] if image.names else image.short_id,
            id="sha256:" + image.id,
            digest=image.digest,
            os=str(config.get("os") or ""),
            architecture=str(config.get("architecture") or ""),
            variant=str(config.get("variant") or ""),
            created=str(config.get("created") or ""),
            size=sum(lay.size for lay in chain),
            user=str(inner.get("User") or ""),
            names=image.names,
            source="containers-storage",
        )
        report: Report = scanner.scan_layers(config, layers, summary, cache_root)
    return report


def _manifest_digests(cs: ContainersStorage, image: CSImage) -> list[str]:
    """Layer digests from the stored manifest (the blobs as the registry named them)."""
    try:
        doc = json.loads(cs.raw_manifest(image))
    except (ImageError, ValueError):
        return []
    return [str(d.get("digest") or "") for d in doc.get("layers") or [] if isinstance(d, dict)]
