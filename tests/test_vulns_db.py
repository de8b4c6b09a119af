"""The vulnerability database: imports of real OSV records (zip, dir, YAML), incremental
re-import, malformed records reported by file, schema version, and an import SIGKILLed
half-way leaving the previous database usable."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imgscan.model import OSInfo, Package
from imgscan.vulns import DatabaseError, import_paths, match_packages, status

DATA = Path(__file__).parent / "data" / "osv"


def test_import_dir_zip_and_status(tmp_path: Path) -> None:
    db = tmp_path / "vulns.db"
    z = tmp_path / "osv-Go.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in (DATA / "go").iterdir():
            f.write(p, p.name)
    r = import_paths(db, [z, DATA / "pypa", DATA / "edge"])
    assert not r.problems
    assert r.added == 3 + 2 + 9
    st = status(db)
    assert st.records == 14 and st.withdrawn == 1 and st.schema_version == 1
    assert st.ecosystems["Go"] == 3 and st.ecosystems["PyPI"] == 5
    assert st.ecosystems["Debian"] == 2
    assert st.newest_modified.startswith("2024-01-01") or st.newest_modified > "2024"
    again = import_paths(db, [z, DATA / "pypa", DATA / "edge"])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 14)


def test_incremental_by_modified(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    rec = json.loads((DATA / "edge" / "EDGE-LAST.json").read_text())
    src = tmp_path / "r.json"
    src.write_text(json.dumps(rec))
    import_paths(db, [src])
    pkg = Package(type="pypi", name="edge-pkg", version="1.4")
    assert match_packages([pkg], None, db).findings
    older = dict(rec, modified="2023-01-01T00:00:00Z",
                 affected=[dict(rec["affected"][0], ranges=[])])
    src.write_text(json.dumps(older))
    assert import_paths(db, [src]).unchanged == 1  # an older copy never wins
    newer = dict(older, modified="2024-06-01T00:00:00+02:00")
    src.write_text(json.dumps(newer))
    assert import_paths(db, [src]).updated == 1
    assert not match_packages([pkg], None, db).findings


def test_malformed_reported_by_file(tmp_path: Path) -> None:
    d = tmp_path / "recs"
    d.mkdir()
    (d / "good.json").write_text((DATA / "edge" / "EDGE-LIMIT.json").read_text())
    (d / "broken.json").write_text("{not json")
    (d / "noid.json").write_text('{"modified": "2024-01-01T00:00:00Z"}')
    (d / "badtime.json").write_text('{"id": "X-1", "modified": "yesterday"}')
    bad_ev = {"id": "X-2", "modified": "2024-01-01T00:00:00Z", "affected": [
        {"package": {"ecosystem": "npm", "name": "a"},
         "ranges": [{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}]}]}
    (d / "noint.json").write_text(json.dumps(bad_ev))
    both = dict(bad_ev, id="X-3")
    both["affected"] = [dict(bad_ev["affected"][0], ranges=[{"type": "SEMVER", "events": [
        {"introduced": "0"}, {"fixed": "1"}, {"last_affected": "2"}]}])]
    (d / "both.json").write_text(json.dumps(both))
    (d / "bad.yaml").write_text("id: [unclosed\n")
    r = import_paths(tmp_path / "v.db", [d, tmp_path / "missing.zip"])
    assert r.added == 1
    by_file = {Path(p.source.split("!")[0]).name: p.message for p in r.problems}
    assert set(by_file) == {"broken.json", "noid.json", "badtime.json", "noint.json",
                            "both.json", "bad.yaml", "missing.zip"}
    assert "introduced" in by_file["noint.json"]
    assert "both fixed and last_affected" in by_file["both.json"]


def test_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    import_paths(db, [DATA / "edge"])
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(DatabaseError, match="schema version 99 is newer"):
        status(db)
    with pytest.raises(DatabaseError, match="schema version 99 is newer"):
        import_paths(db, [DATA / "edge"])
    with pytest.raises(DatabaseError, match="no vulnerability database"):
        status(tmp_path / "none.db")
    (tmp_path / "junk.db").write_bytes(b"x" * 4096)
    with pytest.raises(DatabaseError):
        status(tmp_path / "junk.db")


_CHILD = r"""
import json, sys, time
from pathlib import Path
import imgscan.vulns.db as db

real = db.iter_records
def slow(paths, *more):
    for n, item in enumerate(real(paths, *more)):
        if n == 3000:
            print("mid", flush=True)
            time.sleep(120)
        yield item
db.iter_records = slow
db.import_paths(sys.argv[1], [sys.argv[2]])
"""


def test_sigkill_during_import_keeps_previous(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    import_paths(db, [DATA / "edge", DATA / "pypa"])
    before = status(db)
    gen = tmp_path / "gen"
    gen.mkdir()
    with zipfile.ZipFile(gen / "many.zip", "w") as z:
        for i in range(5000):
            z.writestr(f"X-{i}.json", json.dumps({
                "id": f"X-{i}", "modified": "2025-01-01T00:00:00Z", "affected": [
                    {"package": {"ecosystem": "PyPI", "name": "jinja2"},
                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), str(gen / "many.zip")],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "mid"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    after = status(db)
    assert (after.records, after.ecosystems) == (before.records, before.ecosystems)
    pkg = Package(type="pypi", name="Jinja2", version="2.10")
    ids = {i for f in match_packages([pkg], None, db).findings for i in f.properties["ids"]}
    assert ids == {"PYSEC-2019-217", "GHSA-462w-v97r-4m45"}
    assert import_paths(db, [gen / "many.zip"]).added == 5000  # and the next import works
    assert status(db).records == before.records + 5000


def test_os_less_report_needs_no_os(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    import_paths(db, [DATA / "edge"])
    deb = Package(type="deb", name="libssl3", version="3.0.9-1", source_name="openssl")
    assert not match_packages([deb], None, db).findings
    assert match_packages([deb], OSInfo(id="debian", version_id="12"), db).findings
