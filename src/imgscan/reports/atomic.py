"""atomic scan's result format (ANCHORS.md §5.4), for use as an ``atomic.d`` scanner.

atomic collects files named exactly ``json`` under its results dir; the caller picks the path.
``Successful`` is a string. ``UUID`` is ``/scanin/<id>``: atomic maps it back to the image by
basename. Findings do not change atomic's exit code; the gate is imgscan's own exit code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from imgscan.model import Finding, Report
from imgscan.reports.common import canonical, layer_label, location_text, parse_time
from imgscan.reports.interface import Writer

#: atomic shows ``Severity`` verbatim; capitalised words as its OpenSCAP scanner printed them
SEVERITY_WORDS = {"critical": "Critical", "high": "High", "medium": "Medium", "low": "Low",
                  "info": "Info"}


def _custom(f: Finding) -> dict[str, Any]:
    loc = f.location
    custom: dict[str, Any] = {"id": f.id, "rule_id": f.rule_id, "category": f.category}
    where = location_text(f)
    if where:
        custom["location"] = where
    if loc.layer is not None:
        custom["layer"] = layer_label(loc.layer, loc.hidden_by)
        custom["layer_diff_id"] = loc.layer.diff_id
    if loc.hidden_by is not None:
        custom["hidden_by_diff_id"] = loc.hidden_by.diff_id
    if f.package:
        custom["package"] = f.package
    if f.evidence:
        custom["evidence"] = f.evidence
    return custom


def atomic_result(report: Report, scan_type: str = "imgscan",
                  uuid: str | None = None) -> dict[str, Any]:
    """The result object; ``uuid`` defaults to ``/scanin/<image id hex>``."""
    r = canonical(report)
    started = parse_time(r.created) or datetime.now(UTC)
    total = r.timings.get("total")
    seconds = float(total) if isinstance(total, int | float) else 0.0
    finished = (started + timedelta(seconds=seconds)).isoformat()
    ident = (r.image.id or r.image.digest or r.image.name).split(":", 1)[-1]
    vulns = [
        {
            "Title": f.title,
            "Severity": SEVERITY_WORDS[f.severity.value],
            "Description": f.description or f.title,
            "Custom": _custom(f),
        }
        for f in r.findings
    ]
    custom: dict[str, Any] = {
        "image": r.image.name,
        "digest": r.image.digest,
        "packages": len(r.packages),
        "warnings": len(r.warnings),
    }
    if r.os is not None:
        custom["os"] = r.os.pretty_name or f"{r.os.id} {r.os.version_id}".strip()
    return {
        "Scanner": str(r.tool.get("name", "imgscan")),
        "Time": r.created or started.isoformat(),
        "Scan Type": scan_type,
        "Finished Time": finished,
        "UUID": uuid if uuid is not None else f"/scanin/{ident}",
        "Successful": "true",
        "Custom": custom,
        "Vulnerabilities": vulns,
    }


def failure_document(uuid: str, message: str) -> dict[str, Any]:
    """The result of a target that could not be scanned (``Successful`` "false"), so that
    atomic reports the failure instead of a clean image."""
    now = datetime.now(UTC).isoformat()
    return {
        "Scanner": "imgscan",
        "Time": now,
        "Scan Type": "imgscan",
        "Finished Time": now,
        "UUID": uuid,
        "Successful": "false",
        "Custom": {"error": message},
    }


class AtomicWriter(Writer):
    format_name = "atomic"
    extension = ".atomic.json"  # in an audit; atomic itself names the file ``json``

    def write(self, report: Report, out: TextIO) -> None:
        out.write(json.dumps(atomic_result(report), indent=2, ensure_ascii=True) + "\n")
