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
import tempfile
from collections.abc import Sequence
from typing import Any

from imgscan.model import Report

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


def get(cache_root: str, key: str) -> Report | None:
    try:
        fd = os.open(_path(cache_root, key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            report = pickle.load(f)  # our own file, checked above
        except Exception:
            return None
    return report if isinstance(report, Report) else None


def put(cache_root: str, key: str, report: Report) -> None:
    directory = os.path.join(cache_root, "reports")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(report, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, _path(cache_root, key))
    except (OSError, pickle.PicklingError):
        pass  # best effort
