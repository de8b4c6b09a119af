"""The per-user cache directory and small JSON records in it.

``$IMGSCAN_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/imgscan``: compiled secret rules
(``rules/``), the installed plugins' entry points (``entrypoints/``) and what the built-in
analyzers tell of themselves (``analyzers/``), each under a key of everything it derives
from. A file not owned by this user, or writable by others, is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imgscan.atomic import mkstemp


def cache_dir() -> Path:
    env = os.environ.get("IMGSCAN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgscan"


def trusted(fd: int) -> bool:
    """Is the open file ours and writable by nobody else?"""
    st = os.fstat(fd)
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_trusted(path: str | os.PathLike[str]) -> bytes | None:
    """The file's bytes when it is ours and writable by nobody else (not a symlink), else
    None: what a cache may load without trusting another user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not trusted(f.fileno()):
            return None
        try:
            return f.read()
        except OSError:
            return None


def read_json(kind: str, key: str) -> Any:
    """The record ``kind/key.json``, or None (absent, untrusted or unreadable)."""
    data = read_trusted(cache_dir() / kind / f"{key}.json")
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def write_json(kind: str, key: str, value: Any) -> None:
    """Best effort: a read-only home only means recomputing next time."""
    directory = cache_dir() / kind
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = mkstemp(str(directory))
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, directory / f"{key}.json")
    except OSError:
        pass
