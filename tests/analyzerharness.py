"""A test harness for analyzers: run one analyzer over a local directory.

Not part of the installed package (tests and ``bench/`` import it from here).

This is not the scanner (no layers, no cache, no parallelism); it is the smallest faithful
driver of the ``Analyzer`` contract, for unit tests of a single analyzer.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from imgscan.analyzers.interface import (
    DEFAULT_MAX_READ,
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    FileKind,
)
from imgscan.analyzers.view import info_from_stat
from imgscan.model import LayerRef


class LocalFileInput(FileInput):
    def __init__(self, disk_path: str, info: FileInfo, layer: LayerRef | None = None) -> None:
        self.disk_path = disk_path
        self.info = info
        self.layer = layer
        self._cache: bytes | None = None

    def read(self, limit: int = DEFAULT_MAX_READ) -> bytes:
        if self._cache is None or len(self._cache) < min(limit, self.info.size):
            with open(self.disk_path, "rb") as f:
                self._cache = f.read(limit)
        return self._cache[:limit]

    def open(self) -> BinaryIO:
        return open(self.disk_path, "rb")

    def open_sibling(self, name: str) -> BinaryIO | None:
        if "/" in name or name in ("", ".", ".."):
            return None
        path = os.path.join(os.path.dirname(self.disk_path), name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")


def run_analyzer(analyzer: Analyzer, root: str) -> AnalysisResult:
    """Walk ``root`` (no symlinks followed) and feed every wanted regular file to analyzer."""
    result = AnalysisResult()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            linkname = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            info = info_from_stat(rel, st, linkname)
            if info.kind != FileKind.FILE or not analyzer.required(info):
                continue
            result.merge(analyzer.analyze(LocalFileInput(full, info)))
    return result
