"""Writers render what the model holds and nothing more: redacted evidence stays redacted,
and analyzer-internal properties are not copied into the non-canonical formats."""

from __future__ import annotations

import pytest

from imgscan.reports.interface import ReportFormat, WriterOptions, render
from test_reports_fixture import DEBUG_MARKER, PLANTED_SECRET, REDACTED, make_report

ALL = [f.value for f in ReportFormat]


@pytest.mark.parametrize("fmt", ALL)
def test_planted_secret_never_appears(fmt: str) -> None:
    out = render(make_report(), fmt, WriterOptions(packages=True, elf=True))
    assert PLANTED_SECRET not in out
    assert PLANTED_SECRET[:12] not in out


@pytest.mark.parametrize("fmt", ["json", "sarif", "atomic", "html"])
def test_redacted_evidence_is_shown_as_redacted(fmt: str) -> None:
    assert REDACTED in render(make_report(), fmt)


@pytest.mark.parametrize("fmt", [f for f in ALL if f != "json"])
def test_raw_finding_properties_are_not_copied(fmt: str) -> None:
    out = render(make_report(), fmt, WriterOptions(packages=True, elf=True))
    assert DEBUG_MARKER not in out


def test_json_is_the_model_verbatim() -> None:
    assert DEBUG_MARKER in render(make_report(), "json")
