"""Issue 13's warm path: a report-cache hit imports no analyzer plugin and no secrets engine
(what the report key needs of the analyzers is remembered, keyed by their code, the rule
files and the options), the JSON report through orjson is byte for byte the standard
library's, and ``mount``/``umount`` take the entry's fast path only for their plain forms."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import MY_TOKEN_RULE as RULE
from clihelp import SRC
from imgscan.analyzers import identity
from imgscan.analyzers.interface import ScanOptions
from imgscan.analyzers.registry import PluginSpec
from imgscan.cli_fast import parse
from imgscan.model import Severity
from imgscan.reports import json_writer
from test_reports_fixture import make_report

PLUGIN_MODULES = {"osrelease", "dpkg", "rpm", "apk", "python_pkgs", "npm", "gobinary", "java",
                  "rust", "elf", "permissions", "imageconfig", "secrets"}


WATCH = ("import sys, runpy, atexit, json\n"
         "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
         "sys.argv = ['imgscan'] + sys.argv[1:]\n"
         "runpy.run_module('imgscan', run_name='__main__', alter_sys=True)\n")


def _scan(layout: str, root: str, cache: Path, out: Path, *extra: str
          ) -> tuple[int, set[str], dict]:
    env = {**os.environ, "PYTHONPATH": SRC, "IMGSCAN_CACHE_DIR": str(cache)}
    p = subprocess.run([sys.executable, "-c", WATCH, "scan", f"oci:{layout}:v1", "--root", root,
                        "--format", "json", "-o", str(out), *extra],
                       capture_output=True, text=True, env=env, timeout=300)
    modules = set(json.loads(p.stderr.strip().splitlines()[-1]))
    return p.returncode, modules, json.loads(out.read_text())


def _plugins(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("imgscan.analyzers.")
            and m.split(".")[2] in PLUGIN_MODULES}


def test_a_report_cache_hit_imports_no_analyzer_and_no_secrets_engine(tmp_path):
    from test_scan_e2e import build

    layout, root, cache, out = build(tmp_path), str(tmp_path / "store"), tmp_path / "c", \
        tmp_path / "r.json"
    code, cold, first = _scan(layout, root, cache, out)
    assert _plugins(cold) and "imgscan.secrets.engine" in cold  # a miss loads them
    assert list((cache / "analyzers").glob("*.json"))  # and remembers what they said
    code2, warm, second = _scan(layout, root, cache, out)
    assert code2 == code
    assert _plugins(warm) == set(), sorted(_plugins(warm))
    assert not warm & {"imgscan.secrets.engine", "imgscan.secrets.rules",
                       "imgscan.analyzers.dispatch", "importlib.metadata", "elftools"}
    for doc in (first, second):
        doc.pop("created"), doc.pop("timings")
    assert first == second
    # --analyzers: the always-run analyzers come from what was remembered; the first such
    # scan is a report-cache miss (another set of analyzers), the second imports none
    _scan(layout, root, cache, out, "--analyzers", "npm")
    _, warm_npm, third = _scan(layout, root, cache, out, "--analyzers", "npm")
    assert _plugins(warm_npm) == set()
    assert [a["name"] for a in third["tool"]["analyzers"]] == ["npm", "os-release"]


def test_an_edited_rule_file_recomputes_the_report(tmp_path):
    from test_scan_e2e import build

    layout, root, cache, out = build(tmp_path), str(tmp_path / "store"), tmp_path / "c", \
        tmp_path / "r.json"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.toml").write_text(RULE)
    _scan(layout, root, cache, out, "--rules", str(rules))
    _, _, before = _scan(layout, root, cache, out, "--rules", str(rules))
    assert "my-curl" not in {f["rule_id"] for f in before["findings"]}
    (rules / "mine.toml").write_text(RULE.replace("my-token", "my-curl").replace(
        "mytok_[a-z0-9]{12}", "curl -X POST").replace('"mytok_"', '"curl"'))
    _, modules, after = _scan(layout, root, cache, out, "--rules", str(rules))
    assert "imgscan.secrets.engine" in modules  # the new rules are loaded, the layers scanned
    assert "my-curl" in {f["rule_id"].split("/")[-1] for f in after["findings"]}


def test_the_remembered_key_follows_code_rules_options_and_plugins(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSCAN_CACHE_DIR", str(tmp_path / "cache"))
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "plugin.py").write_text("version = 1\n")
    stamp = identity.code_stamp(str(pkg))
    (pkg / "sub" / "plugin.py").write_text("version = 22\n")
    assert identity.code_stamp(str(pkg)) != stamp  # a plugin module changed
    specs = [PluginSpec("dpkg", "imgscan.analyzers.dpkg:DpkgAnalyzer", "imgscan", "0.1.0")]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "mine.toml").write_text(RULE)
    base = identity.memo_key(specs, ScanOptions(rule_dirs=(str(rules),)))
    assert base is not None
    assert identity.memo_key(specs, ScanOptions(rule_dirs=(str(rules),))) == base
    (rules / "mine.toml").write_text(RULE.replace("{12}", "{10}"))
    edited = identity.memo_key(specs, ScanOptions(rule_dirs=(str(rules),)))
    assert edited not in (None, base)  # a rule file changed
    assert identity.memo_key(specs, ScanOptions(rule_dirs=(str(rules),),
                                                scan_binaries=True)) not in (None, edited)
    third = [*specs, PluginSpec("x", "acme_scan.mod:X", "acme", "1.0")]
    assert identity.memo_key(third, ScanOptions()) is None  # a third-party plugin: load it


def _with(value: object):
    return dataclasses.replace(make_report(), facts={"t": [{"path": "p", "v": value,
                                                            "s": "1e5 0.00001 e-5"}]})


@pytest.mark.parametrize("value", [
    0.1, 12.0, 1e-05, 2.5e-07, 1e16, -3e22, 0.0001, "é ü \U0001f600 \x7f \u2028 \x00\t",
    "\udcff", 2 ** 70, {"k": b"\x01\xfe"}, {1: "int key"}, Severity.HIGH, ("a", 1),
    "x\": 1e5", {"e-5": 1}, "".join(chr(0x4E00 + i) for i in range(100)),
])
def test_the_json_report_is_the_standard_encoders_text(value):
    report = _with(value)
    expected = json.dumps(json_writer.canonical_dict(report), indent=2,
                          ensure_ascii=True) + "\n"
    assert json_writer.dumps(report) == expected


def test_the_json_report_without_orjson(monkeypatch):
    report = _with("é")
    fast = json_writer.dumps(report)
    monkeypatch.setattr(json_writer, "orjson", None)
    assert json_writer.dumps(report) == fast


@pytest.mark.parametrize(("argv", "expected"), [
    (["mount", "img"], ("mount", {}, "img")),
    (["mount", "--root", "/r", "img", "--driver=overlay"],
     ("mount", {"--root": "/r", "--driver": "overlay"}, "img")),
    (["umount", "--force", "--root=/r", "/mnt/x"],
     ("umount", {"--force": True, "--root": "/r"}, "/mnt/x")),
])
def test_the_fast_path_parses_the_plain_forms(argv, expected):
    assert parse(argv) == expected


@pytest.mark.parametrize("argv", [
    ["mount"], ["mount", "a", "b"], ["mount", "--help"], ["mount", "-h", "x"],
    ["mount", "--driver", "bad", "x"], ["mount", "--root"], ["mount", "--root", "/r",
                                                             "--root", "/s", "x"],
    ["mount", "--force", "x"], ["umount", "--force=yes", "x"], ["mount", "--", "x"],
    ["-q", "mount", "x"], ["scan", "x"], ["umount", "--mountpoint", "/m", "x"], [],
    ["mount", "--root", "", "x"],
])
def test_anything_else_goes_to_click(argv):
    assert parse(argv) is None


def test_a_root_that_is_a_file_goes_to_click(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    assert parse(["mount", "--root", str(f), "x"]) is None
