"""The Debian image of the scan benchmark: a debootstrap minbase bookworm root filesystem split
into four layers, plus a fifth layer of pip-installed Python distributions.

debootstrap needs the network (the Debian mirror of this machine's apt sources) the first
time; the root filesystem is kept under bench/.work/ afterwards.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys

import common
from common import LayerSpec

ROOTFS = os.path.join(common.WORK, "rootfs-bookworm")
PIPROOT = os.path.join(common.WORK, "pip-layer")
LAYOUT = os.path.join(common.WORK, "debian-oci")
ARCHIVE = os.path.join(common.WORK, "debian-docker-archive.tar")
TAG = "bookworm"
# Pure-Python and binary wheels this machine already has installed: copied file by file from
# their RECORD, so the layer is what `pip install --target` would have written.
PIP_DISTS = ["click", "tabulate", "packaging", "urllib3", "jsonschema",
             "jsonschema-specifications", "referencing", "rpds-py", "attrs", "pyelftools",
             "zstandard", "packageurl-python", "pyahocorasick", "idna", "certifi", "requests",
             "charset-normalizer", "six", "python-dateutil", "pyyaml"]
SITE = "usr/local/lib/python3.11/site-packages"


def mirror() -> str:
    """The Debian mirror named in this machine's apt sources (deb822 or one-line form)."""
    for d in ("/etc/apt/sources.list.d", "/etc/apt"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not (name.endswith(".sources") or name.endswith(".list")):
                continue
            with open(os.path.join(d, name)) as f:
                for line in f:
                    parts = line.split()
                    if parts[:1] == ["URIs:"] and "security" not in parts[1]:
                        return parts[1]
                    if parts[:1] == ["deb"] and "security" not in line:
                        return next(p for p in parts[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def ensure_rootfs() -> None:
    if os.path.exists(os.path.join(ROOTFS, "var/lib/dpkg/status")):
        return
    shutil.rmtree(ROOTFS, ignore_errors=True)
    print(f"debootstrap --variant=minbase bookworm from {mirror()} ...", file=sys.stderr)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", ROOTFS, mirror()],
                   check=True, capture_output=True)


def ensure_pip_layer() -> list[str]:
    """Copy the listed distributions' files into PIPROOT/SITE; return 'name==version's."""
    site = os.path.join(PIPROOT, SITE)
    have = []
    if os.path.exists(site):
        shutil.rmtree(PIPROOT)
    os.makedirs(site)
    for name in PIP_DISTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        base = str(dist.locate_file(""))
        for f in dist.files or []:
            rel = str(f)
            if rel.startswith("..") or os.path.isabs(rel) or "__pycache__" in rel:
                continue
            src = os.path.join(base, rel)
            if not os.path.isfile(src):
                continue
            dst = os.path.join(site, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
        have.append(f"{dist.metadata['Name']}=={dist.version}")
    return have


def build() -> tuple[str, str, str, dict]:
    """(OCI layout, tag, docker-archive path, summary), built once."""
    ensure_rootfs()
    if not os.path.exists(os.path.join(LAYOUT, ".summary.json")):
        ensure_pip_layer()
    top = sorted(n for n in os.listdir(ROOTFS) if n not in ("usr", "var"))
    layers = [
        LayerSpec(ROOTFS, top, created_by="debootstrap: top-level directories and links"),
        LayerSpec(ROOTFS, ["usr"], exclude=["usr/share"], created_by="debootstrap: /usr"),
        LayerSpec(ROOTFS, ["usr/share"], created_by="debootstrap: /usr/share"),
        LayerSpec(ROOTFS, ["var"], created_by="debootstrap: /var (dpkg database)"),
        LayerSpec(PIPROOT, [SITE], created_by="pip install " + " ".join(PIP_DISTS)),
    ]
    summary = common.build_oci_layout(LAYOUT, TAG, layers)
    common.docker_archive(LAYOUT, TAG, ARCHIVE, f"bench/debian:{TAG}")
    return LAYOUT, TAG, ARCHIVE, summary


if __name__ == "__main__":
    print(build())
