"""Issue 15 item 3 for ``dir:`` scans: a directory has no tar to say which names are links,
so names are grouped by inode ((st_dev, st_ino) with st_nlink > 1). A secret or a setuid
ELF file with three names is one finding listing the three paths, as in an image."""

from __future__ import annotations

import json
import os
import random
import shutil
import string

from clihelp import imgscan
from imgscan.reports import validate_report

_R = random.Random(31)
GH = "ghp_" + "".join(_R.choice(string.ascii_letters + string.digits) for _ in range(36))


def _tree(tmp_path) -> str:
    root = tmp_path / "rootfs"
    for d in ("etc", "srv", "opt/app", "usr/bin", "usr/sbin"):
        (root / d).mkdir(parents=True)
    secret = root / "etc" / "app.env"
    secret.write_text(f"TOKEN={GH}\n")
    os.link(secret, root / "srv" / "app.env")
    os.link(secret, root / "opt" / "app" / "settings.env")
    elf = root / "usr" / "bin" / "helper"
    shutil.copyfile(os.path.realpath(shutil.which("true") or "/bin/true"), elf)
    os.chmod(elf, 0o4755)
    os.link(elf, root / "usr" / "sbin" / "helper")
    os.link(elf, root / "usr" / "bin" / "helper2")
    # an unrelated file linked from outside the tree only: one name here, not a group
    (root / "usr" / "bin" / "lone").write_text(f"#!/bin/sh\nT={GH}\n")
    os.link(root / "usr" / "bin" / "lone", tmp_path / "outside")
    return str(root)


def test_dir_scan_groups_hard_links_by_inode(tmp_path):
    root = _tree(tmp_path)
    sarif = str(tmp_path / "r.sarif")
    r = imgscan("scan", f"dir:{root}", "--format", "json", "--format", f"sarif={sarif}",
                "--fail-on", "none", root=str(tmp_path / "store"))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    secret_paths = sorted("/" + p for p in
                          ("etc/app.env", "srv/app.env", "opt/app/settings.env"))
    secrets = [f for f in doc["findings"] if f["category"] == "secret"
               and "lone" not in f["location"]["path"]]
    assert len(secrets) == 1, [f["location"] for f in secrets]
    loc = secrets[0]["location"]
    assert sorted(loc["paths"]) == secret_paths and loc["paths"][0] == loc["path"]
    lone = [f for f in doc["findings"] if f["location"]["path"].endswith("/usr/bin/lone")]
    assert lone and all("paths" not in f["location"] for f in lone)
    elf_paths = sorted("/" + p for p in
                       ("usr/bin/helper", "usr/sbin/helper", "usr/bin/helper2"))
    on_elf = [f for f in doc["findings"] if "helper" in f["location"]["path"]]
    assert any(f["category"] == "permissions" for f in on_elf)
    by_rule: dict[str, int] = {}
    for f in on_elf:
        by_rule[f["rule_id"]] = by_rule.get(f["rule_id"], 0) + 1
        assert sorted(f["location"]["paths"]) == elf_paths
    assert all(n == 1 for n in by_rule.values()), by_rule
    with open(sarif) as f:
        results = json.load(f)["runs"][0]["results"]
    hit = [x for x in results if x["properties"]["category"] == "secret"
           and "lone" not in json.dumps(x["locations"])]
    assert len(hit) == 1 and len(hit[0]["locations"]) == 3
    table = imgscan("scan", f"dir:{root}", "--format", "table", "--fail-on", "none", "--wide",
                    root=str(tmp_path / "store"), env={"COLUMNS": "250"})
    assert "(+2 paths)" in table.out
