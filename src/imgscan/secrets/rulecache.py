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
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from imgscan.atomic import mkstemp
from imgscan.usercache import cache_dir, trusted

#: bump when the pickled shape of a RuleSet changes
CACHE_FORMAT = "1"
#: bump when the engine's behaviour changes for the same rules (part of ``RuleSet.digest``)
ENGINE_VERSION = "1"

__all__ = ["CACHE_FORMAT", "ENGINE_VERSION", "LazyPattern", "cache_dir", "cached",
           "content_key", "is_cached", "rule_files", "rules_dir", "rules_key"]


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


def rules_dir() -> Path:
    """Where the built-in rules are: ``<repo>/rules`` in a source checkout, else the
    ``imgscan/_rules`` directory that the wheel ships."""
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "rules"
    if (checkout / "secrets").is_dir() and (here.parents[3] / "pyproject.toml").is_file():
        return checkout
    return here.parents[1] / "_rules"


def rule_files(extra_dirs: Sequence[str | Path] = (), builtin: bool = True) -> list[Path] | None:
    """The rule files in load order: the built-in ``*.toml``, then each extra directory's
    ``*.toml`` and ``secrets/*.toml``; None when an extra directory is not a directory."""
    dirs = ([rules_dir() / "secrets"] if builtin else []) + [Path(d) for d in extra_dirs]
    files: list[Path] = []
    for i, d in enumerate(dirs):
        if builtin and i == 0:
            files += sorted(d.glob("*.toml"))
        elif not d.is_dir():
            return None
        else:
            files += sorted(d.glob("*.toml")) + sorted((d / "secrets").glob("*.toml"))
    return files


def content_key(extra_dirs: Sequence[str | Path] = (), disabled: Iterable[str] = (),
                builtin: bool = True) -> str | None:
    """The key of a rule set: every rule file's path and content, the disabled ids and the
    engine version (None when a file or directory cannot be read)."""
    files = rule_files(extra_dirs, builtin)
    if not files:
        return None
    off = ",".join(sorted(set(disabled)))
    ndirs = len(extra_dirs) + (1 if builtin else 0)
    return rules_key(files, f"{ENGINE_VERSION}|{builtin}|{ndirs}|{off}")


def is_cached(key: str) -> bool:
    """Was the rule set of ``key`` loaded (validated) before? Only a valid set is cached."""
    try:
        fd = os.open(cache_dir() / "rules" / f"{key}.pickle",
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return trusted(fd)
    finally:
        os.close(fd)


#: (files with their size, mtime and inode, extra) -> key: one warm scan asks for the key
#: of the same files three times (options, analyzer identities, rules). Only files last
#: written over two seconds ago are remembered (git's "racy" rule: a file written twice
#: within one tick of the file system's clock keeps its mtime), and a file written since
#: has another mtime, so it is read again.
_KEYS: dict[tuple[object, ...], str] = {}
_SETTLED_NS = 2_000_000_000


def rules_key(files: Iterable[Path], extra: str) -> str | None:
    """A digest of every rule file's path and content (None when one cannot be read:
    the uncached load then reports the problem)."""
    files = list(files)
    try:
        stats = [(str(p), st.st_size, st.st_mtime_ns, st.st_ino)
                 for p, st in ((p, p.stat()) for p in files)]
        seen = (*stats, extra)
    except OSError:
        return None
    known = _KEYS.get(seen)
    if known is not None:
        return known
    h = hashlib.sha256(f"rulecache:{CACHE_FORMAT}\n{extra}\n".encode())
    try:
        for p in files:
            h.update(f"{p}\n".encode())
            h.update(p.read_bytes())
            h.update(b"\n\0")
    except OSError:
        return None
    key = h.hexdigest()
    if all(mtime < time.time_ns() - _SETTLED_NS for _, _, mtime, _ in stats):
        _KEYS[seen] = key
    return key


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
        fd, tmp = mkstemp(str(path.parent))
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: load every time
    return value
