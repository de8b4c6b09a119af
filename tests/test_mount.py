"""imgscan mount/umount/mounts: kernel overlay via mount(2), fuse-overlayfs, counts shared
across processes, stale records, rmi refused while mounted, and the mounted tree compared
with umoci unpack."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from clihelp import SRC, imgscan
from conftest import tree_of
from imagebuild import OPQ, WH, D, F, H, ImageSpec, L, Layer, layer_tar, write_oci_layout


def rich_layers() -> list[Layer]:
    return [
        Layer(layer_tar([
            D("etc"), F("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), F("etc/secret", "s3"),
            D("usr"), D("usr/bin"), F("usr/bin/su", b"\x7fELF su", mode=0o4755),
            F("usr/bin/wall", b"\x7fELF wall", mode=0o2755, gid=5),
            H("usr/bin/su-link", "usr/bin/su"), L("usr/bin/sh", "dash"),
            F("usr/bin/dash", b"\x7fELF dash", mode=0o755),
            D("opt"), D("opt/app"), F("opt/app/old1", "1"), F("opt/app/old2", "2"),
            D("tmp", mode=0o1777), D("home"), D("home/user", uid=1000, gid=1000, mode=0o700),
            F("home/user/.profile", "x", uid=1000, gid=1000),
        ]), "gzip"),
        Layer(layer_tar([
            D("etc"), WH("etc/secret"), F("etc/hostname", "box\n"),
            D("opt"), D("opt/app"), OPQ("opt/app"), F("opt/app/new", "n"),
            D("var"), D("var/log"), F("var/log/app.log", "log\n", mode=0o640),
        ]), "gzip"),  # umoci cannot unpack zstd layers
        Layer(layer_tar([D("usr"), D("usr/bin"), F("usr/bin/dash", b"\x7fELF dash v2",
                                                   mode=0o755)]), None),
    ]


@pytest.fixture
def image(tmp_path):
    root = str(tmp_path / "store")
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec(rich_layers(), ref_name="v1")])
    r = imgscan("pull", f"oci:{layout}:v1", root=root)
    assert r.code == 0, r.err
    yield root, layout, "localhost/layout:v1"
    imgscan("rmi", "--force", "localhost/layout:v1", root=root)


def test_mounted_tree_equals_umoci_unpack(image, tmp_path):
    root, layout, name = image
    r = imgscan("mount", name, root=root)
    assert r.code == 0, r.err
    path = r.out.strip()
    bundle = str(tmp_path / "bundle")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:v1", bundle], check=True,
                   capture_output=True)
    ours, theirs = tree_of(path), tree_of(os.path.join(bundle, "rootfs"))
    assert ours == theirs
    # and the things that matter are really there
    assert not os.path.exists(os.path.join(path, "etc/secret"))
    assert sorted(os.listdir(os.path.join(path, "opt/app"))) == ["new"]
    assert ours["usr/bin/su"][1] == 0o4755
    assert os.lstat(os.path.join(path, "usr/bin/su")).st_ino == \
        os.lstat(os.path.join(path, "usr/bin/su-link")).st_ino
    with open(os.path.join(path, "usr/bin/dash"), "rb") as f:
        assert f.read() == b"\x7fELF dash v2"
    with pytest.raises(OSError) as e:
        open(os.path.join(path, "etc/new"), "w")
    assert e.value.errno == errno.EROFS
    opts = next(line.split()[5] for line in open("/proc/self/mountinfo")
                if line.split()[4] == path)
    assert {"ro", "nodev", "nosuid"} <= set(opts.split(","))
    assert imgscan("umount", name, root=root).code == 0
    assert not os.path.ismount(path)


def test_counts_paths_and_rmi_refusal(image):
    root, _, name = image
    p1 = imgscan("mount", name, root=root).out.strip()
    p2 = imgscan("mount", name, root=root).out.strip()
    assert p1 == p2 and os.path.ismount(p1)
    recs = json.loads(imgscan("mounts", "--format", "json", root=root).out)
    assert [(r["path"], r["count"], r["driver"]) for r in recs] == [(p1, 2, "overlay")]
    r = imgscan("rmi", name, root=root)
    assert r.code == 3 and p1 in r.err and "count 2" in r.err
    r = imgscan("umount", p1, root=root)
    assert r.code == 0 and "count 1" in r.out and os.path.ismount(p1)
    assert imgscan("umount", name, root=root).code == 0
    assert not os.path.ismount(p1)
    assert json.loads(imgscan("mounts", "--format", "json", root=root).out) == []
    assert imgscan("umount", name, root=root).code == 3  # not mounted
    imgscan("mount", name, root=root)
    r = imgscan("rmi", "--force", name, root=root)
    assert r.code == 0 and not os.path.ismount(p1)
    assert imgscan("store", "check", root=root).code == 0


def test_stale_record_is_detected_and_repaired(image):
    root, _, name = image
    path = imgscan("mount", name, root=root).out.strip()
    subprocess.run(["umount", "-l", path], check=True)  # behind imgscan's back
    assert json.loads(imgscan("mounts", "--format", "json", root=root).out) == []
    check = imgscan("store", "check", root=root)
    assert check.code == 3 and "stale-mount-record" in check.out
    # rmi is not blocked by a mount that no longer exists
    again = imgscan("mount", name, root=root)
    assert again.code == 0 and os.path.ismount(again.out.strip())
    recs = json.loads(imgscan("mounts", "--format", "json", root=root).out)
    assert recs[0]["count"] == 1
    assert imgscan("umount", name, root=root).code == 0
    assert imgscan("store", "check", root=root).code == 0


def test_fuse_overlayfs_driver(image):
    root, _, name = image
    r = imgscan("mount", "--driver", "fuse-overlayfs", name, root=root)
    assert r.code == 0, r.err
    path = r.out.strip()
    recs = json.loads(imgscan("mounts", "--format", "json", root=root).out)
    assert recs[0]["driver"] == "fuse-overlayfs"
    assert not os.path.exists(os.path.join(path, "etc/secret"))
    assert sorted(os.listdir(os.path.join(path, "opt/app"))) == ["new"]
    assert imgscan("umount", name, root=root).code == 0
    assert not os.path.ismount(path)


def test_custom_mountpoint(image, tmp_path):
    root, _, name = image
    mp = tmp_path / "here"
    mp.mkdir()
    r = imgscan("mount", "--mountpoint", str(mp), name, root=root)
    assert r.code == 0 and r.out.strip() == str(mp) and os.path.ismount(mp)
    assert imgscan("umount", str(mp), root=root).code == 0
    assert mp.is_dir() and not os.path.ismount(mp)


@pytest.mark.parametrize("n", [1, 200])
def test_single_layer_and_200_layers_mount(tmp_path, n):
    root = str(tmp_path / "store")
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    layers = [Layer(layer_tar([F(f"layer{i:03d}", str(i)), F("top", str(i))]), None)
              for i in range(n)]
    write_oci_layout(layout, [ImageSpec(layers, ref_name="v1")])
    assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
    r = imgscan("mount", "localhost/layout:v1", root=root)
    assert r.code == 0, r.err
    path = r.out.strip()
    assert len(os.listdir(path)) == n + 1
    with open(os.path.join(path, "top")) as f:
        assert f.read() == str(n - 1)
    assert imgscan("umount", "localhost/layout:v1", root=root).code == 0


def nobody_can_open_fuse() -> bool:
    """Whether nobody can open /dev/fuse read-write, asked by opening it as nobody, the way
    fuse-overlayfs will: os.access as root says yes whatever the mode bits are."""
    probe = "import os; os.close(os.open('/dev/fuse', os.O_RDWR))"
    r = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", sys.executable, "-c", probe],
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0


def test_rootless_mount_fails_with_an_explanation_and_scan_still_works(as_nobody):
    work, run = as_nobody
    root = os.path.join(work, "store")
    layout = os.path.join(work, "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec(rich_layers(), ref_name="v1")])
    subprocess.run(["chmod", "-R", "a+rX", layout], check=True)
    r = run("pull", f"oci:{layout}:v1", "--root", root)
    assert r.returncode == 0, r.stderr
    assert os.stat(os.path.join(root, "store.json")).st_uid == 65534
    # kernel overlay is refused to nobody; where /dev/fuse is open to users, fuse-overlayfs
    # takes over (it reads the '.wh.' whiteouts a rootless import keeps)
    fuse_open = nobody_can_open_fuse()
    r = run("mount", "localhost/layout:v1", "--root", root)
    if fuse_open:
        assert r.returncode == 0, r.stderr
        path = r.stdout.strip()

        def ls(rel: str) -> list[str]:  # a user's fuse mount is the user's alone
            out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                  "--clear-groups", "ls", "-A", os.path.join(path, rel)],
                                 capture_output=True, text=True, check=True).stdout
            return sorted(out.split())

        assert "secret" not in ls("etc") and "hostname" in ls("etc")
        assert ls("opt/app") == ["new"]
        mounts = json.loads(run("mounts", "--format", "json", "--root", root).stdout)
        assert mounts[0]["driver"] == "fuse-overlayfs"
        assert run("umount", "localhost/layout:v1", "--root", root).returncode == 0
        assert not os.path.ismount(path)
    # without fuse-overlayfs there is no way to mount: say why and what would work
    r = run("mount", "localhost/layout:v1", "--root", root,
            path=os.path.dirname(sys.executable))
    assert r.returncode == 3
    assert "root" in r.stderr and "fuse" in r.stderr and "imgscan scan" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    scan = run("scan", "localhost/layout:v1", "--format", "json", "--analyzers", "os-release",
               "--root", root)
    assert scan.returncode == 0, scan.stderr


WORKER = textwrap.dedent('''
    import random, sys
    from imgscan.errors import ImgscanError
    from imgscan.mount.mounts import MountTable
    from imgscan.store.store import Store
    root, seed, *names = sys.argv[1:]
    rnd = random.Random(int(seed))
    store = Store(root)
    table = MountTable(store)
    held = []
    for step in range(15):
        name = rnd.choice(names)
        if held and rnd.random() < 0.45:
            table.unmount(held.pop(rnd.randrange(len(held))))
        else:
            try:
                table.mount(name)
                held.append(name)
            except ImgscanError as e:
                print("ERR", e)
    print(" ".join(held))
''')


def test_eight_processes_mounting_at_once_keep_exact_counts(tmp_path):
    root = str(tmp_path / "store")
    names = []
    for i in range(3):
        layout = str(tmp_path / f"img{i}")
        os.makedirs(layout)
        write_oci_layout(layout, [ImageSpec([Layer(layer_tar([F("f", str(i))]))],
                                            ref_name="v1")])
        assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
        names.append(f"localhost/img{i}:v1")
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, root, str(s), *names],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for s in range(8)]
    still_held: dict[str, int] = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "ERR" not in out, err + out
        for n in out.split():
            still_held[n] = still_held.get(n, 0) + 1
    recs = json.loads(imgscan("mounts", "--format", "json", root=root).out)
    got = {", ".join(r["names"]): r["count"] for r in recs}  # names: a list (issue 15)
    assert got == still_held
    mounted = {line.split()[4] for line in open("/proc/self/mountinfo")}
    ours = {m for m in mounted if m.startswith(os.path.join(root, "run"))}
    assert ours == {r["path"] for r in recs}
    assert imgscan("store", "check", root=root).code == 0
    for n in names:
        imgscan("rmi", "--force", n, root=root)
    assert not any(m.startswith(root) for line in open("/proc/self/mountinfo")
                   for m in [line.split()[4]])


def test_mount_command_imports_no_analyzers_or_writers(image):
    root, _, name = image
    env = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgscan", "mount", name,
                        "--root", root], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    modules = [line.split("|")[-1].strip() for line in p.stderr.splitlines()
               if line.startswith("import time:")]
    assert "imgscan.mount.mounts" in modules and "imgscan.store.view" in modules
    heavy = [m for m in modules if m.startswith(("imgscan.analyzers.", "imgscan.reports",
                                                 "imgscan.scanner", "elftools", "jsonschema",
                                                 "tabulate", "zstandard", "urllib3", "click",
                                                 "imgscan.api", "imgscan.store.store"))]
    assert heavy == []
    imgscan("umount", name, root=root)


def test_a_mount_whose_record_was_lost_is_not_stacked_upon(image):
    root, _, name = image
    path = imgscan("mount", name, root=root).out.strip()
    os.unlink(os.path.join(root, "run", "mounts.json"))  # the record is gone, the mount not
    check = imgscan("store", "check", root=root)
    assert check.code == 3 and "stray-mount" in check.out
    assert imgscan("mount", name, root=root).out.strip() == path
    stacked = [line for line in open("/proc/self/mountinfo") if line.split()[4] == path]
    assert len(stacked) == 1
    assert imgscan("umount", name, root=root).code == 0
    assert not os.path.ismount(path)
    assert imgscan("store", "check", root=root).code == 0


def test_a_record_from_before_the_last_boot_is_stale(image):
    root, _, name = image
    path = imgscan("mount", name, root=root).out.strip()
    records = os.path.join(root, "run", "mounts.json")
    with open(records) as f:
        doc = json.load(f)
    for rec in doc.values():
        rec["boot_id"] = "a-boot-long-ago"
    with open(records, "w") as f:
        json.dump(doc, f)
    assert json.loads(imgscan("mounts", "--format", "json", root=root).out) == []
    r = imgscan("rmi", name, root=root)  # not blocked by a record from another boot
    assert r.code == 0, r.err
    assert not any(line.split()[4] == path for line in open("/proc/self/mountinfo"))
