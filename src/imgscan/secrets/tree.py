"""Scan a local directory tree on every core: the engine without the image framework.

The scanner framework spreads an image's files over its workers itself; this helper is for
plain directories (tests, benchmarks, a future ``imgscan secrets DIR``). Each worker process
compiles the rules once and then takes batches of paths, so the work is split by file and
no file is read twice.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from imgscan.secrets.engine import Match, SecretScanner
from imgscan.secrets.rules import load_rules

BATCH = 256

_worker: SecretScanner | None = None


@dataclass(frozen=True)
class TreeResult:
    path: str  # relative to the root, no leading slash
    matches: tuple[Match, ...]
    warnings: tuple[str, ...] = ()


def _init(rule_dirs: Sequence[str], disabled: Sequence[str], scan_binaries: bool) -> None:
    global _worker
    _worker = SecretScanner(load_rules(rule_dirs, disabled), scan_binaries=scan_binaries)


def _scan_batch(root: str, rels: list[str]) -> list[TreeResult]:
    assert _worker is not None
    out = []
    for rel in rels:
        warnings: list[str] = []
        try:
            fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            out.append(TreeResult(rel, (), (f"cannot open: {e.strerror}",)))
            continue
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                continue
            try:
                matches = _worker.scan_stream(f, rel, warnings)
            except OSError as e:
                warnings.append(f"cannot read: {e.strerror}")
                matches = []
        if matches or warnings:
            out.append(TreeResult(rel, tuple(matches), tuple(warnings)))
    return out


def walk_files(root: str, max_size: int | None = None,
               skip: Callable[[str], bool] | None = None,
               include: Sequence[str] = ("",)) -> Iterator[str]:
    """Regular files under ``root/include[i]`` (no symlinks followed), as paths relative to
    ``root`` (so path globs such as ``usr/share/doc/**`` apply), in path order."""
    for sub in include:
        yield from _walk_one(root, os.path.join(root, sub) if sub else root, max_size, skip)


def _walk_one(root: str, top: str, max_size: int | None,
              skip: Callable[[str], bool] | None) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        if skip is not None:
            dirnames[:] = [d for d in dirnames
                           if not skip(os.path.relpath(os.path.join(dirpath, d), root) + "/")]
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if skip is not None and skip(rel):
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                continue
            if max_size is not None and st.st_size > max_size:
                continue
            yield rel


def scan_tree(root: str, rule_dirs: Sequence[str] = (), disabled: Sequence[str] = (),
              scan_binaries: bool = False, jobs: int | None = None,
              max_size: int | None = None,
              skip: Callable[[str], bool] | None = None,
              include: Sequence[str] = ("",)) -> list[TreeResult]:
    """Scan every regular file under ``root`` (or only its ``include`` subdirectories) with
    ``jobs`` processes (default: all cores). ``skip(rel)`` prunes files and directories
    (directories are passed with a trailing slash). Rule errors surface here, before any
    worker starts."""
    load_rules(rule_dirs, disabled)  # fail fast with a RuleError in the caller's process
    rels = list(walk_files(root, max_size, skip, include))
    batches = [rels[i : i + BATCH] for i in range(0, len(rels), BATCH)]
    jobs = jobs or os.cpu_count() or 1
    results: list[TreeResult] = []
    if jobs == 1:
        _init(rule_dirs, disabled, scan_binaries)
        for b in batches:
            results.extend(_scan_batch(root, b))
        return results
    with ProcessPoolExecutor(jobs, initializer=_init,
                             initargs=(tuple(rule_dirs), tuple(disabled), scan_binaries)) as ex:
        for part in ex.map(_scan_batch, [root] * len(batches), batches):
            results.extend(part)
    return results
