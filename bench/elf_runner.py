"""Whole-process ELF hardening over a directory, the way the scanner runs the analyzer.

    PYTHONPATH=src python bench/elf_runner.py ROOTFS [-j JOBS] [-o OUT.json]

Walks ROOTFS without following symlinks, offers every regular file to ``ElfAnalyzer``
(same pre-filter and magic check as in a scan), spreads the files over JOBS worker
processes, then finishes FORTIFY against ROOTFS's own libc with ``ElfFortifyPostAnalyzer``'s
pure half. Prints a one-line summary; writes the rows as JSON with ``-o``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from analyzerharness import LocalFileInput, info_from_stat
from imgscan.analyzers.elf import ElfAnalyzer, ElfFortifyPostAnalyzer
from imgscan.analyzers.view import DirView

_ANALYZER = ElfAnalyzer()


def _walk(root: str) -> list[tuple[str, str]]:
    out = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    out.append((e.path, os.path.relpath(e.path, root)))
    return out


def _check(job: tuple[str, str]) -> tuple[list[dict[str, Any]], int, int]:
    full, rel = job
    info = info_from_stat(rel, os.lstat(full))
    if not _ANALYZER.required(info):
        return [], 0, 0
    res = _ANALYZER.analyze(LocalFileInput(full, info))
    if res is None:
        return [], 0, 0
    return res.facts.get("elf", []), len(res.findings), len(res.warnings)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    jobs = _walk(os.path.abspath(args.root))
    rows: list[dict[str, Any]] = []
    findings = warnings = 0
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = list(pool.imap_unordered(_check, jobs, chunksize=32))
    else:
        results = [_check(j) for j in jobs]
    for r, f, w in results:
        rows.extend(r)
        findings += f
        warnings += w
    view = DirView(args.root)
    fort, _, _ = ElfFortifyPostAnalyzer().finalize(rows, view)
    by_path = {r["path"]: r for r in rows}
    for fr in fort:
        by_path[fr["path"]].update(fr)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(sorted(rows, key=lambda r: r["path"]), f)
    print(f"{len(rows)} ELF files, {findings} findings, {warnings} warnings, "
          f"{len(jobs)} files walked, {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
