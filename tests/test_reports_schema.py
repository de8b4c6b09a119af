"""The JSON writer and the report schema: valid output, real rejections, stable order."""

from __future__ import annotations

import copy
import dataclasses
import json
import random

import pytest

from imgscan.model import Finding, Location, Report, Severity
from imgscan.reports import SCHEMA_PATH, ReportSchemaError, validate_report
from imgscan.reports.interface import render
from imgscan.reports.json_writer import canonical_dict
from test_reports_fixture import hostile_report, make_report, minimal_report


def _json(report: Report) -> dict:
    return json.loads(render(report, "json"))


def test_schema_file_is_draft_2020_12() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("build", [make_report, hostile_report, minimal_report])
def test_writer_output_validates(build) -> None:
    validate_report(_json(build()))


def _broken(mutate) -> dict:
    d = make_report().to_dict()
    mutate(d)
    return d


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda d: d["findings"][0].update(severity="urgent"), "report.findings[0].severity"),
    (lambda d: d["findings"][0].update(id=""), "report.findings[0].id"),
    (lambda d: d["findings"][0]["location"].update(line=0), "report.findings[0].location"),
    (lambda d: d["packages"][0].update(extra=1), "report.packages[0]"),
    (lambda d: d["packages"][0].update(purl="debian/bash"), "report.packages[0].purl"),
    (lambda d: d["layers"][0].update(diff_id="sha256:xyz"), "report.layers[0].diff_id"),
    (lambda d: d["image"].update(digest="md5:abc"), "report.image.digest"),
    (lambda d: d.pop("findings"), "report"),
    (lambda d: d.update(schema_version="2.0.0"), "report.schema_version"),
    (lambda d: d.update(created="yesterday"), "report.created"),
    (lambda d: d["warnings"][0].update(layer={"index": -1, "diff_id": "", "created_by": ""}),
     "report.warnings[0].layer"),
])
def test_broken_reports_are_rejected_with_their_location(mutate, where) -> None:
    with pytest.raises(ReportSchemaError) as e:
        validate_report(_broken(mutate))
    assert where in str(e.value)


def test_files_are_left_out_of_reports() -> None:
    r = make_report()
    r.packages[0] = dataclasses.replace(r.packages[0], files=("/bin/login",))
    d = _json(r)
    assert all("files" not in p for p in d["packages"])
    validate_report(d)


def test_field_order_comes_from_the_model() -> None:
    d = _json(make_report())
    assert list(d) == [f.name for f in dataclasses.fields(Report)]
    assert list(d["findings"][0]) == [f.name for f in dataclasses.fields(Finding)]
    # ``paths`` is written only for a file with hard links (the 1.0.0 shape otherwise)
    assert list(d["findings"][0]["location"]) == [f.name for f in dataclasses.fields(Location)
                                                  if f.name != "paths"]


def test_canonical_order() -> None:
    d = _json(make_report())
    sev = [Severity(f["severity"]).rank for f in d["findings"]]
    assert sev == sorted(sev, reverse=True)
    keys = [(p["type"], p["name"], p["version"]) for p in d["packages"]]
    assert keys == sorted(keys)
    assert [p["name"] for p in d["packages"]][:3] == ["bash", "login", "openssl"]
    assert [w["path"] for w in d["warnings"]] == ["/opt/bad.so", "/usr/share/doc/x.gz"]


def test_same_output_whatever_the_input_order_apart_from_time() -> None:
    a = make_report()
    b = make_report()
    rng = random.Random(7)
    for lst in (b.packages, b.findings, b.warnings):
        rng.shuffle(lst)
    b.created = "2026-11-29T08:00:00Z"
    b.timings = {"total": 9.0}
    da, db = _json(a), _json(b)
    assert da != db
    for d in (da, db):
        d.pop("created")
        d.pop("timings")
    assert da == db
    assert render(a, "json") == render(copy.deepcopy(a), "json")


def test_undecodable_names_stay_representable() -> None:
    r = make_report()
    r.warnings.append(dataclasses.replace(r.warnings[0], path="/tmp/bad-\udcff-name"))
    text = render(r, "json")
    assert "bad-\\\\xff-name" in text  # shown escaped (issue 15 item 4), valid Unicode
    assert "udc" not in text
    text.encode("ascii")
    validate_report(json.loads(text))


def test_canonical_dict_does_not_mutate() -> None:
    r = make_report()
    before = [f.id for f in r.findings]
    r.findings.reverse()
    canonical_dict(r)
    assert [f.id for f in r.findings] == before[::-1]
