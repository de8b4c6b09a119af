"""Issue 15 item 10: ``dir:`` scans show the directory as an absolute path, say nothing of a
user they cannot know, and a setuid file in a tree without a package database is "no package
database found" (medium), not "not owned by any package" (high)."""

from __future__ import annotations

import json
import os

from clihelp import imgscan


def _tree(tmp_path) -> str:
    root = tmp_path / "rootfs"
    (root / "usr/bin").mkdir(parents=True)
    su = root / "usr/bin/su"
    su.write_bytes(b"\x7fELF")
    os.chmod(su, 0o4755)
    return str(root)


def test_dir_scan_is_shown_as_what_it_is(tmp_path):
    tree = _tree(tmp_path)
    r = imgscan("scan", "dir:rootfs", "--fail-on", "none", cwd=str(tmp_path),
                env={"COLUMNS": "120"})
    assert r.code == 0, r.err
    assert f"dir:{tree}" in r.out
    assert "root (not set)" not in r.out and "User" not in r.out
    assert "no package database found" in r.out
    assert "not owned by any package" not in r.out
    r = imgscan("scan", "dir:rootfs", "--format", "json", "--fail-on", "high",
                cwd=str(tmp_path))
    assert r.code == 0, r.err  # medium: the high gate passes
    doc = json.loads(r.out)
    assert doc["image"]["name"] == f"dir:{tree}"
    (f,) = [f for f in doc["findings"] if f["rule_id"] == "perm/setuid-unowned"]
    assert f["severity"] == "medium" and f["location"]["path"] == "/usr/bin/su"
