"""The assembled report of an image, cached like Trivy's artifact cache: a re-scan of the same
image with the same analyzers, options and rules (and on the same day: image age checks
depend on the date) skips reading the per-layer results, the merge and the image-wide
analyzers.

Keyed by everything the report is computed from: the config, each layer (diff_id, blob
digest, size, created_by), the image summary, every analyzer's name, version and cache key,
the options, imgscan's version and today's date. Pickled under the store's cache directory;
a file not owned by this user, or writable by others, is ignored (it is unpickled).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import weakref
from collections.abc import Sequence
from typing import Any

from imgscan.atomic import mkstemp
from imgscan.model import Report
from imgscan.usercache import read_trusted

FORMAT = "1"


def report_key(config: dict[str, Any], layers: Sequence[Any], image: Any,
               analyzers: Sequence[Any], options: Any, version: str) -> str:
    h = hashlib.sha256(f"report:{FORMAT}:{version}:{_dt.date.today().isoformat()}\n".encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for lay in layers:
        h.update(repr((lay.ref, lay.digest, lay.size)).encode())
    h.update(repr(image).encode())
    for a in analyzers:  # ``analyzers.identity.Identity``s
        h.update(repr(a.key_part()).encode())
    h.update(repr(options).encode())
    return h.hexdigest()


def cacheable(report: Report) -> bool:
    """A report is cached unless an analyzer failed (a plugin bug may be fixed without a
    version bump)."""
    return not any(w.analyzer for w in report.warnings
                   if w.message.startswith("analyzer failed"))


def _path(cache_root: str, key: str) -> str:
    return os.path.join(cache_root, "reports", f"{key}.pickle")


def _write(path: str, data: bytes) -> bool:
    """Atomically, best effort (False: not written)."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = mkstemp(os.path.dirname(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def get(cache_root: str, key: str) -> Report | None:
    data = read_trusted(_path(cache_root, key))
    if data is None:
        return None
    try:
        report = pickle.loads(data)  # our own file, checked above
    except Exception:
        return None
    return report if isinstance(report, Report) else None


def put(cache_root: str, key: str, report: Report) -> bool:
    """Keep ``report`` under ``key``; best effort (False: not kept)."""
    try:
        data = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    except pickle.PicklingError:
        return False
    return _write(_path(cache_root, key), data)


# -- the JSON document of a cached report ----------------------------------------------------
#: A cached report's JSON document changes from one warm run to the next only in its last
#: fields (``timings``, ``created``, ``schema_version``), so the text before them is kept
#: next to the pickle (``imgscan.jsonhead`` writes and splices it). Which cached report a
#: value is, is remembered here by its id (not on the value: it would travel in a pickle).
_ORIGINS: dict[int, tuple[weakref.ref[Report], str, str]] = {}


def mark(report: Report, cache_root: str, key: str) -> Report:
    """Remember that ``report`` is the cached report ``key`` (with its own times)."""
    _ORIGINS[id(report)] = (weakref.ref(report), cache_root, key)
    weakref.finalize(report, _ORIGINS.pop, id(report), None)
    return report


def origin(report: Report) -> tuple[str, str] | None:
    """(cache root, key) of the cached report that ``report`` is, else None."""
    found = _ORIGINS.get(id(report))
    if found is None or found[0]() is not report:
        return None
    return found[1], found[2]


def _head_path(cache_root: str, key: str, stamp: str) -> str:
    return os.path.join(cache_root, "reports", f"{key}.{stamp}.json-head")


def get_head(cache_root: str, key: str, stamp: str) -> str | None:
    """The kept JSON text (ours, written by nobody else), or None."""
    data = read_trusted(_head_path(cache_root, key, stamp))
    try:
        return data.decode("utf-8") if data is not None else None
    except UnicodeDecodeError:
        return None


def put_head(cache_root: str, key: str, stamp: str, text: str) -> None:
    """Keep ``text`` for the report ``key``; best effort, like ``put``."""
    _write(_head_path(cache_root, key, stamp), text.encode("utf-8"))
