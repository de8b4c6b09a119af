"""Scanning straight from layer blobs (issue 13): the same report as a scan of the stored
image, nothing imported, a warm re-scan reads no blob, hard links and large files."""

from __future__ import annotations

import glob
import json
import os

import pytest

import registry_fixtures as rf
from clihelp import imgscan
from imagebuild import D, F, H, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.analyzers import stream
from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.fileinfo import FileKind
from imgscan.layers.blob import BlobLayer
from imgscan.model import Finding, LayerRef, Location, Severity
from imgscan.reports import validate_report
from test_scan_e2e import build

VOLATILE = ("created", "timings")


def _comparable(doc: dict) -> dict:
    doc = {k: v for k, v in doc.items() if k not in VOLATILE}
    doc["image"] = {k: v for k, v in doc["image"].items() if k in ("id", "digest", "os")}
    doc["layers"] = [{k: v for k, v in lay.items() if k not in ("size",)}
                     for lay in doc["layers"]]
    return doc


def _scan(ref: str, root: str, *extra: str) -> dict:
    r = imgscan("scan", ref, "--format", "json", *extra, root=root)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    validate_report(doc)
    return doc


def test_streamed_scan_equals_stored_scan_and_imports_nothing(tmp_path):
    layout = build(tmp_path)
    streamed_root, stored_root = str(tmp_path / "s1"), str(tmp_path / "s2")
    streamed = _scan(f"oci:{layout}:v1", streamed_root)
    assert json.loads(imgscan("images", "--format", "json", root=streamed_root).out) == []
    assert not glob.glob(os.path.join(streamed_root, "layers", "*"))
    assert imgscan("pull", f"oci:{layout}:v1", root=stored_root).code == 0
    stored = _scan("localhost/layout:v1", stored_root)
    assert _comparable(streamed) == _comparable(stored)
    # hidden secret, with the layer that hid it, from the stream as from the store
    gh = [f for f in streamed["findings"] if f["rule_id"] == "github-pat"]
    assert len(gh) == 1 and gh[0]["location"]["hidden_by"]["index"] == 1


def test_keep_imports_the_image(tmp_path):
    layout = build(tmp_path)
    root = str(tmp_path / "store")
    doc = _scan(f"oci:{layout}:v1", root, "--keep")
    imgs = json.loads(imgscan("images", "--format", "json", root=root).out)
    assert [i["names"] for i in imgs] == [["localhost/layout:v1"]]
    assert doc["image"]["id"] == imgs[0]["id"]


def test_a_warm_rescan_reads_no_layer_blob(tmp_path):
    layout = build(tmp_path)
    root = str(tmp_path / "store")
    cold = _scan(f"oci:{layout}:v1", root)
    manifest = json.load(open(os.path.join(layout, "index.json")))["manifests"][0]
    mpath = os.path.join(layout, "blobs", *manifest["digest"].split(":"))
    for lay in json.load(open(mpath))["layers"]:
        os.unlink(os.path.join(layout, "blobs", *lay["digest"].split(":")))
    reports = os.path.join(root, "cache", "reports")
    assert glob.glob(os.path.join(reports, "*.pickle"))  # the assembled report is cached
    import shutil

    shutil.rmtree(reports)  # without it: per-layer results and entry indexes alone
    warm = _scan(f"oci:{layout}:v1", root)
    assert _comparable(warm) == _comparable(cold)
    again = _scan(f"oci:{layout}:v1", root)  # from the report cache
    assert _comparable(again) == _comparable(cold)
    other = _scan(f"oci:{layout}:v1", root, "--analyzers", "npm,python")  # another key
    assert {p["name"] for p in other["packages"]} == {"@scope/kept", "gone-by-opaque"}


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("reg"))
    layout = os.path.join(work, "img")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([
        Layer(layer_tar([D("usr/bin"), F("usr/bin/helper", b"\x7fELF", mode=0o4755)])),
        Layer(layer_tar([F("app/.env", "GITHUB_TOKEN=ghp_" + "a1B2c3D4e5" * 3 + "xYz123\n")])),
    ], ref_name="latest")])
    with rf.run_registry(work) as r:
        rf.skopeo_push(layout, f"{r.host}/team/app:1.0")
        yield r


def test_registry_rescan_makes_no_blob_request(reg, tmp_path):
    ref, root = f"docker://{reg.host}/team/app:1.0", str(tmp_path / "store")
    blobs = lambda: [x for x in reg.requests() if "/blobs/" in x]  # noqa: E731
    before = len(blobs())
    cold = _scan(ref, root, "--tls-verify=false")
    fetched = blobs()[before:]
    assert fetched  # config and both layers
    assert {f["rule_id"] for f in cold["findings"]} >= {"perm/setuid-unowned"}
    mid = len(blobs())
    warm = _scan(ref, root, "--tls-verify=false")
    again = blobs()[mid:]
    config = cold["image"]["id"].split(":")[1]
    assert again and all(config in line for line in again), again  # the config only
    assert _comparable(warm) == _comparable(cold)


