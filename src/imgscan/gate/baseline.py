"""Baselines: an earlier JSON report, so the gate counts only findings that are new.

The earlier report is schema-checked through ``imgscan.reportschema`` (not the writers: the
gate judges the model and never imports what renders it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgscan.errors import UsageError
from imgscan.model import Finding, Report, finding_from_dict


def load_baseline(path: str | Path) -> dict[str, Any]:
    """An earlier JSON report, schema-checked; a bad file is a ``UsageError``."""
    from imgscan.reportschema import schema_errors

    try:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UsageError(f"baseline {path}: cannot read a JSON report: {e}") from None
    errors = schema_errors(data)
    if errors:
        raise UsageError(f"baseline {path}: not an imgscan JSON report: {errors[0]}"
                         + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return data


def _fallback_key(f: Finding) -> tuple[str, str, str]:
    loc = f.location
    return (f.rule_id, loc.path or f"config:{loc.config_key}", f.evidence_fingerprint())


@dataclass
class BaselineOutcome:
    report: Report  # only the findings new relative to the baseline
    known: list[Finding]  # findings the baseline already had


def apply_baseline(report: Report, old_report: Mapping[str, Any]) -> BaselineOutcome:
    """Keep only findings that the earlier report did not have: same stable id, or else the
    same (rule_id, path, fingerprint) — ids can differ when an analyzer changed its id input."""
    raw = old_report.get("findings") if isinstance(old_report, Mapping) else None
    if not isinstance(raw, list):
        raise UsageError("baseline: not an imgscan JSON report (no findings list)")
    ids: set[str] = set()
    keys: set[tuple[str, str, str]] = set()
    for i, d in enumerate(raw):
        try:
            old = finding_from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"baseline: findings[{i}] is malformed: {e!r}") from None
        if old.id:
            ids.add(old.id)
        keys.add(_fallback_key(old))
    new: list[Finding] = []
    known: list[Finding] = []
    for f in report.findings:
        (known if (f.id and f.id in ids) or _fallback_key(f) in keys else new).append(f)
    return BaselineOutcome(report=dataclasses.replace(report, findings=new), known=known)
