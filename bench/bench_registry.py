#!/usr/bin/env python3
"""Issue 9: imgscan against skopeo and podman on a local registry (Debian's
``docker-registry`` on 127.0.0.1, plain http): ``inspect`` (manifest + config, no layers) and
``pull`` (all layers).

Targets: ``imgscan inspect`` ≤ ``skopeo inspect``; ``imgscan pull`` ≤ 1.2x ``skopeo copy
docker://… oci:DIR``. Note that skopeo copy only stores the blobs, while imgscan pull (like
podman pull) also verifies diff_ids and extracts every layer into its store.

    python3 bench/bench_registry.py [--runs 5] [--image debian|system] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Contender, imgscan_cmd, imgscan_env, run_timed

INSPECT_TARGET = 1.0
PULL_TARGET = 1.2
RUNROOT = "/tmp/imgscan-bench-podman-run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    storage = os.path.join(work, "storage")
    os.makedirs(storage, exist_ok=True)
    cfg = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
           "storage": {"filesystem": {"rootdirectory": storage}},
           "http": {"addr": f"127.0.0.1:{port}"}}
    cfg_path = os.path.join(work, "registry.yml")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    with open(os.path.join(work, "registry.log"), "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", cfg_path], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def podman_base(d: str) -> list[str]:
    # podman refuses a runroot longer than 50 characters: keep it short, under /tmp.
    return ["podman", "--root", os.path.join(d, "root"), "--runroot", RUNROOT,
            "--storage-driver", "overlay"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="pull rounds (inspect: twice as many)")
    ap.add_argument("--image", choices=["debian", "system"], default="debian",
                    help="debian: the scan benchmark's image (240 MB); system: the pull "
                         "benchmark's image (1 GB)")
    ap.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = ap.parse_args()

    if args.image == "system":
        layout, tag, summary = common.system_image()
    else:
        import scanimage

        layout, tag, _archive, summary = scanimage.build()
    work = os.path.join(common.WORK, "registry-runs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = imgscan_env()
    proc, port = start_registry(work)
    try:
        return run(args, layout, tag, summary, work, env, port)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run(args: argparse.Namespace, layout: str, tag: str, summary: dict, work: str,
        env: dict[str, str], port: int) -> int:
    remote = f"127.0.0.1:{port}/bench/{args.image}:{tag}"
    docker_ref = f"docker://{remote}"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                    docker_ref], check=True, capture_output=True)
    # Correctness: the same digest from both inspects.
    mine = json.loads(subprocess.run(imgscan_cmd("inspect", docker_ref, "--tls-verify=false"),
                                     env=env, check=True, capture_output=True).stdout)
    theirs = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", docker_ref],
                                       check=True, capture_output=True).stdout)
    agree = ("same manifest digest and layer list"
             if mine.get("Digest") == theirs.get("Digest")
             and mine.get("Layers") == theirs.get("Layers") else
             f"DIFFERENT: imgscan {mine.get('Digest')} vs skopeo {theirs.get('Digest')}")

    inspect = [
        Contender("imgscan inspect", lambda: run_timed(
            imgscan_cmd("inspect", docker_ref, "--tls-verify=false"), env=env)),
        Contender("skopeo inspect", lambda: run_timed(
            ["skopeo", "inspect", "--tls-verify=false", docker_ref])),
    ]
    common.interleave(inspect, args.runs * 2, label="inspect ")

    out = os.path.join(work, "out")

    def fresh() -> None:
        common.rmtree(out)
        os.makedirs(out)

    pdir = os.path.join(out, "podman")

    def fresh_podman() -> None:
        fresh()
        common.rmtree(RUNROOT)
    pull = [
        Contender("imgscan pull", lambda: run_timed(imgscan_cmd(
            "pull", docker_ref, "--tls-verify=false", "--root", os.path.join(out, "store")),
            env=env), fresh),
        Contender("skopeo copy to oci:DIR", lambda: run_timed(
            ["skopeo", "copy", "-q", "--src-tls-verify=false", docker_ref,
             f"oci:{os.path.join(out, 'oci')}:{tag}"]), fresh),
        Contender("podman pull", lambda: run_timed(
            [*podman_base(pdir), "pull", "-q", "--tls-verify=false", docker_ref]), fresh_podman),
    ]
    common.interleave(pull, args.runs, between=common.sync_and_settle, label="pull ")
    common.rmtree(out)

    t_inspect = common.contender_table(inspect, "skopeo inspect")
    t_pull = common.contender_table(pull, "skopeo copy to oci:DIR")
    ri = inspect[0].median / inspect[1].median
    rp = pull[0].median / pull[1].median
    rpp = pull[0].median / pull[2].median
    v1 = (f"inspect {'met' if ri <= INSPECT_TARGET else 'MISSED'} ({ri:.2f}x skopeo inspect, "
          f"target ≤ {INSPECT_TARGET}x)")
    over = f", over by {(rp / PULL_TARGET - 1) * 100:.0f}%" if rp > PULL_TARGET else ""
    v2 = (f"pull {'met' if rp <= PULL_TARGET else 'MISSED'} ({rp:.2f}x skopeo copy, target "
          f"≤ {PULL_TARGET}x{over}; {rpp:.2f}x podman pull)")
    verdict = f"**Verdict**: {v1}; {v2}."
    print(t_inspect)
    print(t_pull)
    print(verdict)
    if args.write:
        body = f"""## Registry: inspect and pull, imgscan vs skopeo and podman (issue 9)

Debian's `docker-registry` (distribution 2.8) serving plain http on 127.0.0.1, filesystem
storage, started by the script and stopped by PID at the end. The image
({len(summary['layers'])} gzip layers, {common.fmt_mb(summary['total_gz'])} compressed,
{common.fmt_mb(summary['total_tar'])} uncompressed; `--image {args.image}`) is pushed with
`skopeo copy --dest-tls-verify=false oci:LAYOUT docker://…`.

- inspect: `imgscan inspect docker://127.0.0.1:PORT/… --tls-verify=false` vs
  `skopeo inspect --tls-verify=false docker://…` (both fetch manifest and config only;
  the outputs agree: {agree}). {args.runs * 2} interleaved rounds.
- pull, fresh destination each run, `sync` before each: `imgscan pull docker://…
  --tls-verify=false --root FRESH` (fetch, verify, extract every layer into the store) vs
  `skopeo copy --src-tls-verify=false docker://… oci:FRESH:{tag}` (fetch and store blobs,
  no extraction) vs `podman --root … --runroot … --storage-driver overlay pull
  --tls-verify=false docker://…` (fetch and extract, like imgscan). {args.runs} interleaved
  rounds.

One warm-up round each. Peak RSS is that of the largest process.

Reproduce: `python3 bench/bench_registry.py --runs {args.runs} --image {args.image} --write`

Machine: {common.machine_line()}

{t_inspect}

{t_pull}

{verdict}
"""
        common.write_section("registry", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
