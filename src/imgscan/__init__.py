"""imgscan: a daemonless security scanner for container images.

The package root only carries the version and a few lazily imported entry points, so that
``import imgscan`` stays cheap for commands such as ``imgscan mount``.
"""

from __future__ import annotations

from imgscan._version import __version__

TYPE_CHECKING = False  # `typing` is not imported at run time: `imgscan mount` never needs it

__all__ = ["GateConfig", "Store", "__version__", "audit", "gate_and_write", "pull", "scan",
           "scan_atomic"]

#: entry points served from ``imgscan.api`` on first use
_API = {"pull", "scan", "audit", "scan_atomic", "gate_and_write", "GateConfig"}

if TYPE_CHECKING:  # pragma: no cover
    from imgscan.api import audit, gate_and_write, pull, scan, scan_atomic
    from imgscan.gate import GateConfig
    from imgscan.store.store import Store


def __getattr__(name: str) -> object:
    if name == "Store":
        from imgscan.store.store import Store

        return Store
    if name in _API:
        from imgscan import api

        return getattr(api, name)
    raise AttributeError(name)
