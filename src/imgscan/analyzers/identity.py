"""What a scan's report key needs of each analyzer — name, version, cache key, class — known
without importing the analyzers, so that a report-cache hit imports none.

The built-in analyzers' cache keys are functions of the scan options and of the secret rule
files (a rules digest), nothing else. What they said on the last load is remembered in the
user's cache (``usercache``) under a key of: the plugin entry points, imgscan's version, the
size and mtime of every module of imgscan's package, the options, and the content key of the
rule files (``rulecache.content_key``). Editing any module or rule file, installing a plugin
or changing an option is a different key, and the analyzers are loaded to be asked again.

A third-party plugin's cache key may depend on anything, so when one is installed nothing is
remembered and every scan loads the plugins (as before).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from imgscan import usercache
from imgscan._version import __version__

FORMAT = "1"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Identity:
    """One analyzer as the report key and the plugin selection see it."""

    entry_point: str
    name: str
    version: int
    cache_key: str
    module: str
    qualname: str
    is_post: bool
    always_run: bool

    def key_part(self) -> tuple[Any, ...]:
        return (self.name, self.version, self.cache_key, self.module, self.qualname)


def of(analyzer: Any, entry_point: str = "") -> Identity:
    cls = type(analyzer)
    from imgscan.analyzers.interface import PostAnalyzer

    return Identity(entry_point, analyzer.name, analyzer.version,
                    getattr(analyzer, "cache_key", lambda: "")(), cls.__module__,
                    cls.__qualname__, isinstance(analyzer, PostAnalyzer),
                    bool(getattr(cls, "always_run", False)))


def code_stamp(package: str = _PACKAGE) -> str:
    """Size and mtime of every module of imgscan's package (a few hundred ``stat``s)."""
    h = hashlib.sha256()
    stack = [package]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name == "__pycache__" or e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.name.endswith((".py", ".toml")):
                st = e.stat()
                h.update(f"{e.path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def memo_key(specs: Sequence[Any], options: Any) -> str | None:
    """The key of what ``specs`` (``PluginSpec``s) say under ``options``, or None when it
    cannot be known without loading them (a third-party plugin, unreadable rule files)."""
    if not specs or any(not s.value.startswith("imgscan.analyzers.") for s in specs):
        return None
    from imgscan.secrets.rulecache import content_key

    rules = content_key(tuple(options.rule_dirs), tuple(options.disabled_rules))
    if rules is None:
        return None
    h = hashlib.sha256(f"analyzers:{FORMAT}:{__version__}\n{code_stamp()}\n{rules}\n".encode())
    h.update(repr([(s.entry_point, s.value) for s in specs]).encode())
    h.update(repr(options).encode())
    return h.hexdigest()


def recall(key: str | None) -> list[Identity] | None:
    if key is None:
        return None
    rows = usercache.read_json("analyzers", key)
    try:
        return [Identity(**row) for row in rows]
    except TypeError:
        return None


def remember(key: str | None, identities: Sequence[Identity]) -> None:
    if key is not None:
        usercache.write_json("analyzers", key, [asdict(i) for i in identities])
