"""``imgscan scan docker-daemon:IMAGE``: a Docker Engine's image, analyzed as its save stream
arrives; a re-scan answered from the report cache without asking for the stream at all.

1. ``GET /images/{name}/json`` (inspect) gives the image id (the config's digest) and the
   diff_ids before anything else. A report cached under a key of that answer (with the
   analyzers, options, version and date) is returned at once: no ``/get`` request, as a warm
   registry scan makes no blob request. The key is safe because the inspect answer pins the
   config by its digest and every layer by its diff_id; any change to the image (a tag, a
   rebuild) changes the answer, and a changed answer misses.
2. Otherwise the layers whose results are all cached are known up front
   (``uncached_layers``), ``GET /images/{name}/get`` is walked once
   (``images.docker_stream``) and each other layer is analyzed as it passes
   (``analyzers.sequential``); after the stream has been verified, the scanner merges the
   layers as it merges any image's, writing the per-layer caches, and the report is cached
   under the inspect key too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from imgscan._version import __version__
from imgscan.errors import ImageError, UsageError
from imgscan.model import Report


def scan_daemon_image(name: str, scanner: Any, cache_root: str | None, limits: Any = None,
                      engine: Any = None) -> Report:
    """Scan image ``name`` of the Engine (``images.docker_daemon.Engine``; the default one
    when None) with ``scanner`` (a ``Scanner``)."""
    from imgscan.images.docker_daemon import Engine

    if not name:
        raise UsageError("docker-daemon: needs an image name or id")
    eng = engine or Engine()
    try:
        info = eng.image(name)
        image_id, diff_ids = _ids(info, f"{eng.what}: {name}")
        told = {"docker-daemon": name, "inspect": info}
        hit = cached_report(scanner, told, len(diff_ids), cache_root)
        if hit is not None:
            return hit
        from concurrent.futures import ThreadPoolExecutor

        from imgscan.analyzers.sequential import analyze_save_stream
        from imgscan.analyzers.stream import capture_matcher, capture_patterns
        from imgscan.images.docker_stream import SaveStream
        from imgscan.layers.interface import LayerLimits
        from imgscan.progress import Progress

        lim = LayerLimits(limits.max_bytes, limits.max_entries, limits.max_path) if limits \
            else LayerLimits()
        with ThreadPoolExecutor(1) as pool:
            # the analyzers load and the caches are consulted while the Engine exports the
            # image: it answers /get only when its export is ready (2 s for 240 MB here)
            walk = pool.submit(uncached_layers, scanner, diff_ids, cache_root)
            with Progress(f"reading {name}", len(set(diff_ids))) as bar, \
                    eng.save_stream(name) as wire:
                stream = SaveStream(wire, image_id, diff_ids, f"{eng.what}: {name}")
                capture = capture_matcher(capture_patterns(scanner.post_analyzers))
                config, layers, summary = analyze_save_stream(
                    stream, scanner.file_analyzers, capture, walk.result(), lim, bar)
        report: Report = scanner.scan_layers(config, layers, summary, cache_root)
        return keep_report(scanner, told, report, cache_root)
    finally:
        if engine is None:
            eng.close()


def _ids(info: dict[str, Any], what: str) -> tuple[str, list[str]]:
    """The image id and diff_ids of an inspect answer, checked (they key the caches)."""
    from imgscan.images.digest import parse_digest

    image_id = info.get("Id")
    layers = (info.get("RootFS") or {}).get("Layers") if isinstance(info.get("RootFS"),
                                                                    dict) else None
    if not isinstance(image_id, str) or not isinstance(layers, list):
        raise ImageError(f"{what}: the inspect answer has no Id or RootFS.Layers")
    parse_digest(image_id)
    for d in layers:
        parse_digest(d)
    return image_id, [str(d) for d in layers]


def uncached_layers(scanner: Any, diff_ids: Sequence[str], cache_root: str | None
                    ) -> set[str]:
    """The layers a scan would have to walk: an analyzer's results or the entry index are
    not cached (the others are only verified as they pass)."""
    from imgscan.analyzers.stream import capture_patterns

    cache, icache = scanner.layer_caches(cache_root)
    if cache is None:
        return set(diff_ids)
    key = "\n".join(capture_patterns(scanner.post_analyzers))
    return {d for d in diff_ids if icache.get(d, key) is None or any(
        cache.get(d, a.name, a.version, a.cache_key()) is None
        for a in scanner.file_analyzers)}


def _told_key(scanner: Any, told: Any, known: Any) -> str:
    from imgscan.analyzers import reportcache

    return reportcache.report_key(told, [], "told", known, scanner.options, __version__)


def cached_report(scanner: Any, told: Any, layers: int, cache_root: str | None
                  ) -> Report | None:
    """The report cached for an image a source described by ``told`` (see the module)."""
    if not cache_root:
        return None
    from imgscan.analyzers import reportcache

    t0 = time.monotonic()
    known = scanner.identities()  # what the key needs, without importing the plugins
    key = _told_key(scanner, told, known)
    hit = reportcache.get(cache_root, key)
    if hit is None:
        return None
    # marked as the cached report it is: its JSON is written from the kept text (jsonhead)
    return reportcache.mark(scanner.from_cache(hit, layers, known, t0), cache_root, key)


def keep_report(scanner: Any, told: Any, report: Report, cache_root: str | None) -> Report:
    """Cache ``report`` for ``cached_report(told)`` (the analyzers as loaded); ``report``,
    marked as that cached report, so that its JSON text is kept for the next hit."""
    from imgscan.analyzers import reportcache

    if cache_root and reportcache.cacheable(report):
        key = _told_key(scanner, told, scanner.identities())
        if reportcache.put(cache_root, key, report):
            return reportcache.mark(report, cache_root, key)
    return report
