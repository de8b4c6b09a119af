"""Issue 15 item 12: ``--root`` before the command (podman's habit) and after it; a
read-only command on a store path that does not exist is an error, not a new empty store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from clihelp import SRC
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("IMGSCAN_ROOT", None)
    return subprocess.run([sys.executable, "-m", "imgscan", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_root_is_global_and_per_command(tmp_path):
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar([F("etc/os-release", "ID=x\n")]))],
                                        ref_name="v1")])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert run("--root", a, "pull", f"oci:{layout}:v1").returncode == 0
    r = run("--root", a, "images", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [i["names"] for i in json.loads(r.stdout)] == \
        [["localhost/layout:v1"]]
    assert run("images", "--root", a, "--format", "json").stdout == r.stdout
    os.makedirs(b)
    r = run("--root", a, "images", "--root", b, "--format", "json")  # the command's wins
    assert json.loads(r.stdout) == []


def test_read_only_command_on_a_missing_store_is_an_error(tmp_path):
    missing = str(tmp_path / "typo")
    for args in (["images"], ["scan", "app:1"], ["rmi", "app:1"], ["inspect", "app:1"],
                 ["mounts"], ["store", "check"], ["store", "gc"], ["scan", "--all"]):
        r = run(*args[:1], *args[1:], "--root", missing) if args[0] != "store" else \
            run("--root", missing, *args)
        assert r.returncode == 3, (args, r.stderr)
        assert f"no store at {missing}" in r.stderr, (args, r.stderr)
        assert not os.path.exists(missing), args
