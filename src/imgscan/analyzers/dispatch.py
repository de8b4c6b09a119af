"""The one walk: offer each file of a layer to the analyzers that want it, read it once.

Work is spread over processes (both cores) when a layer has enough files to pay for it;
each worker builds its analyzer instances once. An analyzer that raises is recorded as a
warning for that file and the scan goes on (after Trivy: an analyzer crash is a skip).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from imgscan.analyzers.interface import (
    DEFAULT_MAX_READ,
    AnalysisResult,
    Analyzer,
    FileInfo,
    FileInput,
    ScanOptions,
)
from imgscan.analyzers.safeopen import open_beneath
from imgscan.model import LayerRef, ScanWarning

#: below this many files a layer is analyzed in-process (forking costs more than it saves)
PARALLEL_MIN_FILES = 400
CHUNK_FILES = 200


class LayerFileInput(FileInput):
    """A file of a layer directory; its bytes are read once and shared by all analyzers."""

    def __init__(self, root: str, info: FileInfo, layer: LayerRef | None) -> None:
        self.root = root
        self.info = info
        self.layer = layer
        self._data: bytes | None = None
        self._limit = 0

    def read(self, limit: int = DEFAULT_MAX_READ) -> bytes:
        if self._data is None or (self._limit < limit and len(self._data) >= self._limit):
            with open_beneath(self.root, self.info.path) as f:
                self._data = f.read(limit)
            self._limit = limit
        return self._data[:limit]

    def open(self) -> BinaryIO:
        return open_beneath(self.root, self.info.path)

    def open_sibling(self, name: str) -> BinaryIO | None:
        if "/" in name or name in ("", ".", ".."):
            return None
        parent = self.info.path.rpartition("/")[0]
        try:
            return open_beneath(self.root, f"{parent}/{name}" if parent else name)
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class WorkItem:
    info: FileInfo
    analyzers: tuple[int, ...]  # indexes into the analyzer list


Results = dict[str, dict[str, AnalysisResult]]  # analyzer name -> path -> result


def analyze_items(root: str, layer: LayerRef | None, analyzers: Sequence[Analyzer],
                  items: Sequence[WorkItem]) -> tuple[Results, dict[str, int]]:
    """Run the analyzers over ``items`` in this process. Returns results and call counts."""
    results: Results = {a.name: {} for a in analyzers}
    calls = {a.name: 0 for a in analyzers}
    for item in items:
        file = LayerFileInput(root, item.info, layer)
        for i in item.analyzers:
            a = analyzers[i]
            calls[a.name] += 1
            try:
                r = a.analyze(file)
            except Exception as e:  # a plugin bug must not end the scan
                r = AnalysisResult(warnings=[ScanWarning(
                    f"analyzer failed: {type(e).__name__}: {e}", "/" + item.info.path,
                    a.name, layer)])
            if r is not None and not r.is_empty():
                results[a.name][item.info.path] = r
        file.close()
    return results, calls


_worker_analyzers: list[Analyzer] = []


def _init_worker(classes: Sequence[type[Analyzer]], options: ScanOptions) -> None:
    from imgscan.procs import die_with_parent

    global _worker_analyzers
    die_with_parent()
    _worker_analyzers = [c(options) for c in classes]


def _work(root: str, layer: LayerRef | None, items: Sequence[WorkItem]
          ) -> tuple[Results, dict[str, int]]:
    return analyze_items(root, layer, _worker_analyzers, items)


def plan_iter(entries: Iterable[FileInfo], analyzers: Sequence[Analyzer]
              ) -> Iterator[WorkItem]:
    """Ask every analyzer about every regular file; yield the files someone wants."""
    for info in entries:
        if not info.is_regular:
            continue
        wanted = tuple(i for i, a in enumerate(analyzers) if _wants(a, info))
        if wanted:
            yield WorkItem(info, wanted)


def _chunks(items: Iterable[WorkItem], size: int) -> Iterator[list[WorkItem]]:
    chunk: list[WorkItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _wants(a: Analyzer, info: FileInfo) -> bool:
    try:
        return bool(a.required(info))
    except Exception:
        return False


class Dispatcher:
    """Runs analyzers over layers, in a process pool when the work is large enough."""

    def __init__(self, analyzers: Sequence[Analyzer], options: ScanOptions,
                 jobs: int | None = None) -> None:
        self.analyzers = list(analyzers)
        self.options = options
        self.jobs = jobs or (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self.calls: dict[str, int] = {a.name: 0 for a in analyzers}

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=([type(a) for a in self.analyzers], self.options),
            )
        return self._pool

    def run(self, root: str, layer: LayerRef | None, entries: Iterable[FileInfo],
            only: Sequence[str] | None = None) -> Results:
        """Analyze one layer (or directory). ``only`` limits to these analyzer names.

        ``entries`` may be a generator: files are planned and handed out in chunks as they
        come, with a bounded number of chunks in flight, so memory does not grow with the
        number of entries (a directory of a million files)."""
        active = [i for i, a in enumerate(self.analyzers) if only is None or a.name in only]
        if not active:
            return {}
        subset = [self.analyzers[i] for i in active]
        results: Results = {self.analyzers[i].name: {} for i in active}

        def absorb(outcome: tuple[Results, dict[str, int]]) -> None:
            res, calls = outcome
            for name, by_path in res.items():
                results.setdefault(name, {}).update(by_path)
            for name, n in calls.items():
                self.calls[name] = self.calls.get(name, 0) + n

        chunks = _chunks(
            (WorkItem(it.info, tuple(active[i] for i in it.analyzers))
             for it in plan_iter(entries, subset)),
            CHUNK_FILES,
        )
        first = next(chunks, None)
        if first is None:
            return results
        second = next(chunks, None) if len(first) == CHUNK_FILES else None
        if self.jobs <= 1 or second is None or len(first) + len(second) < PARALLEL_MIN_FILES:
            absorb(analyze_items(root, layer, self.analyzers, first))
            if second is not None:
                absorb(analyze_items(root, layer, self.analyzers, second))
            for chunk in chunks:
                absorb(analyze_items(root, layer, self.analyzers, chunk))
            return results
        pool = self._get_pool()
        in_flight: collections.deque[Any] = collections.deque()
        for chunk in itertools.chain([first, second], chunks):
            in_flight.append(pool.submit(_work, root, layer, chunk))
            if len(in_flight) >= 2 * self.jobs:
                absorb(in_flight.popleft().result())
        while in_flight:
            absorb(in_flight.popleft().result())
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
