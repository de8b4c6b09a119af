"""Harbor Pluggable Scanner API v1.2: MIME types, request validation and report documents.

Pure functions over plain values (no HTTP, no Redis) so that the rules the adapter applies are
testable on their own. The spec is goharbor/pluggable-scanner-spec
``api/spec/scanner-adapter-openapi-v1.2.yaml`` (a copy is in ``tests/data/harbor/``).

Harbor has two capability types, ``vulnerability`` and ``sbom``. imgscan's own findings
(secrets, setuid files, ELF hardening, image config) have no slot there: they ride along in
the raw report (the whole imgscan JSON report) and in ``vendor_attributes``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from imgscan._version import __version__

# -- MIME types --------------------------------------------------------------------------------
METADATA_V11 = "application/vnd.scanner.adapter.metadata+json; version=1.1"
SCAN_REQUEST_TYPES = ("application/vnd.scanner.adapter.scan.request+json; version=1.1",
                      "application/vnd.scanner.adapter.scan.request+json; version=1.0",
                      "application/json")
SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
VULN_HARBOR_V10 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
VULN_V11 = "application/vnd.security.vulnerability.report; version=1.1"
VULN_RAW = "application/vnd.scanner.adapter.vuln.report.raw"
SBOM_REPORT = "application/vnd.security.sbom.report+json; version=1.0"
SBOM_SPDX = "application/spdx+json"
SBOM_CYCLONEDX = "application/vnd.cyclonedx+json"
SBOM_MEDIA_TYPES = (SBOM_SPDX, SBOM_CYCLONEDX)
#: imgscan writer for each SBOM media type
SBOM_WRITERS = {SBOM_SPDX: "spdx", SBOM_CYCLONEDX: "cyclonedx"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONSUMES = (OCI_MANIFEST, DOCKER_MANIFEST)
VULN_TYPES = (VULN_V11, VULN_HARBOR_V10, VULN_RAW)
REPORT_TYPES = (*VULN_TYPES, SBOM_REPORT)

MAX_REQUEST_BYTES = 64 * 1024
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)"
                      r"[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")

NO_VULN_DB_NOTE = ("no vulnerability database is configured for this scanner (imgscan serve "
                   "--vulns, workers with --vulns-db): the vulnerability list is empty, not "
                   "clean; "
                   "imgscan's own findings are in vendor_attributes and the raw report")


class RequestError(Exception):
    """A request the adapter refuses: ``status`` (400, 422, 501...) and a message for the
    spec's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def normalize_mime(value: str) -> str:
    """``a/b;version=1.1`` and ``a/b; version=1.1`` are one type; parameters keep their order."""
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if not parts:
        return ""
    params = []
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params.append(f"{k.strip().lower()}={v.strip().strip(chr(34))}")
    return "; ".join([parts[0].lower(), *params])


def error_body(message: str) -> dict[str, Any]:
    """The spec's ``ErrorResponse``."""
    return {"error": {"message": message}}


def metadata(vulns: bool) -> dict[str, Any]:
    """``ScannerAdapterMetadata``: a vulnerability capability (empty list without a DB, said
    in the properties) and an SBOM capability with SPDX and CycloneDX."""
    props = {
        "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
        "harbor.scanner-adapter/vulnerability-database": "osv" if vulns else "none",
        "org.imgscan/findings": "secrets, permissions, elf, config (vendor_attributes, raw)",
    }
    if not vulns:
        props["org.imgscan/note"] = NO_VULN_DB_NOTE
    return {
        "scanner": scanner_info(),
        "capabilities": [
            {"type": "vulnerability", "consumes_mime_types": list(CONSUMES),
             "produces_mime_types": list(VULN_TYPES)},
            {"type": "sbom", "consumes_mime_types": list(CONSUMES),
             "produces_mime_types": [SBOM_REPORT],
             "additional_attributes": {"sbom_media_types": list(SBOM_MEDIA_TYPES)}},
        ],
        "properties": props,
    }


def scanner_info() -> dict[str, str]:
    return {"name": "imgscan", "vendor": "imgscan", "version": __version__}


