"""Secret scanning: rules (``rules.py``), the engine (``engine.py``), redaction
(``redact.py``), image-config scanning (``config.py``) and a parallel tree scan (``tree.py``).

The analyzers that plug this into a scan are in ``imgscan.analyzers.secrets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # served on first use: the rules cache must not import the engine
    from imgscan.secrets.engine import Match, SecretScanner
    from imgscan.secrets.redact import fingerprint, redact
    from imgscan.secrets.rules import RuleError, RuleSet, load_rules, rules_dir

_WHERE = {"Match": "engine", "SecretScanner": "engine", "fingerprint": "redact",
          "redact": "redact", "RuleError": "rules", "RuleSet": "rules", "load_rules": "rules",
          "rules_dir": "rules"}

__all__ = [
    "Match",
    "RuleError",
    "RuleSet",
    "SecretScanner",
    "fingerprint",
    "load_rules",
    "redact",
    "rules_dir",
]


def __getattr__(name: str) -> object:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"imgscan.secrets.{_WHERE[name]}"), name)
    raise AttributeError(name)
