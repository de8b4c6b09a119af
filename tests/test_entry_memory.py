"""Issue 15 item 4: memory per entry stays small. A layer of 100,000 empty files is scanned
streamed and from the store with a peak RSS (the process's own VmHWM, read at exit) within
a fixed allowance over the same interpreter's ``imgscan --version``: the index, not an
object per file. Before the compact entry index a streamed scan peaked ~80 MB above it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

from clihelp import SRC
from imagebuild import ImageSpec, Layer, write_oci_layout

N = 100_000
#: what 100,000 entries may add over the start-up floor (measured: ~30 MB; the
#: object-per-entry index took ~80 MB over it)
ALLOWANCE_MB = 45

#: runs ``python -m imgscan ARGS`` and reports its own peak RSS (VmHWM, reset by exec:
#: wait4's ru_maxrss would carry the forking test process's peak into the child)
HWM = (
    "import atexit, runpy, sys\n"
    "def hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM'):\n"
    "            sys.stderr.write('HWM ' + line.split()[1] + '\\n')\n"
    "atexit.register(hwm)\n"
    "sys.argv = ['imgscan', *sys.argv[1:]]\n"
    "runpy.run_module('imgscan', run_name='__main__', alter_sys=True)\n"
)


def _peak_mb(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("IMGSCAN_DEBUG", None)
    p = subprocess.run([sys.executable, "-c", HWM, *args], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    (line,) = [x for x in p.stderr.splitlines() if x.startswith("HWM ")]
    return int(line.split()[1]) / 1024


def _layout(tmp_path) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(N):  # no directory entries: the parents are implicit
            ti = tarfile.TarInfo(f"data/d{i // 1000:03d}/f{i:06d}")
            ti.mode = 0o644
            tf.addfile(ti)
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(raw.getvalue())], ref_name="v1")])
    return layout


def test_many_entries_cost_the_index_not_an_object_each(tmp_path):
    layout = _layout(tmp_path)
    root = str(tmp_path / "store")
    floor = _peak_mb("--version")
    streamed = _peak_mb("scan", f"oci:{layout}:v1", "--root", root, "--format", "json",
                        "-o", str(tmp_path / "s.json"), "--fail-on", "none")
    doc = json.load(open(tmp_path / "s.json"))
    assert doc["layers"][0]["entries"] == N + 101  # the files and their 101 parents
    assert streamed - floor < ALLOWANCE_MB, (streamed, floor)
    subprocess.run([sys.executable, "-m", "imgscan", "pull", f"oci:{layout}:v1", "--root",
                    root], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": SRC})
    stored = _peak_mb("scan", "localhost/layout:v1", "--root", root, "--format", "json",
                      "-o", str(tmp_path / "t.json"), "--fail-on", "none")
    assert json.load(open(tmp_path / "t.json"))["layers"][0]["entries"] == N + 101
    assert stored - floor < ALLOWANCE_MB, (stored, floor)
