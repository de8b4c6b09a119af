"""Many processes on one store at once, and pulls killed with SIGKILL at every stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from clihelp import SRC, imgscan, start
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout


def layouts(tmp_path, n: int) -> list[str]:
    rnd = os.urandom(1 << 20)
    base = Layer(layer_tar([F("usr/lib/base.bin", rnd), F("etc/os-release", "ID=test\n")]))
    mid = Layer(layer_tar([F("usr/lib/mid.bin", rnd[::-1])]))
    out = []
    for i in range(n):
        top = Layer(layer_tar([F(f"app/{i}", f"image {i}\n" * 100)]))
        layers = [base, mid, top] if i % 2 else [base, top]
        path = str(tmp_path / f"img{i}")
        os.makedirs(path)
        write_oci_layout(path, [ImageSpec(layers, ref_name="v1",
                                          created=f"2024-01-0{i + 1}T00:00:00Z")])
        out.append(path)
    return out


WORKER = textwrap.dedent('''
    import random, sys
    from imgscan.api import pull
    from imgscan.errors import ImgscanError
    from imgscan.store.store import Store
    root, seed, *paths = sys.argv[1:]
    rnd = random.Random(int(seed))
    store = Store(root)
    for step in range(12):
        p = rnd.choice(paths)
        if rnd.random() < 0.35:
            try:
                store.remove(["localhost/" + p.rsplit("/", 1)[1] + ":v1"])
            except ImgscanError:
                pass
        else:
            pull("oci:" + p + ":v1", store=store)
    print("done")
''')


def test_eight_processes_pulling_and_removing_leave_a_consistent_store(tmp_path):
    root = str(tmp_path / "store")
    paths = layouts(tmp_path, 5)
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, root, str(seed), *paths],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for seed in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "done", err
    r = imgscan("store", "check", root=root)
    assert r.code == 0 and "consistent" in r.out, r.out
    from imgscan.store.store import Store

    store = Store(root)
    meta = store._read_meta()
    used = {c for img in meta.images.values() for c in img.layers}
    assert used == set(meta.layers)  # no layer without an image, no image without a layer
    on_disk = set(os.listdir(store.path("layers")))
    assert on_disk == {c[7:] for c in meta.layers}
    # every image that is there reads back whole
    for img in meta.images.values():
        for c in img.layers:
            assert os.path.isdir(store.diff_path(c))
    for p in paths:  # and the next pull of anything works
        assert imgscan("pull", f"oci:{p}:v1", root=root).code == 0


@pytest.mark.parametrize("point", ["stage", "extract", "commit"])
def test_pull_killed_at_any_stage_leaves_a_repairable_store(tmp_path, point):
    root = str(tmp_path / "store")
    paths = layouts(tmp_path, 2)
    assert imgscan("pull", f"oci:{paths[0]}:v1", root=root).code == 0
    r = imgscan("pull", f"oci:{paths[1]}:v1", root=root, env={"IMGSCAN_CRASH_AT": point})
    assert r.code == -signal.SIGKILL
    # still readable, and the first image is intact
    imgs = json.loads(imgscan("images", "--format", "json", root=root).out)
    assert [i["names"] for i in imgs] == [["localhost/img0:v1"]]
    check = imgscan("store", "check", root=root)
    assert check.code == 3 and ("staging" in check.out), check.out
    if point == "commit":
        assert "orphan-layer" in check.out
    assert imgscan("store", "check", "--repair", root=root).code == 0
    assert imgscan("store", "check", root=root).code == 0
    assert imgscan("pull", f"oci:{paths[1]}:v1", root=root).code == 0
    assert len(json.loads(imgscan("images", "--format", "json", root=root).out)) == 2
    assert imgscan("store", "check", root=root).code == 0


def test_pull_killed_from_outside_mid_extraction(tmp_path):
    root = str(tmp_path / "store")
    path = str(tmp_path / "big")
    os.makedirs(path)
    files = [F(f"data/{i:05d}", os.urandom(2048)) for i in range(30000)]
    write_oci_layout(path, [ImageSpec([Layer(layer_tar(files), compression="gzip")],
                                      ref_name="v1")])
    proc = start("pull", f"oci:{path}:v1", root=root)
    staging = os.path.join(root, "staging")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dirs = os.listdir(staging) if os.path.isdir(staging) else []
        if any(os.path.isdir(os.path.join(staging, d, x, "diff", "data"))
               for d in dirs for x in os.listdir(os.path.join(staging, d))
               if os.path.isdir(os.path.join(staging, d, x))):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads(imgscan("images", "--format", "json", root=root).out) == []
    assert imgscan("store", "check", "--repair", root=root).code == 0
    assert imgscan("store", "check", root=root).code == 0
    assert imgscan("pull", f"oci:{path}:v1", root=root).code == 0
