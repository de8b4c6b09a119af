"""A stock Debian root filesystem made by debootstrap (when this machine can make one):
dpkg results equal dpkg-query's, setuid files equal find's, and no secret at medium or above.

The rootfs is built once per machine into a cache directory (IMGSCAN_TEST_ROOTFS, default
/var/cache/imgscan-tests/bookworm-minbase) under a file lock, from the Debian mirror of the
machine's own apt sources. Where no rootfs can be made (no mirror reachable), the tests are
skipped with the reason; everything else in the suite covers the same analyzers on the
machine's own files.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess

import pytest

from clihelp import imgscan
from imgscan.reports import validate_report

CACHE = os.environ.get("IMGSCAN_TEST_ROOTFS", "/var/cache/imgscan-tests/bookworm-minbase")


def debian_mirror() -> str:
    """The first Debian (not security) mirror of this machine's apt sources."""
    texts = []
    for path in ["/etc/apt/sources.list",
                 *sorted(f"/etc/apt/sources.list.d/{n}" for n in
                         (os.listdir("/etc/apt/sources.list.d")
                          if os.path.isdir("/etc/apt/sources.list.d") else []))]:
        if path.endswith((".list", ".sources")) and os.path.isfile(path):
            with open(path) as f:
                texts.append(f.read())
    for text in texts:
        for url in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.M):
            if "security" not in url and "debian" in url:
                return url
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="session")
def rootfs() -> str:
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE + ".lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # one builder per machine, other workers wait
        if os.path.exists(os.path.join(CACHE, ".complete")):
            return CACHE
        if shutil.which("debootstrap") is None:
            pytest.skip("debootstrap is not installed")
        work = CACHE + ".partial"
        shutil.rmtree(work, ignore_errors=True)
        try:
            p = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", work,
                                debian_mirror()], capture_output=True, text=True,
                               timeout=300)
        except subprocess.TimeoutExpired:
            shutil.rmtree(work, ignore_errors=True)
            pytest.skip("debootstrap did not finish within 5 minutes (mirror too slow)")
        if p.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
            pytest.skip(f"this machine cannot make a debootstrap rootfs: {tail[0]}")
        shutil.rmtree(CACHE, ignore_errors=True)
        os.rename(work, CACHE)
        open(os.path.join(CACHE, ".complete"), "w").close()
        return CACHE


def scan(root: str, analyzers: str) -> dict:
    r = imgscan("scan", f"dir:{root}", "--analyzers", analyzers, "--format", "json",
                timeout=600)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    return doc


def test_dpkg_on_a_debootstrap_rootfs_equals_dpkg_query(rootfs):
    out = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f",
                          "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
                         capture_output=True, text=True, check=True).stdout
    expected = {tuple(line.split("\t")[1:]) for line in out.splitlines()
                if line.split("\t")[0].strip() == "ii"}
    doc = scan(rootfs, "dpkg")
    got = {(p["name"], p["version"], p["arch"]) for p in doc["packages"]}
    assert got == expected and len(got) > 50
    assert doc["os"]["id"] == "debian" and doc["os"]["version_id"].startswith("12")


def test_setuid_files_of_a_debootstrap_rootfs_equal_find(rootfs):
    out = subprocess.run(["find", rootfs, "-xdev", "-type", "f", "-perm", "/6000"],
                         capture_output=True, text=True, check=True).stdout
    expected = {"/" + os.path.relpath(p, rootfs) for p in out.split()}
    doc = scan(rootfs, "dpkg,permissions")
    got = {f["location"]["path"] for f in doc["findings"]
           if f["rule_id"].startswith("perm/setuid")}
    assert got == expected and expected
    # a stock Debian's setuid binaries all belong to packages
    assert not [f for f in doc["findings"] if f["rule_id"] == "perm/setuid-unowned"]


def test_a_stock_debian_rootfs_has_no_secret_at_medium_or_above(rootfs):
    doc = scan(rootfs, "secrets")
    loud = [(f["rule_id"], f["location"]["path"]) for f in doc["findings"]
            if f["severity"] in ("critical", "high", "medium")]
    assert loud == []
