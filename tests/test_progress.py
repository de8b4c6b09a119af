"""Issue 15 item 11: progress on a terminal for every long command (``dir:`` scans too),
drawn even while one long step runs; nothing when stderr is not a terminal or with -q."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time

from clihelp import SRC
from imgscan.progress import Progress


def _tree(tmp_path) -> str:
    root = tmp_path / "rootfs"
    for d in range(20):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(50):
            (sub / f"f{i}.txt").write_text(f"line {i}\n")
    return str(root)


def _run(args: list[str], tty: bool, env_extra: dict[str, str]) -> str:
    env = {**os.environ, "PYTHONPATH": SRC, "IMGSCAN_PROGRESS_DELAY": "0", **env_extra}
    env.pop("IMGSCAN_QUIET", None)
    if not tty:
        p = subprocess.run([sys.executable, "-m", "imgscan", *args], capture_output=True,
                           env=env, timeout=300)
        return p.stderr.decode()
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "imgscan", *args], stdout=subprocess.DEVNULL,
                         stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=300)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_dir_scan_shows_progress_on_a_terminal_only(tmp_path):
    tree = _tree(tmp_path)
    args = ["scan", f"dir:{tree}", "--fail-on", "none", "--jobs", "1"]
    shown = _run(args, tty=True, env_extra={})
    assert f"scanning dir:{tree}" in shown and "files" in shown
    assert _run(args, tty=False, env_extra={}) == ""
    assert "scanning" not in _run(["-q", *args], tty=True, env_extra={})


def test_a_long_single_step_still_ticks(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    monkeypatch.setenv("IMGSCAN_PROGRESS_DELAY", "0")
    with Progress("importing layers", 1, stream=out):
        time.sleep(0.5)  # no advance at all: one big layer
    assert "importing layers [" in out.getvalue() and "0/1" in out.getvalue()
