"""CycloneDX 1.6 JSON: the image's inventory as an SBOM.

The image is ``metadata.component`` (type ``container``), the OS an ``operating-system``
component, every package a ``library`` component with its purl, licenses (by name: package
databases rarely hold SPDX ids, and a wrong id is worse than a name), ``evidence.occurrences``
for the files it was read from, and ``imgscan:*`` properties for layer and locations.

Only ``vulnerability`` findings (``--vulns``: known OSV advisories about a package) become
CycloneDX ``vulnerabilities``, one per advisory id with an ``affects`` ref per component; a Go
advisory whose vulnerable functions are not in the binary is ``analysis.state
not_affected`` / ``code_not_reachable``. Other findings are about files and configuration
(secrets, setuid bits, ELF hardening), most of which belong to no component, and
Dependency-Track & co. would ingest them as fake advisories. The SBOM carries counts by
severity as ``imgscan:findings:*`` properties on the image; SARIF and JSON carry the findings
themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any, TextIO

from imgscan.model import Package, Report
from imgscan.reports.common import (
    canonical,
    image_purl,
    report_uuid,
    severity_counts,
    utc_seconds,
)
from imgscan.reports.interface import Writer

SPEC_VERSION = "1.6"
SCHEMA_URI = "http://cyclonedx.org/schema/bom-1.6.schema.json"
_HASH_ALGS = {"sha256": "SHA-256", "sha384": "SHA-384", "sha512": "SHA-512"}


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": name, "value": str(value)}


def _bom_refs(pkgs: list[Package]) -> list[str]:
    """Unique refs: the purl where it is unique, else purl plus a hash of the locations."""
    counts = Counter(p.purl for p in pkgs if p.purl)
    refs = []
    for p in pkgs:
        if p.purl and counts[p.purl] == 1:
            refs.append(p.purl)
            continue
        h = hashlib.sha256("\0".join([*p.key, *p.locations]).encode(
            "utf-8", "backslashreplace")).hexdigest()[:16]
        refs.append(f"{p.purl or 'pkg-' + p.type}#{h}")
    seen: set[str] = set()
    out = []
    for i, ref in enumerate(refs):  # exact duplicates in the model still get distinct refs
        out.append(ref if ref not in seen else f"{ref}-{i}")
        seen.add(out[-1])
    return out


def _component(p: Package, ref: str) -> dict[str, Any]:
    c: dict[str, Any] = {"type": "library", "bom-ref": ref, "name": p.name}
    if p.version:
        c["version"] = p.version
    names = [lic for lic in p.licenses if lic.strip()]
    if names:
        c["licenses"] = [{"license": {"name": lic}} for lic in names]
    if p.purl:
        c["purl"] = p.purl
    props = [_prop("imgscan:package:type", p.type)]
    if p.arch:
        props.append(_prop("imgscan:package:arch", p.arch))
    if p.source_name:
        props.append(_prop("imgscan:package:source_name", p.source_name))
    if p.source_version:
        props.append(_prop("imgscan:package:source_version", p.source_version))
    if p.layer is not None:
        props += [_prop("imgscan:layer:index", p.layer.index),
                  _prop("imgscan:layer:diff_id", p.layer.diff_id)]
        if p.layer.created_by:
            props.append(_prop("imgscan:layer:created_by", p.layer.created_by))
    props += [_prop("imgscan:location", loc) for loc in p.locations]
    c["properties"] = props
    if p.locations:
        c["evidence"] = {"occurrences": [{"location": loc} for loc in p.locations]}
    return c


def _image_component(r: Report) -> dict[str, Any]:
    img = r.image
    c: dict[str, Any] = {"type": "container", "bom-ref": "image",
                         "name": img.name or img.id or "image"}
    if img.digest:
        c["version"] = img.digest
        alg, _, hexd = img.digest.partition(":")
        if alg in _HASH_ALGS and hexd:
            c["hashes"] = [{"alg": _HASH_ALGS[alg], "content": hexd}]
    purl = image_purl(img.name, img.digest)
    if purl:
        c["purl"] = purl
    props = [_prop("imgscan:image:id", img.id)] if img.id else []
    if img.architecture:
        props.append(_prop("imgscan:image:platform",
                           "/".join(x for x in (img.os, img.architecture, img.variant) if x)))
    if img.user:
        props.append(_prop("imgscan:image:user", img.user))
    if img.created:
        props.append(_prop("imgscan:image:created", img.created))
    for layer in r.layers:
        props.append(_prop(f"imgscan:layer:{layer.index}:diff_id", layer.diff_id))
    for sev, n in severity_counts(r.findings).items():
        props.append(_prop(f"imgscan:findings:{sev.value}", n))
    c["properties"] = props
    return c


def cyclonedx_bom(report: Report) -> dict[str, Any]:
    r = canonical(report)
    refs = _bom_refs(r.packages)
    components = [_component(p, ref) for p, ref in zip(r.packages, refs, strict=True)]
    if r.os is not None and r.os.id:
        os_c: dict[str, Any] = {"type": "operating-system", "bom-ref": "os", "name": r.os.id}
        if r.os.version_id:
            os_c["version"] = r.os.version_id
        if r.os.pretty_name:
            os_c["description"] = r.os.pretty_name
        if r.os.source:
            os_c["properties"] = [_prop("imgscan:location", r.os.source)]
        components.insert(0, os_c)
    tool = {"type": "application", "name": str(r.tool.get("name", "imgscan"))}
    if r.tool.get("version"):
        tool["version"] = str(r.tool["version"])
    bom = {
        "$schema": SCHEMA_URI,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{report_uuid(r)}",
        "version": 1,
        "metadata": {
            "timestamp": utc_seconds(r.created),
            "tools": {"components": [tool]},
            "component": _image_component(r),
        },
        "components": components,
        "dependencies": [
            {"ref": "image", "dependsOn": [c["bom-ref"] for c in components]},
            *({"ref": c["bom-ref"]} for c in components),
        ],
    }
    vulns = _vulnerabilities(r, refs)
    if vulns:
        bom["vulnerabilities"] = vulns
    return bom


def _osv_source(vid: str) -> dict[str, str]:
    return {"name": "OSV", "url": f"https://osv.dev/vulnerability/{vid}"}


def _vulnerabilities(r: Report, refs: list[str]) -> list[dict[str, Any]]:
    """One entry per advisory id, affecting every component (by purl) it was found in."""
    by_purl: dict[str, list[str]] = {}
    for p, ref in zip(r.packages, refs, strict=True):
        by_purl.setdefault(p.purl, []).append(ref)
    out: dict[str, dict[str, Any]] = {}
    for f in r.findings:
        if f.category != "vulnerability":
            continue
        props = f.properties or {}
        v = out.get(f.rule_id)
        if v is None:
            v = out[f.rule_id] = {"bom-ref": f"vuln:{f.rule_id}", "id": f.rule_id,
                                  "source": _osv_source(f.rule_id), "affects": []}
            others = [a for a in [*props.get("ids", ()), *props.get("aliases", ())]
                      if a != f.rule_id]
            if others:
                v["references"] = [{"id": a, "source": _osv_source(a)} for a in others]
            rating: dict[str, Any] = {"source": {"name": str(props.get("severity_source")
                                                           or "OSV")},
                                      "severity": props.get("original_severity",
                                                            f.severity.value)}
            if "cvss_score" in props:
                rating["score"] = props["cvss_score"]
            v["ratings"] = [rating]
            if f.description:
                v["description"] = f.description
            if props.get("fixed_version"):
                v["recommendation"] = f"Upgrade to {props['fixed_version']} or later."
            if props.get("reachability") == "not-reachable":
                v["analysis"] = {"state": "not_affected",
                                 "justification": "code_not_reachable",
                                 "detail": str(props.get("reachability_reason", ""))}
        known = {a["ref"] for a in v["affects"]}
        for ref in by_purl.get(f.package, []):
            if ref not in known:
                v["affects"].append({"ref": ref, "versions": [
                    {"version": str(props.get("installed_version", "")),
                     "status": "affected"}]})
                known.add(ref)
    return [v for v in out.values() if v["affects"]]


class CycloneDXWriter(Writer):
    format_name = "cyclonedx"
    extension = ".cdx.json"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(json.dumps(cyclonedx_bom(report), indent=2, ensure_ascii=True) + "\n")
