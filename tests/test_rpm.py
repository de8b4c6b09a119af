"""The rpm cataloger against real rpm: databases built with rpmbuild + rpm, the shared real
fixtures (SQLite, BDB, NDB), read-only guarantees, and hostile databases and headers."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import random
import shutil
import sqlite3
import struct
import time
from pathlib import Path

import pytest

import rpm_build as rb
from analyzerharness import LocalFileInput, info_from_stat, run_analyzer
from imgscan.analyzers.rpm import RpmAnalyzer, split_sourcerpm
from imgscan.analyzers.rpm import header as header_mod
from imgscan.analyzers.rpm.header import MAX_HEADER_SIZE, HeaderError, parse_header

# CI clones the repo next to a copy of shared/; IMGSCAN_SHARED overrides for other layouts
SHARED = Path(os.environ.get("IMGSCAN_SHARED")
              or Path(__file__).resolve().parent.parent.parent / "shared")
FIXTURES = SHARED / "fixtures" / "rpmdb"

SPECS = [
    rb.Spec("alpha", "1.0", "1", license="MIT and BSD",
            files=("/usr/share/alpha/a.txt", "/usr/bin/alpha")),
    rb.Spec("beta", "3.1", "4.el9", epoch=2, files=("/usr/share/beta/b",)),
    rb.Spec("zero-epoch", "0.9", "1", epoch=0, files=("/opt/zero/z",)),
    rb.Spec("my-tool", "2.0", "3", files=("/usr/bin/my-tool",),
            subpackages=(("libmytool", ("/usr/lib/libmytool.so.1",)),)),
    *[rb.Spec("multi", "1.0", str(r), files=(f"/usr/share/multi/r{r}",)) for r in (1, 2, 3)],
    rb.Spec("gone", "1", "1", files=("/usr/share/gone/g",)),
]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A root whose rpmdb.sqlite was written by rpm itself, plus what rpm -qa says of it."""
    base = tmp_path_factory.mktemp("rpm")
    root = str(base / "root")
    rb.rpm(root, "--initdb")
    for spec in SPECS:
        for pkg in rb.build(str(base / "top"), spec):
            rb.rpm(root, "-i", "--nodeps", "--justdb", "--replacefiles", pkg)
    rb.rpm(root, "-e", "--nodeps", "--justdb", "gone")
    expected = rb.query_all(root)
    files = rb.query_files(root)
    scan = base / "scan"
    (scan / "var/lib/rpm").mkdir(parents=True)
    shutil.copy(os.path.join(root, "var/lib/rpm/rpmdb.sqlite"), scan / "var/lib/rpm")
    return {"root": root, "scan": str(scan), "expected": expected, "files": files}


def _rows(result) -> list[tuple[str, ...]]:
    rows = []
    for p in result.packages:
        epoch = p.metadata["epoch"]
        rows.append((p.name, p.version, p.arch, p.metadata.get("sourcerpm", ""),
                     p.licenses[0] if p.licenses else "",
                     "(none)" if epoch is None else str(epoch)))
    return sorted(rows)


def test_built_db_matches_rpm_qa(built):
    result = run_analyzer(RpmAnalyzer(), built["scan"])
    assert result.warnings == []
    assert _rows(result) == built["expected"]
    names = [r[0] for r in built["expected"]]
    # the fixture really exercises what it claims to
    assert names.count("multi") == 3 and "gone" not in names and "libmytool" in names
    assert "2:3.1-4.el9" in [r[1] for r in built["expected"]]


def test_built_db_fields_and_files(built):
    result = run_analyzer(RpmAnalyzer(), built["scan"])
    by_name = {(p.name, p.version): p for p in result.packages}
    lib = by_name[("libmytool", "2.0-3")]
    assert (lib.source_name, lib.source_version) == ("my-tool", "2.0-3")
    beta = by_name[("beta", "2:3.1-4.el9")]
    assert (beta.source_name, beta.source_version) == ("beta", "2:3.1-4.el9")
    assert beta.metadata["epoch"] == 2 and beta.metadata["release"] == "4.el9"
    assert beta.locations == ("/var/lib/rpm/rpmdb.sqlite",)
    assert beta.purl == "" and beta.layer is None
    for p in result.packages:
        assert set(p.files) == built["files"][(p.name, p.version)]
        assert all(f.startswith("/") for f in p.files)


