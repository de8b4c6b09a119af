"""Per-layer analyzer results, cached in the store by (diff_id, analyzer, version, key).

A layer's content never changes for a given diff_id, so neither do an analyzer's results on
it: a second image sharing a base layer re-analyzes only its new layers. Entries are written
atomically; a half-written or unreadable entry is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import zstandard

from imgscan.analyzers.interface import AnalysisResult
from imgscan.atomic import write_atomic
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


class LayerCache:
    def __init__(self, cache_root: str) -> None:
        self.root = cache_root

    def _path(self, diff_id: str, name: str, version: int, key: str) -> str:
        keyhash = hashlib.sha256(key.encode()).hexdigest()[:16]
        return os.path.join(self.root, hex_of(diff_id), f"{name}-v{version}-{keyhash}.json.zst")

    def get(self, diff_id: str, name: str, version: int, key: str
            ) -> dict[str, AnalysisResult] | None:
        path = self._path(diff_id, name, version, key)
        try:
            with open(path, "rb") as f:
                raw = zstandard.ZstdDecompressor().decompress(f.read())
            doc = json.loads(raw)
            if doc.get("format") != CACHE_FORMAT:
                return None
            return {p: result_from_json(r) for p, r in doc["results"].items()}
        except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError):
            return None

    def put(self, diff_id: str, name: str, version: int, key: str,
            results: dict[str, AnalysisResult]) -> None:
        path = self._path(diff_id, name, version, key)
        doc = {"format": CACHE_FORMAT,
               "results": {p: result_to_json(r) for p, r in sorted(results.items())}}
        raw = json.dumps(doc, separators=(",", ":")).encode("utf-8", "surrogateescape")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, zstandard.ZstdCompressor(level=3).compress(raw))
        except OSError:
            # best effort: the layer may have been removed meanwhile (its cache with it),
            # or the store is read-only to this user; the scan's results stand either way
            pass
