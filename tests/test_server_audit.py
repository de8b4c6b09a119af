"""Registry-wide audits on real parts: docker-registry with 21 images sharing base layers,
redis-server, two ``imgscan worker`` processes; and the queue-less ``--shard k/N`` split."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator

import pytest

import registry_fixtures as rf
import server_fixtures as sf
from clihelp import imgscan
from imgscan.server.audit import audit_registry, enumerate_targets, shard_of
from imgscan.server.cache import ANALYZED
from imgscan.server.jobs import REPORTS_WRITTEN, ScanSettings


@pytest.fixture(scope="module")
def fleet() -> Iterator[sf.Fleet]:
    with tempfile.TemporaryDirectory() as tmp, rf.run_registry(tmp) as reg:
        yield sf.build_fleet(reg, tmp, n=20)


@pytest.fixture
def redis_srv(tmp_path: str) -> Iterator[sf.RedisServer]:
    with sf.run_redis(str(tmp_path)) as srv:
        yield srv


def test_enumerate_dedupes_by_digest_and_honours_the_prefix(fleet: sf.Fleet) -> None:
    targets = enumerate_targets(f"docker://{fleet.host}/team", tls_verify=False)
    assert {t.digest for t in targets} == fleet.team_digests
    assert len(targets) == 20
    t0 = next(t for t in targets if t.digest == fleet.digests["team/app00:1.0"])
    assert t0.names == (f"{fleet.host}/team/app00:1.0", f"{fleet.host}/team/app00:latest")
    assert t0.ref == f"docker://{fleet.host}/team/app00@{t0.digest}"
    everything = enumerate_targets(f"docker://{fleet.host}", tls_verify=False)
    assert len(everything) == 21


def test_audit_on_two_workers_analyzes_each_layer_once(fleet: sf.Fleet,
                                                       redis_srv: sf.RedisServer,
                                                       tmp_path: str) -> None:
    out = os.path.join(str(tmp_path), "audit")
    with sf.run_workers(redis_srv.url, str(tmp_path), n=2):
        r = imgscan("audit", f"docker://{fleet.host}/team", "--queue", redis_srv.url,
                    "--output-dir", out, "--format", "json", "--format", "html",
                    "--tls-verify=false", "--timeout", "300", timeout=400)
    assert r.code == 0, r.err + r.out
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert {i["digest"] for i in summary["images"]} == fleet.team_digests
    assert all(not i["error"] for i in summary["images"])
    for i in summary["images"]:
        assert len(i["files"]) == 2 and all(os.path.exists(f) for f in i["files"])
        doc = json.load(open(i["files"][0]))
        assert doc["image"]["digest"] == i["digest"]
    with_key = [i for i in summary["images"] if any(
        f["rule_id"] == "aws-access-key-id" for f in json.load(open(i["files"][0]))["findings"])]
    assert len(with_key) == 5  # every 4th app has an AWS key id
    client = redis_srv.client()
    analyzed = {k.decode(): int(v) for k, v in client.hgetall(ANALYZED).items()}
    # 2 shared base layers + 20 app layers, each analyzed by each file analyzer exactly once
    layers = {k.split("/")[0] for k in analyzed}
    assert len(layers) == 22
    assert set(analyzed.values()) == {1}, {k: v for k, v in analyzed.items() if v != 1}
    written = {k.decode(): int(v) for k, v in client.hgetall(REPORTS_WRITTEN).items()}
    assert len(written) == 20 and set(written.values()) == {1}


def test_shards_split_the_work_exactly(fleet: sf.Fleet, tmp_path: str) -> None:
    n = 3
    seen: list[str] = []
    for k in range(1, n + 1):
        out = os.path.join(str(tmp_path), f"shard{k}")
        res = audit_registry(f"docker://{fleet.host}/team", output_dir=out, shard=(k, n),
                             settings=ScanSettings(root=os.path.join(str(tmp_path), "store"),
                                                   analyzers=("os-release", "dpkg")),
                             tls_verify=False)
        summary = json.load(open(os.path.join(out, "summary.json")))
        assert summary["shard"] == f"{k}/{n}"
        digests = [i["digest"] for i in summary["images"]]
        assert all(shard_of(d, n) == k for d in digests)
        assert res.exit_code == 0
        seen += digests
    assert sorted(seen) == sorted(fleet.team_digests)  # each image once, none missing


def test_shard_cli_usage_errors(fleet: sf.Fleet) -> None:
    r = imgscan("audit", f"docker://{fleet.host}", "--shard", "4/3")
    assert r.code == 2 and "k/N" in r.err
    r = imgscan("audit", f"docker://{fleet.host}")
    assert r.code == 2 and "--queue" in r.err


def test_shard_audit_through_the_cli_gates_on_fail_on(fleet: sf.Fleet, tmp_path: str) -> None:
    out = os.path.join(str(tmp_path), "gate")
    r = imgscan("audit", f"docker://{fleet.host}/team", "--shard", "1/1", "--output-dir", out,
                "--analyzers", "secrets", "--fail-on", "medium", "--format", "json",
                "--format", "sarif", "--tls-verify=false", root=os.path.join(str(tmp_path), "s"),
                timeout=300)
    assert r.code == 1, r.err
    summary = json.load(open(os.path.join(out, "summary.json")))
    failed = [i for i in summary["images"] if i["exit_code"] == 1]
    assert len(failed) == 5  # app00, 04, 08, 12, 16 carry an AWS key id (medium)
    assert all(f.endswith((".json", ".sarif")) for i in summary["images"] for f in i["files"])
    assert "FAIL" in r.out and "reports in" in r.out
