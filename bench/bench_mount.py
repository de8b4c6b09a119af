#!/usr/bin/env python3
"""Issue 3: ``imgscan mount`` + ``imgscan umount`` against ``podman image mount`` +
``podman image umount`` of the same multi-layer image, each in its own private store.

Target: imgscan's mount+umount cycle at most half of podman's.

    python3 bench/bench_mount.py [--runs 10] [--write]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Contender, Sample, imgscan_cmd, imgscan_env, run_timed

TARGET = 0.5
NAME = "bench/system:v1"


def podman_base(d: str) -> list[str]:
    return ["podman", "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
            "--storage-driver", "overlay"]


def cycle(mount: list[str], umount: list[str], env: dict[str, str] | None) -> Sample:
    """mount then umount, two whole processes; wall time summed, peak RSS the larger."""
    a = run_timed(mount, env=env, stdout=subprocess.PIPE)
    b = run_timed(umount, env=env)
    return Sample(a.wall + b.wall, max(a.maxrss_kb, b.maxrss_kb), a.rc or b.rc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()

    layout, tag, summary = common.system_image()
    ref = f"oci:{layout}:{tag}"
    work = os.path.join(common.WORK, "mount-runs")
    for d in (os.path.join(work, "podman", "run"),):
        if os.path.exists(d):  # a previous run's leftovers: unmount what podman may hold
            subprocess.run([*podman_base(os.path.join(work, "podman")), "image", "umount",
                            "--all", "--force"], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = imgscan_env()
    iroot = os.path.join(work, "imgscan")
    pdir = os.path.join(work, "podman")
    print("loading the image into both stores...", file=sys.stderr)
    subprocess.run(imgscan_cmd("pull", ref, "--root", iroot, "--name", NAME), env=env,
                   check=True, capture_output=True)
    # podman names an oci: image after its directory, and ".work" is no valid name: use a
    # docker-archive of the same image (same layers, same diff_ids).
    archive = common.docker_archive(layout, tag, os.path.join(common.WORK, "system.tar"), NAME)
    out = subprocess.run([*podman_base(pdir), "pull", "-q", f"docker-archive:{archive}"],
                         check=True,
                         capture_output=True, text=True)
    pid = out.stdout.strip().splitlines()[-1]
    pb = podman_base(pdir)

    # Correctness first: both mounts must show the same tree.
    ipath = subprocess.run(imgscan_cmd("mount", NAME, "--root", iroot), env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    ppath = subprocess.run([*pb, "image", "mount", pid], check=True, capture_output=True,
                           text=True).stdout.strip()
    same = subprocess.run(["diff", "-rq", "--no-dereference", ipath, ppath],
                          capture_output=True, text=True)
    agree = "identical trees (`diff -rq`)" if same.returncode == 0 else (
        "trees DIFFER: " + same.stdout[:300].replace("\n", "; "))
    subprocess.run(imgscan_cmd("umount", NAME, "--root", iroot), env=env, check=True)
    subprocess.run([*pb, "image", "umount", pid], check=True, capture_output=True)

    floor = [sys.executable, "-c", "pass"]
    floor_s = [sys.executable, "-S", "-c", "pass"]
    contenders = [
        Contender("imgscan mount + umount", lambda: cycle(
            imgscan_cmd("mount", NAME, "--root", iroot),
            imgscan_cmd("umount", NAME, "--root", iroot), env)),
        Contender("podman image mount + umount", lambda: cycle(
            [*pb, "image", "mount", pid], [*pb, "image", "umount", pid], None)),
    ]
    # Also each half alone, in the same interleaved rounds.
    halves = {"imgscan mount": [], "imgscan umount": [], "podman image mount": [],
              "podman image umount": []}

    def half_cycle(name: str, mount: list[str], umount: list[str],
                   e: dict[str, str] | None) -> Sample:
        a = run_timed(mount, env=e, stdout=subprocess.PIPE)
        b = run_timed(umount, env=e)
        halves[f"{name} mount"].append(a.wall)
        halves[f"{name} umount"].append(b.wall)
        return Sample(a.wall + b.wall, max(a.maxrss_kb, b.maxrss_kb), 0)

    contenders[0].run = lambda: half_cycle("imgscan", imgscan_cmd("mount", NAME, "--root", iroot),
                                           imgscan_cmd("umount", NAME, "--root", iroot), env)
    contenders[1].run = lambda: half_cycle("podman image", [*pb, "image", "mount", pid],
                                           [*pb, "image", "umount", pid], None)
    # CPython's start-up, two processes as in a cycle: the floor of any Python command pair
    contenders += [Contender("2 x python3 -c pass", lambda: cycle(floor, floor, env)),
                   Contender("2 x python3 -S -c pass", lambda: cycle(floor_s, floor_s, env))]
    common.interleave(contenders, args.runs, warmup=1)
    for k in halves:
        halves[k] = halves[k][1:]  # drop the warm-up round
    table = common.contender_table(contenders, "podman image mount + umount")
    import statistics

    half_rows = [[k, f"{statistics.median(v) * 1000:.0f}"] for k, v in halves.items()]
    half_table = common.md_table(["step", "median ms"], half_rows)
    ratio = contenders[0].median / contenders[1].median
    floor_ratio = contenders[2].median / contenders[1].median
    verdict = (f"**Target met**: imgscan's mount+umount takes {ratio:.2f}x podman's "
               f"(target ≤ {TARGET}x)." if ratio <= TARGET else
               f"**Target missed**: imgscan's mount+umount takes {ratio:.2f}x podman's "
               f"(target ≤ {TARGET}x).")
    verdict += (f" Two bare CPython start-ups (`python3 -c pass`, twice) alone take "
                f"{floor_ratio:.2f}x podman's cycle.")
    imports = importtime(NAME, iroot, env)
    print(table)
    print(half_table)
    print(verdict)
    print(imports)

    if args.write:
        body = f"""## Mount: `imgscan mount`/`umount` vs `podman image mount`/`umount` (issue 3)

