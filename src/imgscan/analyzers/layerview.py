"""The merged view of an image given as ``Layer`` values (``imgscan.layers``).

Built from each layer's entry index with the whiteout rules of ``LayeredView``. A stored
layer's files are opened in place; a streamed layer's only when captured during the walk
(the files image-wide analyzers declared in ``PostAnalyzer.reads``): anything else is an
OSError, which those analyzers turn into a warning.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from imgscan.analyzers.interface import FileInfo, FileKind, ViewEntry
from imgscan.analyzers.layered import LayeredView
from imgscan.model import LayerRef


class LayerSetView(LayeredView):
    def __init__(self, dirs: Sequence[str | None], indexes: Sequence[Sequence[FileInfo]],
                 refs: Sequence[LayerRef], captured: Sequence[Mapping[str, bytes]],
                 config: Mapping[str, Any] | None = None) -> None:
        super().__init__([d or "" for d in dirs], indexes, refs, config)
        self._dirs = list(dirs)
        self._captured = list(captured)

    def open(self, entry: ViewEntry) -> BinaryIO:
        i = entry.layer.index
        if self._dirs[i]:
            return super().open(entry)
        kept = self._captured[i]
        data = kept.get(entry.info.path)
        if data is None and entry.info.kind == FileKind.HARDLINK:
            data = kept.get(entry.info.linkname)
        if data is None:
            raise OSError(f"{entry.info.abspath}: not kept from the layer stream")
        return io.BytesIO(data)
