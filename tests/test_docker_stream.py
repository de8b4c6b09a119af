"""docker-daemon: the save stream analyzed as it arrives, against an Engine stand-in on a Unix
socket that serves real save tars built here by hand — both of Docker's shapes, members in
Docker's lexical order (layers before the config and manifest.json, not in image order), a
repeated layer — and tampered ones. The real dockerd runs in test_docker_daemon.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import cstorage_fixtures as cf
from imagebuild import ImageSpec, Layer, write_docker25_archive
from imgscan import api
from imgscan.cli import main
from imgscan.store.store import Store

NAME = "example.com/stream:1"


def _image() -> ImageSpec:
    l1, l2 = cf._layers()
    # l1 again on top: a repeated layer (Docker sends its bytes once)
    return ImageSpec([Layer(l1.tar, None, "base"), Layer(l2.tar, None, "app"),
                      Layer(l1.tar, None, "base again")])


def inspect_of(spec: ImageSpec) -> dict[str, Any]:
    return {"Id": "sha256:" + hashlib.sha256(spec.config_json()).hexdigest(),
            "RepoTags": [NAME], "Size": 1,
            "RootFS": {"Type": "layers", "Layers": [lay.diff_id for lay in spec.layers]}}


class FakeEngine:
    """Answers /_ping, inspect and /get for one image; counts /get requests. ``cut`` sends
    only that many bytes of the stream, then hangs up (a daemon that stops)."""

    def __init__(self, path: str, inspect: dict[str, Any], stream: bytes,
                 cut: int | None = None) -> None:
        self.path, self.inspect, self.stream, self.cut = path, inspect, stream, cut
        self.gets = 0
        self.srv = cf.serve_unix(path, self._answer).srv  # type: ignore[attr-defined]

    def _answer(self, conn: socket.socket, url: str) -> None:
        head = "HTTP/1.1 200 OK\r\nConnection: close\r\nApi-Version: 1.41\r\n"
        if url == "/_ping":
            body = b"OK"
        elif url.endswith("/json"):
            body = json.dumps(self.inspect).encode()
        elif url.endswith("/get"):
            self.gets += 1
            body = self.stream
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n"
                         b"Content-Length: 0\r\n\r\n")
            return
        conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            conn.sendall(body[: self.cut] if url.endswith("/get") and self.cut else body)

    def close(self) -> None:
        self.srv.close()
        os.unlink(self.path)


@pytest.fixture
def engine(monkeypatch, tmp_path) -> Iterator[Callable[..., FakeEngine]]:  # type: ignore[no-untyped-def]
    made: list[FakeEngine] = []
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # every temp file of the scan lands here

    def start(inspect: dict[str, Any], stream: bytes, cut: int | None = None) -> FakeEngine:
        path = tempfile.mktemp(prefix="eng", suffix=".sock", dir="/tmp")
        e = FakeEngine(path, inspect, stream, cut)
        made.append(e)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        return e

    yield start
    for e in made:
        e.close()
    assert os.listdir(tmp) == []  # no temp file left behind


def _archive(tmp_path: Any, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    path = str(tmp_path / "img.tar")
    with open(path, "wb") as f:
        f.write(cf.save_tar(members))
    return path


def _layers(report: Any) -> list[tuple[Any, ...]]:
    return [(x.index, x.diff_id, x.created_by, x.digest, x.size, x.entries)
            for x in report.layers]


def _docker25(tmp_path: Any, spec: ImageSpec) -> bytes:
    path = str(tmp_path / "d25.tar")
    write_docker25_archive(path, [(spec, [NAME])])
    with tarfile.open(path) as tf:
        return cf.save_tar([(ti, tf.extractfile(ti).read() if ti.isreg() else b"")  # type: ignore[union-attr]
                     for ti in tf.getmembers()])


@pytest.mark.parametrize("shape", ["legacy", "docker25"])
def test_stream_scan_equals_archive_scan(shape, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Layers out of image order, one of them repeated: the same packages, findings (ids,
    paths, layers) and layer table as a scan of the same tar as a docker-archive."""
    spec = _image()
    stream = cf.save_tar(cf.legacy_members(spec, [NAME])) if shape == "legacy" else \
        _docker25(tmp_path, spec)
    archive = _archive(tmp_path, [])
    with open(archive, "wb") as f:
        f.write(stream)
    engine(inspect_of(spec), stream)
    a = api.scan(f"docker-daemon:{NAME}", store=Store(str(tmp_path / "a")))
    b = api.scan(f"docker-archive:{archive}", store=Store(str(tmp_path / "b")))
    assert cf._keyed(a) == cf._keyed(b)
    assert _layers(a) == _layers(b)
    assert [x.created_by for x in a.layers] == ["base", "app", "base again"]
    assert (a.image.id, a.image.digest, a.image.names) == (b.image.id, b.image.digest,
                                                           b.image.names)
    # the repeated layer is named by both of its positions, each with its own LayerRef
    refs = {f.location.layer for f in a.findings if f.location.layer}
    assert {(r.index, r.created_by) for r in refs} >= {(0, "base"), (2, "base again")}
    assert a.findings and a.packages == b.packages


