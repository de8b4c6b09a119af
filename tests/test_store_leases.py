"""Issue 15 item 2: an image being scanned is in use, as a mounted one is: ``rmi`` refuses
(naming the reader's pid) or, with ``--force``, waits for it; a scan never loses its layers
half-way."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import textwrap
import time

import pytest

from clihelp import SRC, imgscan
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.errors import ImageInUseError
from imgscan.store import leases
from imgscan.store.store import Store

_R = random.Random(15)
GH = "ghp_" + "".join(_R.choice(string.ascii_letters + string.digits) for _ in range(36))
SECRET = f"token = {GH}\n"


def _layout(tmp_path, name: str = "img") -> str:
    files = [F(f"srv/data/{i:04d}.txt", f"line {i}\n" * 50) for i in range(300)]
    base = Layer(layer_tar([F("etc/os-release", "ID=test\n"), *files]))
    top = Layer(layer_tar([F("app/config.ini", SECRET)]))
    path = str(tmp_path / name)
    os.makedirs(path)
    write_oci_layout(path, [ImageSpec([base, top], ref_name="v1")])
    return path


def _pulled(tmp_path) -> tuple[str, str, str]:
    root = str(tmp_path / "store")
    path = _layout(tmp_path)
    r = imgscan("pull", f"oci:{path}:v1", root=root)
    assert r.code == 0, r.err
    return root, path, "localhost/img:v1"


def test_lease_refuses_removal_and_stale_leases_are_swept(tmp_path):
    root, _, name = _pulled(tmp_path)
    store = Store(root)
    with leases.leased(store, name, "scan") as img:
        with pytest.raises(ImageInUseError, match=f"pid {os.getpid()} \\(scan\\)"):
            store.remove([name])
        with pytest.raises(ImageInUseError):  # --force cannot wait for its own process
            store.remove([name], force=True)
        assert [h.pid for h in leases.holders(store, img.id)] == [os.getpid()]
    # a lease file left by a process that died (nobody holds its flock) does not count
    stale = os.path.join(leases.leases_dir(store), f"{img.id.split(':')[1]}.999999.dead")
    with open(stale, "w") as f:
        json.dump({"pid": 999999, "purpose": "scan", "since": 0}, f)
    assert leases.holders(store, img.id) == []
    assert not os.path.exists(stale)
    assert [r.id for r in store.remove([name])] == [img.id]


HOLDER = textwrap.dedent('''
    import sys, time
    from imgscan.store.leases import leased
    from imgscan.store.store import Store
    with leased(Store(sys.argv[1]), sys.argv[2]):
        print("leased", flush=True)
        time.sleep(float(sys.argv[3]))
''')


def test_rmi_names_the_scanning_pid_and_force_waits(tmp_path):
    root, _, name = _pulled(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, root, name, "2"],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "leased\n"
        r = imgscan("rmi", name, root=root)
        assert r.code == 3
        assert f"pid {holder.pid} (scan)" in r.err and "--force" in r.err
        t0 = time.monotonic()
        r = imgscan("rmi", "--force", name, root=root)
        assert r.code == 0, r.err
        assert holder.poll() is not None  # it waited for the scan to end
        assert time.monotonic() - t0 > 0.5
    finally:
        holder.kill()
        holder.wait()
    assert imgscan("images", "--format", "json", root=root).out.strip() == "[]"


WORKER = textwrap.dedent('''
    import json, random, sys, time
    from imgscan.api import pull, scan
    from imgscan.errors import ImgscanError, ImageInUseError, BadReferenceError
    from imgscan.scanner import Scanner
    from imgscan.store.store import Store

    def slow_scan(self, store, image, _scan=Scanner.scan_image):
        time.sleep(0.3)  # a bigger image: the window rmi used to hit
        return _scan(self, store, image)

    Scanner.scan_image = slow_scan
    root, seed, layout, name, deadline = sys.argv[1:]
    rnd = random.Random(int(seed))
    store = Store(root)
    while time.time() < float(deadline):
        if int(seed) % 2:
            try:
                rep = scan(name, store=store)
            except BadReferenceError:
                print(json.dumps({"scan": "not-started"}))
                time.sleep(0.1)
            except ImgscanError as e:
                print(json.dumps({"scan": "died", "error": str(e)}))
            else:
                print(json.dumps({"scan": "done", "findings":
                                  sorted(f.id for f in rep.findings)}))
        else:
            time.sleep(rnd.random() * 0.5)
            try:
                store.remove([name])
                print(json.dumps({"rmi": "removed"}))
            except ImageInUseError as e:
                print(json.dumps({"rmi": "refused", "error": str(e)}))
            except BadReferenceError:
                print(json.dumps({"rmi": "absent"}))
            time.sleep(0.5)  # scans that looked the image up before must not find it gone
            pull("oci:" + layout + ":v1", store=store)
        sys.stdout.flush()
''')


def test_eight_processes_scanning_and_removing(tmp_path):
    root, layout, name = _pulled(tmp_path)
    from imgscan.api import scan

    full = sorted(f.id for f in scan(name, root=root).findings)
    assert full
    env = {**os.environ, "PYTHONPATH": SRC}
    deadline = str(time.time() + 12)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, root, str(seed), layout, name,
                               deadline],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for seed in range(8)]
    events = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        events += [json.loads(line) for line in out.splitlines()]
    scans = [e for e in events if "scan" in e]
    assert sum(e["scan"] == "done" for e in scans) >= 2
    for e in scans:
        assert e["scan"] in ("done", "not-started"), e
        if e["scan"] == "done":
            assert e["findings"] == full
    for e in events:
        if e.get("rmi") == "refused":
            assert "is in use by pid" in e["error"]
    assert Store(root).check() == []


def _lease_files(root: str) -> list[str]:
    d = os.path.join(root, "run", "leases")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _recorded(root: str) -> bool:
    """A lease file exists and holds its record (the scan got past writing it)."""
    d = os.path.join(root, "run", "leases")
    try:
        return any(os.path.getsize(os.path.join(d, n)) for n in _lease_files(root))
    except FileNotFoundError:
        return False


def test_store_check_reports_and_repairs_a_lease_left_by_a_killed_scan(tmp_path):
    import signal

    root, _, name = _pulled(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("IMGSCAN_DEBUG", None)
    scan = subprocess.Popen([sys.executable, "-m", "imgscan", "scan", name, "--root", root],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not _recorded(root) and scan.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.killpg(scan.pid, signal.SIGKILL)  # the scan and any worker it forked
    scan.wait()
    left = _lease_files(root)
    assert len(left) == 1, "the scan ended before it was killed"
    assert f".{scan.pid}." in left[0]
    r = imgscan("store", "check", root=root)
    assert r.code == 3
    assert f"stale-lease: {os.path.join(root, 'run', 'leases', left[0])}" in r.out
    assert f"pid {scan.pid} (scan)" in r.out and "[repairable]" in r.out
    assert _lease_files(root) == left  # a check without --repair removes nothing
    r = imgscan("store", "check", "--repair", root=root)
    assert r.code == 0, r.out + r.err
    assert "stale-lease" in r.out and "[repaired]" in r.out
    assert _lease_files(root) == []
    r = imgscan("store", "check", root=root)
    assert (r.code, r.out.strip()) == (0, "store is consistent")


def test_store_check_leaves_a_live_lease_alone(tmp_path):
    root, _, name = _pulled(tmp_path)
    store = Store(root)
    with leases.leased(store, name, "scan"):
        assert store.check() == []
        assert store.check(repair=True) == []
        assert len(_lease_files(root)) == 1
