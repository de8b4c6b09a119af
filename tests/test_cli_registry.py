"""The registry through the real command: inspect (no layer fetched), tags, pull, scan,
pre-pull vetting and quarantined pulls, against Debian's docker-registry on 127.0.0.1."""

from __future__ import annotations

import json
import os

import pytest

import registry_fixtures as rf
from clihelp import imgscan
from imagebuild import D, F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.reports import validate_report

NOTLS = "--tls-verify=false"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("reg"))
    risky = os.path.join(work, "risky")
    clean = os.path.join(work, "clean")
    for path, spec in (
        (risky, ImageSpec([Layer(layer_tar([D("usr/bin"), F("usr/bin/helper", b"\x7fELF",
                                                             mode=0o4755)])),
                           Layer(layer_tar([F("app/run", "#!/bin/sh\n", mode=0o755)]))],
                          config={"ExposedPorts": {"22/tcp": {}}}, ref_name="latest")),
        (clean, ImageSpec([Layer(layer_tar([F("app/run", "#!/bin/sh\n", mode=0o755)]))],
                          config={"User": "1000", "Healthcheck": {"Test": ["CMD", "true"]}},
                          created="2099-01-01T00:00:00Z", ref_name="latest")),
    ):
        os.makedirs(path)
        write_oci_layout(path, [spec])
    with rf.run_registry(work) as r:
        rf.skopeo_push(risky, f"{r.host}/team/risky:1.0")
        rf.skopeo_push(risky, f"{r.host}/team/risky:1.1")
        rf.skopeo_push(clean, f"{r.host}/team/clean:1.0")
        yield r


def blob_gets(reg) -> list[str]:
    return [line for line in reg.requests() if "/blobs/" in line]


def test_inspect_matches_skopeo_and_fetches_no_layer(reg, tmp_path):
    ref = f"{reg.host}/team/risky:1.0"
    before = len(blob_gets(reg))
    r = imgscan("inspect", f"docker://{ref}", NOTLS, root=str(tmp_path / "s"))
    assert r.code == 0, r.err
    ours = json.loads(r.out)
    theirs = rf.skopeo_inspect(ref)
    for key in theirs:
        assert ours[key] == theirs[key], key
    assert [k for k in ours if k in theirs] == list(theirs)  # skopeo's key order
    assert sorted(ours["RepoTags"]) == ["1.0", "1.1"]
    # only the config blob was read: no layer digest appears in the access log since
    layer_hexes = [d[7:] for d in ours["Layers"]]
    new = blob_gets(reg)[before:]
    assert new and not any(h in line for line in new for h in layer_hexes)


def test_tags_pull_and_scan(reg, tmp_path):
    root = str(tmp_path / "store")
    r = imgscan("tags", f"docker://{reg.host}/team/risky", NOTLS)
    assert r.code == 0 and sorted(r.out.split()) == ["1.0", "1.1"]
    r = imgscan("pull", f"docker://{reg.host}/team/risky:1.0", NOTLS, root=root)
    assert r.code == 0, r.err
    imgs = json.loads(imgscan("images", "--format", "json", root=root).out)
    assert imgs[0]["names"] == [f"{reg.host}/team/risky:1.0"]
    r = imgscan("scan", f"docker://{reg.host}/team/risky:1.0", NOTLS, "--format", "json",
                root=root)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    rules = {f["rule_id"] for f in doc["findings"]}
    assert "perm/setuid-unowned" in rules


def test_inspect_vet_decides_from_the_config_alone(reg, tmp_path):
    before = len(blob_gets(reg))
    r = imgscan("inspect", "--vet", "--fail-on", "medium", "--format", "json",
                f"docker://{reg.host}/team/risky:1.0", NOTLS)
    assert r.code == 1, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {"config/root-user", "config/ssh-port"} <= rules
    assert "perm/setuid-unowned" not in rules  # needs the files: not fetched
    r = imgscan("inspect", "--vet", "--fail-on", "medium", "--format", "json",
                f"docker://{reg.host}/team/clean:1.0", NOTLS)
    assert r.code == 0, r.out + r.err
    layer_hexes = [line for line in blob_gets(reg)[before:]]
    cfg = {json.loads(imgscan("inspect", f"docker://{reg.host}/team/{n}:1.0", NOTLS).out)[
        "Layers"][0][7:] for n in ("risky", "clean")}
    assert not any(h in line for line in layer_hexes for h in cfg)