# -- scan requests -------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class ScanRequest:
    """A validated ``ScanRequest``. The pull credential is ``creds`` as ``USER:PASS`` (from
    Harbor's ``Basic`` robot-account authorization) or ``registry_token`` (from a ``Bearer``
    authorization: a token Harbor issued for its registry, sent to it as is); neither ever
    appears in a repr or a log."""

    registry_url: str
    host: str
    plain_http: bool
    repository: str
    digest: str
    tag: str = ""
    mime_type: str = ""
    creds: str | None = None
    capabilities: tuple[str, ...] = ("vulnerability", "sbom")
    sbom_media_types: tuple[str, ...] = SBOM_MEDIA_TYPES
    registry_token: str | None = None

    def __repr__(self) -> str:
        return f"ScanRequest({self.host}/{self.repository}@{self.digest})"

    @property
    def ref(self) -> str:
        """The reference a worker scans, exactly as ``imgscan scan`` would be given it."""
        return f"docker://{self.host}/{self.repository}@{self.digest}"

    def artifact(self) -> dict[str, str]:
        out = {"repository": self.repository, "digest": self.digest}
        if self.tag:
            out["tag"] = self.tag
        if self.mime_type:
            out["mime_type"] = self.mime_type
        return out


def _obj(doc: Any, name: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise RequestError(400, f"{name} must be a JSON object")
    return doc


def _str(doc: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    v = doc.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise RequestError(400 if v is not None else 422,
                           f"{where}.{key} must be a string" if v is not None
                           else f"{where}.{key} is required")
    return v


def _creds(authorization: str) -> tuple[str | None, str | None]:
    """``(USER:PASS, None)`` for ``Basic``, ``(None, token)`` for ``Bearer``."""
    if not authorization:
        return None, None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        token = value.strip()
        if not token or any(c.isspace() or ord(c) < 0x21 for c in token):
            raise RequestError(422, "registry.authorization: a Bearer token must be one word "
                               "of printable characters")
        return None, token
    if scheme.lower() == "basic":
        try:
            text = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RequestError(422, "registry.authorization: Basic credentials are not "
                               "base64 of USER:PASSWORD") from None
        if ":" not in text or not text.split(":", 1)[0]:
            raise RequestError(422, "registry.authorization: Basic credentials are not "
                               "base64 of USER:PASSWORD")
        return text, None
    raise RequestError(422, f"registry.authorization: the {scheme or 'empty'} scheme is not "
                       "supported (Basic or Bearer)")


def parse_scan_request(doc: Any) -> ScanRequest:
    """Validate a decoded ``ScanRequest`` body: 400 for wrong JSON types, 422 for invalid
    values, 501 for an artifact type or capability imgscan does not handle."""
    doc = _obj(doc, "the request")
    reg = _obj(doc.get("registry"), "registry") if "registry" in doc else None
    art = _obj(doc.get("artifact"), "artifact") if "artifact" in doc else None
    if reg is None or art is None:
        raise RequestError(422, "registry and artifact are required")
    url = _str(reg, "url", "registry")
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname or p.username or p.query:
        raise RequestError(422, "registry.url must be an http(s) URL of a registry host")
    try:
        host = p.netloc.lower()
        _ = p.port
    except ValueError:
        raise RequestError(422, "registry.url has an invalid port") from None
    creds, token = _creds(_str(reg, "authorization", "registry", required=False))
    repository = _str(art, "repository", "artifact")
    if len(repository) > 255 or not _REPO_RE.match(repository):
        raise RequestError(422, "artifact.repository is not a valid repository name")
    digest = _str(art, "digest", "artifact")
    if not _DIGEST_RE.match(digest):
        raise RequestError(422, "artifact.digest must be sha256:<64 hex digits>")
    tag = _str(art, "tag", "artifact", required=False)
    if tag and not _TAG_RE.match(tag):
        raise RequestError(422, "artifact.tag is not a valid tag")
    mime = _str(art, "mime_type", "artifact", required=False)
    if mime and normalize_mime(mime) not in CONSUMES:
        raise RequestError(501, f"artifact.mime_type {mime} cannot be scanned (imgscan "
                           f"consumes {', '.join(CONSUMES)})")
    caps, sbom_types = _capabilities(doc.get("enabled_capabilities"))
    return ScanRequest(url, host, p.scheme == "http", repository, digest, tag, mime, creds,
                       caps, sbom_types, token)


def _capabilities(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return ("vulnerability", "sbom"), SBOM_MEDIA_TYPES
    if not isinstance(value, list):
        raise RequestError(400, "enabled_capabilities must be an array")
    caps: list[str] = []
    sbom: list[str] = []
    for i, c in enumerate(value):
        c = _obj(c, f"enabled_capabilities[{i}]")
        kind = c.get("type")
        if kind not in ("vulnerability", "sbom"):
            raise RequestError(501, f"enabled_capabilities[{i}].type {kind!r} is not "
                               "supported (vulnerability, sbom)")
        caps.append(kind)
        params = c.get("parameters")
        if kind == "sbom" and params is not None:
            types = _obj(params, f"enabled_capabilities[{i}].parameters").get(
                "sbom_media_types", list(SBOM_MEDIA_TYPES))
            if not isinstance(types, list) or any(t not in SBOM_MEDIA_TYPES for t in types):
                raise RequestError(422, f"enabled_capabilities[{i}].parameters."
                                   f"sbom_media_types must be among {', '.join(SBOM_MEDIA_TYPES)}")
            sbom.extend(types)
    return tuple(dict.fromkeys(caps)), tuple(dict.fromkeys(sbom or SBOM_MEDIA_TYPES))


# -- reports -------------------------------------------------------------------------------------
_SEVERITY = {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low",
             "info": "Negligible"}
_ORDER = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def own_findings(report: dict[str, Any], limit: int = 500) -> dict[str, Any]:
    """imgscan's non-vulnerability findings, compact, for ``vendor_attributes``."""
    items = [f for f in report.get("findings", []) if f.get("category") != "vulnerability"]
    counts: dict[str, int] = {}
    for f in items:
        counts[f.get("severity", "info")] = counts.get(f.get("severity", "info"), 0) + 1
    return {
        "counts": counts,
        "findings": [{"id": f.get("id", ""), "rule_id": f.get("rule_id", ""),
                      "category": f.get("category", ""), "severity": f.get("severity", ""),
                      "title": f.get("title", ""),
                      "path": (f.get("location") or {}).get("path", "")
                      or (f.get("location") or {}).get("config_key", "")}
                     for f in items[:limit]],
        "truncated": len(items) > limit,
    }


def _vuln_item(f: dict[str, Any]) -> dict[str, Any]:
    props = f.get("properties") or {}
    ids = props.get("ids") or [f.get("rule_id", "")]
    item: dict[str, Any] = {
        "id": f.get("rule_id") or ids[0],
        "package": props.get("name", ""),
        "version": props.get("installed_version", ""),
        "fix_version": props.get("fixed_version", ""),
        "severity": _SEVERITY.get(str(f.get("severity")), "Unknown"),
        "description": f.get("description") or f.get("title", ""),
        "links": [f"https://osv.dev/vulnerability/{i}" for i in ids if i],
        "vendor_attributes": {k: v for k, v in props.items()
                              if k in ("ecosystem", "aliases", "reachability",
                                       "severity_source")},
    }
    if isinstance(props.get("cvss_score"), int | float):
        item["preferred_cvss"] = {"score_v3": float(props["cvss_score"])}
    if f.get("package"):
        item["vendor_attributes"]["purl"] = f["package"]
    return item


def vulnerability_report(report: dict[str, Any], req: dict[str, Any],
                         vulns: bool) -> dict[str, Any]:
    """``HarborVulnerabilityReport`` from an imgscan JSON report: findings of category
    ``vulnerability`` (``scan --vulns``) become items; the rest go in vendor_attributes."""
    items = [_vuln_item(f) for f in report.get("findings", [])
             if f.get("category") == "vulnerability"]
    worst = max((_ORDER.index(i["severity"]) for i in items), default=0)
    vendor: dict[str, Any] = {"imgscan": own_findings(report)}
    if not vulns:
        vendor["imgscan"]["note"] = NO_VULN_DB_NOTE
    return {"generated_at": report.get("created") or _now(), "artifact": req,
            "scanner": scanner_info(), "severity": _ORDER[worst], "vulnerabilities": items,
            "vendor_attributes": vendor}


def sbom_report(sbom: dict[str, Any], media_type: str, report: dict[str, Any],
                req: dict[str, Any]) -> dict[str, Any]:
    """``HarborSbomReport`` around an SPDX or CycloneDX document imgscan wrote."""
    return {"generated_at": report.get("created") or _now(), "artifact": req,
            "scanner": scanner_info(), "media_type": media_type, "sbom": sbom,
            "vendor_attributes": {"imgscan": own_findings(report)}}
