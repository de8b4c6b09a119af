"""Hard links: a file with many names is one file, so a finding in it is one finding.

A layer tar stores a file once and every further name as a hard-link entry pointing at it
(busybox: one binary, some 400 names). Analyzers see each name, so they report the same
secret or ELF weakness once per name. ``fold_hard_links`` merges those into one finding
whose location lists every path (``Location.paths``), instead of 400 findings or one
arbitrary path. It works on plain values (findings and each layer's tar entries), so any
scanner, streaming or store-backed, can call it at merge time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from imgscan.fileinfo import FileInfo, FileKind
from imgscan.model import Finding, printable_name

#: a hard link to a hard link is not something tar writes, but a crafted layer may chain them
MAX_LINK_HOPS = 64


def link_groups(entries: Iterable[FileInfo]) -> dict[str, str]:
    """Every path of a layer that shares its file with another path, mapped to the path the
    tar stored the file under (the group's canonical name). Paths have no leading slash."""
    target = {e.path: e.linkname.lstrip("/") for e in entries if e.kind is FileKind.HARDLINK}
    canon: dict[str, str] = {}
    for path, t in target.items():
        hops = 0
        while t in target and hops < MAX_LINK_HOPS:
            t = target[t]
            hops += 1
        canon[path] = t
        canon.setdefault(t, t)
    # findings carry names as reports show them (model.printable_name)
    return {printable_name(p): printable_name(c) for p, c in canon.items()}


def fold_hard_links(findings: Sequence[Finding],
                    groups: Mapping[int | None, Mapping[str, str]],
                    visible: Mapping[str, int] | None = None) -> list[Finding]:
    """One finding per (file, rule, place in the file) instead of one per name, listing every
    name. ``groups`` maps a layer index (None for a directory scan) to that layer's
    ``link_groups``; ``visible`` (path → index of the layer it is seen from) limits the names
    of a visible finding to those an upper layer did not delete or replace. The kept finding
    is the one at the canonical name (else the first path); ``location.paths`` lists every
    name, that path first. Analyzers that read only the canonical name (secrets) get the
    other names this way too."""
    if not any(groups.values()):
        return list(findings)
    names: dict[tuple[int | None, str], list[str]] = {}
    for layer, group in groups.items():
        for path, canon in group.items():
            names.setdefault((layer, canon), []).append(path)
    out: list[Finding | tuple[Any, ...]] = []
    members: dict[tuple[Any, ...], list[Finding]] = {}
    for f in findings:
        loc = f.location
        layer = loc.layer.index if loc.layer is not None else None
        linked = groups.get(layer, {}).get(loc.path.lstrip("/")) if loc.path else None
        if linked is None:
            out.append(f)
            continue
        key = (layer, linked, loc.hidden_by, f.rule_id, loc.line, loc.column,
               f.evidence_fingerprint())
        if key not in members:
            members[key] = []
            out.append(key)
        members[key].append(f)
    result = []
    for item in out:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        layer, canon, hidden_by = item[0], item[1], item[2]
        every = names[(layer, canon)]
        if hidden_by is None and visible is not None:
            every = [p for p in every if visible.get(p, layer) == layer]
        result.append(_merge(members[item], canon, every))
    return result


def _merge(same: list[Finding], canon: str, every: Iterable[str]) -> Finding:
    keep = next((f for f in same if f.location.path == "/" + canon),
                min(same, key=lambda f: f.location.path))
    first = keep.location.path
    paths = sorted({"/" + p for p in every} | {f.location.path for f in same})
    if len(paths) < 2:
        return keep
    ordered = (first, *(p for p in paths if p != first))
    return dataclasses.replace(keep, location=dataclasses.replace(keep.location,
                                                                  paths=ordered))
