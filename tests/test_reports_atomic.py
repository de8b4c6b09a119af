"""atomic scan's result format (ANCHORS.md §5.4)."""

from __future__ import annotations

import json

from imgscan.reports.interface import render
from test_reports_fixture import make_report

REQUIRED = {"Scanner", "Time", "Scan Type", "Finished Time", "UUID", "Successful"}


def test_required_keys_and_types() -> None:
    d = json.loads(render(make_report(), "atomic"))
    assert set(d) >= REQUIRED
    assert d["Successful"] == "true" and isinstance(d["Successful"], str)
    assert d["UUID"] == "/scanin/" + "1" * 64
    assert d["Time"] == "2026-11-28T10:00:00Z"
    assert d["Finished Time"] == "2026-11-28T10:00:02.500000+00:00"  # created + total 2.5 s


def test_vulnerabilities() -> None:
    r = make_report()
    d = json.loads(render(r, "atomic"))
    vulns = d["Vulnerabilities"]
    assert len(vulns) == len(r.findings)
    assert all(set(v) == {"Title", "Severity", "Description", "Custom"} for v in vulns)
    assert [v["Severity"] for v in vulns] == ["Critical", "High", "Medium", "Low", "Info"]
    hidden = vulns[0]["Custom"]
    assert hidden["layer"] == "L1 (removed by L2)"
    assert hidden["location"] == "/root/.aws/credentials:2"


def test_no_findings_still_lists_an_empty_vulnerability_list() -> None:
    r = make_report()
    r.findings = []
    d = json.loads(render(r, "atomic"))
    assert d["Vulnerabilities"] == [] and d["Successful"] == "true"
