"""Secret scanning: rules (``rules.py``), the engine (``engine.py``), redaction
(``redact.py``), image-config scanning (``config.py``) and a parallel tree scan (``tree.py``).

The analyzers that plug this into a scan are in ``imgscan.analyzers.secrets``.
"""

from __future__ import annotations

from imgscan.secrets.engine import Match, SecretScanner
from imgscan.secrets.redact import fingerprint, redact
from imgscan.secrets.rules import RuleError, RuleSet, load_rules, rules_dir

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
