"""Reading OSV records (FORMATS.md §7.1) from zip exports, directories and single files.

A malformed record never stops an import: it is reported with the file it came from and
skipped, because one bad advisory among a hundred thousand must not leave a scanner blind.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SUFFIXES = (".json", ".yaml", ".yml")
_EVENT_KEYS = {"introduced", "fixed", "last_affected", "limit"}
_RANGE_TYPES = {"SEMVER", "ECOSYSTEM", "GIT"}
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class RecordError(ValueError):
    """A record that does not follow the OSV schema closely enough to be matched."""


@dataclass(frozen=True)
class Problem:
    """A file, or a member of a zip, that was skipped, and why."""

    source: str
    message: str


def _load(name: str, data: bytes) -> Any:
    if name.endswith((".yaml", ".yml")):
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster
        rec = yaml.load(data, Loader=loader)  # a safe loader either way
        if isinstance(rec, dict):  # YAML reads unquoted times as datetimes
            for k in ("modified", "published", "withdrawn"):
                if hasattr(rec.get(k), "isoformat"):
                    rec[k] = rec[k].isoformat().replace("+00:00", "Z")
        return rec
    return json.loads(data)


def validate(rec: Any) -> dict[str, Any]:
    """The record if it can be matched; ``RecordError`` naming the first problem otherwise.

    Only what matching relies on is checked: ids, timestamps, the shape of ``affected`` and of
    every range's events (one key each, at least one ``introduced``, not both ``fixed`` and
    ``last_affected``)."""
    if not isinstance(rec, dict):
        raise RecordError("not a JSON object")
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise RecordError("missing id")
    modified = rec.get("modified")
    if not isinstance(modified, str) or not _TIME.fullmatch(modified):
        raise RecordError(f"{rid}: modified is not an RFC 3339 time: {modified!r}")
    withdrawn = rec.get("withdrawn")
    if withdrawn is not None and not isinstance(withdrawn, str):
        raise RecordError(f"{rid}: withdrawn is not a time")
    for key in ("aliases", "related"):
        v = rec.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise RecordError(f"{rid}: {key} is not a list of ids")
    affected = rec.get("affected", [])
    if not isinstance(affected, list):
        raise RecordError(f"{rid}: affected is not a list")
    for n, aff in enumerate(affected):
        where = f"{rid}: affected[{n}]"
        if not isinstance(aff, dict):
            raise RecordError(f"{where} is not an object")
        pkg = aff.get("package")
        if not isinstance(pkg, dict) or not isinstance(pkg.get("ecosystem"), str) \
                or not isinstance(pkg.get("name"), str):
            raise RecordError(f"{where}: package needs an ecosystem and a name")
        versions = aff.get("versions", [])
        if not isinstance(versions, list) or not all(isinstance(x, str) for x in versions):
            raise RecordError(f"{where}: versions is not a list of strings")
        ranges = aff.get("ranges", [])
        if not isinstance(ranges, list):
            raise RecordError(f"{where}: ranges is not a list")
        for r in ranges:
            _check_range(r, where)
    return rec


def _check_range(r: Any, where: str) -> None:
    if not isinstance(r, dict) or r.get("type") not in _RANGE_TYPES:
        raise RecordError(f"{where}: range type must be one of {sorted(_RANGE_TYPES)}")
    events = r.get("events")
    if not isinstance(events, list) or not events:
        raise RecordError(f"{where}: a range needs events")
    kinds = set()
    for ev in events:
        if not isinstance(ev, dict) or len(ev) != 1:
            raise RecordError(f"{where}: each event has exactly one key")
        (k, v), = ev.items()
        if k not in _EVENT_KEYS or not isinstance(v, str) or not v:
            raise RecordError(f"{where}: bad event {ev!r}")
        kinds.add(k)
    if "introduced" not in kinds:
        raise RecordError(f"{where}: a range needs an introduced event")
    if {"fixed", "last_affected"} <= kinds:
        raise RecordError(f"{where}: a range has both fixed and last_affected")


def iter_records(paths: list[str | os.PathLike[str]], seen: Mapping[str, str] | None = None
                 ) -> Iterator[tuple[str, dict[str, Any] | None, Problem | None, str]]:
    """``(source, record, None, stamp)`` for each valid record and ``(source, None, problem,
    stamp)`` for each skipped one, over zip exports, directories (recursively) and single
    files. ``stamp`` is (size, mtime) of a file or (CRC, size) of a zip member; a source whose
    stamp equals ``seen[source]`` is not read at all and comes back as ``(source, None, None,
    stamp)``, which makes re-importing an unchanged export cost a directory walk or a read of
    the zip's central directory instead of parsing every record."""
    seen = seen or {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.name.endswith(_SUFFIXES) and f.is_file():
                    st = f.stat()
                    yield _one(str(f), f.read_bytes, f"{st.st_size}:{st.st_mtime_ns}", seen)
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.is_dir() and info.filename.endswith(_SUFFIXES):
                        yield _one(f"{path}!{info.filename}",
                                   lambda i=info: z.read(i),
                                   f"crc:{info.CRC:08x}:{info.file_size}", seen)
        elif path.is_file():
            st = path.stat()
            yield _one(str(path), path.read_bytes, f"{st.st_size}:{st.st_mtime_ns}", seen)
        else:
            yield str(path), None, Problem(str(path), "no such file or directory"), ""


def _one(source: str, read: Any, stamp: str, seen: Mapping[str, str]
         ) -> tuple[str, dict[str, Any] | None, Problem | None, str]:
    if seen.get(source) == stamp:
        return source, None, None, stamp
    try:
        return source, validate(_load(source, read())), None, stamp
    except RecordError as e:
        return source, None, Problem(source, str(e)), stamp
    except (ValueError, OSError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        return source, None, Problem(source, f"unreadable: {e}"), stamp
    except Exception as e:  # yaml.YAMLError and friends; PyYAML is imported lazily
        return source, None, Problem(source, f"unreadable: {type(e).__name__}: {e}"), stamp
