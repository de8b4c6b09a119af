"""Helpers every writer shares: the canonical order of a report and small text utilities.

Writers sort through ``canonical`` so that every format lists things in the same, stable order
whatever order the analyzers finished in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections import Counter
from datetime import UTC, datetime

from imgscan.model import Finding, LayerRef, Package, Report, ScanWarning, Severity
from imgscan.timestamps import parse_time

SEVERITIES: tuple[Severity, ...] = tuple(sorted(Severity, reverse=True))  # critical first

_UUID_NAMESPACE = uuid.UUID("6f0c5d0e-6a51-4c43-9a1c-6d8b1a0c2f11")


def package_sort_key(p: Package) -> tuple[str, str, str, str, tuple[str, ...]]:
    return (p.type, p.name, p.version, p.arch, tuple(p.locations))


def finding_sort_key(f: Finding) -> tuple[int, str, str, str, int, str, str]:
    loc = f.location
    return (-f.severity.rank, f.category, f.rule_id, loc.path, loc.line or 0, loc.config_key,
            f.id)


def warning_sort_key(w: ScanWarning) -> tuple[str, str, str]:
    return (w.path, w.analyzer, w.message)


def canonical(report: Report) -> Report:
    """A copy of ``report`` with packages, findings, warnings and layers in canonical order."""
    return dataclasses.replace(
        report,
        layers=sorted(report.layers, key=lambda layer: layer.index),
        packages=sorted(report.packages, key=package_sort_key),
        findings=sorted(report.findings, key=finding_sort_key),
        warnings=sorted(report.warnings, key=warning_sort_key),
    )


def severity_counts(findings: list[Finding]) -> dict[Severity, int]:
    """Counts for every severity, zeros included, critical first."""
    c = Counter(f.severity for f in findings)
    return {s: c.get(s, 0) for s in SEVERITIES}


def layer_label(layer: LayerRef | None, hidden_by: LayerRef | None = None) -> str:
    """``L2`` or ``L2 (removed by L3)``; '' when unknown."""
    if layer is None:
        return ""
    label = f"L{layer.index}"
    if hidden_by is not None:
        label += f" (removed by L{hidden_by.index})"
    return label


def location_text(f: Finding) -> str:
    """``/path:line``, with ``(+N paths)`` for a file that has N more hard-linked names."""
    loc = f.location
    if loc.path:
        text = f"{loc.path}:{loc.line}" if loc.line else loc.path
        more = len(loc.paths) - 1
        return f"{text} (+{more} path{'s' if more > 1 else ''})" if more > 0 else text
    if loc.config_key:
        return f"config:{loc.config_key}"
    return ""


def short_digest(d: str, n: int = 12) -> str:
    """``sha256:0123…`` to its first ``n`` hex digits, as docker/podman show ids."""
    return d.split(":", 1)[-1][:n] if d else ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Text safe for a terminal: control characters (ANSI escapes, newlines, bidi overrides)
    from hostile image data become visible escapes instead of acting on the terminal."""
    s = str(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def stable_uuid(*parts: str) -> uuid.UUID:
    """A UUID determined by the report's identity, so that writing twice gives one document."""
    return uuid.uuid5(_UUID_NAMESPACE, "\0".join(parts))


def report_uuid(report: Report) -> uuid.UUID:
    pk = "\n".join("\0".join(p.key) for p in sorted(report.packages, key=package_sort_key))
    digest = hashlib.sha256(pk.encode("utf-8", "backslashreplace")).hexdigest()
    return stable_uuid(report.image.digest or report.image.id or report.image.name,
                       report.created, digest)


def utc_seconds(text: str) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` (the form SPDX requires); now when ``text`` is unusable."""
    dt = parse_time(text) or datetime.now(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def image_purl(name: str, digest: str) -> str:
    """``pkg:oci/<repo>@<digest>?repository_url=…`` for an image reference, '' if unknown.

    Here rather than in one writer because CycloneDX and SPDX both name the image by it, and
    a writer imports no other writer."""
    if not name or not digest:
        return ""
    ref = name.split("@", 1)[0]
    repo = ref
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:  # a tag, not a registry port
        repo = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    from packageurl import PackageURL  # only the SBOM writers need it

    try:
        qualifiers = {"repository_url": repo} if "/" in repo else None
        return PackageURL(type="oci", name=repo.rsplit("/", 1)[-1].lower(), version=digest,
                          qualifiers=qualifiers).to_string()
    except ValueError:
        return ""
