"""Vulnerability database benchmark: import throughput of the real Go and PyPA databases
(bare git mirrors from the `fetch` tool, exported to a directory first), padded with generated
records to >= 100,000, then matching a Debian + Python + npm + Go package set against it.

Usage: python bench/bench_vulns.py GO_VULNDB_GITDIR PYPA_GITDIR [WORKDIR]
       python bench/bench_vulns.py --scan ROOT IMAGE DB   # warm scan --vulns minus warm scan
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from imgscan.model import OSInfo, Package
from imgscan.vulns import import_paths, match_packages, status


def export(gitdir: str, prefix: str, out: Path) -> int:
    """Write every record under ``prefix`` at HEAD into ``out`` (git archive, no checkout)."""
    out.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", f"--git-dir={gitdir}", "archive", "HEAD", prefix],
                         capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    return sum(1 for p in out.rglob("*") if p.suffix in (".json", ".yaml"))


def generated(n: int, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            eco, name = [("Debian:12", f"srcpkg{i % 5000}"), ("PyPI", f"pkg{i % 9000}"),
                         ("npm", f"mod{i % 9000}"), ("Go", f"example.com/m{i % 9000}")][i % 4]
            ev = [{"introduced": "0"}, {"fixed": "1.2.3" if eco != "Debian:12" else "1.2-1"}]
            z.writestr(f"GEN-{i}.json", json.dumps({
                "id": f"GEN-{i}", "modified": "2025-01-01T00:00:00Z", "aliases": [f"CVE-X-{i}"],
                "affected": [{"package": {"ecosystem": eco, "name": name}, "ranges": [
                    {"type": "ECOSYSTEM" if eco != "Go" else "SEMVER", "events": ev}]}]}))


def main() -> None:
    go_git, pypa_git = sys.argv[1], sys.argv[2]
    work = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp())
    n_go = export(go_git, "data/osv", work / "go")
    n_pypa = export(pypa_git, "vulns", work / "pypa")
    db = work / "vulns.db"
    db.unlink(missing_ok=True)
    r = import_paths(db, [work / "go", work / "pypa"])
    print(f"real import: {r.records} records ({n_go} Go, {n_pypa} PyPA files), "
          f"{len(r.problems)} skipped, {r.seconds:.2f} s, {r.records / r.seconds:,.0f} records/s")
    pad = max(0, 100_000 - r.records)
    generated(pad, work / "gen.zip")
    g = import_paths(db, [work / "gen.zip"])
    print(f"generated import: {g.records} records, {g.seconds:.2f} s, "
          f"{g.records / g.seconds:,.0f} records/s")
    t = time.monotonic()
    again = import_paths(db, [work / "go", work / "pypa", work / "gen.zip"])
    print(f"re-import unchanged (files by size+mtime, zip members by CRC): {again.unchanged} "
          f"in {time.monotonic() - t:.2f} s")
    (work / "gen.zip").touch()
    t = time.monotonic()
    again = import_paths(db, [work / "gen.zip"])
    print(f"re-import of the touched zip (CRCs unchanged): {again.unchanged} "
          f"in {time.monotonic() - t:.2f} s")
    print(f"status: {status(db).records} records")
    pkgs = [Package(type="deb", name=f"bin{i}", version="1.0-1", source_name=f"srcpkg{i}")
            for i in range(120)]
    pkgs += [Package(type="pypi", name=n, version=v) for n, v in
             [("jinja2", "2.10"), ("urllib3", "1.25.8"), ("requests", "2.19.0"),
              ("django", "2.2.0"), ("pyyaml", "5.1")] + [(f"pkg{i}", "1.0") for i in range(60)]]
    pkgs += [Package(type="npm", name=f"mod{i}", version="1.0.0") for i in range(150)]
    pkgs += [Package(type="golang", name="stdlib", version="go1.19.8"),
             Package(type="golang", name="golang.org/x/text", version="v0.3.5"),
             Package(type="golang", name="golang.org/x/net", version="v0.0.1")]
    pkgs += [Package(type="golang", name=f"example.com/m{i}", version="v1.0.0")
             for i in range(60)]
    os_info = OSInfo(id="debian", version_id="12")
    match_packages(pkgs[:1], os_info, db)
    t = time.monotonic()
    res = match_packages(pkgs, os_info, db)
    print(f"match: {len(pkgs)} packages -> {len(res.findings)} findings in "
          f"{time.monotonic() - t:.3f} s")


def scan_overhead(root: str, image: str, db: str, runs: int = 5) -> None:
    """Median of ``runs`` warm scans with and without --vulns (the layer cache is warm after
    the first of each), through the library the CLI calls."""
    import statistics

    from imgscan import scan

    def timed(**kw: object) -> float:
        scan(image, root=root, **kw)  # warm the layer cache for these options
        out = []
        for _ in range(runs):
            t = time.monotonic()
            scan(image, root=root, **kw)
            out.append(time.monotonic() - t)
        return statistics.median(out)

    plain = timed()
    vulns = timed(vulns=True, vulns_db=db)
    report = scan(image, root=root, vulns=True, vulns_db=db)
    n = sum(f.category == "vulnerability" for f in report.findings)
    print(f"warm scan {plain:.3f} s, warm scan --vulns {vulns:.3f} s, overhead "
          f"{vulns - plain:.3f} s ({len(report.packages)} packages, {n} vulnerability findings, "
          f"{status(db).records} records)")


if __name__ == "__main__":
    if sys.argv[1] == "--scan":
        scan_overhead(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
