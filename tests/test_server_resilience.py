"""Failures on real parts: a worker SIGKILLed mid-job (another finishes it, one report),
Redis restarted mid-audit (the audit completes), and the shared layer cache unreachable
(scans degrade to local analysis with a warning, never fail)."""

from __future__ import annotations

import glob
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator

import pytest

import imagebuild as ib
import registry_fixtures as rf
import server_fixtures as sf
from clihelp import imgscan
from imgscan.api import open_store
from imgscan.scanner import Scanner
from imgscan.server.audit import audit_registry
from imgscan.server.cache import ANALYZED, RedisLayerCache
from imgscan.server.jobs import JobStore


@pytest.fixture(scope="module")
def fleet() -> Iterator[sf.Fleet]:
    with tempfile.TemporaryDirectory() as tmp, rf.run_registry(tmp) as reg:
        yield sf.build_fleet(reg, tmp, n=8)


def test_worker_killed_mid_job_another_completes_it_once(fleet: sf.Fleet,
                                                         tmp_path: str) -> None:
    tmp = str(tmp_path)
    with sf.run_redis(tmp) as redis_srv, sf.run_slow_proxy(fleet.host, 2.0) as slow, \
            sf.run_serve(redis_srv.url, tmp) as url:
        import httpx

        digest = fleet.digests["team/app03:1.0"]
        req = {"registry": {"url": f"http://{slow.host}"},
               "artifact": {"repository": "team/app03", "digest": digest}}
        jobs = JobStore(redis_srv.client())
        first = sf.start_worker(redis_srv.url, tmp, "doomed", time_limit=15)
        try:
            r = httpx.post(f"{url}/api/v1/scan", json=req)
            assert r.status_code == 202
            scan_id = r.json()["id"]
            sf.wait_for(lambda: (jobs.status(scan_id) or {}).get("status") == "running", 60,
                        "the first worker to take the job")
            time.sleep(1.0)  # it is pulling through the slow proxy now
            first.kill(signal.SIGKILL)
        finally:
            first.kill()
        assert jobs.status(scan_id)["status"] == "running"
        second = sf.start_worker(redis_srv.url, tmp, "survivor", time_limit=15)
        try:
            sf.wait_for(lambda: (jobs.status(scan_id) or {}).get("status") == "done", 180,
                        "the second worker to complete the redelivered job", interval=0.5)
            time.sleep(3)  # a duplicate delivery, if any, would write again now
        finally:
            second.kill(signal.SIGTERM)
        written = jobs.reports_written()
        assert list(written.values()) == [1], written
        r = httpx.get(f"{url}/api/v1/scan/{scan_id}/report")
        assert r.status_code == 200 and r.json()["artifact"]["digest"] == digest


def test_redis_restart_mid_audit(fleet: sf.Fleet, tmp_path: str) -> None:
    tmp = str(tmp_path)
    out = os.path.join(tmp, "audit")
    with sf.run_redis(tmp) as redis_srv, \
            sf.run_slow_proxy(fleet.host, 0.3) as slow, \
            sf.run_workers(redis_srv.url, tmp, n=2):
        thread, res = sf.in_thread(audit_registry, f"docker://{slow.host}/team",
                                   output_dir=out, queue_url=redis_srv.url,
                                   tls_verify=False, poll=0.3, timeout=240)
        sf.wait_for(lambda: len(glob.glob(os.path.join(out, "*.json"))) >= 2, 120,
                    "two reports before the restart")
        redis_srv.stop()
        time.sleep(1.5)
        redis_srv.start()
        thread.join(260)
        assert not thread.is_alive()
        assert "error" not in res, res.get("error")
        result = res["result"]
    assert len(result.entries) == 8
    assert all(not e.error for e in result.entries), [e.error for e in result.entries]
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert {i["digest"] for i in summary["images"]} == fleet.team_digests
    assert all(os.path.exists(i["files"][0]) for i in summary["images"])


def _layout(tmp: str) -> str:
    path = os.path.join(tmp, "layout")
    os.makedirs(path, exist_ok=True)
    ib.write_oci_layout(path, [sf.app_image(4, sf.base_layers())])
    return path


def test_scan_cache_shares_layers_between_stores(tmp_path: str) -> None:
    tmp = str(tmp_path)
    layout = _layout(tmp)
    with sf.run_redis(tmp) as redis_srv:
        stats = []
        for i in range(2):
            store = open_store(os.path.join(tmp, f"store{i}"))
            rec = store.import_image(__import__("imgscan.api").api.open_source(
                f"oci:{layout}:latest"), ["x:1"])
            scanner = Scanner(shared_cache=RedisLayerCache.from_url(redis_srv.url))
            report = scanner.scan_image(store, rec)
            stats.append((scanner.stats, len(report.findings)))
        first, second = stats
        assert first[0].cache_misses > 0 and first[0].cache_hits == 0
        assert second[0].cache_misses == 0 and second[0].cache_hits == first[0].cache_misses
        assert sum(second[0].calls.values()) == 0  # nothing analyzed again
        assert first[1] == second[1]
        counts = {int(v) for v in redis_srv.client().hgetall(ANALYZED).values()}
        assert counts == {1}


def test_scan_cache_outage_degrades_to_local(tmp_path: str) -> None:
    tmp = str(tmp_path)
    layout = _layout(tmp)
    dead = f"redis://127.0.0.1:{rf.free_port()}/1"
    r = imgscan("scan", f"oci:{layout}:latest", "--cache", dead, "--format", "json",
                root=os.path.join(tmp, "store"))
    assert r.code in (0, 1), r.err
    assert "shared layer cache is unreachable" in r.err
    assert json.loads(r.out)["packages"]
    # Redis goes away in the middle: the scan finishes with local analysis
    with sf.run_redis(tmp) as redis_srv:
        cache = RedisLayerCache.from_url(redis_srv.url)
        store = open_store(os.path.join(tmp, "store2"))
        rec = store.import_image(__import__("imgscan.api").api.open_source(
            f"oci:{layout}:latest"), ["x:1"])
        orig_get = cache.get
        calls = {"n": 0}

        def get_then_die(*a: object) -> object:
            calls["n"] += 1
            if calls["n"] == 3:
                redis_srv.stop()
            return orig_get(*a)  # type: ignore[arg-type]
        cache.get = get_then_die  # type: ignore[method-assign]
        report = Scanner(shared_cache=cache).scan_image(store, rec)
        assert report.packages and cache.stats["errors"] >= 1
