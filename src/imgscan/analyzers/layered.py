"""The merged view of a store image, computed from the per-layer indexes — no mount needed.

Layers are replayed bottom-up with the OCI whiteout rules of ``imgscan.whiteouts``: an opaque
marker hides the lower layers' children of its directory, ``.wh.X`` deletes ``X`` and all
below it, a directory over a directory merges, anything else replaces. What a layer hides is
kept as *hidden* entries (with the layer that hid it), because it is still in the image and
anyone who pulls it can read it. Metadata comes from the tar headers, so a rootless store
gives the same view as a root one.

Memory per entry stays small (a crafted layer may hold 300,000 files): the view keeps each
layer's ``EntryTable`` and one small integer per row (visible, superseded by an upper
directory, or hidden by layer k), found by bisection; ``ViewEntry`` values are made as
they are asked for. Only the paths of layers *above* another are held as strings while the
visibility is computed, top down (nothing for a one-layer image).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from imgscan.analyzers.interface import FileInfo, FileKind, ImageView, ViewEntry
from imgscan.analyzers.safeopen import open_beneath
from imgscan.analyzers.view import resolve_in_root
from imgscan.entrytable import MARKER_CODES as _MARKER_CODES
from imgscan.entrytable import EntryTable, as_table
from imgscan.model import LayerRef

VISIBLE = -1
SUPERSEDED = -2  # a directory under a directory of an upper layer: merged, not hidden


class _Upper:
    """What the layers above the one being resolved do to paths: the nearest (lowest)
    layer index that replaces, merges over, deletes or makes opaque each path."""

    def __init__(self) -> None:
        self.replaced: dict[str, int] = {}  # a non-directory: hides it and all below
        self.dirs: dict[str, int] = {}  # a directory: hides a non-directory, merges a dir
        self.deleted: dict[str, int] = {}  # a whiteout: hides it and all below
        self.opaque: dict[str, int] = {}  # an opaque directory: hides all below it

    def __bool__(self) -> bool:
        return bool(self.replaced or self.dirs or self.deleted or self.opaque)

    def state(self, path: str, is_dir: bool) -> int:
        best = -1
        parts = path.split("/")
        if "" in self.opaque:
            best = self.opaque[""]
        for n in range(1, len(parts) + 1):
            q = "/".join(parts[:n])
            k = self.deleted.get(q, -1)
            if n < len(parts):
                k = _nearest(k, self.replaced.get(q, -1), self.opaque.get(q, -1))
            if k >= 0:
                best = k if best < 0 else min(best, k)
        same = self.replaced.get(path, -1)
        if same >= 0:
            best = same if best < 0 else min(best, same)
        d = self.dirs.get(path, -1)
        if d >= 0 and (best < 0 or d < best):
            return SUPERSEDED if is_dir else d
        return VISIBLE if best < 0 else best

    def add(self, table: EntryTable, k: int) -> None:
        for r in range(len(table)):
            path, kind = table.path(r), table.kind(r)
            target = (self.opaque if kind == FileKind.OPAQUE else
                      self.deleted if kind == FileKind.WHITEOUT else
                      self.dirs if kind == FileKind.DIR else self.replaced)
            target[path] = k


def _nearest(*ks: int) -> int:
    found = [k for k in ks if k >= 0]
    return min(found) if found else -1


class LayeredView(ImageView):
    def __init__(self, layer_dirs: Sequence[str], indexes: Sequence[Sequence[FileInfo]],
                 layers: Sequence[LayerRef], config: Mapping[str, Any] | None = None) -> None:
        self.layer_dirs = list(layer_dirs)
        self.layers = list(layers)
        self.config = dict(config or {})
        self._tables = [as_table(ix) for ix in indexes]
        if len(self._tables) != len(self.layers):
            raise ValueError("one index per layer")
        self._state: list[array[int] | None] = [None] * len(self._tables)
        self._memo: list[ViewEntry] | None = None
        upper = _Upper()
        for i in range(len(self._tables) - 1, -1, -1):
            t = self._tables[i]
            if upper:  # the top layer (and all of a one-layer image) is simply visible
                self._state[i] = array("h", (
                    upper.state(t.path(r), t.is_dir(r)) if not t.is_marker(r) else VISIBLE
                    for r in range(len(t))))
            if i > 0:
                upper.add(t, i)

    def _row_state(self, i: int, r: int) -> int:
        st = self._state[i]
        return VISIBLE if st is None else st[r]

    def _visible(self, i: int) -> Iterator[int]:
        """The visible content rows of layer ``i`` (not the root), in table order."""
        t, st = self._tables[i], self._state[i]
        kinds, off = t._kind, t._off
        for r in range(len(t)):
            if kinds[r] not in _MARKER_CODES and (st is None or st[r] == VISIBLE) \
                    and off[r] != off[r + 1]:
                yield r

    def _keyed(self, i: int) -> Iterator[tuple[bytes, int, int]]:
        t = self._tables[i]
        for r in self._visible(i):
            yield t._key(r), i, r

    # -- ImageView -------------------------------------------------------------------------
    def entries(self) -> Iterator[ViewEntry]:
        """Every visible entry, in path order (by components: a directory, then all below
        it), merged from the layers' sorted tables (one layer: no merge at all).

        Image-wide analyzers walk the view several times; an image of up to
        ``MEMO_ENTRIES`` visible entries keeps the entries of its first complete walk (a
        few MB) so later walks do not rebuild them, a bigger one rebuilds them each time
        so that memory stays per table, not per entry."""
        if self._memo is not None:
            yield from self._memo
            return
        kept: list[ViewEntry] | None = []
        for entry in self._walk():
            if kept is not None:
                kept.append(entry)
                if len(kept) > self.MEMO_ENTRIES:
                    kept = None
            yield entry
        self._memo = kept

    #: visible entries up to which a complete walk is kept for the next one
    MEMO_ENTRIES = 50_000

    def _walk(self) -> Iterator[ViewEntry]:
        busy = [i for i, t in enumerate(self._tables) if len(t)]
        if len(busy) == 1:
            t, ref = self._tables[busy[0]], self.layers[busy[0]]
            for r in self._visible(busy[0]):
                yield ViewEntry(t.info(r), ref)
            return
        merged = heapq.merge(*(self._keyed(i) for i in busy))
        for _, i, r in merged:
            yield ViewEntry(self._tables[i].info(r), self.layers[i])

    def hidden_entries(self) -> Iterator[ViewEntry]:
        out = []
        for i, t in enumerate(self._tables):
            st = self._state[i]
            if st is None:
                continue
            for r, k in enumerate(st):
                if k >= 0 and not t.is_marker(r):
                    out.append(ViewEntry(t.info(r), self.layers[i], self.layers[k]))
        return iter(sorted(out, key=lambda e: (e.info.path, e.layer.index)))

    def _top(self, path: str) -> tuple[int, int] | None:
        """The topmost layer and row holding ``path`` as content, if it is visible."""
        for i in range(len(self._tables) - 1, -1, -1):
            r = self._tables[i].find(path)
            if r >= 0:
                return (i, r) if self._row_state(i, r) == VISIBLE else None
        return None

    def lookup(self, path: str) -> ViewEntry | None:
        path = path.strip("/")
        if not path:
            return ViewEntry(FileInfo("", FileKind.DIR, mode=0o755), self.layers[0]) \
                if self.layers else None
        top = self._top(path)
        return None if top is None else ViewEntry(self._tables[top[0]].info(top[1]),
                                                  self.layers[top[0]])

    def resolve(self, path: str) -> ViewEntry | None:
        return resolve_in_root(path, self.lookup)

    def open(self, entry: ViewEntry) -> BinaryIO:
        return open_beneath(self.layer_dirs[entry.layer.index], entry.info.path)

    def visible_layer(self, path: str) -> int | None:
        top = self._top(path)
        return None if top is None else top[0]

    def visible_regular(self) -> Iterator[tuple[str, int]]:
        """(path, layer index) of every visible regular file, without a ``FileInfo``."""
        for i, t in enumerate(self._tables):
            for r in range(len(t)):
                if t.is_regular(r) and self._row_state(i, r) == VISIBLE:
                    yield t.path(r), i


class VisibleFiles(Mapping[str, int]):
    """path → index of the layer a regular file is seen from, answered by the view on
    demand: the merge asks about the few paths analyzers reported on (and the names of a
    hard-linked file), so no dict holds one key per file of the image. Iterating lists the
    ``paths`` given (those with results)."""

    def __init__(self, view: LayeredView, paths: Iterator[str] | Sequence[str]) -> None:
        self._view = view
        self._known: dict[str, int] = {}
        for p in paths:
            k = self._layer(p)
            if k is not None:
                self._known[p] = k

    def _layer(self, path: str) -> int | None:
        top = self._view._top(path)
        if top is None or not self._view._tables[top[0]].is_regular(top[1]):
            return None
        return top[0]

    def __getitem__(self, path: str) -> int:
        k = self._known.get(path)
        if k is None:
            k = self._layer(path)
            if k is None:
                raise KeyError(path)
        return k

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)
