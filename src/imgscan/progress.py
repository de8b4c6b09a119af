"""A quiet progress line on stderr: shown only on a terminal, only once an operation has
taken more than a second, and never with --quiet (CI logs stay clean).

The line is drawn by a small thread, not by ``advance``: a step that takes a minute (one
big layer, a directory of a million files) still shows that something is happening, with the
time spent so far. ``IMGSCAN_PROGRESS_DELAY`` overrides the one-second delay (tests use 0).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

DELAY = 1.0
TICK = 0.2
WIDTH = 120


def _delay() -> float:
    try:
        return float(os.environ.get("IMGSCAN_PROGRESS_DELAY", DELAY))
    except ValueError:
        return DELAY


class Progress:
    """``total`` steps (0: unknown, then a count is shown instead of a bar)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None,
                 enabled: bool | None = None, unit: str = "") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = _isatty(self.stream) and not os.environ.get("IMGSCAN_QUIET")
        self.enabled = enabled
        self.start = time.monotonic()
        self.done = 0
        self.what = ""
        self.shown = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if enabled:
            self._thread = threading.Thread(target=self._run, name="imgscan-progress",
                                            daemon=True)
            self._thread.start()

    def advance(self, what: str = "", n: int = 1) -> None:
        self.done += n
        if what:
            self.what = what

    def _run(self) -> None:
        if self._stop.wait(_delay()):
            return
        while True:
            self._draw()
            if self._stop.wait(TICK):
                return

    def _draw(self) -> None:
        elapsed = int(time.monotonic() - self.start)
        if self.total:
            filled = int(24 * min(self.done, self.total) / self.total)
            count = f"[{'#' * filled}{'-' * (24 - filled)}] {self.done}/{self.total}"
        else:
            count = f"{self.done} {self.unit}".rstrip()
        text = f"\r{self.label} {count} {elapsed}s {self.what}"[:WIDTH]
        try:
            self.stream.write(text.ljust(WIDTH))
            self.stream.flush()
        except (OSError, ValueError):
            return
        self.shown = True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.shown:
            self.stream.write("\r" + " " * WIDTH + "\r")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
