"""The writer registry: every format maps, names round-trip, plugins load, files are atomic."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from imgscan.errors import UsageError
from imgscan.reports.interface import (
    WRITERS,
    OutputSpec,
    ReportFormat,
    Writer,
    available_formats,
    builtin_writer_class,
    get_writer,
    parse_format_spec,
    plan_outputs,
    render,
    write_file,
)
from test_reports_fixture import make_report


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_maps_to_a_writer(fmt: ReportFormat) -> None:
    cls = builtin_writer_class(fmt)
    assert issubclass(cls, Writer)
    assert cls.format_name == fmt.value
    assert WRITERS[fmt.value] is cls
    assert render(make_report(), fmt.value).strip()


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_minimal_and_undecodable_reports_write_to_files(fmt: ReportFormat, tmp_path: Path) -> None:
    from imgscan.model import ScanWarning
    from imgscan.reports.interface import WriterOptions
    from test_reports_fixture import minimal_report

    r = minimal_report()
    r.warnings.append(ScanWarning("undecodable name", path="/srv/bad-\udcff-name"))
    out = tmp_path / f"report.{fmt.value}"
    write_file(r, fmt.value, out, WriterOptions(packages=True, elf=True))
    text = out.read_text(encoding="utf-8")
    assert "udc" not in text  # a name's undecodable bytes are shown as \xNN (issue 15)
    assert "xff" in text or fmt in (ReportFormat.CYCLONEDX, ReportFormat.SPDX,
                                    ReportFormat.SARIF, ReportFormat.ATOMIC)


def test_registry_lists_the_brief_formats() -> None:
    assert {"json", "table", "sarif", "cyclonedx", "spdx", "html", "atomic"} <= set(WRITERS)
    assert available_formats()[:7] == [f.value for f in ReportFormat]


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown report format 'yaml'"):
        get_writer("yaml")


@pytest.mark.parametrize(("spec", "expected"), [
    ("json", OutputSpec("json", None)),
    ("SARIF=out/x.sarif", OutputSpec("sarif", Path("out/x.sarif"))),
    ("html=r=1.html", OutputSpec("html", Path("r=1.html"))),
])
def test_parse_format_spec(spec: str, expected: OutputSpec) -> None:
    assert parse_format_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "=x", "yaml", "json="])
def test_bad_format_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_format_spec(spec)


def test_plan_outputs() -> None:
    assert plan_outputs([]) == [OutputSpec("table", None)]
    assert plan_outputs([], "r.txt") == [OutputSpec("table", Path("r.txt"))]
    assert plan_outputs(["json", "sarif=s.sarif", "html=r.html"], "r.json") == [
        OutputSpec("json", Path("r.json")), OutputSpec("sarif", Path("s.sarif")),
        OutputSpec("html", Path("r.html"))]
    with pytest.raises(UsageError, match="formats json, table would all go to stdout"):
        plan_outputs(["json", "table"])
    with pytest.raises(UsageError, match="more than one format would write x"):
        plan_outputs(["json=x", "sarif"], "x")


def test_lazy_exports() -> None:
    import imgscan.reports as reports

    assert reports.get_writer is get_writer and "json" in reports.WRITERS
    with pytest.raises(AttributeError):
        _ = reports.nothing_here


def test_write_file_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    write_file(make_report(), "json", target)
    assert target.read_text().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_write_file_leaves_nothing_when_rendering_fails(tmp_path: Path) -> None:
    r = make_report()
    r.facts = {"elf": "not rows"}  # type: ignore[dict-item]
    target = tmp_path / "r.txt"
    with pytest.raises(AttributeError):
        from imgscan.reports.interface import WriterOptions
        write_file(r, "table", target, WriterOptions(elf=True))
    assert list(tmp_path.iterdir()) == []


def test_plugin_writer_through_entry_point(tmp_path: Path, monkeypatch) -> None:
    """A third-party distribution registers a writer in the ``imgscan.reports`` group."""
    (tmp_path / "fakewriter.py").write_text(textwrap.dedent("""
        from imgscan.reports.interface import Writer
        class CsvWriter(Writer):
            format_name = "csv"
            def write(self, report, out):
                for f in report.findings:
                    out.write(f"{f.rule_id},{f.severity.value}\\n")
        class NotAWriter:
            pass
    """))
    dist = tmp_path / "fakewriter-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakewriter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[imgscan.reports]\ncsv = fakewriter:CsvWriter\nbogus = fakewriter:NotAWriter\n"
        "broken = fakewriter_missing:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        assert "csv" in available_formats()
        assert parse_format_spec("csv=x.csv").format == "csv"
        out = render(make_report(), "csv")
        assert out.splitlines()[0] == "secret/aws-access-key-id,critical"
        with pytest.raises(UsageError, match="not an imgscan Writer"):
            get_writer("bogus")
        with pytest.raises(UsageError, match="failed to load"):
            get_writer("broken")
    finally:
        sys.modules.pop("fakewriter", None)
