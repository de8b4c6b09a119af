"""Shared by the containers/storage and docker-daemon tests: the test image, a private podman
store holding it, and how reports are compared."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from imagebuild import D, Entry, F, ImageSpec, Layer, layer_tar, write_docker_archive
from imgscan.cstorage.conf import StoreConfig
from imgscan.cstorage.store import ContainersStorage
from imgscan.mount.overlay import mounted_paths, unmount

NAME = "example.com/demo:1"


def _layers() -> list[Layer]:
    l1 = Layer(layer_tar([
        D("etc"), F("etc/os-release", 'ID=debian\nVERSION_ID="12"\n'),
        D("usr"), D("usr/bin"), F("usr/bin/su", b"x" * 10, mode=0o4755),
        Entry("usr/bin/su2", "hardlink", linkname="usr/bin/su", mode=0o4755),
        F("etc/secret.txt", "x"),
    ]))
    l2 = Layer(layer_tar([
        D("etc"), F("etc/.wh.secret.txt"), D("opt"), F("opt/.wh..wh..opq"),
        F("opt/a", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"),
    ]))
    return [l1, l2]


@contextlib.contextmanager
def podman_store(tmp_path: Any) -> Iterator[Any]:
    # podman refuses a run root longer than 50 characters: a short one beside tmp_path
    short = tempfile.mkdtemp(prefix="cs", dir="/tmp")
    root, run = str(tmp_path / "root"), os.path.join(short, "run")
    archive = str(tmp_path / "img.tar")
    write_docker_archive(archive, [(ImageSpec(_layers()), [NAME])])

    def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", "--root", root, "--runroot", run,
                               "--storage-driver", "overlay", *args],
                              capture_output=True, text=True, check=check, timeout=120)

    loaded = podman("load", "-i", archive, check=False)
    assert loaded.returncode == 0, loaded.stderr
    try:
        yield ContainersStorage(StoreConfig("", root, run)), podman, archive
    finally:
        _cleanup(str(tmp_path), short)


def _cleanup(tmp: str, short: str) -> None:
    for p in sorted((p for p in mounted_paths() if p.startswith(tmp)),
                    key=len, reverse=True):
        unmount(p, detach=True)
    shutil.rmtree(short, ignore_errors=True)


def _keyed(report):  # type: ignore[no-untyped-def]
    return ([(f.id, f.location.path, f.location.layer, f.location.hidden_by)
             for f in report.findings],
            [(p.name, p.version, p.type, p.layer, p.locations) for p in report.packages])




# -- save streams as Docker writes them ----------------------------------------------------
def save_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A tar of ``members`` in lexical name order, as Docker writes a save stream."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in sorted(members, key=lambda m: m[0].name):
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return out.getvalue()


def tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    return ti, data


def legacy_members(spec: ImageSpec, tags: list[str]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Docker 20.10's save layout: ``<v1id>/{VERSION,json,layer.tar}``, a repeated layer's
    layer.tar a symlink to the first copy, ``<config>.json``, manifest.json, repositories."""
    config = spec.config_json()
    members = [tar_file(hashlib.sha256(config).hexdigest() + ".json", config)]
    first: dict[str, str] = {}
    names = []
    for i, lay in enumerate(spec.layers):
        v1 = hashlib.sha256(f"v1 {i}".encode()).hexdigest()
        members += [tar_file(f"{v1}/VERSION", b"1.0"), tar_file(f"{v1}/json", b'{"id":"%s"}' %
                                                          v1.encode())]
        if lay.diff_id in first:
            link = tarfile.TarInfo(f"{v1}/layer.tar")
            link.type, link.linkname = tarfile.SYMTYPE, f"../{first[lay.diff_id]}/layer.tar"
            members.append((link, b""))
        else:
            first[lay.diff_id] = v1
            members.append(tar_file(f"{v1}/layer.tar", lay.tar))
        names.append(f"{v1}/layer.tar")
    manifest = [{"Config": members[0][0].name, "RepoTags": tags, "Layers": names}]
    members.append(tar_file("manifest.json", json.dumps(manifest).encode()))
    members.append(tar_file("repositories", b"{}"))
    return members


def serve_unix(path: str, handler: Any) -> threading.Thread:
    """A one-request-per-connection server on Unix socket ``path``: ``handler(conn, url)``
    answers each request (an Engine stand-in). ``thread.srv.close()`` stops it."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                handler(conn, data.split(b" ")[1].decode() if b" " in data else "")

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    t.srv = srv  # type: ignore[attr-defined]
    return t
