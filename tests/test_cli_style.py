"""Issue 15 item 14: one error style, --fail-on names ``none``, one unit system for sizes,
``names`` a list in every JSON output, the rmi refusal's advice for a count above one, and
scan --all's GATE column when no gate was given."""

from __future__ import annotations

import json
import os

from clihelp import imgscan
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout


def _pulled(tmp_path) -> tuple[str, str]:
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar([
        F("etc/os-release", "ID=x\n"), F("srv/blob", os.urandom(5000))]))], ref_name="v1")])
    root = str(tmp_path / "store")
    assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
    return root, "localhost/layout:v1"


def test_usage_errors_have_imgscans_form(tmp_path):
    r = imgscan("scan", "--bogus")
    assert r.code == 2
    assert r.err.startswith("imgscan: error: No such option '--bogus'"), r.err
    assert "--help" in r.err and "Usage:" not in r.err
    r = imgscan("scan", "x", "--fail-on", "severe", root=str(tmp_path))
    assert r.code == 2 and r.err.startswith("imgscan: error: --fail-on")
    assert "or none" in r.err
    assert "'none'" in imgscan("scan", "--help").out


def test_sizes_names_advice_and_gate_column(tmp_path):
    root, name = _pulled(tmp_path)
    table = imgscan("images", root=root).out
    assert "KiB" in table and "kB" not in table
    m = imgscan("mount", name, root=root)
    assert m.code == 0, m.err
    path = m.out.strip()
    try:
        assert imgscan("mount", name, root=root).code == 0  # count 2
        mounts = json.loads(imgscan("mounts", "--format", "json", root=root).out)
        assert mounts[0]["names"] == [name]
        r = imgscan("rmi", name, root=root)
        assert r.code == 3 and f"umount --force {path}" in r.err and "2 times" in r.err
    finally:
        imgscan("umount", "--force", path, root=root)
    images = json.loads(imgscan("images", "--format", "json", root=root).out)
    assert isinstance(images[0]["names"], list)
    out = str(tmp_path / "audit")
    r = imgscan("scan", "--all", "--output-dir", out, "--analyzers", "os-release", root=root)
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if line.startswith(name))
    assert row.split()[-1] == "—"
    r = imgscan("scan", "--all", "--output-dir", out, "--analyzers", "os-release",
                "--fail-on", "high", root=root)
    row = next(line for line in r.out.splitlines() if line.startswith(name))
    assert row.split()[-1] == "pass"
