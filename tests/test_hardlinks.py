"""Issue 15 item 3: a file with many hard links is one file. A finding in it is reported
once, listing every name (JSON ``location.paths``, SARIF locations, table "+N paths")."""

from __future__ import annotations

import json
import os
import random
import string

from clihelp import imgscan
from imagebuild import D, Entry, F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.reports import validate_report

_R = random.Random(3)
GH = "ghp_" + "".join(_R.choice(string.ascii_letters + string.digits) for _ in range(36))
NAMES = [f"bin/tool{i:02d}" for i in range(12)]


def _layout(tmp_path) -> str:
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    entries = [D("bin"), F("bin/busybox", f"#!/bin/sh\nTOKEN={GH}\n", mode=0o4755)]
    entries += [Entry(n, "hardlink", linkname="bin/busybox", mode=0o4755) for n in NAMES]
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar(entries))], ref_name="v1")])
    return layout


def test_hard_linked_file_is_one_finding_with_every_path(tmp_path):
    root = str(tmp_path / "store")
    layout = _layout(tmp_path)
    sarif = str(tmp_path / "r.sarif")
    r = imgscan("scan", f"oci:{layout}:v1", "--keep", "--format", "json",
                "--format", f"sarif={sarif}",
                "--fail-on", "none", root=root)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    all_paths = ["/bin/busybox", *sorted("/" + n for n in NAMES)]
    secrets = [f for f in doc["findings"] if f["category"] == "secret"]
    assert len(secrets) == 1, [f["location"]["path"] for f in secrets]
    assert secrets[0]["location"]["path"] == "/bin/busybox"
    assert secrets[0]["location"]["paths"] == all_paths
    setuid = [f for f in doc["findings"] if f["category"] == "permissions"]
    assert setuid and all(f["location"]["paths"] == all_paths for f in setuid)
    assert all(f["location"]["path"] == "/bin/busybox" for f in setuid)
    with open(sarif) as f:
        results = json.load(f)["runs"][0]["results"]
    secret_results = [x for x in results if x["properties"]["category"] == "secret"]
    assert len(secret_results) == 1
    uris = [loc["physicalLocation"]["artifactLocation"]["uri"]
            for loc in secret_results[0]["locations"]]
    assert len(uris) == 13 and uris[0].endswith("bin/busybox")
    table = imgscan("scan", "localhost/layout:v1", "--format", "table", "--fail-on", "none",
                    "--wide", root=root, env={"COLUMNS": "200"})
    assert "/bin/busybox (+12 paths)" in table.out
    assert "tool05" not in table.out


def test_one_name_keeps_the_1_0_0_shape(tmp_path):
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar([F("app/.env", f"T={GH}\n")]))],
                                        ref_name="v1")])
    r = imgscan("scan", f"oci:{layout}:v1", "--format", "json", "--fail-on", "none",
                root=str(tmp_path / "store"))
    doc = json.loads(r.out)
    assert doc["findings"] and all("paths" not in f["location"] for f in doc["findings"])
