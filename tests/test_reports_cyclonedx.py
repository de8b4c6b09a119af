"""CycloneDX 1.6 output, checked with cyclonedx-python-lib's strict JSON validator."""

from __future__ import annotations

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from imgscan.reports.interface import render
from test_reports_fixture import IMAGE_NAME, hostile_report, make_report, minimal_report

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


@pytest.mark.parametrize("build", [make_report, hostile_report, minimal_report])
def test_valid_cyclonedx_1_6(build) -> None:
    assert VALIDATOR.validate_str(render(build(), "cyclonedx")) is None


def test_validator_rejects_a_broken_bom() -> None:
    d = json.loads(render(make_report(), "cyclonedx"))
    d["components"][1]["type"] = "gadget"
    d["components"][1]["imgscan"] = True
    assert VALIDATOR.validate_str(json.dumps(d)) is not None


def test_components_purls_os_and_image() -> None:
    r = make_report()
    d = json.loads(render(r, "cyclonedx"))
    assert d["specVersion"] == "1.6" and d["bomFormat"] == "CycloneDX"
    image = d["metadata"]["component"]
    assert image["type"] == "container" and image["name"] == IMAGE_NAME
    assert image["hashes"] == [{"alg": "SHA-256", "content": "2" * 64}]
    assert image["purl"].startswith("pkg:oci/webapp@sha256:" + "2" * 8)
    comps = d["components"]
    os_c = [c for c in comps if c["type"] == "operating-system"]
    assert os_c == [{"type": "operating-system", "bom-ref": "os", "name": "debian",
                     "version": "12", "description": "Debian GNU/Linux 12 (bookworm)",
                     "properties": [{"name": "imgscan:location", "value": "/etc/os-release"}]}]
    libs = [c for c in comps if c["type"] == "library"]
    assert sorted(c["purl"] for c in libs) == sorted(p.purl for p in r.packages)
    login = next(c for c in libs if c["name"] == "login")
    assert login["version"] == "1:4.13+dfsg1-1+b1"
    assert login["purl"] == next(p.purl for p in r.packages if p.name == "login")
    props = {(p["name"], p["value"]) for p in login["properties"]}
    assert ("imgscan:layer:index", "0") in props
    assert ("imgscan:location", "/var/lib/dpkg/status") in props
    assert login["evidence"]["occurrences"] == [{"location": "/var/lib/dpkg/status"}]
    assert login["licenses"] == [{"license": {"name": "GPL-2.0-or-later"}}]
    refs = [c["bom-ref"] for c in comps]
    assert len(refs) == len(set(refs))
    assert set(d["dependencies"][0]["dependsOn"]) == set(refs)
    counts = {p["name"]: p["value"] for p in image["properties"]}
    assert counts["imgscan:findings:critical"] == "1"


def test_duplicate_packages_get_distinct_refs() -> None:
    r = make_report()
    r.packages.append(r.packages[0])
    d = json.loads(render(r, "cyclonedx"))
    refs = [c["bom-ref"] for c in d["components"]]
    assert len(refs) == len(set(refs))
    assert VALIDATOR.validate_str(json.dumps(d)) is None


def test_deterministic_serial_number() -> None:
    a = json.loads(render(make_report(), "cyclonedx"))
    b = json.loads(render(make_report(), "cyclonedx"))
    assert a == b and a["serialNumber"].startswith("urn:uuid:")
