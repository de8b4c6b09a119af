"""The entry points of imgscan's plugin groups, without ``importlib.metadata`` when nothing
was installed or removed since the last run.

``importlib.metadata`` costs tens of milliseconds per process (its import, then reading every
distribution on ``sys.path``). What it finds is remembered under a fingerprint of the
installed distributions: each ``sys.path`` directory with, for every ``*.dist-info`` and
``*.egg-info`` in it, its inode and its ``entry_points.txt``'s size and mtime. Installing,
upgrading or removing a distribution, editing its entry points or changing ``sys.path``
changes the fingerprint, and the groups are read afresh.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, NamedTuple

from imgscan import usercache

#: the groups remembered together (one ``importlib.metadata`` pass serves both)
GROUPS = ("imgscan.analyzers", "imgscan.reports")
FORMAT = "1"


class EntryPointRow(NamedTuple):
    name: str
    value: str  # module:attr
    distribution: str  # its Name ("?" when unknown)
    version: str

    def load(self) -> Any:
        """Import the module and return the object (any error propagates)."""
        import importlib

        module_name, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


#: (``sys.path``, each entry's mtime) -> fingerprint: one process asks several times (the
#: format names, the writer, the analyzers); a distribution added or removed in between
#: changes its directory's mtime, and only an in-place edit of an ``entry_points.txt``
#: during the process would go unseen
_SEEN: dict[tuple[tuple[str, int], ...], str] = {}


def fingerprint() -> str:
    """Changes whenever a distribution on ``sys.path`` (or ``sys.path``) changes."""
    dirs = tuple((entry, _mtime(entry or ".")) for entry in sys.path)
    known = _SEEN.get(dirs)
    if known is None:
        known = _SEEN[dirs] = _fingerprint()
    return known


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _fingerprint() -> str:
    h = hashlib.sha256(f"entrypoints:{FORMAT}\n".encode())
    for entry in sys.path:
        h.update(f"{entry}\0".encode())
        try:
            it = os.scandir(entry or ".")
        except OSError:
            continue
        with it:
            names = sorted((e.name, e.inode()) for e in it
                           if e.name.endswith((".dist-info", ".egg-info")))
        for name, inode in names:
            try:
                st = os.stat(os.path.join(entry or ".", name, "entry_points.txt"))
                sig = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
            except OSError:
                sig = "-"
            h.update(f"{name}:{inode}:{sig}\n".encode())
    return h.hexdigest()


def _scan() -> dict[str, list[list[str]]]:
    from importlib import metadata

    out: dict[str, list[list[str]]] = {g: [] for g in GROUPS}
    for group in GROUPS:
        for ep in metadata.entry_points(group=group):
            dist = ep.dist
            name = (dist.metadata.get_all("Name") or ["?"])[0] if dist is not None else "?"
            version = (dist.version or "") if dist is not None else ""
            out[group].append([ep.name, ep.value, name, version])
    return out


_MEMO: dict[str, dict[str, list[list[str]]]] = {}


def group(name: str) -> list[EntryPointRow]:
    """The entry points of ``name`` (one of ``GROUPS``), in ``importlib.metadata``'s order."""
    key = fingerprint()
    found = _MEMO.get(key)
    if found is None:
        found = usercache.read_json("entrypoints", key)
        if not (isinstance(found, dict) and all(isinstance(found.get(g), list)
                                                for g in GROUPS)):
            found = _scan()
            usercache.write_json("entrypoints", key, found)
        _MEMO.clear()
        _MEMO[key] = found
    return [EntryPointRow(*row) for row in found[name]]
