#!/usr/bin/env python3
"""Issue 17: imgscan beyond one machine, on real parts on this box (redis-server,
docker-registry, ``imgscan worker`` and ``imgscan serve`` processes).

Measures:
- images/minute for a registry-wide audit of 20 images (sharing two base layers) through the
  queue, with one worker and with two (each ``--concurrency 1``; fresh Redis and fresh worker
  stores per run, so every run starts cold);
- the layer-cache hit ratio of that audit (analyzer x layer entries computed vs looked up);
- the time from ``POST /api/v1/scan`` to a 200 report for a cold image (nothing cached), a
  new image that shares its base layers with what was scanned, and a repeat of an image
  (warm: the job's result is in Redis), polling every 0.1 s.

    python3 bench/bench_server.py [--images 20] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import httpx  # noqa: E402

import imagebuild as ib  # noqa: E402
import registry_fixtures as rf  # noqa: E402
import server_fixtures as sf  # noqa: E402
from imgscan.server.audit import audit_registry  # noqa: E402
from imgscan.server.cache import ANALYZED  # noqa: E402


def host_base_layers(salt: str = "") -> list[ib.Layer]:
    """Realistic base layers from this Debian host: its dpkg status and os-release, then
    60 ELF files of /usr/bin. A ``salt`` gives layers of the same size and content but
    other diff_ids (a cold image)."""
    with open("/var/lib/dpkg/status", "rb") as f:
        status = f.read()
    with open("/etc/os-release", "rb") as f:
        osr = f.read()
    bins = sorted(p for p in os.listdir("/usr/bin") if os.path.isfile(f"/usr/bin/{p}")
                  and not os.path.islink(f"/usr/bin/{p}"))[:60]
    files = [ib.D("usr/bin"), ib.F("usr/bin/.salt", salt)]
    for b in bins:
        with open(f"/usr/bin/{b}", "rb") as f:
            files.append(ib.F(f"usr/bin/{b}", f.read(), mode=0o755))
    return [ib.Layer(ib.layer_tar([ib.D("etc"), ib.F("etc/os-release", osr),
                                   ib.F("etc/.salt", salt),
                                   ib.D("var/lib/dpkg"), ib.F("var/lib/dpkg/status", status)]),
                     created_by="ADD rootfs"),
            ib.Layer(ib.layer_tar(files), created_by="RUN apt-get install tools")]


def app_image(i: int, base: list[ib.Layer]) -> ib.ImageSpec:
    rnd = random.Random(i)
    files = [ib.D("app")] + [ib.F(f"app/mod{j}.py", f"# app {i}\nX = {rnd.random()}\n" * 40)
                             for j in range(50)]
    if i % 4 == 0:
        files.append(ib.F("app/settings.py", f'AWS_ACCESS_KEY_ID = "{sf.AWS_KEY}"\n'))
    return ib.ImageSpec([*base, ib.Layer(ib.layer_tar(files), created_by=f"COPY app{i}")],
                        config={"User": "1000"}, created="2024-02-01T00:00:00Z")


def push(reg: rf.Registry, tmp: str, repo: str, spec: ib.ImageSpec) -> str:
    return sf.push_image(reg, tmp, repo, spec)


def audit_run(host: str, n_workers: int, tmp: str, n_images: int) -> dict[str, float]:
    work = tempfile.mkdtemp(dir=tmp)
    with sf.run_redis(work) as redis_srv, sf.run_workers(redis_srv.url, work, n=n_workers):
        time.sleep(2.0)  # workers ready (Celery start-up is not part of an audit)
        t0 = time.monotonic()
        res = audit_registry(f"docker://{host}/team", output_dir=os.path.join(work, "out"),
                             queue_url=redis_srv.url, tls_verify=False, poll=0.1)
        elapsed = time.monotonic() - t0
        analyzed = [int(v) for v in redis_srv.client().hgetall(ANALYZED).values()]
    assert len(res.entries) == n_images and not any(e.error for e in res.entries)
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds": elapsed, "images_per_min": n_images / elapsed * 60,
            "entries_computed": sum(analyzed), "entries_distinct": len(analyzed)}


def time_to_report(url: str, host: str, repo: str, digest: str) -> float:
    req = {"registry": {"url": f"http://{host}"},
           "artifact": {"repository": repo, "digest": digest}}
    t0 = time.monotonic()
    r = httpx.post(f"{url}/api/v1/scan", json=req)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    while True:
        r = httpx.get(f"{url}/api/v1/scan/{sid}/report")
        if r.status_code != 302:
            assert r.status_code == 200, r.text
            return time.monotonic() - t0
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, rf.run_registry(tmp) as reg:
        base = host_base_layers()
        print(f"base layers: {sum(len(lay.tar) for lay in base) / 1e6:.1f} MB uncompressed",
              file=sys.stderr)
        for i in range(args.images):
            push(reg, tmp, f"team/app{i:02d}", app_image(i, base))
        results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(args.runs):
            for n in (1, 2):
                results[n].append(audit_run(reg.host, n, tmp, args.images))
                print(n, results[n][-1], file=sys.stderr)
        lookups = args.images * 3  # layers per image
        out: dict[str, object] = {}
        for n, runs in results.items():
            out[f"workers_{n}"] = {
                "images_per_min": statistics.median(r["images_per_min"] for r in runs),
                "seconds": [round(r["seconds"], 1) for r in runs],
                "entries_computed": runs[0]["entries_computed"],
                "entries_distinct": runs[0]["entries_distinct"]}
        per_layer = results[1][0]["entries_distinct"] / 22  # analyzers per layer
        out["layer_hit_ratio"] = 1 - results[2][0]["entries_computed"] / (lookups * per_layer)
        # POST /scan -> report
        work = tempfile.mkdtemp(dir=tmp)
        cold_digest = push(reg, tmp, "solo/cold", app_image(500, host_base_layers("cold")))
        shared_digest = push(reg, tmp, "team/new", app_image(501, base))
        with sf.run_redis(work) as redis_srv, sf.run_workers(redis_srv.url, work, n=1), \
                sf.run_serve(redis_srv.url, work) as url:
            time.sleep(2.0)
            # first, an image with the shared base, to warm the layer cache for "shared"
            time_to_report(url, reg.host, "team/app00", push(reg, tmp, "team/app00",
                                                             app_image(0, base)))
            out["post_to_report_cold_s"] = time_to_report(url, reg.host, "solo/cold",
                                                          cold_digest)
            out["post_to_report_shared_base_s"] = time_to_report(url, reg.host, "team/new",
                                                                 shared_digest)
            out["post_to_report_repeat_s"] = time_to_report(url, reg.host, "team/new",
                                                            shared_digest)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
