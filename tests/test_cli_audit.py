"""scan --all (an audit of the whole store), the atomic scan scanner mode, the gate's exit
codes and the progress bar (terminal only)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from clihelp import SRC, imgscan
from imagebuild import D, F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.reports import validate_report


def pull_two(tmp_path, root):
    for i, mode in enumerate((0o755, 0o4755)):
        layout = str(tmp_path / f"img{i}")
        os.makedirs(layout)
        write_oci_layout(layout, [ImageSpec([Layer(layer_tar([
            D("usr/bin"), F("usr/bin/tool", b"\x7fELF", mode=mode)]))],
            config={"User": "1000"}, created="2099-01-01T00:00:00Z", ref_name="v1")])
        assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0


def test_scan_all_writes_a_report_per_image_and_a_summary(tmp_path):
    root = str(tmp_path / "store")
    pull_two(tmp_path, root)
    out = tmp_path / "audit"
    r = imgscan("scan", "--all", "--format", "json", "--format", "html", "--output-dir",
                str(out), "--fail-on", "high", root=root)
    assert r.code == 1, r.err  # img1 has an unowned setuid binary
    assert "localhost/img0:v1" in r.out and "localhost/img1:v1" in r.out
    lines = {line.split()[0]: line for line in r.out.splitlines() if "localhost/" in line}
    assert "FAIL" in lines["localhost/img1:v1"] and "pass" in lines["localhost/img0:v1"]
    files = sorted(os.listdir(out))
    assert files == ["localhost_img0_v1.html", "localhost_img0_v1.json",
                     "localhost_img1_v1.html", "localhost_img1_v1.json"]
    doc = json.loads((out / "localhost_img1_v1.json").read_text())
    validate_report(doc)
    assert any(f["rule_id"] == "perm/setuid-unowned" for f in doc["findings"])


def test_atomic_scanner_mode(tmp_path):
    scanin, scanout = tmp_path / "scanin", tmp_path / "scanout"
    for ident, mode in (("aaa111", 0o755), ("bbb222", 0o4755)):
        d = scanin / ident / "usr/bin"
        d.mkdir(parents=True)
        (d / "tool").write_bytes(b"\x7fELF")
        os.chmod(d / "tool", mode)
    r = imgscan("scan", "--atomic-scanin", str(scanin), "--atomic-scanout", str(scanout))
    assert r.code == 0, r.err
    for ident in ("aaa111", "bbb222"):
        doc = json.loads((scanout / ident / "json").read_text())
        assert doc["UUID"] == f"/scanin/{ident}" and doc["Successful"] == "true"
        for key in ("Scanner", "Time", "Scan Type", "Finished Time", "Vulnerabilities"):
            assert key in doc
    titles = [v["Title"] for v in json.loads((scanout / "bbb222" / "json").read_text())[
        "Vulnerabilities"]]
    assert any("setuid" in t for t in titles)
    assert imgscan("scan", "--atomic-scanin", str(scanin)).code == 2


def test_usage_errors_exit_2(tmp_path):
    assert imgscan("scan").code == 2
    assert imgscan("scan", "dir:/nonexistent-x", "--fail-on", "severe").code == 2
    bad_ignore = tmp_path / "ignore.toml"
    bad_ignore.write_text("[[ignore]]\nrule = 'x'\nreason = 'r'\nexpires = 'not-a-date'\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    r = imgscan("scan", f"dir:{root}", "--ignore-file", str(bad_ignore))
    assert r.code == 2 and "ignore" in r.err.lower()
    bad_rules = tmp_path / "rules"
    bad_rules.mkdir()
    (bad_rules / "x.toml").write_text("[[rules]]\nid = 'r1'\n")
    r = imgscan("scan", f"dir:{root}", "--rules", str(bad_rules))
    assert r.code == 2 and "x.toml" in r.err


def test_progress_bar_only_on_a_terminal(tmp_path):
    root = str(tmp_path / "store")
    layout = str(tmp_path / "big")
    os.makedirs(layout)
    layers = [Layer(layer_tar([F(f"d{i}/f{j}", os.urandom(4096)) for j in range(3000)]))
              for i in range(3)]
    write_oci_layout(layout, [ImageSpec(layers, ref_name="v1")])
    env = {**os.environ, "PYTHONPATH": SRC}
    # on a pipe: no progress, only the id (stdout) and the names it was given (stderr)
    p = subprocess.run([sys.executable, "-m", "imgscan", "pull", f"oci:{layout}:v1", "--root",
                        root, "--max-entries", "100000"], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0 and p.stderr == f"imgscan: stored {p.stdout[7:19]} as " \
        "localhost/big:v1\n"
    # on a terminal: a progress line once the work takes over a second
    import imgscan.progress as prog

    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", "import imgscan.progress as p; p.DELAY = 0; "
                          "from imgscan.cli import main; main()", "scan", "localhost/big:v1",
                          "--root", root, "--format", "json", "-o", str(tmp_path / "r.json")],
                         stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=120)
    os.close(leader)
    assert p.returncode == 0
    assert b"scanning" in b"".join(chunks) and prog.DELAY == 1.0


def test_reports_into_dev_null_or_a_fifo_leave_the_special_file_alone(tmp_path):
    import stat
    import threading

    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    r = imgscan("scan", f"dir:{root}", "--format", "json", "-o", "/dev/null")
    assert r.code == 0, r.err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    r = imgscan("scan", f"dir:{root}", "--format", f"json={fifo}")
    reader.join(30)
    assert r.code == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    validate_report(json.loads(got[0]))