def _gzip_members(spec: ImageSpec, tamper: bool = False
                  ) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Docker 25+ with the containerd image store: layers stay compressed blobs named by
    their own digest, so a layer's diff_id is known only once its bytes have passed."""
    import gzip

    config = spec.config_json()
    members = [cf.tar_file("blobs/sha256/" + hashlib.sha256(config).hexdigest(), config)]
    names: list[str] = []
    for lay in spec.layers:
        blob = gzip.compress(lay.tar, mtime=0)
        name = "blobs/sha256/" + hashlib.sha256(blob).hexdigest()
        if name not in names:
            members.append(cf.tar_file(name, gzip.compress(lay.tar + b"\0" * 512, mtime=0)
                                       if tamper else blob))
        names.append(name)
    doc = [{"Config": members[0][0].name, "RepoTags": [NAME], "Layers": names}]
    return [*members, cf.tar_file("manifest.json", json.dumps(doc).encode()),
            cf.tar_file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]


def test_compressed_blobs(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = _image()
    stream = cf.save_tar(_gzip_members(spec))
    archive = str(tmp_path / "gz.tar")
    with open(archive, "wb") as f:
        f.write(stream)
    engine(inspect_of(spec), stream)
    a = api.scan(f"docker-daemon:{NAME}", store=Store(str(tmp_path / "a")))
    b = api.scan(f"docker-archive:{archive}", store=Store(str(tmp_path / "b")))
    assert cf._keyed(a) == cf._keyed(b) and _layers(a) == _layers(b) and a.findings
    assert a.layers[0].digest != a.layers[0].diff_id  # the blob's own digest


def test_compressed_blob_not_its_name(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = _image()
    engine(inspect_of(spec), cf.save_tar(_gzip_members(spec, tamper=True)))
    r = CliRunner().invoke(main, ["scan", f"docker-daemon:{NAME}", "--root",
                                  str(tmp_path / "s")])
    assert r.exit_code == 3 and "digest mismatch" in r.output, r.output


def test_warm_rescan_asks_only_inspect(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = _image()
    e = engine(inspect_of(spec), cf.save_tar(cf.legacy_members(spec, [NAME])))
    root = str(tmp_path / "s")
    cold = api.scan(f"docker-daemon:{NAME}", store=Store(root))
    assert e.gets == 1
    warm = api.scan(f"docker-daemon:{NAME}", store=Store(root))
    assert e.gets == 1  # answered from the report cache: no /get request
    assert cf._keyed(warm) == cf._keyed(cold) and _layers(warm) == _layers(cold)
    e.inspect = {**e.inspect, "RepoTags": [NAME, "other:2"]}  # the image changed: ask again
    api.scan(f"docker-daemon:{NAME}", store=Store(root))
    assert e.gets == 2


def _tampered(kind: str) -> tuple[dict[str, Any], bytes, str]:
    spec = _image()
    inspect = inspect_of(spec)
    members = cf.legacy_members(spec, [NAME])
    if kind == "layer-bytes":  # a layer tar that is not the one its diff_id names
        i = next(k for k, (ti, _) in enumerate(members) if ti.name.endswith("/layer.tar")
                 and ti.isreg())
        other = cf._layers()[1].tar.replace(b"AKIAIOSFODNN7EXAMPLE", b"AKIAIOSFODNN7EXAMPLF")
        members[i] = cf.tar_file(members[i][0].name, other)
        return inspect, cf.save_tar(members), "not to its diff_id"
    if kind == "no-manifest":
        return inspect, cf.save_tar([m for m in members if m[0].name != "manifest.json"]), \
            "no manifest.json"
    if kind == "absent-layer":
        doc = json.loads(next(d for ti, d in members if ti.name == "manifest.json"))
        doc[0]["Layers"][1] = "f" * 64 + "/layer.tar"
        members = [m for m in members if m[0].name != "manifest.json"]
        members.append(cf.tar_file("manifest.json", json.dumps(doc).encode()))
        return inspect, cf.save_tar(members), "not in the stream"
    if kind == "config-not-id":
        return {**inspect, "Id": "sha256:" + "e" * 64}, cf.save_tar(members), \
            "is not the image"
    if kind == "config-bytes":  # named by the image id, but other bytes
        i = next(k for k, (ti, _) in enumerate(members) if ti.name.endswith(".json")
                 and "/" not in ti.name and ti.name != "manifest.json")
        members[i] = cf.tar_file(members[i][0].name, members[i][1].replace(b"base", b"bass"))
        return inspect, cf.save_tar(members), "not to the image id"
    assert kind == "cut"
    return inspect, cf.save_tar(members), "broke off"


@pytest.mark.parametrize("kind", ["layer-bytes", "no-manifest", "absent-layer",
                                  "config-not-id", "config-bytes", "cut"])
def test_tampered_stream(kind, engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One line, exit 3; nothing cached (no layer result, index or report), nothing stored."""
    inspect, stream, want = _tampered(kind)
    engine(inspect, stream, cut=len(stream) * 2 // 3 if kind == "cut" else None)
    root = str(tmp_path / "s")
    r = CliRunner().invoke(main, ["scan", f"docker-daemon:{NAME}", "--root", root])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 3 and len(lines) == 1, r.output
    assert lines[0].startswith("imgscan: error: docker-daemon") and want in lines[0], lines
    cached = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "cache"))
              for f in fs]
    assert cached == []
    assert not os.path.isdir(os.path.join(root, "images")) or Store(root).images() == []