class _Grab(Analyzer):
    """Wants every regular file (hard links too); records its bytes and open() length."""

    name = "grab"
    version = 1

    def required(self, info: FileInfo) -> bool:
        return True

    def analyze(self, file: FileInput) -> AnalysisResult:
        with file.open() as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
        head = file.read(8).decode("latin-1")
        return AnalysisResult(findings=[Finding(
            rule_id="grab", category="test", severity=Severity.INFO, title=head,
            location=Location(path=file.info.abspath), properties={"size": size})])


def _layer_of(make_image, entries) -> BlobLayer:
    img = make_image([Layer(layer_tar(entries))])
    return BlobLayer(img, img.layers[0], LayerRef(0, img.layers[0].diff_id, ""))


@pytest.mark.parametrize("recent", [0, stream.RECENT_BYTES])  # second walk, or kept bytes
def test_hard_links_get_their_targets_bytes(make_image, monkeypatch, recent):
    monkeypatch.setattr(stream, "RECENT_BYTES", recent)
    walks = []
    real = BlobLayer.members
    monkeypatch.setattr(BlobLayer, "members", lambda self: walks.append(1) or real(self))
    layer = _layer_of(make_image, [F("a/target", "hello"), H("b/link", "a/target")])
    out = stream.analyze_layer(layer, [_Grab()], lambda info: False)
    titles = {p: r.findings[0].title for p, r in out.results["grab"].items()}
    assert titles == {"a/target": "hello", "b/link": "hello"}
    kinds = {e.path: e.kind for e in out.entries}
    assert kinds["b/link"] == FileKind.HARDLINK
    assert len(walks) == (2 if recent == 0 else 1)


def test_large_files_are_spooled_and_removed(make_image, monkeypatch, tmp_path):
    monkeypatch.setattr(stream, "MEMORY_BOUND", 1024)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = b"BIGFILE-" + os.urandom(100_000)
    layer = _layer_of(make_image, [F("big.bin", big), F("small", "tiny")])
    out = stream.analyze_layer(layer, [_Grab()], lambda info: info.path == "small")
    assert out.results["grab"]["big.bin"].findings[0].properties["size"] == len(big)
    assert out.results["grab"]["big.bin"].findings[0].title.startswith("BIGFILE-")
    assert out.captured == {"small": b"tiny"}
    assert not glob.glob(str(tmp_path / "imgscan-spool-*"))


def test_a_corrupt_layer_is_an_error_and_nothing_is_cached(tmp_path):
    layout = build(tmp_path)
    root = str(tmp_path / "store")
    manifest = json.load(open(os.path.join(layout, "index.json")))["manifests"][0]
    mpath = os.path.join(layout, "blobs", *manifest["digest"].split(":"))
    lay = json.load(open(mpath))["layers"][0]
    path = os.path.join(layout, "blobs", *lay["digest"].split(":"))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    r = imgscan("scan", f"oci:{layout}:v1", "--format", "json", root=root)
    assert r.code == 3, (r.code, r.err)
    assert not glob.glob(os.path.join(root, "cache", "*", "*"))


def test_a_streamed_scan_stays_in_bounded_memory(tmp_path):
    """A 100 MB file an analyzer wants is spooled, not held; 20,000 files are not listed in
    memory more than once: the whole scan stays under 150 MB of peak RSS."""
    import subprocess
    import sys

    from clihelp import SRC

    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    big = Layer(layer_tar([D("opt"), F("opt/big.jar", os.urandom(100 << 20))]),
                compression="zstd")
    many = Layer(layer_tar([F(f"srv/d{i // 500:02d}/f{i:05d}.txt", f"line {i}\n" * 20)
                            for i in range(20_000)]), compression="zstd")
    write_oci_layout(layout, [ImageSpec([big, many], ref_name="v1")])
    del big, many
    out = tmp_path / "r.json"
    p = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "imgscan", "scan",
                        f"oci:{layout}:v1", "--root", str(tmp_path / "store"), "--format",
                        "json", "-o", str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": SRC}, timeout=600)
    assert p.returncode == 0, p.stderr
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    assert peak_kb < 150_000, peak_kb
    doc = json.loads(out.read_text())
    validate_report(doc)
    assert doc["layers"][1]["entries"] >= 20_000


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_archives_are_streamed_too(tmp_path, kind):
    from imagebuild import tar_directory, write_docker_archive

    layers = [Layer(layer_tar([D("usr/bin"), F("usr/bin/helper", b"\x7fELF", mode=0o4755)])),
              Layer(layer_tar([F("app/.env", "GITHUB_TOKEN=ghp_" + "a1B2c3D4e5" * 3 +
                                 "xYz123\n")]), compression=None)]
    spec = ImageSpec(layers, ref_name="v1")
    if kind == "docker-archive":
        archive = str(tmp_path / "img.tar")
        write_docker_archive(archive, [(spec, ["app:v1"])])
        ref = f"docker-archive:{archive}"
    else:
        layout = str(tmp_path / "layout")
        os.makedirs(layout)
        write_oci_layout(layout, [spec])
        archive = str(tmp_path / "img-oci.tar")
        tar_directory(layout, archive)
        ref = f"oci-archive:{archive}:v1"
    root = str(tmp_path / "store")
    doc = _scan(ref, root)
    rules = {f["rule_id"] for f in doc["findings"]}
    assert {"perm/setuid-unowned", "github-pat"} <= rules
    assert json.loads(imgscan("images", "--format", "json", root=root).out) == []
