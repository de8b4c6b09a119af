#!/usr/bin/env python3
"""Issues 3 and 13: ``imgscan mount`` + ``imgscan umount`` against ``podman image mount`` +
``podman image umount`` of the same multi-layer image, each in its own private store.

Target (issue 13): imgscan's mount+umount cycle at most as slow as podman's (issue 3 asked
for half). imgscan is timed under two interpreters, each with its floor (two bare start-ups)
in the same interleaved rounds: a clean venv (``common.clean_python()``: what a user's venv
install runs) and this machine's default one (whose sandbox ``.pth`` hook imports certifi at
every start-up). The verdict uses the clean venv's figure and shows the other.

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
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Contender, Sample, imgscan_cmd, imgscan_env, run_timed

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

    cycles, halves = mount_contenders(
        lambda py: (cmd(py, "mount", NAME, "--root", iroot), cmd(py, "umount", NAME, "--root",
                                                                  iroot)),
        ([*pb, "image", "mount", pid], [*pb, "image", "umount", pid]), env)
    common.interleave(cycles, args.runs, warmup=1)
    result = judge(cycles, halves)
    imports = importtime(["mount", NAME, "--root", iroot], ["umount", NAME, "--root", iroot],
                         env)
    print(result)
    print(imports)

    if args.write:
        body = f"""## Mount: `imgscan mount`/`umount` vs `podman image mount`/`umount` (3, 13)

The {len(summary['layers'])}-layer system image of the pull benchmark, imported into a private
imgscan store (`imgscan pull`) and into a private podman store (`podman --root D/root
--runroot D/run --storage-driver overlay pull docker-archive:…`, the same layers). One cycle
is two whole processes: `PY -m imgscan mount NAME --root R` then `PY -m imgscan umount NAME
--root R`, against `podman --root D/root --runroot D/run --storage-driver overlay image mount
ID` then `podman … image umount ID`. Both mount the kernel overlay read-only; the mounted
trees are {agree}. Medians of {args.runs} interleaved cycles after one warm-up, with each
interpreter's floor (two bare start-ups) in the same rounds.

Reproduce: `python3 bench/bench_mount.py --runs {args.runs} --write`

Machine: {common.machine_line()}

{result}

