"""The merged view of a store image, computed from the per-layer indexes — no mount needed.

Layers are replayed bottom-up with the OCI whiteout rules of ``imgscan.whiteouts``: an opaque
marker hides the lower layers' children of its directory, ``.wh.X`` deletes ``X`` and all
below it, a directory over a directory merges, anything else replaces. What a layer hides is
kept as *hidden* entries (with the layer that hid it), because it is still in the image and
anyone who pulls it can read it. Metadata comes from the tar headers, so a rootless store
gives the same view as a root one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from imgscan.analyzers.interface import FileInfo, FileKind, ImageView, ViewEntry
from imgscan.analyzers.safeopen import open_beneath
from imgscan.analyzers.view import resolve_in_root
from imgscan.model import LayerRef
from imgscan.whiteouts import split_layer


class LayeredView(ImageView):
    def __init__(self, layer_dirs: Sequence[str], indexes: Sequence[Sequence[FileInfo]],
                 layers: Sequence[LayerRef], config: Mapping[str, Any] | None = None) -> None:
        self.layer_dirs = list(layer_dirs)
        self.layers = list(layers)
        self.config = dict(config or {})
        self._final: dict[str, ViewEntry] = {}
        self._children: dict[str, set[str]] = {"": set()}
        self._hidden: list[ViewEntry] = []
        for ref, index in zip(layers, indexes, strict=True):
            self._apply(ref, index)

    # -- building --------------------------------------------------------------------------
    def _hide(self, path: str, by: LayerRef) -> None:
        """Remove ``path`` and everything below it from the final view, keeping them hidden."""
        entry = self._final.pop(path, None)
        if entry is None:
            return
        self._hidden.append(ViewEntry(entry.info, entry.layer, by))
        for child in list(self._children.pop(path, ())):
            self._hide(f"{path}/{child}" if path else child, by)
        parent, _, name = path.rpartition("/")
        siblings = self._children.get(parent)
        if siblings is not None:
            siblings.discard(name)

    def _ensure_parents(self, path: str, ref: LayerRef) -> None:
        parent, _, name = path.rpartition("/")
        if parent and parent not in self._final:
            self._ensure_parents(parent, ref)
            self._final[parent] = ViewEntry(FileInfo(parent, FileKind.DIR, mode=0o755), ref)
        elif parent and self._final[parent].info.kind != FileKind.DIR:
            self._hide(parent, ref)
            self._ensure_parents(parent, ref)
            self._final[parent] = ViewEntry(FileInfo(parent, FileKind.DIR, mode=0o755), ref)
        self._children.setdefault(parent, set()).add(name)

    def _apply(self, ref: LayerRef, index: Sequence[FileInfo]) -> None:
        opaque, deleted, content = split_layer(index)
        for directory in opaque:
            for child in list(self._children.get(directory, ())):
                self._hide(f"{directory}/{child}" if directory else child, ref)
        for path in deleted:
            self._hide(path, ref)
        for info in content:
            if not info.path:
                continue
            old = self._final.get(info.path)
            if old is not None:
                if old.info.kind == FileKind.DIR and info.kind == FileKind.DIR:
                    self._final[info.path] = ViewEntry(info, ref)
                    continue
                self._hide(info.path, ref)
            self._ensure_parents(info.path, ref)
            self._final[info.path] = ViewEntry(info, ref)
            if info.kind == FileKind.DIR:
                self._children.setdefault(info.path, set())

    # -- ImageView -------------------------------------------------------------------------
    def entries(self) -> Iterator[ViewEntry]:
        for path in sorted(self._final):
            yield self._final[path]

    def hidden_entries(self) -> Iterator[ViewEntry]:
        return iter(sorted(self._hidden, key=lambda e: (e.info.path, e.layer.index)))

    def lookup(self, path: str) -> ViewEntry | None:
        path = path.strip("/")
        if not path:
            return ViewEntry(FileInfo("", FileKind.DIR, mode=0o755), self.layers[0]) \
                if self.layers else None
        return self._final.get(path)

    def resolve(self, path: str) -> ViewEntry | None:
        return resolve_in_root(path, self.lookup)

    def open(self, entry: ViewEntry) -> BinaryIO:
        return open_beneath(self.layer_dirs[entry.layer.index], entry.info.path)

    def visible_layer(self, path: str) -> int | None:
        e = self._final.get(path)
        return None if e is None else e.layer.index
