"""imgscan: a daemonless security scanner for container images.

The package root only carries the version and a few lazily imported entry points, so that
``import imgscan`` stays cheap for commands such as ``imgscan mount``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Store", "__version__", "pull", "scan"]

if TYPE_CHECKING:  # pragma: no cover
    from imgscan.store.store import Store


def __getattr__(name: str) -> Any:
    if name == "Store":
        from imgscan.store.store import Store

        return Store
    if name == "pull":
        from imgscan.api import pull

        return pull
    if name == "scan":
        from imgscan.api import scan

        return scan
    raise AttributeError(name)
