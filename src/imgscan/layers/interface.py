"""The layer interface the scanner reads (see ``imgscan.layers``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from imgscan.fileinfo import FileInfo
from imgscan.model import LayerRef


@dataclass(frozen=True)
class LayerLimits:
    """Caps against decompression bombs and entry floods, for sources that read tars (the
    same defaults as the store's extraction limits, which a source may not import)."""

    max_bytes: int = 64 << 30
    max_entries: int = 2_000_000
    max_path: int = 4096


class LayerMember(ABC):
    """One entry of a layer. ``info`` is the tar header's metadata (whiteouts as
    ``FileKind.WHITEOUT``/``OPAQUE`` naming what they delete). ``open()`` gives the content of
    a regular file, once, and only until the walk moves to the next member: a stream source
    cannot go back."""

    info: FileInfo

    @abstractmethod
    def open(self) -> BinaryIO:
        """The member's bytes (regular files; a hard link opens nothing: read its target)."""


class Layer(ABC):
    """One layer of an image, from wherever it is.

    ``ref`` names it in reports (index, diff_id, created_by); per-layer results are cached
    by ``ref.diff_id``. ``members()`` walks it in tar order and may be called again (a
    second walk reads the source again; the scanner does that only for hard links whose
    target it did not keep).
    """

    ref: LayerRef
    #: blob digest ("" when unknown) and size for the report's layer table
    digest: str = ""
    size: int = 0
    #: can a forked process walk this layer on its own (files, pread)? A registry
    #: connection pool cannot be shared across a fork.
    fork_safe: bool = True

    @abstractmethod
    def members(self) -> AbstractContextManager[Iterator[LayerMember]]:
        """``with layer.members() as it: for m in it: ...`` — in tar order."""

    def directory(self) -> str | None:
        """A directory holding the layer's files for random access (a stored layer), or None
        for a stream. Analyzers never see it; the scanner uses it to read files in place."""
        return None

    def entries(self) -> Sequence[FileInfo] | None:
        """The layer's entry index when known without a walk (a stored layer), else None."""
        return None