Where the rest goes, and what would reach issue 3's 0.5x: beyond the interpreter's own
start-up (the floor), each imgscan process pays `runpy` (`python -m`, about 4 ms of the
imports below; pip's console-script wrapper pays `import re` instead), its own imports
(`ctypes` for `mount(2)` is the largest) and about 1 ms of work (locks, records, the
syscall). Half of podman's cycle would need a launcher that skips `site` and `runpy`
(`python -I -S` with the venv's paths written into the script; two `-S` start-ups are the
`-S` floor above) — a packaging change, not one of the mount path.

{imports}
"""
        common.write_section("mount", body)
    return 0


def cmd(py: str, *args: str) -> list[str]:
    """``PY -m imgscan ARGS``: this tree's CLI under the interpreter ``py``."""
    return [py, "-m", "imgscan", *args]


#: the interpreters imgscan is timed under: (label, path)
def interpreters() -> list[tuple[str, str]]:
    return [("clean venv", common.clean_python()), ("default", sys.executable)]


def mount_contenders(imgscan_pair: Callable[[str], tuple[list[str], list[str]]],
                     podman_pair: tuple[list[str], list[str]], env: dict[str, str],
                     ) -> tuple[list[Contender], dict[str, list[float]]]:
    """The contenders of a mount benchmark: imgscan's mount + umount under each interpreter,
    podman's, and each interpreter's floor (``-c pass`` and ``-S -c pass``, twice), plus the
    per-step times of the mount cycles (filled as the rounds run)."""
    halves: dict[str, list[float]] = {}

    def measured(name: str, pair: tuple[list[str], list[str]],
                 e: dict[str, str] | None) -> Contender:
        halves[f"{name}: mount"], halves[f"{name}: umount"] = [], []

        def run() -> Sample:
            a = run_timed(pair[0], env=e, stdout=subprocess.PIPE)
            b = run_timed(pair[1], env=e)
            halves[f"{name}: mount"].append(a.wall)
            halves[f"{name}: umount"].append(b.wall)
            return Sample(a.wall + b.wall, max(a.maxrss_kb, b.maxrss_kb), a.rc or b.rc)

        return Contender(name, run)

    out = [measured(f"imgscan ({label})", imgscan_pair(py), env)
           for label, py in interpreters()]
    out.append(measured(PODMAN, podman_pair, None))
    for label, py in interpreters():
        for flags, what in ((["-c", "pass"], "-c pass"), (["-S", "-c", "pass"], "-S -c pass")):
            argv = [py, *flags]
            out.append(Contender(f"floor ({label}): 2 x python {what}",
                                 lambda a=argv: cycle(a, a, env)))  # type: ignore[misc]
    return out, halves


PODMAN = "podman image mount + umount"
TARGET = 1.0  # issue 13: at most as slow as podman (issue 3 asked for half: noted, not met)


def judge(cycles: list[Contender], halves: dict[str, list[float]], issue3: bool = True) -> str:
    """The tables and the verdict: the clean venv's figure is the user's (a user's venv
    has no start-up hook); the default interpreter's is shown beside it."""
    import statistics

    for k in halves:
        halves[k] = halves[k][1:]  # drop the warm-up round
    table = common.contender_table(cycles, PODMAN)
    half_table = common.md_table(["step", "median ms"], [
        [k, f"{statistics.median(v) * 1000:.0f}"] for k, v in halves.items() if v])
    by = {c.name: c.median for c in cycles}
    podman = by[PODMAN]
    lines = []
    for label, _ in interpreters():
        ratio = by[f"imgscan ({label})"] / podman
        floor = by[f"floor ({label}): 2 x python -c pass"]
        floor_s = by[f"floor ({label}): 2 x python -S -c pass"]
        lines.append((label, ratio, floor, floor_s))
    label, ratio, floor, floor_s = lines[0]
    half = f"; issue 3 asked ≤ 0.5x, {'met' if ratio <= 0.5 else 'not met'}" if issue3 else ""
    verdict = (f"**Target {'met' if ratio <= TARGET else 'missed'}** (the clean-venv figure, "
               f"the one a user sees: a user's venv runs no start-up hook, while this "
               f"machine's interpreter imports certifi from a sandbox `.pth` file at every "
               f"start): imgscan's mount+umount takes {ratio:.2f}x podman's (target ≤ "
               f"{TARGET}x{half}). "
               f"Its floor, two bare start-ups of that interpreter, is {floor / podman:.2f}x "
               f"podman's cycle (`-S`: {floor_s / podman:.2f}x); imgscan adds "
               f"{(by[f'imgscan ({label})'] - floor) * 1000:.0f} ms to it for two processes.")
    for label, ratio, floor, _ in lines[1:]:
        verdict += (f" Under the {label} interpreter: {ratio:.2f}x podman's, "
                    f"floor {floor / podman:.2f}x, imgscan adds "
                    f"{(by[f'imgscan ({label})'] - floor) * 1000:.0f} ms.")
    return f"{table}\n\nEach step alone (same rounds):\n\n{half_table}\n\n{verdict}"


def importtime(args: list[str], undo: list[str], env: dict[str, str], runs: int = 5) -> str:
    """``PY -X importtime -m imgscan ARGS`` under the clean venv (then ``UNDO``, e.g. the
    umount): the imports that cost most, median of ``runs``.

    Cumulative time of the top-level imports (those ``-X importtime`` prints unindented) shows
    which modules the command pays for; self time shows the single most expensive ones.
    """
    py = common.clean_python()
    cum: dict[str, list[int]] = {}
    selfs: dict[str, list[int]] = {}
    totals = []
    for _ in range(runs):
        p = subprocess.run([py, "-X", "importtime", "-m", "imgscan", *args], env=env,
                           capture_output=True, text=True, check=True)
        subprocess.run(cmd(py, *undo), env=env, check=True, capture_output=True)
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
    return (f"`PY -X importtime -m imgscan {args[0]}` under the clean venv (median of {runs}): "
            f"all imports "
            f"{statistics.median(totals) / 1000:.0f} ms in total.\n\n{t1}\n\n"
            f"Most expensive single modules (self time):\n\n{t2}\n\n"
            f"imgscan modules imported by `{args[0]}`: "
            f"{', '.join(f'`{m}`' for m in imgscan_mods)}\n")


if __name__ == "__main__":
    sys.exit(main())
