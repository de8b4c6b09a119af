"""Benchmark: ELF hardening of every ELF file in a Debian rootfs, whole process.

    python bench/bench_elf.py [--rootfs DIR] [--runs 3] [--ckpy /tmp/ckpy/bin/checksec]

Compares imgscan's ELF analysis (``bench/elf_runner.py``: ElfAnalyzer over all files on
2 worker processes, then FORTIFY against the rootfs libc) with Debian's ``checksec --dir``
(2.6, bash + readelf) and checksec.py from PyPI (LIEF-based; install it outside the repo:
``python -m venv /tmp/ckpy && /tmp/ckpy/bin/pip install checksec.py``). Each tool's whole
process is timed, runs are interleaved, and the median of ``--runs`` is reported.

The rootfs is made with ``debootstrap --variant=minbase bookworm DIR MIRROR`` when DIR does
not exist yet (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def ensure_rootfs(path: str, mirror: str) -> None:
    if os.path.isdir(os.path.join(path, "usr/bin")):
        return
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", path, mirror], check=True,
                   stdout=subprocess.DEVNULL)


def timed(cmd: list[str], out: str, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    with open(out, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", default="/tmp/bench-rootfs")
    ap.add_argument("--mirror", default="http://deb.debian.org/debian")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--ckpy", default="/tmp/ckpy/bin/checksec")
    ap.add_argument("--out", default="/tmp/bench_elf")
    args = ap.parse_args()
    ensure_rootfs(args.rootfs, args.mirror)
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=SRC)
    tools = {
        f"imgscan (elf_runner, -j {args.jobs})": (
            [sys.executable, os.path.join(HERE, "elf_runner.py"), args.rootfs,
             "-j", str(args.jobs), "-o", os.path.join(args.out, "imgscan.json")], env),
        "checksec 2.6 --dir": (
            ["checksec", "--output=json", f"--dir={args.rootfs}"], None),
    }
    if os.path.exists(args.ckpy):
        tools["checksec.py (PyPI) -r"] = ([args.ckpy, "-r", "-j", args.rootfs], None)
    times: dict[str, list[float]] = {k: [] for k in tools}
    for run in range(args.runs):
        for name, (cmd, e) in tools.items():
            out = os.path.join(args.out, f"{name.split()[0]}.{run}.out")
            times[name].append(timed(cmd, out, e))
            print(f"run {run} {name}: {times[name][-1]:.2f}s", file=sys.stderr)
    with open(os.path.join(args.out, "imgscan.json")) as f:
        n_ours = len(json.load(f))
    with open(os.path.join(args.out, "checksec.0.out")) as f:
        n_checksec = len(json.load(f)) - 1  # minus the "dir" entry
    base = statistics.median(times[next(iter(tools))])
    print(f"ELF files: imgscan {n_ours}, checksec --dir {n_checksec}")
    print("| tool | median (s) | runs (s) | vs imgscan |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        runs = ", ".join(f"{t:.2f}" for t in ts)
        print(f"| {name} | {med:.2f} | {runs} | {med / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
