#!/usr/bin/env python3
"""Build imgscan's bundled sample image from material on this machine, offline.

The image is a small but realistic Debian-like image in an OCI layout, made of this
machine's own dpkg database, os-release, ELF binaries and Python package metadata, plus a
few things a scanner must catch: a setuid binary no package owns, a world-writable
directory, a secret in a file that a later layer deleted (still readable in the image), a
password in the config's environment, root as the user, and an exposed SSH port.

    python3 scripts/make_sample_image.py sample/layout
    imgscan pull oci:sample/layout:demo
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import string
import sys

# the image builder is a test helper, kept with the tests (not in the installed package)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from imagebuild import (
    WH,
    D,
    F,
    ImageSpec,
    L,
    Layer,
    layer_tar,
    write_oci_layout,
)


def machine_file(path: str, mode: int | None = None, as_path: str | None = None) -> F:
    with open(path, "rb") as f:
        data = f.read()
    st = os.stat(path)
    return F((as_path or path).lstrip("/"), data,
             mode=mode if mode is not None else st.st_mode & 0o7777)


def dpkg_lists(packages: list[str]) -> list:
    out = []
    for pkg in packages:
        for path in glob.glob(f"/var/lib/dpkg/info/{pkg}.list") + glob.glob(
                f"/var/lib/dpkg/info/{pkg}:*.list"):
            out.append(machine_file(path))
    return out


def fake_token(prefix: str, n: int, seed: int) -> str:
    """A syntactically valid but random token: nothing real is ever put in the sample."""
    rnd = random.Random(seed)
    return prefix + "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))


def build(dest: str) -> None:
    os_release = ("/usr/lib/os-release" if os.path.exists("/usr/lib/os-release")
                  else "/etc/os-release")
    base = [
        D("etc"), D("usr/lib"), D("var/lib/dpkg/info"), D("tmp", mode=0o1777),
        machine_file(os_release, as_path="usr/lib/os-release"),
        L("etc/os-release", "../usr/lib/os-release"),
        machine_file("/var/lib/dpkg/status"),
        *dpkg_lists(["login", "passwd", "mount", "util-linux", "coreutils", "libc6"]),
        machine_file("/etc/passwd"),
    ]
    for binary in ("/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/ls",
                   "/usr/bin/true"):
        if os.path.exists(binary):
            base.append(machine_file(binary))
    libc = glob.glob("/usr/lib/x86_64-linux-gnu/libc.so.6") + glob.glob("/lib/*/libc.so.6")
    if libc:
        base.append(machine_file(os.path.realpath(libc[0]), as_path=libc[0].lstrip("/")))

    app = [D("app"), D("srv/upload", mode=0o777)]
    aws_id = "AKIA" + fake_token("", 16, 1).upper()
    app.append(F("app/.env", f"GITHUB_TOKEN={fake_token('ghp_', 36, 2)}\n"
                             f"AWS_ACCESS_KEY_ID={aws_id}\n"))
    app.append(F("app/settings.py", "DEBUG = False\nALLOWED_HOSTS = ['*']\n"))
    if os.path.exists("/usr/bin/true"):
        app.append(machine_file("/usr/bin/true", mode=0o4755, as_path="usr/local/bin/helper"))
    site = sorted(glob.glob("/usr/lib/python3/dist-packages/*.dist-info"))[:6]
    for dist in site:
        meta = os.path.join(dist, "METADATA")
        if os.path.exists(meta):
            app.append(machine_file(meta, as_path="usr/lib/python3/dist-packages/"
                                    + os.path.basename(dist) + "/METADATA"))

    cleanup = [WH("app/.env")]
    spec = ImageSpec(
        layers=[
            Layer(layer_tar(base), "gzip", "COPY rootfs / # debian base from this machine"),
            Layer(layer_tar(app), "gzip", "ADD https://example.com/app.tar.gz /app"),
            Layer(layer_tar(cleanup), "zstd", "RUN rm /app/.env"),
        ],
        config={
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin",
                    "DB_PASSWORD=" + fake_token("", 20, 3)],
            "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}},
            "Cmd": ["/app/run"],
            "Labels": {"org.opencontainers.image.title": "imgscan sample"},
        },
        ref_name="demo",
    )
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    write_oci_layout(dest, [spec])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", nargs="?", default="sample/layout")
    args = ap.parse_args()
    build(args.dest)
    print(f"sample image written to {args.dest} (reference: oci:{args.dest}:demo)")


if __name__ == "__main__":
    main()
