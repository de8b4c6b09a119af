"""Per-layer analyzer results, cached in the store by (diff_id, analyzer, version, key).

A layer's content never changes for a given diff_id, so neither do an analyzer's results on
it: a second image sharing a base layer re-analyzes only its new layers. Entries are written
atomically; a half-written or unreadable entry is a miss, never an error.

The scanner sees a ``ResultCache`` (``get``/``put``): the store's ``LayerCache``, or a
``ChainedCache`` that puts a shared second level (``imgscan.server.cache``, Redis) behind it so
that a fleet of workers analyzes each layer once. Both levels hold the same bytes
(``encode_results``), under the same key (``cache_id``).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Protocol

import zstandard

from imgscan.analyzers.interface import AnalysisResult
from imgscan.atomic import write_atomic
from imgscan.entrytable import EntryTable, compress_chunks
from imgscan.images.digest import hex_of
from imgscan.model import (
    OSInfo,
    PackageFiles,
    finding_from_dict,
    package_from_dict,
    to_jsonable,
    warning_from_dict,
)

CACHE_FORMAT = 1


def result_to_json(r: AnalysisResult) -> dict[str, Any]:
    return to_jsonable(
        {
            "packages": r.packages,
            "package_files": r.package_files,
            "findings": r.findings,
            "warnings": r.warnings,
            "os": r.os,
            "facts": r.facts,
        },
        keep_files=True,
    )


def result_from_json(d: dict[str, Any]) -> AnalysisResult:
    os_info = d.get("os")
    if os_info:
        os_info = dict(os_info)
        os_info["id_like"] = tuple(os_info.get("id_like") or ())
    return AnalysisResult(
        packages=[package_from_dict(p) for p in d.get("packages", [])],
        package_files=[PackageFiles(p["type"], p["name"], tuple(p["files"]), p.get("arch", ""))
                       for p in d.get("package_files", [])],
        findings=[finding_from_dict(f) for f in d.get("findings", [])],
        warnings=[warning_from_dict(w) for w in d.get("warnings", [])],
        os=OSInfo(**os_info) if os_info else None,
        facts=d.get("facts") or {},
    )


def cache_id(diff_id: str, name: str, version: int, key: str) -> str:
    """The one name of a cache entry, for every level: diff_id, analyzer, version and the
    analyzer's options/rules digest, so bumping a version or changing a rule misses."""
    keyhash = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{hex_of(diff_id)}/{name}-v{version}-{keyhash}"


def encode_results(results: dict[str, AnalysisResult]) -> bytes:
    """A cache entry's bytes (zstd-compressed JSON), as every cache level stores them."""
    doc = {"format": CACHE_FORMAT,
           "results": {p: result_to_json(r) for p, r in sorted(results.items())}}
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogateescape")
    return zstandard.ZstdCompressor(level=3).compress(raw)


def decode_results(data: bytes) -> dict[str, AnalysisResult] | None:
    """The results in ``data``; None for anything unreadable or of another format (a miss)."""
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(data))
        if doc.get("format") != CACHE_FORMAT:
            return None
        return {p: result_from_json(r) for p, r in doc["results"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, zstandard.ZstdError):
        return None


class ResultCache(Protocol):
    """What the scanner needs of a per-layer cache: a miss is None, a put is best effort."""

    def get(self, diff_id: str, name: str, version: int, key: str
            ) -> dict[str, AnalysisResult] | None: ...

    def put(self, diff_id: str, name: str, version: int, key: str,
            results: dict[str, AnalysisResult]) -> None: ...


class ChainedCache:
    """Local first, shared second, write-through: a shared hit is copied into the local
    level, a fresh result goes to both. The shared level handles its own outages (it answers
    a miss), so a scan never fails because of it."""

    def __init__(self, local: ResultCache, shared: ResultCache) -> None:
        self.local = local
        self.shared = shared

    def get(self, diff_id: str, name: str, version: int, key: str
            ) -> dict[str, AnalysisResult] | None:
        hit = self.local.get(diff_id, name, version, key)
        if hit is not None:
            return hit
        hit = self.shared.get(diff_id, name, version, key)
        if hit is not None:
            self.local.put(diff_id, name, version, key, hit)
        return hit

    def put(self, diff_id: str, name: str, version: int, key: str,
            results: dict[str, AnalysisResult]) -> None:
        self.local.put(diff_id, name, version, key, results)
        self.shared.put(diff_id, name, version, key, results)


class LayerCache:
    """The store's level: one file per entry under the store's ``cache/`` directory."""

    def __init__(self, cache_root: str) -> None:
        self.root = cache_root

    def _path(self, diff_id: str, name: str, version: int, key: str) -> str:
        return os.path.join(self.root, cache_id(diff_id, name, version, key) + ".json.zst")

    def get(self, diff_id: str, name: str, version: int, key: str
            ) -> dict[str, AnalysisResult] | None:
        path = self._path(diff_id, name, version, key)
        try:
            with open(path, "rb") as f:
                return decode_results(f.read())
        except OSError:
            return None

    def put(self, diff_id: str, name: str, version: int, key: str,
            results: dict[str, AnalysisResult]) -> None:
        path = self._path(diff_id, name, version, key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, encode_results(results))
        except OSError:
            # best effort: the layer may have been removed meanwhile (its cache with it),
            # or the store is read-only to this user; the scan's results stand either way
            pass


# -- the layer's entry index and captured files -------------------------------------------------
#: 2: the entries as an ``EntryTable``'s bytes (1, JSON rows, is a miss: rebuilt)
INDEX_FORMAT = 2


class LayerIndexCache:
    """A streamed layer's entry index (what the merge needs: paths, whiteouts, modes) and the
    few files captured for image-wide analyzers, per (diff_id, capture key): a re-scan whose
    layers are all cached reads no blob at all."""

    def __init__(self, cache_root: str) -> None:
        self.root = cache_root

    def _path(self, diff_id: str, key: str) -> str:
        keyhash = hashlib.sha256(key.encode()).hexdigest()[:16]
        return os.path.join(self.root, hex_of(diff_id), f"index-{keyhash}.zst")

    def get(self, diff_id: str, key: str
            ) -> tuple[EntryTable, dict[str, bytes]] | None:
        try:
            with open(self._path(diff_id, key), "rb") as f:
                raw = zstandard.ZstdDecompressor().decompressobj().decompress(f.read())
            n = int.from_bytes(raw[:8], "big")
            doc = json.loads(raw[8:8 + n].decode("utf-8", "surrogateescape"))
            if doc.get("format") != INDEX_FORMAT:
                return None
            at = 8 + n + int(doc["table"])
            entries = EntryTable.from_bytes(memoryview(raw)[8 + n:at])
            blobs = {}
            for path, size in doc["captured"]:
                blobs[path] = raw[at:at + size]
                at += size
            return entries, blobs
        except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError):
            return None

    def put(self, diff_id: str, key: str, entries: EntryTable,
            captured: dict[str, bytes]) -> None:
        items = sorted(captured.items())
        table = entries.chunks()
        doc = {"format": INDEX_FORMAT, "table": sum(len(c) for c in table),
               "captured": [[p, len(b)] for p, b in items]}
        head = json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogateescape")
        raw = [len(head).to_bytes(8, "big"), head, *table, *(b for _, b in items)]
        path = self._path(diff_id, key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, compress_chunks(raw))
        except OSError:
            pass  # best effort, as for results