def test_pull_vet_keeps_a_failing_image_out_of_the_store(reg, tmp_path):
    root = str(tmp_path / "store")
    r = imgscan("pull", "--vet", "--fail-on", "high", "--format", "json",
                f"docker://{reg.host}/team/risky:1.1", NOTLS, root=root)
    assert r.code == 1
    doc = json.loads(r.out)
    validate_report(doc)
    assert "perm/setuid-unowned" in {f["rule_id"] for f in doc["findings"]}
    assert "nothing was stored" in r.err
    assert json.loads(imgscan("images", "--format", "json", root=root).out) == []
    for d in ("layers", "l", "images", "staging"):
        assert os.listdir(os.path.join(root, d)) == [], d
    r = imgscan("pull", "--vet", "--fail-on", "high", "--format", "json", "-o",
                str(tmp_path / "r.json"), f"docker://{reg.host}/team/clean:1.0", NOTLS,
                root=root)
    assert r.code == 0, r.err
    imgs = json.loads(imgscan("images", "--format", "json", root=root).out)
    assert [i["names"] for i in imgs] == [[f"{reg.host}/team/clean:1.0"]]
    assert imgscan("store", "check", root=root).code == 0
    assert json.loads((tmp_path / "r.json").read_text())["image"]["id"] == imgs[0]["id"]


def test_registry_errors_are_one_line_exit_3(reg, tmp_path):
    root = str(tmp_path / "store")
    r = imgscan("pull", f"docker://{reg.host}/team/nope:1.0", NOTLS, root=root)
    assert r.code == 3 and len(r.err.strip().splitlines()) == 1 and reg.host in r.err
    port = rf.free_port()
    r = imgscan("inspect", f"docker://127.0.0.1:{port}/x:1", NOTLS)
    assert r.code == 3 and "refused" in r.err.lower()
    r = imgscan("pull", "--fail-on", "high", f"docker://{reg.host}/team/clean:1.0", NOTLS,
                root=root)
    assert r.code == 2 and "--vet" in r.err


def test_pull_killed_during_download_leaves_the_store_as_it_was(reg, tmp_path):
    import signal
    import time

    from clihelp import start

    layout = str(tmp_path / "big")
    os.makedirs(layout)
    layers = [Layer(layer_tar([F(f"blob{i}", os.urandom(48 << 20))])) for i in range(2)]
    write_oci_layout(layout, [ImageSpec(layers, ref_name="latest")])
    rf.skopeo_push(layout, f"{reg.host}/team/big:1")
    root = str(tmp_path / "store")
    proc = start("pull", f"docker://{reg.host}/team/big:1", NOTLS, root=root)
    staging = os.path.join(root, "staging")
    deadline = time.monotonic() + 60
    caught = False
    while time.monotonic() < deadline and proc.poll() is None:
        for d in (os.listdir(staging) if os.path.isdir(staging) else []):
            blobs = os.path.join(staging, d, ".blobs")
            if os.path.isdir(blobs) and os.listdir(blobs):
                caught = True
        if caught:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert caught and proc.returncode == -signal.SIGKILL
    assert json.loads(imgscan("images", "--format", "json", root=root).out) == []
    assert imgscan("store", "check", "--repair", root=root).code == 0
    assert imgscan("store", "check", root=root).code == 0
    assert os.listdir(os.path.join(root, "layers")) == []
    assert imgscan("pull", f"docker://{reg.host}/team/big:1", NOTLS, root=root).code == 0
