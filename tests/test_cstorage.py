"""containers/storage in place: a real podman with a private store in tmp."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from imagebuild import D, Entry, F, ImageSpec, Layer, layer_tar, write_docker_archive
from imgscan.cstorage.conf import StoreConfig, parse_store_reference
from imgscan.cstorage.layerwalk import walk_layer
from imgscan.cstorage.mount import mount_image, mounts, umount_image
from imgscan.cstorage.scan import scan_in_place
from imgscan.cstorage.store import ContainersStorage
from imgscan.errors import ImageError, MountError, ReferenceError_, StoreError, UsageError
from imgscan.images.archive import open_docker_archive
from imgscan.store.layerindex import load_index
from imgscan.mount.overlay import mounted_paths, unmount
from imgscan.store.store import Store
from imgscan.scan import Scanner

pytestmark = pytest.mark.skipif(shutil.which("podman") is None or os.geteuid() != 0,
                                reason="needs podman and root")

NAME = "example.com/demo:1"


def _layers() -> list[Layer]:
    l1 = Layer(layer_tar([
        D("etc"), F("etc/os-release", 'ID=debian\nVERSION_ID="12"\n'),
        D("usr"), D("usr/bin"), F("usr/bin/su", b"x" * 10, mode=0o4755),
        Entry("usr/bin/su2", "hardlink", linkname="usr/bin/su", mode=0o4755),
        F("etc/secret.txt", "x"),
    ]))
    l2 = Layer(layer_tar([
        D("etc"), F("etc/.wh.secret.txt"), D("opt"), F("opt/.wh..wh..opq"),
        F("opt/a", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"),
    ]))
    return [l1, l2]


@pytest.fixture
def podman_store(tmp_path):  # type: ignore[no-untyped-def]
    # podman refuses a run root longer than 50 characters: a short one beside tmp_path
    short = tempfile.mkdtemp(prefix="cs", dir="/tmp")
    root, run = str(tmp_path / "root"), os.path.join(short, "run")
    archive = str(tmp_path / "img.tar")
    write_docker_archive(archive, [(ImageSpec(_layers()), [NAME])])

    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", "--root", root, "--runroot", run,
                               "--storage-driver", "overlay", *args],
                              capture_output=True, text=True, check=check, timeout=120)

    loaded = podman("load", "-i", archive, check=False)
    assert loaded.returncode == 0, loaded.stderr
    yield ContainersStorage(StoreConfig("", root, run)), podman, archive
    for p in sorted((p for p in mounted_paths() if p.startswith(str(tmp_path))),
                    key=len, reverse=True):
        unmount(p, detach=True)
    shutil.rmtree(short, ignore_errors=True)


def test_bracket_syntax() -> None:
    assert parse_store_reference("[overlay@/srv/g+/run/g:a=1,b]img:1") == (
        {"driver": "overlay", "graph_root": "/srv/g", "run_root": "/run/g",
         "options": ("a=1", "b")}, "img:1")
    assert parse_store_reference("alpine") == ({}, "alpine")
    with pytest.raises(UsageError):
        parse_store_reference("[overlay@rel+/run]x")


def test_lookup_by_name_id_and_prefix(podman_store) -> None:  # type: ignore[no-untyped-def]
    cs, podman, _ = podman_store
    podman("tag", NAME, "localhost/short:2")
    iid = podman("images", "--no-trunc", "-q", NAME).stdout.strip().removeprefix("sha256:")
    with cs.reading():
        assert [img.id for img in cs.images()] == [iid]
        assert cs.lookup(NAME).id == iid
        assert cs.lookup("short:2").id == iid  # localhost/ first, as podman
        assert cs.lookup(iid).id == iid
        assert cs.lookup(iid[:6]).id == iid
        assert cs.lookup("sha256:" + iid).id == iid
        with pytest.raises(ReferenceError_):
            cs.lookup("nosuch")
        chain = cs.chain(cs.lookup(NAME))
    assert [lay.diff_id for lay in chain] == [lay.diff_id for lay in _layers()]


def test_walk_equals_store_index(podman_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs, _, archive = podman_store
    store = Store(str(tmp_path / "store"))
    rec = store.import_image(open_docker_archive(archive), [])
    with cs.reading():
        chain = cs.chain(cs.lookup(NAME))
    for lay, cid in zip(chain, rec.layers, strict=True):
        assert walk_layer(cs.diff_path(lay)) == load_index(store.index_path(cid))


def _keyed(report):  # type: ignore[no-untyped-def]
    return ([(f.id, f.location.path, f.location.layer, f.location.hidden_by)
             for f in report.findings],
            [(p.name, p.version, p.type, p.layer, p.locations) for p in report.packages])


def test_scan_in_place_equals_docker_archive(podman_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cs, _, archive = podman_store
    mine = Store(str(tmp_path / "a"))
    in_place = scan_in_place(cs, NAME, Scanner(), mine.path("cache"))
    other = Store(str(tmp_path / "b"))
    rec = other.import_image(open_docker_archive(archive), [])
    from_archive = Scanner().scan_image(other, rec)
    assert _keyed(in_place) == _keyed(from_archive)
    assert any(f.location.path == "/usr/bin/su" for f in in_place.findings)
    assert [lay.diff_id for lay in in_place.layers] == [lay.diff_id for lay in
                                                        from_archive.layers]
    # the same per-layer cache: a docker-archive scan after the in-place one analyzes nothing
    rec2 = mine.import_image(open_docker_archive(archive), [])
    again = Scanner()
    again.scan_image(mine, rec2)
    assert again.stats.cache_misses == 0 and again.stats.cache_hits > 0


def test_mount_interop_with_podman(podman_store) -> None:  # type: ignore[no-untyped-def]
    cs, podman, _ = podman_store
    rec = mount_image(cs, NAME)
    assert rec.count == 1 and rec.path.endswith("/merged") and rec.path in mounted_paths()
    with open(os.path.join(rec.path, "opt", "a")) as f:
        assert "AKIA" in f.read()
    listed = podman("image", "mount").stdout
    assert rec.path in listed and NAME in listed
    podman("image", "mount", NAME)
    with open(os.path.join(cs.run_root, "overlay-layers", "mountpoints.json")) as f:
        podman_written = f.read()
    assert podman_written == f'[{{"id":"{rec.id}","path":"{rec.path}","count":2}}]'
    assert mount_image(cs, NAME).count == 3
    with open(os.path.join(cs.run_root, "overlay-layers", "mountpoints.json")) as f:
        assert f.read() == podman_written.replace('"count":2', '"count":3')
    assert [m.count for _, m in mounts(cs)] == [3]
    podman("image", "umount", NAME)
    assert umount_image(cs, NAME).count == 1
    assert umount_image(cs, NAME).count == 0
    assert not [p for p in mounted_paths() if p.startswith(cs.graph_root + "/")]
    assert podman("image", "mount").stdout.strip() == ""
    with pytest.raises(MountError, match="not mounted"):
        umount_image(cs, NAME)
    # and the other way round
    podman("image", "mount", NAME)
    assert mount_image(cs, NAME).count == 2
    assert umount_image(cs, NAME).count == 1
    podman("image", "umount", NAME)
    assert not [p for p in mounted_paths() if p.startswith(cs.graph_root + "/")]


def test_rmi_waits_for_scan(podman_store, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cs, podman, _ = podman_store
    import imgscan.cstorage.scan as cscan

    real = cscan.walk_layer
    started = threading.Event()

    def slow(*a, **kw):  # type: ignore[no-untyped-def]
        started.set()
        time.sleep(2.0)
        return real(*a, **kw)

    monkeypatch.setattr(cscan, "walk_layer", slow)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", scan_in_place(cs, NAME, Scanner(), str(tmp_path / "cache"))))
    t.start()
    assert started.wait(30)
    t0 = time.monotonic()
    podman("rmi", NAME)
    waited = time.monotonic() - t0
    t.join()
    assert waited > 1.5  # rmi waited for the read lock
    assert any(f.location.path == "/opt/a" for f in result["r"].findings)
    with cs.reading():
        assert cs.images() == []


def test_bad_stores(tmp_path, podman_store) -> None:  # type: ignore[no-untyped-def]
    cs, _, _ = podman_store
    with pytest.raises(StoreError, match="no such directory"):
        ContainersStorage(StoreConfig("", str(tmp_path / "nope"), str(tmp_path / "r")))
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a containers/storage store"):
        ContainersStorage(StoreConfig("", str(tmp_path / "plain"), str(tmp_path / "r")))
    (tmp_path / "v" / "vfs-images").mkdir(parents=True)
    with pytest.raises(StoreError, match="'vfs' driver is not supported"):
        ContainersStorage(StoreConfig("", str(tmp_path / "v"), str(tmp_path / "r")))
    with pytest.raises(StoreError, match="only overlay"):
        ContainersStorage(StoreConfig("btrfs", cs.graph_root, cs.run_root))
    with cs.reading():
        top = cs.lookup(NAME).top_layer
    os.rename(cs.diff_path(top), cs.diff_path(top) + ".gone")
    try:
        with pytest.raises(ImageError, match="has no diff/ directory"):
            scan_in_place(cs, NAME, Scanner(), str(tmp_path / "cache"))
    finally:
        os.rename(cs.diff_path(top) + ".gone", cs.diff_path(top))