def test_sqlite_not_modified(built, tmp_path):
    scan = tmp_path / "s"
    shutil.copytree(built["scan"], scan)
    db = scan / "var/lib/rpm/rpmdb.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    stat_before = os.stat(db)
    listing = sorted(os.listdir(db.parent))
    os.chmod(db.parent, 0o555)  # a write attempt would also fail loudly as non-root
    try:
        result = run_analyzer(RpmAnalyzer(), str(scan))
    finally:
        os.chmod(db.parent, 0o755)
    assert len(result.packages) == len(built["expected"])
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(db.parent)) == listing == ["rpmdb.sqlite"]
    assert os.stat(db).st_mtime_ns == stat_before.st_mtime_ns


def test_sqlite_with_wal(built, tmp_path):
    """Committed rows that live only in the -wal file are seen, and neither file changes."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(Path(built["scan"]) / "var/lib/rpm/rpmdb.sqlite", work)
    conn = sqlite3.connect(work / "rpmdb.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # copy alpha's header as a new row: the WAL now holds a committed extra package
    conn.execute("INSERT INTO Packages(blob) SELECT blob FROM Packages WHERE hnum = "
                 "(SELECT MIN(hnum) FROM Packages)")
    conn.commit()
    scan = tmp_path / "scan" / "var/lib/rpm"
    scan.mkdir(parents=True)
    shutil.copy(work / "rpmdb.sqlite", scan)
    shutil.copy(work / "rpmdb.sqlite-wal", scan)
    conn.close()
    assert (scan / "rpmdb.sqlite-wal").stat().st_size > 0
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in scan.iterdir()}
    result = run_analyzer(RpmAnalyzer(), str(tmp_path / "scan"))
    assert result.warnings == []
    assert len(result.packages) == len(built["expected"]) + 1
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in scan.iterdir()} == hashes
    # without the -wal the extra row is not there: the WAL was really read
    (scan / "rpmdb.sqlite-wal").unlink()
    assert len(run_analyzer(RpmAnalyzer(), str(tmp_path / "scan")).packages) == len(
        built["expected"])


@pytest.mark.parametrize(
    ("fixture", "dbname"),
    [("cbl-mariner-2.0", "rpmdb.sqlite"), ("libuuid", "Packages"), ("sle15-bci", "Packages.db")],
)
@pytest.mark.parametrize("dbdir", ["var/lib/rpm", "usr/lib/sysimage/rpm"])
def test_real_fixtures(fixture, dbname, dbdir, tmp_path):
    src = FIXTURES / fixture / dbname
    assert src.is_file(), f"shared fixtures missing: {src} (shared/ must sit beside the repo)"
    (tmp_path / dbdir).mkdir(parents=True)
    shutil.copy(src, tmp_path / dbdir / dbname)
    result = run_analyzer(RpmAnalyzer(), str(tmp_path))
    assert result.warnings == []
    with open(FIXTURES / fixture / "expected.tsv") as f:
        expected = sorted(
            (r["name"], r["epoch"], r["version"], r["release"], r["arch"], r["sourcerpm"],
             r["license"]) for r in csv.DictReader(f, delimiter="\t"))
    got = sorted(
        (p.name, str(p.metadata["epoch"] or 0), p.metadata["version"], p.metadata["release"],
         p.arch, p.metadata.get("sourcerpm", ""), p.licenses[0] if p.licenses else "")
        for p in result.packages)
    assert got == expected
    for p in result.packages:
        assert p.locations == (f"/{dbdir}/{dbname}",)
        assert p.source_name
    backend = {"rpmdb.sqlite": "sqlite", "Packages": "bdb_ro"}.get(dbname)
    if backend:  # Debian's rpm reads these two: compare file lists with it (on a copy)
        copy = tmp_path / "rpmcopy"
        copy.mkdir()
        shutil.copy(src, copy / dbname)
        files = rb.query_files_db(str(copy), backend)
        assert {(p.name, p.version): set(p.files) for p in result.packages if p.files} == files
    else:  # NDB: every package but the meta ones owns absolute paths
        assert sum(len(p.files) for p in result.packages) > 1000
        assert all(f.startswith("/") for p in result.packages for f in p.files)


def test_sourcerpm_split():
    assert split_sourcerpm("openssl-libs-3.0.7-27.el9.src.rpm") == ("openssl-libs", "3.0.7",
                                                                    "27.el9")
    assert split_sourcerpm("foo-1-2.nosrc.rpm") == ("foo", "1", "2")
    assert split_sourcerpm("garbage") == ("", "", "")


# ---- hostile input ---------------------------------------------------------------------


def _blob(entries: list[tuple[int, int, int, int]], data: bytes, il: int | None = None,
          dl: int | None = None) -> bytes:
    head = struct.pack(">II", len(entries) if il is None else il,
                       len(data) if dl is None else dl)
    return head + b"".join(struct.pack(">iIiI", *e) for e in entries) + data


def test_header_good_minimal():
    data = b"name\0" + b"1.0\0" + b"1\0"
    hdr = parse_header(_blob([(1000, 6, 0, 1), (1001, 6, 5, 1), (1002, 6, 9, 1)], data))
    assert (hdr.string(1000), hdr.string(1001), hdr.string(1002)) == ("name", "1.0", "1")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\0\0\0\1",
        _blob([(1000, 6, 100, 1)], b"x\0"),  # offset outside the data
        _blob([(1000, 6, -4, 1)], b"x\0"),  # negative offset
        _blob([(1000, 6, 0, 1)], b"no terminator"),  # string runs off the end
        _blob([(1117, 8, 0, 0xFFFFFFFF)], b"a\0b\0"),  # huge count
        _blob([(1117, 8, 0, 3)], b"a\0b\0"),  # one string too many
        _blob([(1116, 4, 0, 2)], b"\0\0\0\1"),  # ints past the end
        _blob([(1003, 4, 2, 1)], b"\0\0\0\1"),  # int straddling the end
        _blob([(1000, 42, 0, 1)], b"x\0"),  # unknown type
        _blob([(1000, 6, 0, 1)], b"x\0", il=0xFFFFFFFF),  # il huge
        _blob([(1000, 6, 0, 1)], b"x\0", il=50),  # il larger than the blob
        _blob([(1000, 6, 0, 1)], b"x\0", dl=1 << 30),  # dl huge
        _blob([(1000, 6, 0, 1)], b"x\0", dl=100),  # dl larger than the blob
    ],
)
def test_header_hostile(blob):
    with pytest.raises(HeaderError):
        parse_header(blob)


def test_header_region_and_dribble():
    trailer = struct.pack(">iIiI", 63, 7, -32, 16)  # region = the first 2 entries
    data = b"old\0new\0" + trailer
    entries = [(63, 7, 8, 16), (1000, 6, 0, 1), (1000, 6, 4, 1)]
    assert parse_header(_blob(entries, data)).string(1000) == "new"
    for bad_trailer in (struct.pack(">iIiI", 63, 7, -64, 16),  # region longer than header
                        struct.pack(">iIiI", 63, 7, 16, 16),  # positive offset
                        struct.pack(">iIiI", 63, 7, -20, 16),  # not a multiple of 16
                        struct.pack(">iIiI", 1000, 6, -32, 1)):  # not a region trailer
        with pytest.raises(HeaderError, match="region"):
            parse_header(_blob(entries, b"old\0new\0" + bad_trailer))
    with pytest.raises(HeaderError, match="region"):  # trailer outside the data
        parse_header(_blob([(63, 7, 4, 16), (1000, 6, 0, 1)], b"old\0new\0"))
    with pytest.raises(HeaderError, match="twice"):
        parse_header(_blob([(63, 7, 8, 16), (1000, 6, 0, 1), (1000, 6, 4, 1)],
                           b"old\0new\0" + struct.pack(">iIiI", 63, 7, -48, 16)))


def test_header_size_cap(monkeypatch):
    assert MAX_HEADER_SIZE == 256 << 20
    monkeypatch.setattr(header_mod, "MAX_HEADER_SIZE", 4096)  # same rule, cheaper blob
    good = _blob([(1000, 6, 0, 1)], b"x\0" + b"\0" * 3000)
    assert parse_header(good).string(1000) == "x"
    with pytest.raises(HeaderError, match="limit"):
        parse_header(_blob([(1000, 6, 0, 1)], b"x\0" + b"\0" * 5000))


def test_header_fuzz_never_crashes():
    rng = random.Random(7)
    src = sqlite3.connect(f"file:{FIXTURES / 'cbl-mariner-2.0' / 'rpmdb.sqlite'}?mode=ro"
                          "&immutable=1", uri=True)
    blobs = [b for (b,) in src.execute("SELECT blob FROM Packages LIMIT 5")]
    src.close()
    assert blobs
    for good in blobs:
        for _ in range(300):
            bad = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                bad[rng.randrange(min(len(bad), 4096))] = rng.randrange(256)
            with contextlib.suppress(HeaderError):
                parse_header(bytes(bad))
        for cut in (0, 7, 8, 100, len(good) // 2, len(good) - 1):
            with pytest.raises(HeaderError):
                parse_header(good[:cut])


def _sqlite_db(path: Path, blobs: list[bytes]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)")
    conn.executemany("INSERT INTO Packages(blob) VALUES (?)", [(b,) for b in blobs])
    conn.commit()
    conn.close()


def test_hostile_header_in_db_is_one_warning(built, tmp_path):
    conn = sqlite3.connect(Path(built["scan"]) / "var/lib/rpm/rpmdb.sqlite")
    good = [b for (b,) in conn.execute("SELECT blob FROM Packages")]
    conn.close()
    bad = _blob([(1000, 6, 4096, 1)], b"x\0")
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    _sqlite_db(tmp_path / "var/lib/rpm/rpmdb.sqlite", [*good, bad, b"", b"\xff" * 64])
    result = run_analyzer(RpmAnalyzer(), str(tmp_path))
    assert len(result.packages) == len(built["expected"])
    assert len(result.warnings) == 3
    assert all(w.analyzer == "rpm" and w.path == "/var/lib/rpm/rpmdb.sqlite"
               for w in result.warnings)
    assert any("outside" in w.message for w in result.warnings)


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 50,
                                     b"SQLite format 3\0" + b"\xff" * 4000])
def test_sqlite_not_a_database(content, tmp_path):
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    (tmp_path / "var/lib/rpm/rpmdb.sqlite").write_bytes(content)
    result = run_analyzer(RpmAnalyzer(), str(tmp_path))
    assert result.packages == []
    assert len(result.warnings) == 1 and "cannot read rpm database" in result.warnings[0].message


def test_sqlite_without_packages_table(tmp_path):
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    conn = sqlite3.connect(tmp_path / "var/lib/rpm/rpmdb.sqlite")
    conn.execute("CREATE TABLE other(x)")
    conn.commit()
    conn.close()
    result = run_analyzer(RpmAnalyzer(), str(tmp_path))
    assert result.packages == [] and "Packages" in result.warnings[0].message


def _scan_bytes(tmp_path: Path, name: str, content: bytes):
    d = tmp_path / "var/lib/rpm"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(content)
    path = d / name
    rel = f"var/lib/rpm/{name}"
    return RpmAnalyzer().analyze(LocalFileInput(str(path), info_from_stat(rel, os.stat(path))))


@pytest.mark.parametrize(("fixture", "name"), [("libuuid", "Packages"),
                                               ("sle15-bci", "Packages.db")])
def test_truncated_and_corrupt_pages(fixture, name, tmp_path):
    data = (FIXTURES / fixture / name).read_bytes()
    rng = random.Random(11)
    start = time.monotonic()
    cuts = sorted({0, 10, 31, 32, 100, 4096, 4097, len(data) // 3, len(data) // 2,
                   len(data) - 4096, len(data) - 1})
    for cut in cuts:
        result = _scan_bytes(tmp_path, name, data[:cut])
        assert result.warnings, f"cut at {cut}: no warning"
    for _ in range(60):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        _scan_bytes(tmp_path, name, bytes(bad))  # warnings or packages, never an exception
    assert time.monotonic() - start < 20


def test_bdb_overflow_loop(tmp_path):
    """An overflow chain pointing back at itself is a warning, not a hang."""
    data = bytearray((FIXTURES / "libuuid" / "Packages").read_bytes())
    pagesize = struct.unpack_from("<I", data, 20)[0]
    for pgno in range(1, len(data) // pagesize):
        off = pgno * pagesize
        if data[off + 25] == 7:  # overflow page: point next_pgno at itself
            struct.pack_into("<I", data, off + 16, pgno)
    result = _scan_bytes(tmp_path, "Packages", bytes(data))
    assert result.packages == [] and result.warnings


def test_wrong_backend_for_name(tmp_path):
    ndb = (FIXTURES / "sle15-bci" / "Packages.db").read_bytes()
    result = _scan_bytes(tmp_path, "Packages", ndb)
    assert result.packages == [] and "not a Berkeley DB" in result.warnings[0].message
    result = _scan_bytes(tmp_path, "Packages.db", b"\0" * 8192)
    assert result.packages == [] and "NDB" in result.warnings[0].message


def test_required_paths():
    a = RpmAnalyzer()
    for p in ("var/lib/rpm/rpmdb.sqlite", "var/lib/rpm/Packages", "var/lib/rpm/Packages.db",
              "usr/lib/sysimage/rpm/rpmdb.sqlite", "usr/share/rpm/rpmdb.sqlite"):
        assert a.required(info_from_stat(p, os.stat(__file__)))
    for p in ("var/lib/rpm/Name", "var/lib/rpm/rpmdb.sqlite-wal", "tmp/var/lib/rpm/Packages"):
        assert not a.required(info_from_stat(p, os.stat(__file__)))
