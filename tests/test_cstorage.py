"""containers/storage in place: a real podman with a private store in tmp."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

import cstorage_fixtures as cf
from imagebuild import D, F, ImageSpec, Layer, layer_tar, write_docker_archive
from imgscan.cstorage.conf import StoreConfig, parse_store_reference
from imgscan.cstorage.layerwalk import walk_layer
from imgscan.cstorage.mount import mount_image, mounts, umount_image
from imgscan.cstorage.scan import scan_in_place
from imgscan.cstorage.store import ContainersStorage
from imgscan.errors import BadReferenceError, ImageError, MountError, StoreError, UsageError
from imgscan.images.archive import open_docker_archive
from imgscan.mount.overlay import mounted_paths
from imgscan.scanner import Scanner
from imgscan.store.layerindex import load_index
from imgscan.store.store import Store

pytestmark = pytest.mark.skipif(shutil.which("podman") is None or os.geteuid() != 0,
                                reason="needs podman and root")

NAME = cf.NAME
_layers = cf._layers
_keyed = cf._keyed


@pytest.fixture
def podman_store(tmp_path):  # type: ignore[no-untyped-def]
    with cf.podman_store(tmp_path) as x:
        yield x


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
        with pytest.raises(BadReferenceError):
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
        # the index is an EntryTable in component order: compare the entries, by path
        assert sorted(walk_layer(cs.diff_path(lay)), key=lambda i: i.path) == \
            sorted(load_index(store.index_path(cid)), key=lambda i: i.path)


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


# -- through the CLI -------------------------------------------------------------------
def _cli(*args: str, user: str | None = None, env: dict[str, str] | None = None,
         timeout: int = 300) -> subprocess.CompletedProcess[str]:
    import shlex
    import sys

    cmd = [sys.executable, "-m", "imgscan", *args]
    if user:
        from clihelp import src_for_other_users

        src = src_for_other_users()
        line = " ".join(shlex.quote(c) for c in cmd)
        extra = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        return subprocess.run(["su", user, "-c", f"cd ~ && env PYTHONPATH={src} {extra} "
                               f"{line}"], capture_output=True, text=True, timeout=timeout)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _spec(cs: ContainersStorage) -> str:
    return f"containers-storage:[overlay@{cs.graph_root}+{cs.run_root}]"


def test_cli_images_inspect_pull(podman_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    cs, podman, _ = podman_store
    r = _cli("images", "--source", _spec(cs), "--format", "json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    iid = podman("images", "--no-trunc", "-q", NAME).stdout.strip()
    assert row["id"] == iid and row["names"] == [NAME] and row["layers"] == 2
    assert row["platform"] == "linux/amd64"
    r = _cli("inspect", _spec(cs) + NAME)
    assert r.returncode == 0, r.stderr
    mine = json.loads(r.stdout)
    theirs = json.loads(subprocess.run(
        ["skopeo", "inspect", _spec(cs) + NAME], capture_output=True, text=True,
        check=True).stdout) if shutil.which("skopeo") else None
    if theirs:
        assert mine["Digest"] == theirs["Digest"] and mine["Layers"] == theirs["Layers"]
    root = str(tmp_path / "s")
    r = _cli("pull", _spec(cs) + NAME, "--root", root)
    assert r.returncode == 0 and r.stdout.strip() == iid, r.stderr
    assert _cli("images", "--root", root).stdout.count(NAME) == 1


def _tree(top: str) -> dict[str, tuple[object, ...]]:
    import stat as st_

    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            s = os.lstat(p)
            out[os.path.relpath(p, top)] = (
                st_.S_IFMT(s.st_mode), st_.S_IMODE(s.st_mode), s.st_uid, s.st_gid,
                s.st_size if st_.S_ISREG(s.st_mode) else 0,
                os.readlink(p) if st_.S_ISLNK(s.st_mode) else "")
    return out


def test_cli_mount_tree_equals_podman(podman_store) -> None:  # type: ignore[no-untyped-def]
    cs, podman, _ = podman_store
    r = _cli("mount", _spec(cs) + NAME)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path in podman("image", "mount").stdout  # podman knows it
    mine = _tree(path)
    r = _cli("umount", _spec(cs) + NAME)
    assert r.returncode == 0 and "unmounted" in r.stdout
    assert path not in mounted_paths()
    theirs_path = podman("image", "mount", NAME).stdout.strip()
    theirs = _tree(theirs_path)
    podman("image", "umount", NAME)
    assert mine == theirs and "usr/bin/su" in mine and "etc/secret.txt" not in mine
    assert _cli("umount", _spec(cs) + NAME).returncode == 3


def _one_error(r: subprocess.CompletedProcess[str] | object, want: str) -> None:
    code = getattr(r, "returncode", getattr(r, "exit_code", None))
    text = getattr(r, "stderr", None) if hasattr(r, "returncode") else r.output  # type: ignore[attr-defined]
    lines = str(text).strip().splitlines()
    assert code == 3, (code, text)
    assert len(lines) == 1 and lines[0].startswith("imgscan: error: ") and want in lines[0], \
        lines


def test_cli_bad_input(podman_store, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from imgscan.cli import main

    cs, _, _ = podman_store
    root = str(tmp_path / "s")
    plain = tmp_path / "plain"
    plain.mkdir()
    vfs = tmp_path / "vfs"
    (vfs / "vfs-images").mkdir(parents=True)
    for ref, want in ((f"[overlay@{plain}+/tmp/r]x", "not a containers/storage store"),
                      (f"[{tmp_path}/nope+/tmp/r]x", "no such directory"),
                      (f"[{vfs}+/tmp/r]x", "'vfs' driver is not supported"),
                      (f"[btrfs@{cs.graph_root}+{cs.run_root}]x", "only overlay"),
                      (f"[overlay@{cs.graph_root}+{cs.run_root}]nosuch", "no image")):
        for cmd in ("scan", "pull", "inspect", "mount"):
            args = [cmd, "containers-storage:" + ref]
            _one_error(_cli(*args, "--root", root) if cmd != "inspect" else _cli(*args), want)
    # a layer whose diff/ is missing
    with cs.reading():
        top = cs.lookup(NAME).top_layer
    os.rename(cs.diff_path(top), cs.diff_path(top) + ".gone")
    try:
        for cmd in ("scan", "pull", "mount"):
            _one_error(_cli(cmd, _spec(cs) + NAME, "--root", root), "has no diff/ directory")
    finally:
        os.rename(cs.diff_path(top) + ".gone", cs.diff_path(top))
    # the image's files removed behind c/storage's back while imgscan reads them
    import imgscan.cstorage.scan as cscan
    import imgscan.cstorage.tarsplit as tsplit

    real_walk, real_chunks = cscan.walk_layer, tsplit.layer_chunks
    gone = cs.diff_path(top) + ".gone"

    def walk_vanishing(diff, *a, **kw):  # type: ignore[no-untyped-def]
        if diff == cs.diff_path(top):
            os.rename(diff, gone)
        return real_walk(diff, *a, **kw)

    def chunks_vanishing(graph, lid, diff, what):  # type: ignore[no-untyped-def]
        if diff == cs.diff_path(top):
            os.rename(diff, gone)
        return real_chunks(graph, lid, diff, what)

    monkeypatch.setattr(cscan, "walk_layer", walk_vanishing)
    monkeypatch.setattr(tsplit, "layer_chunks", chunks_vanishing)
    try:
        for cmd in ("scan", "pull"):
            r = CliRunner().invoke(main, [cmd, _spec(cs) + NAME, "--root", root])
            _one_error(r, "vanished" if cmd == "scan" else "changed or vanished")
            os.rename(gone, cs.diff_path(top))
    finally:
        if os.path.exists(gone):
            os.rename(gone, cs.diff_path(top))
    from imgscan.store.store import Store as S

    assert S(root).images() == []  # nothing written
    assert not [p for p in mounted_paths() if p.startswith(cs.graph_root)]


def test_concurrent_podman_churn(podman_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """While imgscan scans and mounts, podman loads, tags and removes other images in the
    same store for 15 s: no crash, the same result every time, podman fine afterwards."""
    import json

    cs, podman, _ = podman_store
    others = []
    for i in range(3):
        p = str(tmp_path / f"other{i}.tar")
        write_docker_archive(p, [(ImageSpec([Layer(layer_tar([
            D("srv"), F(f"srv/f{i}", f"other {i}\n" * 1000)]))]), [f"example.com/o{i}:1"])])
        others.append(p)
    stop = threading.Event()
    errors: list[str] = []

    def churn() -> None:
        n = 0
        while not stop.is_set():
            i = n % 3
            for args in (("load", "-i", others[i]), ("tag", f"example.com/o{i}:1",
                                                      f"example.com/o{i}:t{n}"),
                         ("rmi", "-f", f"example.com/o{i}:1", f"example.com/o{i}:t{n}")):
                r = podman(*args, check=False)
                if r.returncode != 0:
                    errors.append(f"podman {' '.join(args)}: {r.stderr.strip()}")
            n += 1

    t = threading.Thread(target=churn)
    t.start()
    results = set()
    rounds = 0
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            r = _cli("--quiet", "scan", _spec(cs) + NAME, "--format", "json",
                     "--root", str(tmp_path / "s"))
            assert r.returncode == 0, r.stderr
            doc = json.loads(r.stdout)
            results.add(json.dumps(([(f["id"], f["location"]["path"]) for f in
                                     doc["findings"]], [p["name"] for p in doc["packages"]])))
            m = _cli("mount", _spec(cs) + NAME)
            assert m.returncode == 0, m.stderr
            assert os.path.exists(os.path.join(m.stdout.strip(), "usr/bin/su"))
            u = _cli("umount", _spec(cs) + NAME)
            assert u.returncode == 0, u.stderr
            rounds += 1
    finally:
        stop.set()
        t.join(120)
    assert rounds >= 2 and len(results) == 1
    assert not errors, errors[:3]
    assert podman("images").returncode == 0
    path = podman("image", "mount", NAME).stdout.strip()
    assert os.path.exists(os.path.join(path, "opt/a"))
    podman("image", "umount", NAME)
    assert podman("image", "mount").stdout.strip() == ""


ROOTLESS_USER = "imgscanu"
ROOTLESS_NAME = "example.com/rootless:1"


def _owned_layers() -> list[Layer]:
    return [*cf._layers(), Layer(layer_tar([
        D("usr"), D("usr/local"), D("usr/local/bin"),
        F("usr/local/bin/www", b"y" * 5, mode=0o4750, uid=33, gid=42),
        F("usr/local/bin/games", b"z" * 7, mode=0o2755, uid=1000, gid=60),
        D("home"), D("home/u", mode=0o700, uid=1000, gid=1000),
        F("home/u/.netrc", "machine x login u password hunter2hunter2\n", mode=0o600,
          uid=1000, gid=1000)]))]


@pytest.fixture
def rootless_store(tmp_path):  # type: ignore[no-untyped-def]
    """The test image in a real rootless podman store of a real user."""
    if shutil.which("newuidmap") is None or shutil.which("useradd") is None:
        pytest.skip("needs uidmap and useradd")
    import pwd

    try:
        pw = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", ROOTLESS_USER], check=True)
        pw = pwd.getpwnam(ROOTLESS_USER)

    def as_user(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["su", ROOTLESS_USER, "-c", f"cd ~ && {cmd}"], capture_output=True,
                           text=True, timeout=300)
        assert not check or r.returncode == 0, r.stderr
        return r

    # the native overlay driver (podman would otherwise pick vfs for a new user here)
    as_user('mkdir -p ~/.config/containers && printf \'[storage]\\ndriver = "overlay"\\n\' '
            "> ~/.config/containers/storage.conf")
    archive = os.path.join(pw.pw_dir, "imgscan-test.tar")
    write_docker_archive(archive, [(ImageSpec(_owned_layers()), [ROOTLESS_NAME])])
    os.chmod(archive, 0o644)
    as_user(f"podman load -i {archive}")
    try:
        yield pw, as_user, archive
    finally:
        as_user(f"podman rmi -f {ROOTLESS_NAME}", check=False)
        as_user("rm -rf ~/imgscan-test-store", check=False)
        os.unlink(archive)


def _setuid_view(doc: dict) -> list[tuple[object, ...]]:  # type: ignore[type-arg]
    return sorted((f["rule_id"], f["location"]["path"], (f["location"]["layer"] or {})
                   .get("index"), f["evidence"]) for f in doc["findings"])


def test_rootless_store(rootless_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import sys

    pw, as_user, archive = rootless_store
    graph = os.path.join(pw.pw_dir, ".local/share/containers/storage")
    # on disk: container uid 0 is the user, uid N is 100000+N-1
    found = subprocess.run(["find", os.path.join(graph, "overlay"), "-path",
                            "*/diff/usr/local/bin/www", "-printf", "%U:%G %m"],
                           capture_output=True, text=True).stdout.strip()
    assert found == "100032:100041 4750", found
    from clihelp import src_for_other_users

    py = f"env PYTHONPATH={src_for_other_users()} {sys.executable}"
    rootless = as_user(f"{py} -m imgscan --quiet scan "
                       f"containers-storage:{ROOTLESS_NAME} --format json "
                       "--root ~/imgscan-test-store")
    mine = json.loads(rootless.stdout)
    # the same image in root's store
    short = tempfile.mkdtemp(prefix="cs", dir="/tmp")
    try:
        spec = f"[overlay@{tmp_path}/root+{short}/run]"
        subprocess.run(["podman", "--root", f"{tmp_path}/root", "--runroot", f"{short}/run",
                        "--storage-driver", "overlay", "load", "-i", archive],
                       check=True, capture_output=True)
        r = _cli("--quiet", "scan", f"containers-storage:{spec}{ROOTLESS_NAME}",
                 "--format", "json", "--root", str(tmp_path / "s"))
        assert r.returncode == 0, r.stderr
        theirs = json.loads(r.stdout)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert _setuid_view(mine) == _setuid_view(theirs)
    ev = {f["location"]["path"]: f["evidence"] for f in mine["findings"]}
    assert "owner 33 group 42" in ev["/usr/local/bin/www"]
    assert "owner 1000 group 60" in ev["/usr/local/bin/games"]
    assert "/home/u/.netrc" in {f["location"]["path"] for f in mine["findings"]}
    # mounting: says why not and what works
    m = as_user(f"{py} -m imgscan mount containers-storage:{ROOTLESS_NAME}", check=False)
    lines = m.stderr.strip().splitlines()
    assert m.returncode == 3 and len(lines) == 1, m.stderr
    assert "needs root" in lines[0] and "imgscan scan" in lines[0]


def test_podman_rmi_of_an_imgscan_mount(podman_store) -> None:  # type: ignore[no-untyped-def]
    """containers/storage unmounts and deletes a mounted image; imgscan says so afterwards."""
    cs, podman, _ = podman_store
    r = _cli("mount", _spec(cs) + NAME)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path in mounted_paths()
    assert podman("rmi", NAME, check=False).returncode == 0
    assert path not in mounted_paths() and not os.path.exists(path)
    r = _cli("umount", _spec(cs) + NAME)
    assert r.returncode == 3 and "no image" in r.stderr
    assert podman("image", "mount").stdout.strip() == ""
