"""``StoredLayer``: a layer extracted in a store — its directory plus its tar index.

Handed over by whoever owns the store (the API), as a plain value: the index is loaded by
the callable it is given, so nothing here imports the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from imgscan.fileinfo import FileInfo
from imgscan.layers.interface import Layer, LayerMember
from imgscan.model import LayerRef


class _DirMember(LayerMember):
    __slots__ = ("_root", "info")

    def __init__(self, root: str, info: FileInfo) -> None:
        self.info = info
        self._root = root

    def open(self) -> BinaryIO:
        from imgscan.analyzers.safeopen import open_beneath

        return open_beneath(self._root, self.info.path)


class StoredLayer(Layer):
    def __init__(self, ref: LayerRef, root: str,
                 load_entries: Callable[[], Sequence[FileInfo]], digest: str = "",
                 size: int = 0, entry_count: int | None = None) -> None:
        self.ref = ref
        self.root = root
        self._load = load_entries
        self._entries: list[FileInfo] | None = None
        self.digest = digest
        self.size = size
        self.entry_count = entry_count

    def entries(self) -> list[FileInfo]:
        if self._entries is None:
            self._entries = list(self._load())
        return self._entries

    def directory(self) -> str:
        return self.root

    @contextmanager
    def members(self) -> Iterator[Iterator[LayerMember]]:
        yield (_DirMember(self.root, info) for info in self.entries())
