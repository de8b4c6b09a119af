"""Severity of an OSV record: from its CVSS vector when it has one (computed by the ``cvss``
library, not by us), else the database's own rating, else unrated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from imgscan.model import Severity

#: database_specific.severity words (GitHub: LOW/MODERATE/HIGH/CRITICAL) and Ubuntu priorities
_WORDS = {
    "critical": Severity.CRITICAL, "high": Severity.HIGH, "important": Severity.HIGH,
    "moderate": Severity.MEDIUM, "medium": Severity.MEDIUM, "low": Severity.LOW,
    "negligible": Severity.INFO, "unimportant": Severity.INFO, "none": Severity.INFO,
}

#: what an unrated record (the Go database rates nothing) is reported as
UNRATED = Severity.MEDIUM


def from_score(score: float) -> Severity:
    """CVSS qualitative rating: 0 none, <4 low, <7 medium, <9 high, else critical."""
    if score == 0:
        return Severity.INFO
    if score < 4:
        return Severity.LOW
    if score < 7:
        return Severity.MEDIUM
    if score < 9:
        return Severity.HIGH
    return Severity.CRITICAL


def cvss_score(kind: str, vector: str) -> float | None:
    """The base score of a CVSS v3 or v4 vector; None for anything the library refuses."""
    from cvss import CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    try:
        if kind == "CVSS_V4":
            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V3":
            return float(CVSS3(vector).scores()[0])
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def rate(record: Mapping[str, Any], affected: Mapping[str, Any] | None = None
         ) -> tuple[Severity, str, float | None]:
    """(severity, where it came from, CVSS base score or None) for one record; the
    per-package ``affected[].severity`` wins over the top level as the schema says."""
    entries: Iterable[Any] = (affected or {}).get("severity") or record.get("severity") or []
    scored = {}
    for e in entries:
        if isinstance(e, Mapping) and isinstance(e.get("score"), str):
            s = cvss_score(str(e.get("type")), e["score"])
            if s is not None:
                scored[str(e["type"])] = (s, e["score"])
    for kind in ("CVSS_V4", "CVSS_V3"):
        if kind in scored:
            score, vector = scored[kind]
            return from_score(score), vector, score
    for e in entries:
        if isinstance(e, Mapping) and e.get("type") == "Ubuntu":
            word = _WORDS.get(str(e.get("score", "")).lower())
            if word:
                return word, "Ubuntu priority", None
    for spec in ((affected or {}).get("database_specific"), record.get("database_specific")):
        if isinstance(spec, Mapping):
            word = _WORDS.get(str(spec.get("severity", "")).lower())
            if word:
                return word, "database rating", None
    return UNRATED, "unrated", None
