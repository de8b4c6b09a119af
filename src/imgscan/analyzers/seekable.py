"""A seekable stream over any ``FileInput``, for readers that jump around in a file (ELF,
zip, rpm databases) while some sources can only stream."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from imgscan.analyzers.interface import FileInput

#: a non-seekable stream is copied to memory up to this many bytes
MAX_UNSEEKABLE = 256 << 20


class open_seekable:
    """Context manager giving a seekable stream over a FileInput: the file's own stream, or
    a capped in-memory copy when the source cannot seek."""

    def __init__(self, file: FileInput, cap: int = MAX_UNSEEKABLE) -> None:
        self.file = file
        self.cap = cap
        self.stream: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        f = self.file.open()
        if f.seekable():
            self.stream = f
        else:
            data = f.read(self.cap)
            f.close()
            self.stream = io.BytesIO(data)
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()
