"""Redaction: the only form in which a secret value leaves the engine by default.

A redacted value keeps enough to recognise the credential type and to tell two findings
apart (a prefix and the length), and nothing that helps to use it. Short values reveal
fewer characters, so a six-character password never shows four of its six.
"""

from __future__ import annotations

import hashlib

MASK = "****…"


def shown_prefix(length: int) -> int:
    """How many leading characters a value of ``length`` may show: four from 16 characters
    up (every provider token), a quarter of shorter values."""
    return 4 if length >= 16 else length // 4


def redact(value: str | bytes) -> str:
    """``AKIA****…(20 chars)``: first characters, a mask, and the length."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    n = len(text)
    shown = text.lstrip()[: shown_prefix(n)]  # a PEM body may start with a newline
    prefix = "".join(c if c.isprintable() else "?" for c in shown)
    return f"{prefix}{MASK}({n} chars)"


def fingerprint(value: str | bytes) -> str:
    """A stable identity for a secret without the secret: a domain-separated SHA-256.
    Findings use it for their ids and baselines, so the same leaked key keeps its id."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(b"imgscan-secret-v1\0" + raw).hexdigest()
