"""Scan a containers/storage image in place with the current ``Scanner``.

GLUE, to be replaced when the scanner consumes "layers" (DESIGN.md): this builds the same
per-layer inputs ``Scanner.scan_image`` builds from imgscan's store (root = the layer's
``diff/``, entries from ``layerwalk``) and drives the scanner's per-layer analysis and
merge through its private steps (``_analyze_layer``, ``_assemble``) so that scan.py need not
change while others reshape it. The per-layer cache is imgscan's own (keyed by diff_id), so
a layer already analyzed from a ``docker-archive:`` is not analyzed again.

layers.lock is held shared from resolving the image until the last byte is read, as
``podman save`` holds it: a concurrent ``podman rmi`` waits, and the result is complete.
"""

from __future__ import annotations

import time
from typing import Any

from imgscan.cstorage.layerwalk import store_mappings, walk_layer
from imgscan.cstorage.store import ContainersStorage
from imgscan.errors import ImageError
from imgscan.model import ImageSummary, LayerRef, LayerSummary, Report


def scan_in_place(cs: ContainersStorage, ref: str, scanner: Any, cache_root: str) -> Report:
    """Scan image ``ref`` of ``cs`` reading its layers' ``diff/`` directly (no mount)."""
    from imgscan.analyzers.cache import LayerCache
    from imgscan.analyzers.dispatch import Dispatcher
    from imgscan.analyzers.layered import LayeredView
    from imgscan.images.interface import layer_history
    from imgscan.scan import _Layer  # glue: the scanner's per-layer record

    maps = store_mappings(cs.graph_root)
    uid_map, gid_map = maps if maps else (None, None)
    with cs.layers_held():
        with cs.reading():
            image = cs.lookup(ref)
            chain = cs.chain(image)
            config = cs.config(image)
            manifest_layers = _manifest_digests(cs, image)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if diff_ids != [lay.diff_id for lay in chain]:
            raise ImageError(f"containers-storage: image {image.short_id}: config diff_ids "
                             "do not match its layers")
        history = layer_history(config)
        t0 = time.monotonic()
        layers = []
        for i, lay in enumerate(chain):
            lref = LayerRef(i, lay.diff_id, history[i] if i < len(history) else "")
            try:
                entries = walk_layer(cs.diff_path(lay), uid_map, gid_map)
            except FileNotFoundError:
                raise ImageError(f"containers-storage: layer {lay.id[:12]} vanished while "
                                 "it was read") from None
            except PermissionError as e:
                raise ImageError(f"containers-storage: layer {lay.id[:12]}: {e.filename}: "
                                 "permission denied") from None
            layers.append(_Layer(lref, cs.diff_path(lay), entries))
        cache = LayerCache(cache_root)
        dispatcher = Dispatcher(scanner.file_analyzers, scanner.options, scanner.jobs)
        try:
            for layer in layers:
                scanner._analyze_layer(layer, dispatcher, cache)  # glue
        finally:
            dispatcher.close()
        scanner._add_calls(dispatcher)  # glue
        t1 = time.monotonic()
        view = LayeredView([lay.root for lay in layers], [lay.entries for lay in layers],
                           [lay.ref for lay in layers], config)
        report: Report = scanner._assemble(view, layers, config, t0, t1,  # glue
                                           attribute=True)
    inner = config.get("config") or {}
    report.image = ImageSummary(
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
    created = [str(h.get("created") or "") for h in config.get("history") or []
               if isinstance(h, dict) and not h.get("empty_layer")]
    report.layers = [LayerSummary(
        index=i, diff_id=lay.diff_id,
        digest=manifest_layers[i] if i < len(manifest_layers) else lay.compressed_digest,
        size=lay.size, created_by=layers[i].ref.created_by,
        created=created[i] if i < len(created) else "",
        entries=len(layers[i].entries),
        packages_added=sum(1 for p in report.packages if p.layer and p.layer.index == i),
    ) for i, lay in enumerate(chain)]
    return report


def _manifest_digests(cs: ContainersStorage, image: Any) -> list[str]:
    """Layer digests from the stored manifest (the blobs as the registry named them)."""
    import json

    try:
        doc = json.loads(cs.raw_manifest(image))
    except (ImageError, ValueError):
        return []
    return [str(d.get("digest") or "") for d in doc.get("layers") or [] if isinstance(d, dict)]
