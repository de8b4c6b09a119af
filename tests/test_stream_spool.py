"""Issue 15 item 4: a streamed scan of a zeros bomb costs no disk. A wanted file above the
in-memory bound is spooled sparse (zeros are holes), and a file above the streamed scan's
per-file cap is not spooled at all: a warning names it."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile

import pytest

from clihelp import imgscan
from imagebuild import ImageSpec, StreamedLayer, write_oci_layout
from imgscan.analyzers import stream
from imgscan.analyzers.interface import AnalysisResult, Analyzer, FileInfo, FileInput
from imgscan.layers.blob import BlobLayer
from imgscan.model import Finding, LayerRef, Location, Severity

GIB = 1 << 30


class _Probe(Analyzer):
    """Wants jars; records what the spool costs on disk while it reads the file."""

    name = "probe"
    version = 1

    def required(self, info: FileInfo) -> bool:
        return info.path.endswith(".jar")

    def analyze(self, file: FileInput) -> AnalysisResult:
        with file.open() as f:
            st = os.fstat(f.fileno())
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            tail = f.read()
        return AnalysisResult(findings=[Finding(
            rule_id="probe", category="test", severity=Severity.INFO, title="probe",
            location=Location(path=file.info.abspath),
            properties={"size": st.st_size, "disk": st.st_blocks * 512,
                        "head": head.hex(), "tail": tail.hex()})])


def _bomb(make_image, size: int):
    img = make_image([StreamedLayer(b"", files=[("app/big.jar", size, b"PK\3\4")])])
    return BlobLayer(img, img.layers[0], LayerRef(0, img.layers[0].diff_id, ""))


def test_a_zeros_bomb_is_spooled_sparse(make_image, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    layer = _bomb(make_image, GIB)
    assert layer.size < (1 << 20)  # a 1 GiB file in a layer of a few KiB
    out = stream.analyze_layer(layer, [_Probe()], lambda info: False)
    props = out.results["probe"]["app/big.jar"].findings[0].properties
    assert props["size"] == GIB and props["head"] == "504b0304" and props["tail"] == "00" * 4
    assert props["disk"] < (1 << 20), props  # holes: the zeros took no disk
    assert not glob.glob(str(tmp_path / "imgscan-spool-*"))


def test_a_file_above_the_cap_is_not_spooled_and_a_warning_says_so(make_image, monkeypatch,
                                                                    tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(stream, "MAX_SPOOL", 64 << 20)
    layer = _bomb(make_image, 65 << 20)
    out = stream.analyze_layer(layer, [_Probe()], lambda info: False)
    (r,) = out.results["probe"].values()
    assert not r.findings  # never given to the analyzer
    (w,) = r.warnings
    assert w.path == "/app/big.jar" and "per-file cap" in w.message
    assert str(65 << 20) in w.message and "--keep" in w.message
    assert out.calls.get("probe", 0) == 0


def test_a_streamed_scan_of_a_bomb_fits_a_tiny_tmpdir(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs (CI runs as root)")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(tmp)], check=True)
    try:
        layout = str(tmp_path / "layout")
        os.makedirs(layout)
        bomb = StreamedLayer(b"", files=[("usr/lib/app.jar", 2 * GIB, b"PK\3\4"),
                                         ("var/lib/rpm/Packages", 256 << 20, b"")])
        write_oci_layout(layout, [ImageSpec([bomb], ref_name="v1")])
        r = imgscan("scan", f"oci:{layout}:v1", "--format", "json", "--fail-on", "none",
                    root=str(tmp_path / "store"), env={"TMPDIR": str(tmp)}, timeout=600)
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        messages = " ".join(w["message"] for w in doc["warnings"])
        assert "No space" not in messages and "Errno" not in messages, messages
        assert os.listdir(tmp) == []
    finally:
        subprocess.run(["umount", str(tmp)], check=True)
