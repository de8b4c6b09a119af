"""Issue 15 item 13: pull says which names it gave; short names resolve as podman resolves
them; a reference that matches nothing suggests the next step."""

from __future__ import annotations

import os

from clihelp import imgscan
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout


def test_pull_names_short_names_and_next_steps(tmp_path):
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar([F("etc/os-release", "ID=x\n")]))],
                                        ref_name="demo")])
    root = str(tmp_path / "store")
    r = imgscan("pull", f"oci:{layout}:demo", root=root)
    assert r.code == 0, r.err
    assert r.out.strip().startswith("sha256:")  # the id alone on stdout, for scripts
    assert "as localhost/layout:demo" in r.err
    r = imgscan("inspect", "layout:demo", root=root)  # podman: localhost/layout:demo
    assert r.code == 0, r.err
    r = imgscan("scan", "layout:demo", "--analyzers", "os-release", "--fail-on", "none",
                root=root)
    assert r.code == 0, r.err

    r = imgscan("scan", layout, root=root)  # an OCI layout given as a bare path
    assert r.code == 3 and f"use oci:{layout}" in r.err
    tree = tmp_path / "rootfs"
    tree.mkdir()
    r = imgscan("scan", str(tree), root=root)
    assert r.code == 3 and f"use dir:{tree}" in r.err
    r = imgscan("scan", "quay.io/team/app:1.0", root=root)
    assert r.code == 3 and "use docker://quay.io/team/app:1.0" in r.err
    r = imgscan("scan", "nosuch:1", root=root)
    assert r.code == 3 and "pull it first" in r.err
