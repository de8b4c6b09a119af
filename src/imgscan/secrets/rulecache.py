"""Rules are validated, ReDoS-checked and compiled once per rules digest, not once per run.

Loading the built-in rules costs a schema validation (jsonschema), a ReDoS analysis and a
regex compile for every rule: ~0.3 s, more than a warm scan's whole budget. The loaded
``RuleSet`` is pickled under a key made of the rule files' contents (so editing any rule
file, adding one or changing ``--disable-rule`` invalidates it) and the engine version; a
hit skips validation altogether. Regexes are ``LazyPattern``s: compiled on first use, so a
scan that finds every layer cached never compiles one.

The cache lives in ``$IMGSCAN_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/imgscan``;
a file not owned by this user, or writable by others, is ignored (it is unpickled).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: bump when the pickled shape of a RuleSet changes
CACHE_FORMAT = "1"


class LazyPattern:
    """A bytes regex compiled on first use; pickles as its source only."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str, compiled: re.Pattern[bytes] | None = None) -> None:
        self.pattern = pattern
        self._compiled = compiled

    @property
    def compiled(self) -> re.Pattern[bytes]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern.encode("utf-8"))
        return self._compiled

    @property
    def groupindex(self) -> Any:
        return self.compiled.groupindex

    def search(self, *a: Any) -> Any:
        return self.compiled.search(*a)

    def match(self, *a: Any) -> Any:
        return self.compiled.match(*a)

    def fullmatch(self, *a: Any) -> Any:
        return self.compiled.fullmatch(*a)

    def finditer(self, *a: Any) -> Any:
        return self.compiled.finditer(*a)

    def findall(self, *a: Any) -> Any:
        return self.compiled.findall(*a)

    def __reduce__(self) -> tuple[Any, ...]:
        return (LazyPattern, (self.pattern,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


def cache_dir() -> Path:
    env = os.environ.get("IMGSCAN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgscan"


def rules_key(files: Iterable[Path], extra: str) -> str | None:
    """A digest of every rule file's path and content (None when one cannot be read:
    the uncached load then reports the problem)."""
    h = hashlib.sha256(f"rulecache:{CACHE_FORMAT}\n{extra}\n".encode())
    try:
        for p in files:
            h.update(f"{p}\n".encode())
            h.update(p.read_bytes())
            h.update(b"\n\0")
    except OSError:
        return None
    return h.hexdigest()


def cached(key: str | None, load: Callable[[], Any]) -> Any:
    """``load()``'s result, from the pickle under ``key`` when there is a trustworthy one."""
    if key is None:
        return load()
    path = cache_dir() / "rules" / f"{key}.pickle"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid == os.geteuid() and not st.st_mode & 0o022:
                try:
                    return pickle.load(f)  # our own file, checked above
                except Exception:  # a truncated or stale pickle is a miss
                    pass
    value = load()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: load every time
    return value
