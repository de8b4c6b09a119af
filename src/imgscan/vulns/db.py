"""The offline vulnerability database: OSV records in SQLite, indexed by
(ecosystem, normalised package name).

Imports are one SQLite transaction in WAL mode: readers keep seeing the previous database
until the commit, and a failed or SIGKILLed import leaves nothing behind (SQLite discards
uncommitted WAL frames on the next open). Re-imports are incremental: a record is rewritten
only when its ``modified`` is newer than the stored one. The file carries its own schema
version and a newer one is refused with a message, never misread.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgscan.errors import ImgscanError
from imgscan.vulns.osv import Problem, iter_records

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    withdrawn TEXT,
    source TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS affected (
    rid TEXT NOT NULL,
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS affected_pkg ON affected (ecosystem, name);
CREATE INDEX IF NOT EXISTS affected_rid ON affected (rid);
"""

#: what each file or zip member looked like when it was last imported (added to schema 1
#: databases on their next import; a database without it simply re-reads everything once)
_SOURCES = "CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, stamp TEXT NOT NULL)"


class DatabaseError(ImgscanError):
    """The database is missing, unreadable, or of a schema this imgscan does not know."""


@dataclass
class SourceCounts:
    """What one path given to an import contributed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: int = 0


@dataclass
class ImportResult:
    """What an import did; ``problems`` are the skipped files with the reason for each."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    #: counts per path given to the import (a zip, a directory, a file), in the order given
    by_source: dict[str, SourceCounts] = field(default_factory=dict)
    path: str = ""

    @property
    def records(self) -> int:
        return self.added + self.updated + self.unchanged


@dataclass(frozen=True)
class Status:
    path: str
    schema_version: int
    records: int
    withdrawn: int
    newest_modified: str
    imported_at: str
    ecosystems: dict[str, int]


def normalize_name(ecosystem: str, name: str) -> str:
    """The key a package name is stored and looked up under: PEP 503 for PyPI, lowercase for
    crates.io; other ecosystems' names are case-sensitive (Go module paths, Maven ids)."""
    base = ecosystem.split(":", 1)[0]
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    if base == "crates.io":
        return name.lower()
    return name


def normalize_time(text: str) -> str:
    """An RFC 3339 time as a fixed-width UTC string, so that stored times compare as text."""
    t = datetime.fromisoformat(text.replace("z", "Z"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create and not path.exists():
        raise DatabaseError(f"no vulnerability database at {path}; run `imgscan db import`")
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        version = _schema_version(conn)
    except sqlite3.DatabaseError as e:
        raise DatabaseError(f"{path}: not a vulnerability database ({e})") from None
    if version is None and create:
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
    elif version is None:
        raise DatabaseError(f"{path}: not a vulnerability database (no schema version)")
    elif version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path}: database schema version {version} is newer than this imgscan supports "
            f"({SCHEMA_VERSION}); upgrade imgscan or import into a new --db path")
    return conn


