"""Turn engine matches into report findings, the one place where evidence is rendered."""

from __future__ import annotations

from imgscan.model import Finding, Location
from imgscan.secrets.engine import Match

CATEGORY = "secret"


def match_to_finding(m: Match, location: Location, show_secrets: bool = False) -> Finding:
    """A finding whose evidence is redacted unless ``show_secrets``; ``fingerprint`` is a
    hash of the secret (never the secret), so the finding id is stable across rebuilds."""
    props: dict[str, object] = {"fingerprint": m.fingerprint}
    description = ""
    if m.reason:
        props["reason"] = m.reason
        description = f"Reported at info: {m.reason}."
    if m.parts:
        props["rules"] = [p.rule_id for p in m.parts]
    return Finding(
        rule_id=m.rule_id,
        severity=m.severity,
        category=CATEGORY,
        title=m.title,
        location=location,
        description=description,
        evidence=m.evidence(show_secrets),
        properties=props,
    ).with_id()
