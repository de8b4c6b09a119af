"""``RowIndex``: an extraction's working index (key → ``FileInfo``) in a few arrays.

Extraction needs a mapping for "last entry wins": is this path already written, which entry
does a hard link name, which entries does a replaced directory take with it. A dict of
300,000 path strings costs ~40 MB before it holds a single value; here the values are rows
of a ``TableBuilder`` (columns, paths in one blob) and the keys are found through an
open-addressing table of row numbers, probed by the key's hash and checked against the
row's own path: ~8 bytes a key.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, MutableMapping, Sequence

from imgscan.entrytable import EntryTable, TableBuilder
from imgscan.fileinfo import FileInfo

_EMPTY, _GONE = 0, -1  # a slot holds row + 1 when used


class RowIndex(MutableMapping[str, FileInfo]):
    """A mapping of key → ``FileInfo`` whose values are builder rows (see the module).
    Replaced rows stay in the builder, unused; ``table()`` keeps the rows still mapped."""

    def __init__(self) -> None:
        self._b = TableBuilder()
        self._slots = array("q", bytes(8 * 16))
        self._len = 0
        self._filled = 0  # used or gone: what makes probes long
        self._keys: dict[int, str] = {}  # row → key where the key is not the row's path

    def _key(self, r: int) -> bytes:
        k = self._keys.get(r)
        return k.encode("utf-8", "surrogateescape") if k is not None else self._b._raw(r)

    def _probe(self, key: str) -> tuple[int, int]:
        """(slot of ``key`` or -1, the first free slot on its probe path)."""
        raw = key.encode("utf-8", "surrogateescape")
        slots = self._slots
        mask = len(slots) - 1
        h = hash(key) & ((1 << 62) - 1)
        i, perturb, free = h & mask, h, -1
        while True:
            v = slots[i]
            if v == _EMPTY:
                return -1, (i if free < 0 else free)
            if v == _GONE:
                if free < 0:
                    free = i
            elif self._key(v - 1) == raw:
                return i, free
            perturb >>= 5
            i = (5 * i + 1 + perturb) & mask

    def _grow(self) -> None:
        rows = [v - 1 for v in self._slots if v > 0]
        size = 16
        while size < 2 * len(rows) + 16:  # a quarter to half full after growing
            size *= 2
        self._slots = array("q", bytes(8 * size))
        self._filled = 0
        for r in rows:
            key = self._key(r).decode("utf-8", "surrogateescape")
            _, free = self._probe(key)
            self._slots[free] = r + 1
            self._filled += 1

    def __getitem__(self, key: str) -> FileInfo:
        i, _ = self._probe(key)
        if i < 0:
            raise KeyError(key)
        return self._b.info(self._slots[i] - 1)

    def __setitem__(self, key: str, info: FileInfo) -> None:
        i, free = self._probe(key)
        r = self._b.add(info)
        if key != info.path:
            self._keys[r] = key
        if i >= 0:
            self._keys.pop(self._slots[i] - 1, None)
            self._slots[i] = r + 1
            return
        if self._slots[free] == _EMPTY:
            self._filled += 1
        self._slots[free] = r + 1
        self._len += 1
        if 3 * self._filled > 2 * len(self._slots):  # two thirds full, as dicts allow
            self._grow()

    def __delitem__(self, key: str) -> None:
        i, _ = self._probe(key)
        if i < 0:
            raise KeyError(key)
        self._keys.pop(self._slots[i] - 1, None)
        self._slots[i] = _GONE
        self._len -= 1

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._probe(key)[0] >= 0

    def __iter__(self) -> Iterator[str]:
        for v in self._slots:  # (callers list the keys before they delete any)
            if v > 0:
                yield self._key(v - 1).decode("utf-8", "surrogateescape")

    def __len__(self) -> int:
        return self._len

    def table(self) -> EntryTable:
        """The rows still mapped, in the order they came, as a table; the index is
        consumed."""
        rows: Sequence[int] = range(len(self._b)) if self._len == len(self._b) else \
            sorted(v - 1 for v in self._slots if v > 0)  # (all rows live: no list)
        self._slots = array("q", bytes(8 * 16))
        self._len = self._filled = 0
        return self._b.finish(dedupe=False, rows=rows)
