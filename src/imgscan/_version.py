"""The version of imgscan, in a module of its own.

Modules inside imgscan import it from here rather than from the package root: the root's lazy
entry points (``imgscan.scan``, ``imgscan.Store``) lead back into those modules, and importing
the root for a string would close an import circle.
"""

from __future__ import annotations

__version__ = "0.1.0"
