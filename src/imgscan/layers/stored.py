"""``StoredLayer``: a layer extracted in a store — its directory plus its tar index.

Handed over by whoever owns the store (the API), as a plain value: the index is loaded by
the callable it is given, so nothing here imports the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from imgscan.fileinfo import FileInfo
from imgscan.layers.interface import Layer, LayerMember
from imgscan.model import ImageSummary, LayerRef


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
        self._entries: Sequence[FileInfo] | None = None
        self.digest = digest
        self.size = size
        self.entry_count = entry_count

    def entries(self) -> Sequence[FileInfo]:
        if self._entries is None:  # the store's EntryTable as it is: no copy, no list
            self._entries = self._load()
        return self._entries

    def directory(self) -> str:
        return self.root

    @contextmanager
    def members(self) -> Iterator[Iterator[LayerMember]]:
        yield (_DirMember(self.root, info) for info in self.entries())


def stored_image_layers(store: Any, image: Any
                        ) -> tuple[dict[str, Any], list[StoredLayer], ImageSummary]:
    """A stored image as the scanner takes it: its config, its ``StoredLayer``s and its
    summary. ``store`` is used only through its methods (config, layer, diff_path,
    layer_entries), so this module — and the scanner that calls it — imports no store."""
    import contextlib
    import functools

    from imgscan.images.interface import layer_history

    config = store.config(image)
    history = layer_history(config)
    layers = []
    size = 0
    for i, chain in enumerate(image.layers):
        ref = LayerRef(i, image.diff_ids[i], history[i] if i < len(history) else "")
        lsize = 0
        with contextlib.suppress(Exception):  # a size is not worth failing a scan over
            lsize = store.layer(chain).size
        size += lsize
        layers.append(StoredLayer(ref, store.diff_path(chain),
                                  functools.partial(store.layer_entries, chain),
                                  digest=image.layer_digests[i] or "", size=lsize))
    summary = ImageSummary(
        name=image.names[0] if image.names else image.short_id,
        id=image.id,
        digest=image.manifest_digest,
        os=image.os,
        architecture=image.architecture,
        variant=image.variant,
        created=image.created,
        size=size,
        user=str((config.get("config") or {}).get("User") or ""),
        names=tuple(image.names),
        source="image",
    )
    return config, layers, summary
