"""SARIF 2.1.0 output, validated against the OASIS schema shipped in the project's shared/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from imgscan.reports.interface import render
from test_reports_fixture import L1, L2, hostile_report, make_report, minimal_report

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``<repo root>/../shared`` as CI places it (worktrees sit one level deeper)."""
    env = os.environ.get("IMGSCAN_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared", REPO.parent.parent / "shared"]
    for c in candidates:
        if (c / "schemas" / "sarif-schema-2.1.0.json").is_file():
            return c
    raise AssertionError(f"shared/ with schemas/sarif-schema-2.1.0.json not found in "
                         f"{[str(c) for c in candidates]}")


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((shared_dir() / "schemas" / "sarif-schema-2.1.0.json").read_text())
    if "properties" not in schema and "$ref" not in schema:
        # this copy keeps the log object under definitions/Root with nothing at the top, so
        # as-is it accepts any JSON value; point the root at it
        assert "Root" in schema["definitions"]
        schema = {**schema, "$ref": "#/definitions/Root"}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _sarif(report) -> dict:
    return json.loads(render(report, "sarif"))


@pytest.mark.parametrize("build", [make_report, hostile_report, minimal_report])
def test_valid_sarif(validator, build) -> None:
    errors = list(validator.iter_errors(_sarif(build())))
    assert not errors, [e.message for e in errors[:3]]


def test_schema_catches_a_broken_log(validator) -> None:
    d = _sarif(make_report())
    d["runs"][0]["results"][0]["level"] = "fatal"
    del d["version"]
    messages = [e.message for e in validator.iter_errors(d)]
    assert any("'version' is a required property" in m for m in messages), messages
    assert any("'fatal'" in m for m in messages), messages


def test_results_rules_and_locations() -> None:
    r = make_report()
    d = _sarif(r)
    run = d["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert sorted(x["id"] for x in rules) == sorted({f.rule_id for f in r.findings})
    assert all(x["help"]["text"] for x in rules)
    results = run["results"]
    assert len(results) == len(r.findings)
    for res in results:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    by_rule = {res["ruleId"]: res for res in results}
    secret = by_rule["secret/aws-access-key-id"]
    assert secret["level"] == "error"
    phys = secret["locations"][0]["physicalLocation"]
    assert phys["artifactLocation"]["uri"] == "root/.aws/credentials"
    assert phys["region"] == {"startLine": 2, "startColumn": 19}
    props = secret["properties"]
    assert props["layer_index"] == L1.index and props["layer_diff_id"] == L1.diff_id
    assert props["hidden_by_index"] == L2.index and props["hidden_by_diff_id"] == L2.diff_id
    assert "removed by layer 2" in secret["message"]["text"]
    assert secret["partialFingerprints"]["imgscanFindingId/v1"] == r.findings[0].id
    assert by_rule["permissions/setuid"]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "usr/bin/su"}}
    assert by_rule["config/secret-env"]["level"] == "warning"
    assert by_rule["config/secret-env"]["locations"][0]["logicalLocations"][0]["name"] == \
        "Env[2]"
    assert by_rule["elf/no-relro"]["level"] == "note"
    assert by_rule["config/no-healthcheck"]["level"] == "note"


def test_hostile_paths_become_encoded_uris() -> None:
    d = _sarif(hostile_report())
    uris = [loc["physicalLocation"]["artifactLocation"]["uri"]
            for res in d["runs"][0]["results"] for loc in res["locations"]
            if "physicalLocation" in loc]
    evil = next(u for u in uris if u.startswith("srv/"))
    assert " " not in evil and "<" not in evil and '"' not in evil and "\x1b" not in evil
    assert evil.startswith("srv/%3Cscript%3E")
