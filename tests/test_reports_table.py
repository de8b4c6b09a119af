"""The terminal table: fits 100 columns, shows what the fixture holds, defuses escapes."""

from __future__ import annotations

import dataclasses

import pytest

from imgscan.model import Finding, Location, ScanWarning, Severity
from imgscan.reports.interface import WriterOptions, render
from test_reports_fixture import IMAGE_NAME, hostile_report, make_report


def _table(report, **kw) -> str:
    kw.setdefault("width", 100)  # COLUMNS may be anything where the tests run
    return render(report, "table", WriterOptions(**kw))


def _column(text: str, header: str, next_header: str) -> str:
    """The findings table's column ``header``, its wrapped lines joined."""
    lines = text.splitlines()
    h = next(i for i, line in enumerate(lines) if line.startswith("Severity ") and
             header in line)
    a, b = lines[h].index(header), lines[h].index(next_header)
    out = []
    for line in lines[h + 2:]:
        if not line.strip():
            break
        out.append(line[a:b].strip())
    return "".join(out)


@pytest.mark.parametrize("width", [60, 80, 132, 200])
def test_width_follows_the_terminal_and_nothing_is_cut(width, monkeypatch) -> None:
    """Issue 15 item 9: the terminal's width (COLUMNS), rule ids whole, locations wrapped
    rather than cut from the left, titles wrapped; --wide shows everything on one line."""
    monkeypatch.setenv("COLUMNS", str(width))
    r = make_report()
    loc = "/opt/app/" + "/".join(f"dir{i}" for i in range(12)) + "/settings.yaml"
    title = "Generic API key assigned in a configuration file shipped in the image"
    r.findings.append(Finding("generic/api-key-in-configuration", Severity.HIGH, "secret",
                              title, Location(loc, line=7)).with_id())
    text = render(r, "table", WriterOptions())  # the width comes from COLUMNS
    assert max(len(line) for line in text.splitlines()) <= width
    assert loc + ":7" in _column(text, "Location", "Layer")
    assert "generic/api-key-in-configuration" in _column(text, "Rule", "Location")
    if width >= 100:
        assert "generic/api-key-in-configuration" in text  # on one line when it fits
    assert "…" not in _column(text, "Location", "Layer")
    wide = _table(r, wide=True)
    row = next(line for line in wide.splitlines() if "generic/api-key" in line)
    assert loc + ":7" in row and title in row


@pytest.mark.parametrize("build", [make_report, hostile_report])
@pytest.mark.parametrize("opts", [{}, {"packages": True, "elf": True}])
def test_every_line_fits_100_columns(build, opts) -> None:
    text = _table(build(), **opts)
    too_long = [line for line in text.splitlines() if len(line) > 100]
    assert not too_long, too_long


def test_long_values_still_fit() -> None:
    r = make_report()
    long = "/very/" + "deep/" * 60 + "file.pem"
    r.findings.append(Finding("secret/private-key-" + "x" * 80, Severity.HIGH, "secret",
                              "T" * 500, Location(long, line=123456)).with_id())
    r.warnings += [ScanWarning("m" * 300, path=long, analyzer="a" * 50)] * 30
    text = _table(r, packages=True, elf=True)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert long + ":123456" in _column(text, "Location", "Layer")  # wrapped, never cut
    assert "secret/private-key-" + "x" * 80 in _column(text, "Rule", "Location")
    assert "… and 12 more warnings" in text


def test_summary_counts_and_order() -> None:
    text = _table(make_report())
    assert IMAGE_NAME in text
    assert "sha256:" + "2" * 64 in text
    assert "Debian GNU/Linux 12 (bookworm)" in text
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("CRITICAL"))
    assert lines[head + 2].split() == ["1", "1", "1", "1", "1", "5"]
    sev_rows = [line.split()[0] for line in lines
                if line.split() and line.split()[0] in ("CRITICAL", "HIGH", "MEDIUM", "LOW",
                                                        "INFO") and "/" in line]
    assert sev_rows == ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
    assert "L1-L2" in text and "deleted by layer 2" in text
    assert "/root/.aws/credentials:2" in text and "config:Env[2]" in text


def test_packages_and_elf_only_when_asked() -> None:
    plain = _table(make_report())
    assert "PyYAML" not in plain and "ELF hardening" not in plain
    full = _table(make_report(), packages=True, elf=True)
    for heading in ("deb (3)", "golang (1)", "npm (1)", "pypi (1)"):
        assert heading in full
    assert "1:4.13+dfsg1-1+b1" in full
    elf = full[full.index("ELF hardening"):]
    su = next(line for line in elf.splitlines() if line.startswith("/usr/bin/su"))
    assert su.split()[1:] == ["full", "yes", "yes", "yes", "yes"]


def test_terminal_escapes_from_the_image_are_defused() -> None:
    text = _table(hostile_report(), packages=True, elf=True)
    assert "\x1b" not in text
    assert "\\x1b[31m" in text


def test_empty_report() -> None:
    r = make_report()
    r = dataclasses.replace(r, findings=[], packages=[], warnings=[], facts={}, os=None)
    text = _table(r, packages=True, elf=True)
    assert "No findings." in text and "none found" in text and "unknown" in text
