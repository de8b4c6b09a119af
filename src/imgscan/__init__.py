"""imgscan: a daemonless security scanner for container images.

The package root only carries the version and a few lazily imported entry points, so that
``import imgscan`` stays cheap for commands such as ``imgscan mount``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imgscan._version import __version__

__all__ = ["Store", "__version__", "pull", "scan"]

if TYPE_CHECKING:  # pragma: no cover
    from imgscan.mount.store import Store


def __getattr__(name: str) -> Any:
    if name == "Store":
        from imgscan.mount.store import Store

        return Store
    if name == "pull":
        from imgscan.api import pull

        return pull
    if name == "scan":
        from imgscan.api import scan

        return scan
    raise AttributeError(name)
