"""Shared fixtures: a fresh store per test, and images built by hand (tests/imagebuild.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from imagebuild import ImageSpec, Layer, write_oci_layout
from imgscan.images.interface import BlobSource, SourceImage
from imgscan.store.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")


class LayoutDirSource(BlobSource):
    """The smallest blob source over a layout written by imagebuild (first manifest)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.description = f"test layout {root}"

    def open_blob(self, digest: str):  # type: ignore[no-untyped-def]
        return open(os.path.join(self.root, "blobs", "sha256", digest.split(":")[1]), "rb")


def layout_source_image(root: str, n: int = 0) -> SourceImage:
    with open(os.path.join(root, "index.json")) as f:
        desc = json.load(f)["manifests"][n]
    src = LayoutDirSource(root)
    with src.open_blob(desc["digest"]) as f:
        return SourceImage(src, f.read(), desc["digest"], names=[])


@pytest.fixture
def store(tmp_path) -> Store:  # type: ignore[no-untyped-def]
    return Store(str(tmp_path / "store"))


@pytest.fixture
def make_image(tmp_path) -> Callable[..., SourceImage]:  # type: ignore[no-untyped-def]
    """make_image(layers, **spec) -> SourceImage over a fresh OCI layout in tmp_path."""
    counter = {"n": 0}

    def make(layers: Sequence[Layer], **spec: object) -> SourceImage:
        counter["n"] += 1
        root = str(tmp_path / f"layout{counter['n']}")
        os.makedirs(root)
        write_oci_layout(root, [ImageSpec(list(layers), **spec)])  # type: ignore[arg-type]
        return layout_source_image(root)

    return make


def tree_of(root: str) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, size, link target) of everything under root."""
    import stat

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            kind = stat.S_IFMT(st.st_mode)
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_size if stat.S_ISREG(st.st_mode) else 0,
                        os.readlink(full) if stat.S_ISLNK(st.st_mode) else "")
    return out


@pytest.fixture
def as_nobody():
    """Run imgscan as the unprivileged user nobody. The interpreter may live under /root
    (pyenv), so /root gets search permission (o+x) for the test and is restored after."""
    st = os.stat("/root")
    if not st.st_mode & 0o001:
        os.chmod("/root", st.st_mode | 0o001)
    work = tempfile.mkdtemp(prefix="imgscan-rootless-")
    os.chmod(work, 0o777)
    from clihelp import src_for_other_users

    env = {**os.environ, "PYTHONPATH": src_for_other_users(), "HOME": work}

    def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                               "--clear-groups",
                               "--inh-caps=-all", sys.executable, "-m", "imgscan", *args],
                              capture_output=True, text=True, timeout=120,
                              env={**env, "PATH": path or env["PATH"]})

    try:
        yield work, run
    finally:
        os.chmod("/root", st.st_mode)
        for line in open("/proc/self/mountinfo").readlines():
            if line.split()[4].startswith(work):
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        shutil.rmtree(work, ignore_errors=True)
