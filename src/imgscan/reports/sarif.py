"""SARIF 2.1.0, for code-scanning dashboards.

One run, one rule per ``rule_id`` (help text from the category), one result per finding.
Paths in the image become relative URIs (``usr/bin/su``); image-config findings have a
logical location instead. Layer attribution goes into result properties, the stable finding
id into ``partialFingerprints`` so dashboards track a finding across scans.
"""

from __future__ import annotations

import json
from typing import Any, TextIO
from urllib.parse import quote

from imgscan.model import Finding, Report, Severity
from imgscan.reports.common import canonical
from imgscan.reports.interface import Writer

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}
#: GitHub code scanning reads ``security-severity`` (CVSS-like, as a string)
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                     Severity.LOW: "3.0", Severity.INFO: "0.0"}

CATEGORY_HELP = {
    "secret": "A credential is stored in the image. Anyone who can pull the image can read "
              "it, even when a later layer deleted the file. Revoke and rotate it, then "
              "rebuild without it (build secrets, not COPY or ENV).",
    "permissions": "A file mode widens what a process in the container can do (setuid or "
                   "setgid bits, world-writable paths, file capabilities, device nodes). "
                   "Remove the bit or the file unless the image needs it.",
    "elf": "An ELF binary lacks a hardening feature (RELRO, stack canary, NX, PIE, FORTIFY) "
           "or carries an RPATH/RUNPATH. Rebuild it with the distribution's hardening flags.",
    "config": "The image configuration (user, environment, labels, history) exposes data or "
              "runs with more privilege than needed. Fix it in the Dockerfile.",
    "policy": "The image breaks a rule of the policy file given with --policy.",
}
_DEFAULT_HELP = "See the finding's description."

#: Finding.properties keys copied into SARIF; other keys may be analyzer internals
SAFE_PROPERTIES = ("fingerprint",)


def uri_for(path: str) -> str:
    """An image path as a relative URI reference: no leading slash, percent-encoded."""
    return quote(path.lstrip("/"), safe="/-._~!$&'()*+,;=@")


def _rule(f: Finding) -> dict[str, Any]:
    help_text = CATEGORY_HELP.get(f.category, _DEFAULT_HELP)
    full = f.description or f.title
    if f.category == "vulnerability":
        return _vuln_rule(f, help_text, full)
    return {
        "id": f.rule_id,
        "name": "".join(w.capitalize() for w in
                        f.rule_id.replace("/", "-").replace("_", "-").split("-") if w),
        "shortDescription": {"text": f.title},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": f"**{f.category}**: {help_text}"},
        "defaultConfiguration": {"level": LEVELS[f.severity]},
        "properties": {
            "tags": ["security", f.category],
            "precision": "high",
            "security-severity": SECURITY_SEVERITY[f.severity],
        },
    }


def _vuln_rule(f: Finding, help_text: str, full: str) -> dict[str, Any]:
    """A rule per vulnerability id, pointing at its OSV page (code scanning links it)."""
    props = f.properties or {}
    names = [*props.get("ids", ()), *props.get("aliases", ())]
    return {
        "id": f.rule_id,
        "name": f.rule_id,
        "shortDescription": {"text": f.description or f.rule_id},
        "fullDescription": {"text": full},
        "helpUri": f"https://osv.dev/vulnerability/{quote(f.rule_id, safe='')}",
        "help": {"text": f"{help_text} Known as: {', '.join(names) or f.rule_id}.",
                 "markdown": f"**vulnerability** {', '.join(names) or f.rule_id}: see "
                             f"[{f.rule_id}](https://osv.dev/vulnerability/{f.rule_id})"},
        "defaultConfiguration": {"level": LEVELS[f.severity]},
        "properties": {
            "tags": ["security", "vulnerability"],
            "precision": "high",
            "security-severity": str(props["cvss_score"]) if "cvss_score" in props
            else SECURITY_SEVERITY[f.severity],
        },
    }


def _location(f: Finding) -> list[dict[str, Any]]:
    loc = f.location
    if loc.path:
        out = []
        for path in loc.paths or (loc.path,):  # hard links: every name of the one file
            physical: dict[str, Any] = {"artifactLocation": {"uri": uri_for(path)}}
            if loc.line:
                region: dict[str, Any] = {"startLine": loc.line}
                if loc.column:
                    region["startColumn"] = loc.column
                physical["region"] = region
            out.append({"physicalLocation": physical})
        return out
    if loc.config_key:
        return [{"logicalLocations": [{"name": loc.config_key,
                                        "fullyQualifiedName": f"config.{loc.config_key}",
                                        "kind": "member"}]}]
    return []


def _result(f: Finding, index: int) -> dict[str, Any]:
    loc = f.location
    props: dict[str, Any] = {"severity": f.severity.value, "category": f.category}
    if loc.layer is not None:
        props.update({"layer_index": loc.layer.index, "layer_diff_id": loc.layer.diff_id,
                      "layer_created_by": loc.layer.created_by})
    if loc.hidden_by is not None:
        props.update({"hidden_by_index": loc.hidden_by.index,
                      "hidden_by_diff_id": loc.hidden_by.diff_id})
    if f.package:
        props["package"] = f.package
    if f.evidence:
        props["evidence"] = f.evidence
    for k in SAFE_PROPERTIES:
        if k in f.properties:
            props[k] = str(f.properties[k])
    text = f.title
    if loc.hidden_by is not None and loc.layer is not None:
        text += (f" (present in layer {loc.layer.index}, removed by layer "
                 f"{loc.hidden_by.index}; still in the image)")
    return {
        "ruleId": f.rule_id,
        "ruleIndex": index,
        "level": LEVELS[f.severity],
        "message": {"text": text},
        "locations": _location(f),
        "partialFingerprints": {"imgscanFindingId/v1": f.id},
        "properties": props,
    }


def sarif_log(report: Report) -> dict[str, Any]:
    r = canonical(report)
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for f in sorted(r.findings, key=lambda f: f.rule_id):
        if f.rule_id not in index:
            index[f.rule_id] = len(rules)
            rules.append(_rule(f))
    driver: dict[str, Any] = {
        "name": str(r.tool.get("name", "imgscan")),
        "version": str(r.tool.get("version", "")) or "0",
        "rules": rules,
    }
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "results": [_result(f, index[f.rule_id]) for f in r.findings],
        "properties": {
            "image": r.image.name,
            "imageDigest": r.image.digest,
            "imageId": r.image.id,
        },
    }
    if r.created:
        run["invocations"] = [{"executionSuccessful": True, "startTimeUtc": r.created}]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


class SarifWriter(Writer):
    format_name = "sarif"
    extension = ".sarif"

    def write(self, report: Report, out: TextIO) -> None:
        out.write(json.dumps(sarif_log(report), indent=2, ensure_ascii=True) + "\n")