The {len(summary['layers'])}-layer system image of the pull benchmark, imported into a private
imgscan store (`imgscan pull`) and into a private podman store (`podman --root D/root
--runroot D/run --storage-driver overlay pull oci:LAYOUT:v1`). One cycle is two whole
processes: `imgscan mount NAME --root R` then `imgscan umount NAME --root R`, against
`podman --root D/root --runroot D/run --storage-driver overlay image mount ID` then
`podman … image umount ID`. Both mount the kernel overlay read-only; the mounted trees are
{agree}. Medians of {args.runs} interleaved cycles after one warm-up.

Reproduce: `python3 bench/bench_mount.py --runs {args.runs} --write`

Machine: {common.machine_line()}

{table}

Each step alone (same rounds):

{half_table}

{verdict}

{imports}
"""
        common.write_section("mount", body)
    return 0


def importtime(name: str, root: str, env: dict[str, str], runs: int = 5) -> str:
    """``python -X importtime -m imgscan mount``: the imports that cost most (median of runs).

    Cumulative time of the top-level imports (those ``-X importtime`` prints unindented) shows
    which modules ``imgscan mount`` pays for; self time shows the single most expensive ones.
    """
    cum: dict[str, list[int]] = {}
    selfs: dict[str, list[int]] = {}
    totals = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgscan", "mount", name,
                            "--root", root], env=env, capture_output=True, text=True, check=True)
        subprocess.run(imgscan_cmd("umount", name, "--root", root), env=env, check=True)
        total = 0
        for line in p.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            s, c, indent, mod = int(m[1]), int(m[2]), len(m[3]), m[4]
            selfs.setdefault(mod, []).append(s)
            if indent == 1:
                cum.setdefault(mod, []).append(c)
                total += c
        totals.append(total)
        time.sleep(0.05)
    import statistics

    top_cum = sorted(cum.items(), key=lambda kv: -statistics.median(kv[1]))[:12]
    top_self = sorted(selfs.items(), key=lambda kv: -statistics.median(kv[1]))[:10]
    t1 = common.md_table(["top-level import", "cumulative ms"],
                         [[f"`{m}`", f"{statistics.median(v) / 1000:.1f}"] for m, v in top_cum])
    t2 = common.md_table(["module", "self ms"],
                         [[f"`{m}`", f"{statistics.median(v) / 1000:.1f}"] for m, v in top_self])
    imgscan_mods = sorted(m for m in selfs if m.startswith("imgscan"))
    return (f"`python -X importtime -m imgscan mount` (median of {runs}): all imports "
            f"{statistics.median(totals) / 1000:.0f} ms in total.\n\n{t1}\n\n"
            f"Most expensive single modules (self time):\n\n{t2}\n\n"
            f"imgscan modules imported by `mount`: {', '.join(f'`{m}`' for m in imgscan_mods)}"
            "\n")


if __name__ == "__main__":
    sys.exit(main())
