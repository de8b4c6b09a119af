"""A quiet progress line on stderr: shown only on a terminal, only once an operation has
taken more than a second, and never with --quiet (CI logs stay clean)."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

DELAY = 1.0


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("IMGSCAN_QUIET")
        self.enabled = enabled
        self.start = time.monotonic()
        self.done = 0
        self.shown = False

    def advance(self, what: str = "", n: int = 1) -> None:
        self.done += n
        if not self.enabled or time.monotonic() - self.start < DELAY:
            return
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        text = f"\r{self.label} [{bar}] {self.done}/{self.total} {what}"[:120]
        self.stream.write(text.ljust(min(120, len(text) + 10)))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
