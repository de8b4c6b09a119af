"""SPDX 2.3 JSON: the image is the described package and CONTAINS every installed package.

SPDXIDs are ``SPDXRef-`` plus letters, digits, ``.`` and ``-`` only, made unique with a short
hash. Licenses: a package's declared licenses become an SPDX expression when every part is a
well-known SPDX id; anything else (dpkg copyright short names like ``GPL-2+``) becomes a
``LicenseRef-`` with the original text in ``hasExtractedLicensingInfos``, so the document
stays valid without a license list at run time.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TextIO

from imgscan.model import Package, Report
from imgscan.reports.common import canonical, image_purl, report_uuid, utc_seconds
from imgscan.reports.interface import Writer

NOASSERTION = "NOASSERTION"
NAMESPACE_BASE = "https://imgscan.invalid/spdx"

#: SPDX license ids common in images; exact (case-sensitive) matches are used as ids
KNOWN_LICENSES = frozenset({
    "0BSD", "AFL-2.1", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "Artistic-1.0", "Artistic-1.0-Perl", "Artistic-2.0", "BSD-1-Clause", "BSD-2-Clause",
    "BSD-3-Clause", "BSD-4-Clause", "BSL-1.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-4.0",
    "CC0-1.0", "CDDL-1.0", "CDDL-1.1", "EPL-1.0", "EPL-2.0", "GFDL-1.3-only", "GFDL-1.3-or-later",
    "GPL-1.0-or-later", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "ISC", "LGPL-2.0-only", "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later",
    "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0", "OpenSSL",
    "PSF-2.0", "Python-2.0", "Ruby", "Unlicense", "Vim", "W3C", "X11", "Zlib",
    "zlib-acknowledgement", "curl", "libtiff",
})

_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_HASH_ALGS = {"sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}


def spdx_id(prefix: str, *parts: str) -> str:
    """``SPDXRef-<prefix>-<readable>-<hash>``: readable and valid whatever the name holds."""
    h = hashlib.sha256("\0".join(parts).encode("utf-8", "backslashreplace")).hexdigest()[:12]
    readable = _ID_CHARS.sub("-", "-".join(parts[:2])).strip("-.")[:60]
    return f"SPDXRef-{prefix}-{readable}-{h}" if readable else f"SPDXRef-{prefix}-{h}"


class _Licenses:
    """Builds license expressions and the LicenseRefs they need, one per distinct text."""

    def __init__(self) -> None:
        self.extracted: dict[str, dict[str, str]] = {}

    def _ref(self, text: str) -> str:
        if text not in self.extracted:
            h = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:10]
            name = _ID_CHARS.sub("-", text).strip("-.")[:40]
            lid = f"LicenseRef-{name}-{h}" if name else f"LicenseRef-{h}"
            self.extracted[text] = {"licenseId": lid, "extractedText": text, "name": text}
        return self.extracted[text]["licenseId"]

    def expression(self, licenses: tuple[str, ...]) -> str:
        parts = sorted({lic.strip() for lic in licenses if lic.strip()})
        if not parts:
            return NOASSERTION
        ids = [p if p in KNOWN_LICENSES else self._ref(p) for p in parts]
        return " AND ".join(ids)


def _purpose(p: Package) -> str:
    return "OPERATING-SYSTEM" if p.type in ("deb", "rpm", "apk") else "LIBRARY"


def _package(p: Package, sid: str, lic: _Licenses) -> dict[str, Any]:
    d: dict[str, Any] = {
        "SPDXID": sid,
        "name": p.name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": lic.expression(p.licenses),
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": _purpose(p),
    }
    if p.version:
        d["versionInfo"] = p.version
    if p.source_name:
        src = p.source_name + (f" {p.source_version}" if p.source_version else "")
        d["sourceInfo"] = f"built from source package {src}"
    comment = []
    if p.locations:
        comment.append("found in: " + ", ".join(p.locations))
    if p.layer is not None:
        comment.append(f"layer {p.layer.index} ({p.layer.diff_id})")
    if comment:
        d["comment"] = "; ".join(comment)
    if p.purl:
        d["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                              "referenceType": "purl", "referenceLocator": p.purl}]
    return d


def _advisory_refs(r: Report) -> dict[str, list[dict[str, str]]]:
    """--vulns findings as SPDX 2.3 ``SECURITY``/``advisory`` external refs on the package
    (by purl), one per vulnerability id, pointing at its OSV page."""
    out: dict[str, list[dict[str, str]]] = {}
    for f in r.findings:
        if f.category != "vulnerability" or not f.package:
            continue
        refs = out.setdefault(f.package, [])
        url = f"https://osv.dev/vulnerability/{f.rule_id}"
        if all(x["referenceLocator"] != url for x in refs):
            refs.append({"referenceCategory": "SECURITY", "referenceType": "advisory",
                         "referenceLocator": url, "comment": f.title})
    return out


def _image_package(r: Report) -> dict[str, Any]:
    img = r.image
    name = img.name or img.id or "image"
    d: dict[str, Any] = {
        "SPDXID": spdx_id("Image", name, img.digest),
        "name": name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    }
    if img.digest:
        d["versionInfo"] = img.digest
        alg, _, hexd = img.digest.partition(":")
        if alg in _HASH_ALGS and hexd:
            d["checksums"] = [{"algorithm": _HASH_ALGS[alg], "checksumValue": hexd}]
    purl = image_purl(img.name, img.digest)
    if purl:
        d["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                              "referenceType": "purl", "referenceLocator": purl}]
    return d


def spdx_document(report: Report) -> dict[str, Any]:
    r = canonical(report)
    lic = _Licenses()
    image = _image_package(r)
    packages = [image]
    rels = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
             "relatedSpdxElement": image["SPDXID"]}]
    if r.os is not None and r.os.id:
        os_pkg = {
            "SPDXID": spdx_id("OperatingSystem", r.os.id, r.os.version_id),
            "name": r.os.id, "downloadLocation": NOASSERTION, "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION, "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION, "primaryPackagePurpose": "OPERATING-SYSTEM",
        }
        if r.os.version_id:
            os_pkg["versionInfo"] = r.os.version_id
        if r.os.pretty_name:
            os_pkg["description"] = r.os.pretty_name
        packages.append(os_pkg)
    used: set[str] = {p["SPDXID"] for p in packages}
    advisories = _advisory_refs(r)
    for i, p in enumerate(r.packages):
        sid = spdx_id("Package", p.type, p.name, p.version, p.arch, *p.locations)
        if sid in used:  # exact duplicates in the model
            sid = f"{sid}-{i}"
        used.add(sid)
        pkg = _package(p, sid, lic)
        if p.purl in advisories:
            pkg["externalRefs"] = [*pkg.get("externalRefs", []), *advisories[p.purl]]
        packages.append(pkg)
    rels += [{"spdxElementId": image["SPDXID"], "relationshipType": "CONTAINS",
              "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]]
    name = r.image.name or r.image.id or "image"
    ns_name = _ID_CHARS.sub("-", name).strip("-.")[:80] or "image"
    tool = f"{r.tool.get('name', 'imgscan')}-{r.tool.get('version', '')}".rstrip("-")
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{NAMESPACE_BASE}/{ns_name}-{report_uuid(r)}",
        "creationInfo": {"created": utc_seconds(r.created), "creators": [f"Tool: {tool}"]},
        "packages": packages,
        "relationships": rels,
    }
    if lic.extracted:
        doc["hasExtractedLicensingInfos"] = list(lic.extracted.values())
    return doc


class SpdxWriter(Writer):
    format_name = "spdx"
    extension = ".spdx.json"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(json.dumps(spdx_document(report), indent=2, ensure_ascii=True) + "\n")
