"""Crash-test hooks: run ``imgscan`` with a pull killed by SIGKILL at a named point.

``python tests/crashhooks.py ARGS…`` is ``python -m imgscan ARGS…`` with the store's import
hook point (``Store.import_hooks``) set from ``IMGSCAN_CRASH_AT``, so tests can prove that a
pull killed at any stage leaves a readable, repairable store. clihelp runs the command this
way whenever a test sets that variable; production code never reads it.

Points: ``stage`` (staging made, nothing extracted), ``extract`` (inside a layer, after
256 KiB of it), ``commit`` (layers renamed into place, metadata not yet written).
"""

from __future__ import annotations

import os
import runpy
import signal
from typing import Any

from imgscan.store.importer import ImportHooks
from imgscan.store.store import Store


class CrashAt(ImportHooks):
    """Kills the pull with SIGKILL at ``point``."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.pid = os.getpid()  # the pull; a forked layer worker has another pid

    def at(self, point: str) -> None:
        if point == self.point:
            if os.getpid() != self.pid:  # a layer worker: the pull as a whole dies, as with
                os.kill(os.getppid(), signal.SIGKILL)  # a real kill -9
            os.kill(os.getpid(), signal.SIGKILL)

    def layer_stream(self, stream: Any) -> Any:
        return _CrashAfter(stream, 256 << 10, self) if self.point == "extract" else stream


class _CrashAfter:
    """Reaches the ``extract`` point once ``limit`` bytes of a layer were read."""

    def __init__(self, raw: Any, limit: int, hooks: CrashAt) -> None:
        self.raw, self.left, self.hooks = raw, limit, hooks

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.left -= len(data)
        if self.left < 0:
            self.hooks.at("extract")
        return data


def main() -> None:
    point = os.environ.get("IMGSCAN_CRASH_AT")
    if point:
        Store.import_hooks = CrashAt(point)
    runpy.run_module("imgscan", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
