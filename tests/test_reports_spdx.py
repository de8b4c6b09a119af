"""SPDX 2.3 JSON output, parsed and validated with spdx-tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imgscan.reports.interface import render
from test_reports_fixture import IMAGE_NAME, hostile_report, make_report, minimal_report


def _validate(text: str, tmp_path: Path) -> list[str]:
    p = tmp_path / "doc.spdx.json"
    p.write_text(text)
    doc = parse_file(str(p))
    return [m.validation_message for m in validate_full_spdx_document(doc)]


@pytest.mark.parametrize("build", [make_report, hostile_report, minimal_report])
def test_valid_spdx_2_3(build, tmp_path: Path) -> None:
    assert _validate(render(build(), "spdx"), tmp_path) == []


def test_validator_rejects_a_broken_document(tmp_path: Path) -> None:
    d = json.loads(render(make_report(), "spdx"))
    d["relationships"].append({"spdxElementId": "SPDXRef-Image-x",
                               "relationshipType": "CONTAINS",
                               "relatedSpdxElement": "SPDXRef-nowhere"})
    d["packages"][1]["licenseDeclared"] = "GPL-3+"
    assert _validate(json.dumps(d), tmp_path)


def test_structure() -> None:
    r = make_report()
    d = json.loads(render(r, "spdx"))
    assert d["spdxVersion"] == "SPDX-2.3" and d["dataLicense"] == "CC0-1.0"
    image = d["packages"][0]
    assert image["name"] == IMAGE_NAME and image["primaryPackagePurpose"] == "CONTAINER"
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": "2" * 64}]
    describes = [x for x in d["relationships"] if x["relationshipType"] == "DESCRIBES"]
    assert describes == [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                          "relatedSpdxElement": image["SPDXID"]}]
    contains = {x["relatedSpdxElement"] for x in d["relationships"]
                if x["relationshipType"] == "CONTAINS"}
    assert contains == {p["SPDXID"] for p in d["packages"][1:]}
    assert len(d["packages"]) == len(r.packages) + 2  # image + OS
    purls = sorted(ref["referenceLocator"] for p in d["packages"][2:]
                   for ref in p["externalRefs"])
    assert purls == sorted(p.purl for p in r.packages)
    by_name = {p["name"]: p for p in d["packages"]}
    assert by_name["PyYAML"]["licenseDeclared"] == "MIT"
    assert by_name["login"]["licenseDeclared"] == "GPL-2.0-or-later"
    bash_lic = by_name["bash"]["licenseDeclared"]
    assert bash_lic.startswith("LicenseRef-GPL-3-")
    extracted = {x["licenseId"]: x["extractedText"] for x in d["hasExtractedLicensingInfos"]}
    assert extracted[bash_lic] == "GPL-3+"
    assert by_name["github.com/spf13/cobra"]["licenseDeclared"] == "NOASSERTION"
    assert d["creationInfo"]["created"] == "2026-11-28T10:00:00Z"


def test_ids_stay_valid_for_hostile_names() -> None:
    d = json.loads(render(hostile_report(), "spdx"))
    import re
    for p in d["packages"]:
        assert re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", p["SPDXID"]), p["SPDXID"]
    assert "#" not in d["documentNamespace"]