def _schema_version(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone()
    if row is None:
        return None
    v = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return int(v[0]) if v else None


@contextmanager
def open_db(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A read connection; ``DatabaseError`` when there is no usable database at ``path``."""
    conn = _connect(Path(path), create=False)
    try:
        yield conn
    finally:
        conn.close()


def check(path: str | os.PathLike[str]) -> None:
    """Fail fast (``DatabaseError``) when there is no usable database at ``path``; cheap
    (opens it and reads the schema version), unlike ``status``, which counts every record."""
    with open_db(path):
        pass


def import_paths(db_path: str | os.PathLike[str],
                 paths: Iterable[str | os.PathLike[str]]) -> ImportResult:
    """Import OSV records from zip exports, directories and files, incrementally by
    ``modified``, in one transaction (all or nothing)."""
    start = time.monotonic()
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = ImportResult(path=str(path))
    conn = _connect(path, create=True)
    try:
        conn.execute(_SOURCES)
        known = dict(conn.execute("SELECT id, modified FROM records"))
        seen = dict(conn.execute("SELECT source, stamp FROM sources"))
        conn.execute("BEGIN IMMEDIATE")
        for given in paths:
            counts = result.by_source.setdefault(str(given), SourceCounts())
            before = (result.added, result.updated, result.unchanged, len(result.problems))
            for source, rec, problem, stamp in iter_records([given], seen):
                if problem is not None:
                    result.problems.append(problem)
                    continue
                if rec is None:  # the same bytes as last time: not read again
                    result.unchanged += 1
                    continue
                try:
                    _store(conn, source, rec, known, result)
                except ValueError as e:  # a time that fromisoformat refuses
                    result.problems.append(Problem(source, str(e)))
                    continue
                if stamp:
                    conn.execute("INSERT OR REPLACE INTO sources VALUES (?, ?)", (source, stamp))
            counts.added += result.added - before[0]
            counts.updated += result.updated - before[1]
            counts.unchanged += result.unchanged - before[2]
            counts.problems += len(result.problems) - before[3]
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('imported_at', ?)",
                     (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    result.seconds = time.monotonic() - start
    return result


def _store(conn: sqlite3.Connection, source: str, rec: dict[str, Any],
           known: dict[str, str], result: ImportResult) -> None:
    rid = rec["id"]
    modified = normalize_time(rec["modified"])
    withdrawn = normalize_time(rec["withdrawn"]) if rec.get("withdrawn") else None
    old = known.get(rid)
    if old is not None and old >= modified:
        result.unchanged += 1
        return
    if old is not None:
        conn.execute("DELETE FROM affected WHERE rid=?", (rid,))
        result.updated += 1
    else:
        result.added += 1
    known[rid] = modified
    data = zlib.compress(json.dumps(_header(rec), separators=(",", ":")).encode(), 1)
    conn.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?)",
                 (rid, modified, withdrawn, source, data))
    conn.executemany(
        "INSERT INTO affected VALUES (?,?,?,?)",
        [(rid, a["package"]["ecosystem"],
          normalize_name(a["package"]["ecosystem"], a["package"]["name"]),
          json.dumps(a, separators=(",", ":")))
         for a in rec.get("affected", [])])


def _header(rec: dict[str, Any]) -> dict[str, Any]:
    """What a finding needs from a record besides the matched ``affected`` entry."""
    keep = ("id", "modified", "aliases", "summary", "severity", "database_specific")
    out = {k: rec[k] for k in keep if k in rec}
    if not out.get("summary") and rec.get("details"):
        out["summary"] = rec["details"].strip().split("\n", 1)[0][:200]
    return out


def status(db_path: str | os.PathLike[str]) -> Status:
    """Ecosystems with their record counts, newest ``modified`` and the schema version."""
    with open_db(db_path) as conn:
        ecos: dict[str, int] = {}
        for eco, n in conn.execute(
                "SELECT ecosystem, COUNT(DISTINCT rid) FROM affected GROUP BY ecosystem"):
            base = eco.split(":", 1)[0]
            ecos[base] = ecos.get(base, 0) + n
        total, withdrawn, newest = conn.execute(
            "SELECT COUNT(*), COUNT(withdrawn), MAX(modified) FROM records").fetchone()
        imported = conn.execute("SELECT value FROM meta WHERE key='imported_at'").fetchone()
        return Status(path=str(db_path), schema_version=_schema_version(conn) or 0,
                      records=total, withdrawn=withdrawn, newest_modified=newest or "",
                      imported_at=imported[0] if imported else "",
                      ecosystems=dict(sorted(ecos.items())))


def lookup(conn: sqlite3.Connection, ecosystems: Iterable[str], name: str
           ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record header, affected entry) for every live (not withdrawn) record naming
    ``name`` in one of ``ecosystems``."""
    ecos = list(ecosystems)
    if not ecos:
        return []
    key = normalize_name(ecos[0], name)
    marks = ",".join("?" * len(ecos))
    rows = conn.execute(
        f"SELECT r.data, a.data FROM affected a JOIN records r ON r.id = a.rid "
        f"WHERE a.ecosystem IN ({marks}) AND a.name = ? AND r.withdrawn IS NULL",
        (*ecos, key)).fetchall()
    return [(json.loads(zlib.decompress(h)), json.loads(a)) for h, a in rows]
