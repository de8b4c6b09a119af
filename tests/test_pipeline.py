"""The library does what the CLI does: gate and write, audit a store, atomic scanner mode; and
the gate stays apart from the writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imgscan
from clihelp import SRC
from imgscan.model import Severity
from imgscan.reports import validate_report
from test_cli_audit import pull_two
from test_reports_fixture import make_report


def test_gate_and_write_writes_what_the_gate_saw(tmp_path: Path) -> None:
    gate = imgscan.GateConfig.load(fail_on="high")
    assert gate.fail_on is Severity.HIGH and gate.judges
    out = tmp_path / "r.json"
    outcome = imgscan.gate_and_write(make_report(), gate,
                                     imgscan.api.plan_outputs([f"json={out}"]))
    assert outcome.exit_code == 1
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert len(doc["findings"]) == len(outcome.report.findings)
    assert not imgscan.GateConfig().judges


def test_audit_from_python(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    pull_two(tmp_path, root)
    result = imgscan.audit(root=root, formats=["json", "sarif"], output_dir=tmp_path / "a",
                           gate=imgscan.GateConfig.load(fail_on="high"))
    assert result.exit_code == 1
    by_label = {e.label: e for e in result.entries}
    assert not by_label["localhost/img0:v1"].failed_gate
    assert by_label["localhost/img1:v1"].failed_gate
    assert sorted(os.listdir(tmp_path / "a")) == [
        "localhost_img0_v1.json", "localhost_img0_v1.sarif",
        "localhost_img1_v1.json", "localhost_img1_v1.sarif"]
    counts = by_label["localhost/img1:v1"].counts
    assert counts["high"] >= 1 and next(iter(counts)) == "critical"


def test_scan_atomic_from_python(tmp_path: Path) -> None:
    (tmp_path / "in" / "abc" / "etc").mkdir(parents=True)
    (tmp_path / "in" / "not-a-dir").write_text("x")
    result = imgscan.scan_atomic(tmp_path / "in", tmp_path / "out")
    assert [e.label for e in result.entries] == ["abc"] and result.exit_code == 0
    assert json.loads((tmp_path / "out" / "abc" / "json").read_text())["Successful"] == "true"


def test_the_gate_imports_no_writer() -> None:
    code = ("import sys, imgscan.gate, imgscan.versions; "
            "print([m for m in sys.modules if m.startswith('imgscan.reports')])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": SRC}, check=True)
    assert p.stdout.strip() == "[]"
