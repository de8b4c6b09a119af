"""Whole scans through the real command, reports validated against the published schema:
hidden secrets, language packages deleted by later layers, redaction in every format, and a
rootless scan reporting what a root scan reports."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys

import pytest

from clihelp import SRC, imgscan
from imagebuild import OPQ, WH, D, F, H, ImageSpec, L, Layer, layer_tar, write_oci_layout
from imgscan.reports import validate_report


def token(prefix: str, n: int, seed: int) -> str:
    rnd = random.Random(seed)
    return prefix + "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))


GH = token("ghp_", 36, 7)
SLACK_HOOK = "https://hooks.slack.com/services/T" + token("", 8, 8).upper() + "/B" + \
    token("", 8, 9).upper() + "/" + token("", 24, 10)
DB_PASS = token("", 18, 11)


def npm_pkg(path: str, name: str, version: str) -> F:
    return F(f"{path}/package.json", json.dumps({"name": name, "version": version,
                                                  "license": "MIT"}))


def build(tmp_path) -> str:
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    layers = [
        Layer(layer_tar([
            D("app"), F("app/.env", f"GITHUB_TOKEN={GH}\n"),
            H("app/.env.bak", "app/.env"), L("app/env-link", ".env"),
            npm_pkg("app/node_modules/left-pad", "left-pad", "1.3.0"),
            npm_pkg("app/node_modules/@scope/kept", "@scope/kept", "2.0.0"),
            npm_pkg("app/node_modules/gone-by-opaque", "gone-by-opaque", "0.1.0"),
            F("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
              "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n"),
            D("usr/bin"), F("usr/bin/suid", b"\x7fELF", mode=0o4755, uid=0, gid=0),
            F("usr/bin/sgid", b"\x7fELF", mode=0o2755, gid=42),
        ]), created_by="COPY app /app"),
        Layer(layer_tar([
            WH("app/.env"), WH("app/.env.bak"), WH("app/node_modules/left-pad"),
            OPQ("usr/lib/python3/dist-packages"),
            F("app/notify.sh", f"curl -X POST {SLACK_HOOK}\n"),
        ]), created_by="RUN cleanup"),
    ]
    write_oci_layout(layout, [ImageSpec(layers, ref_name="v1", config={
        "Env": [f"DATABASE_URL=postgres://app:{DB_PASS}@db:5432/app"], "User": "10"})])
    return layout


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    root = str(tmp / "store")
    layout = build(tmp)
    assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
    return root, "localhost/layout:v1"


def scan_json(root, name, *extra) -> dict:
    r = imgscan("scan", name, "--format", "json", *extra, root=root)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    return doc


def test_hidden_secret_is_found_with_the_layer_that_hid_it(image):
    root, name = image
    doc = scan_json(root, name)
    gh = [f for f in doc["findings"] if f["rule_id"] == "github-pat"]
    assert len(gh) == 1  # one file, its hard link and its symlink: one finding
    loc = gh[0]["location"]
    assert loc["path"] == "/app/.env" and loc["layer"]["index"] == 0
    assert loc["hidden_by"]["index"] == 1
    slack = [f for f in doc["findings"] if "slack" in f["rule_id"]]
    assert slack and slack[0]["location"]["hidden_by"] is None
    assert any(f["location"]["config_key"].startswith("Env") for f in doc["findings"]
               if f["category"] == "secret")
    doc = scan_json(root, name, "--no-hidden")
    assert not [f for f in doc["findings"] if f["rule_id"] == "github-pat"]


def test_language_packages_deleted_by_later_layers_are_gone(image):
    root, name = image
    doc = scan_json(root, name, "--analyzers", "npm,python")
    got = {(p["type"], p["name"], p["version"]) for p in doc["packages"]}
    assert got == {("npm", "@scope/kept", "2.0.0"), ("npm", "gone-by-opaque", "0.1.0")}
    kept = next(p for p in doc["packages"] if p["name"] == "@scope/kept")
    assert kept["purl"] == "pkg:npm/%40scope/kept@2.0.0"
    assert kept["layer"]["index"] == 0
    assert kept["locations"] == ["/app/node_modules/@scope/kept/package.json"]


@pytest.mark.parametrize("fmt", ["json", "table", "sarif", "cyclonedx", "spdx", "html",
                                 "atomic"])
def test_no_format_prints_a_secret_unless_asked(image, fmt, tmp_path):
    root, name = image
    out = tmp_path / f"report.{fmt}"
    r = imgscan("scan", name, "--format", f"{fmt}={out}", "--packages", root=root)
    assert r.code == 0, r.err
    text = out.read_text() + r.out + r.err
    for secret in (GH, SLACK_HOOK.rsplit("/", 1)[1], DB_PASS):
        assert secret not in text, (fmt, secret[:4])
    if fmt == "json":
        shown = imgscan("scan", name, "--format", "json", "--show-secrets", root=root).out
        assert GH in shown


def test_rootless_scan_reports_the_same_setuid_files_as_root(image, as_nobody):
    root, name = image
    as_root = scan_json(root, name, "--analyzers", "permissions")
    work, run = as_nobody
    layout = build(__import__("pathlib").Path(work))
    subprocess.run(["chmod", "-R", "a+rX", layout], check=True)
    store = os.path.join(work, "store")
    p = run("pull", f"oci:{layout}:v1", "--root", store)
    assert p.returncode == 0, p.stderr
    p = run("scan", "localhost/layout:v1", "--format", "json", "--analyzers", "permissions",
            "--root", store)
    assert p.returncode == 0, p.stderr
    rootless = json.loads(p.stdout)
    validate_report(rootless)

    # nobody's copy on disk has nobody's owner; the findings come from the tar headers
    def setuid_rows(doc):
        return sorted((f["rule_id"], f["location"]["path"], f["evidence"])
                      for f in doc["findings"] if f["rule_id"].startswith("perm/set"))

    assert setuid_rows(rootless) == setuid_rows(as_root) and setuid_rows(as_root)
    assert rootless["facts"].get("setuid") == as_root["facts"].get("setuid")


def test_a_huge_directory_is_scanned_in_bounded_memory(tmp_path):
    """Entries are streamed from the walk to the workers: memory does not grow with the
    number of files (the old list of DirEntry objects cost ~800 bytes per entry)."""
    big = tmp_path / "rootfs" / "d"
    big.mkdir(parents=True)
    for i in range(120_000):
        os.close(os.open(big / f"f{i:07d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    (big / "f0000001.txt").write_text(f"GITHUB_TOKEN={GH}\n")
    out = tmp_path / "r.json"
    p = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "imgscan", "scan",
                        f"dir:{tmp_path / 'rootfs'}", "--analyzers", "secrets", "--format",
                        "json", "-o", str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": SRC})
    assert p.returncode == 0, p.stderr
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    assert peak_kb < 90_000, peak_kb  # 120k entries held at once would cost ~100 MB more
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert [f["location"]["path"] for f in doc["findings"]] == ["/d/f0000001.txt"]
