"""``imgscan serve`` as Harbor calls it, on real parts (redis-server, an ``imgscan worker``,
docker-registry): every response is checked against the spec's OpenAPI document
(tests/data/harbor/), and refused requests leave nothing queued."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

import registry_fixtures as rf
import server_fixtures as sf
from imgscan.server import harbor as h

KEY = "s3cret-adapter-key"
SPEC = sf.HarborSpec()
REQ_TYPE = "application/vnd.scanner.adapter.scan.request+json; version=1.1"


@dataclass
class Adapter:
    url: str
    redis: sf.RedisServer
    reg: rf.Registry
    digest: str
    slow_host: str

    def client(self, key: str | None = KEY) -> httpx.Client:
        headers = {"X-ScannerAdapter-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def request(self, digest: str | None = None, host: str | None = None) -> dict:
        return {"registry": {"url": f"http://{host or self.reg.host}",
                             "authorization": "Basic " + base64.b64encode(b"robot$x:pw").decode()},
                "artifact": {"repository": "team/app", "digest": digest or self.digest,
                             "tag": "1.0", "mime_type": h.OCI_MANIFEST},
                "enabled_capabilities": [
                    {"type": "vulnerability", "produces_mime_types": [h.VULN_V11]},
                    {"type": "sbom", "produces_mime_types": [h.SBOM_REPORT],
                     "parameters": {"sbom_media_types": list(h.SBOM_MEDIA_TYPES)}}]}

    def queued(self) -> int:
        c = self.redis.client()
        return int(c.llen("imgscan")) + len(c.keys("imgscan:job:*"))


@pytest.fixture(scope="module")
def adapter() -> Iterator[Adapter]:
    with tempfile.TemporaryDirectory() as tmp, rf.run_registry(tmp) as reg, \
            sf.run_redis(tmp) as redis_srv:
        digest = sf.push_image(reg, tmp, "team/app", sf.app_image(0, sf.base_layers()))
        key_file = os.path.join(tmp, "keys")
        with open(key_file, "w") as f:
            f.write(f"# harbor\n{KEY}\n")
        with sf.run_slow_proxy(reg.host, 3.0) as slow, \
                sf.run_serve(redis_srv.url, tmp, key_file) as url:
            yield Adapter(url, redis_srv, reg, digest, slow.host)


@pytest.fixture(scope="module")
def worker(adapter: Adapter) -> Iterator[None]:
    with tempfile.TemporaryDirectory() as tmp, \
            sf.run_workers(adapter.redis.url, tmp, n=1):
        yield


def check(resp: httpx.Response, path: str) -> object:
    return SPEC.check(resp.request.method, path, resp.status_code,
                      resp.headers.get("content-type"), resp.content)


def test_metadata(adapter: Adapter) -> None:
    with adapter.client() as c:
        r = c.get("/api/v1/metadata")
    doc = check(r, "/metadata")
    assert r.headers["content-type"] == h.METADATA_V11
    assert {cap["type"] for cap in doc["capabilities"]} == {"vulnerability", "sbom"}
    assert "vulnerability database" in doc["properties"]["org.imgscan/note"]


@pytest.mark.parametrize("headers", [
    {}, {"X-ScannerAdapter-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic " + base64.b64encode(b"harbor:wrong").decode()},
    {"Authorization": "Basic %%%"}])
def test_wrong_credentials_are_refused(adapter: Adapter, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=adapter.url, headers=headers) as c:
        for method, path in [("GET", "/api/v1/metadata"), ("POST", "/api/v1/scan"),
                             ("GET", "/api/v1/scan/abc/report")]:
            r = c.request(method, path, json=adapter.request(),
                          headers={"Content-Type": REQ_TYPE})
            assert r.status_code == 401
            assert r.headers["content-type"] == h.ERROR
            assert "credentials" in r.json()["error"]["message"]
    assert adapter.queued() == 0


@pytest.mark.parametrize("auth", [
    {"Authorization": f"Bearer {KEY}"},
    {"Authorization": "Basic " + base64.b64encode(f"harbor:{KEY}".encode()).decode()}])
def test_bearer_and_basic_are_accepted(adapter: Adapter, auth: dict[str, str]) -> None:
    with httpx.Client(base_url=adapter.url, headers=auth) as c:
        assert c.get("/api/v1/metadata").status_code == 200


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"[]", 400, "JSON object"),
    (json.dumps({"registry": "x", "artifact": {}}).encode(), 400, "registry"),
    (json.dumps({"artifact": {}}).encode(), 422, "required"),
    (json.dumps({"registry": {"url": "ftp://x"}, "artifact": {}}).encode(), 422, "registry.url"),
    (json.dumps({"registry": {"url": "http://r"}, "artifact": {
        "repository": "a", "digest": "sha256:abc"}}).encode(), 422, "digest"),
    (json.dumps({"registry": {"url": "http://r"}, "artifact": {
        "repository": "../etc", "digest": "sha256:" + "a" * 64}}).encode(), 422, "repository"),
    (json.dumps({"registry": {"url": "http://r", "authorization": "Token x"}, "artifact": {
        "repository": "a", "digest": "sha256:" + "a" * 64}}).encode(), 422, "scheme"),
    (json.dumps({"registry": {"url": "http://r"}, "artifact": {
        "repository": "a", "digest": "sha256:" + "a" * 64,
        "mime_type": "application/vnd.oci.image.index.v1+json"}}).encode(), 501, "mime_type"),
    (json.dumps({"registry": {"url": "http://r"}, "artifact": {
        "repository": "a", "digest": "sha256:" + "a" * 64},
        "enabled_capabilities": [{"type": "malware"}]}).encode(), 501, "malware"),
]


@pytest.mark.parametrize(("body", "status", "text"), BAD)
def test_malformed_requests_get_the_spec_error_and_queue_nothing(
        adapter: Adapter, body: bytes, status: int, text: str) -> None:
    with adapter.client() as c:
        r = c.post("/api/v1/scan", content=body, headers={"Content-Type": REQ_TYPE})
    assert r.status_code == status, r.text
    check(r, "/scan")
    assert text in r.json()["error"]["message"]
    assert adapter.queued() == 0


def test_oversized_and_mistyped_requests(adapter: Adapter) -> None:
    big = json.dumps({**adapter.request(), "pad": "x" * (h.MAX_REQUEST_BYTES + 1)})
    with adapter.client() as c:
        r = c.post("/api/v1/scan", content=big, headers={"Content-Type": REQ_TYPE})
        assert r.status_code == 413 and r.headers["content-type"] == h.ERROR
        assert "at most" in r.json()["error"]["message"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield big.encode()[:40000]
            yield big.encode()[40000:]
        r = c.post("/api/v1/scan", content=chunks(), headers={"Content-Type": REQ_TYPE})
        assert r.status_code == 413
        r = c.post("/api/v1/scan", content=json.dumps(adapter.request()),
                   headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "Content-Type" in r.json()["error"]["message"]
    assert adapter.queued() == 0


def test_unknown_scan_id_is_404(adapter: Adapter) -> None:
    with adapter.client() as c:
        r = c.get("/api/v1/scan/0123456789abcdef/report", headers={"Accept": h.VULN_V11})
        assert r.status_code == 404
        check(r, "/scan/{scan_request_id}/report")
        r = c.get("/api/v1/scan/" + "x" * 300 + "/report")
        assert r.status_code == 404


def _poll(c: httpx.Client, scan_id: str, accept: str = h.VULN_V11,
          timeout: float = 120) -> httpx.Response:
    def ready() -> httpx.Response | None:
        r = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": accept})
        if r.status_code == 302:
            check(r, "/scan/{scan_request_id}/report")
            assert int(r.headers["Refresh-After"]) == 1
            return None
        return r
    return sf.wait_for(ready, timeout, "the report", interval=0.3)


def test_scan_flow_from_202_through_302_to_reports(adapter: Adapter, worker: None) -> None:
    with adapter.client() as c:
        # through the slow proxy: the worker is still pulling when Harbor first asks
        r = c.post("/api/v1/scan", json=adapter.request(host=adapter.slow_host),
                   headers={"Content-Type": REQ_TYPE})
        assert r.status_code == 202, r.text
        doc = check(r, "/scan")
        assert r.headers["content-type"] == h.SCAN_RESPONSE
        scan_id = doc["id"]
        first = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": h.VULN_V11})
        assert first.status_code == 302 and first.headers["Refresh-After"] == "1"
        assert not first.content
        r = _poll(c, scan_id)
        assert r.status_code == 200, r.text
        vuln = check(r, "/scan/{scan_request_id}/report")
        assert r.headers["content-type"] == h.VULN_V11
        assert vuln["vulnerabilities"] == []
        assert vuln["artifact"]["digest"] == adapter.digest
        own = vuln["vendor_attributes"]["imgscan"]
        assert "no vulnerability database" in own["note"]
        assert any(f["category"] == "secret" for f in own["findings"])
        assert any(f["category"] == "permissions" for f in own["findings"])
        r = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": h.VULN_HARBOR_V10})
        assert check(r, "/scan/{scan_request_id}/report")["severity"] == "Unknown"
        r = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": h.VULN_RAW})
        raw = json.loads(check(r, "/scan/{scan_request_id}/report"))
        assert {p["name"] for p in raw["packages"]} >= {"libc6", "bash", "openssl"}
        assert "AKIA" in json.dumps(raw) and sf.AWS_KEY not in json.dumps(raw)  # redacted
        for media, key in [(h.SBOM_CYCLONEDX, "bomFormat"), (h.SBOM_SPDX, "spdxVersion")]:
            r = c.get(f"/api/v1/scan/{scan_id}/report", params={"sbom_media_type": media},
                      headers={"Accept": h.SBOM_REPORT})
            sbom = check(r, "/scan/{scan_request_id}/report")
            assert r.status_code == 200 and sbom["media_type"] == media and key in sbom["sbom"]
        r = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": h.SBOM_REPORT})
        assert r.status_code == 400 and "sbom_media_type" in r.json()["error"]["message"]
        check(r, "/scan/{scan_request_id}/report")
        r = c.get(f"/api/v1/scan/{scan_id}/report", headers={"Accept": "text/html"})
        assert r.status_code == 501
        check(r, "/scan/{scan_request_id}/report")


def test_unpullable_image_is_a_500_with_the_reason(adapter: Adapter, worker: None) -> None:
    with adapter.client() as c:
        r = c.post("/api/v1/scan", json=adapter.request(digest="sha256:" + "e" * 64),
                   headers={"Content-Type": REQ_TYPE})
        assert r.status_code == 202
        r = _poll(c, r.json()["id"])
        assert r.status_code == 500
        check(r, "/scan/{scan_request_id}/report")
        assert "scan failed" in r.json()["error"]["message"]


CRIT = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def test_vulnerabilities_with_an_osv_database(adapter: Adapter, tmp_path: str) -> None:
    """serve --vulns, a worker with --vulns-db: Harbor gets the matches as items."""
    from clihelp import imgscan

    tmp = str(tmp_path)
    recs = os.path.join(tmp, "records")
    os.makedirs(recs)
    rec = {"schema_version": "1.6.0", "id": "DEBTEST-7", "modified": "2026-01-01T00:00:00Z",
           "aliases": ["CVE-2099-0007"], "summary": "bash test advisory",
           "severity": [{"type": "CVSS_V3", "score": CRIT}],
           "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"},
                         "ranges": [{"type": "ECOSYSTEM", "events": [
                             {"introduced": "0"}, {"fixed": "5.2.15-3"}]}]}]}
    with open(os.path.join(recs, "DEBTEST-7.json"), "w") as f:
        json.dump(rec, f)
    db = os.path.join(tmp, "osv.sqlite")
    r = imgscan("db", "import", "--db", db, recs)
    assert r.code == 0, r.err
    queue = adapter.redis.url[:-1] + "2"  # a queue of its own: other workers have no DB
    with sf.run_serve(queue, tmp, None, extra=["--vulns"]) as url, \
            sf.run_workers(queue, tmp, n=1, extra=["--vulns-db", db]), \
            httpx.Client(base_url=url, timeout=30) as c:
        meta = check(c.get("/api/v1/metadata"), "/metadata")
        assert meta["properties"]["harbor.scanner-adapter/vulnerability-database"] == "osv"
        r = c.post("/api/v1/scan", json=adapter.request(),
                   headers={"Content-Type": REQ_TYPE})
        assert r.status_code == 202
        r = _poll(c, r.json()["id"])
        assert r.status_code == 200, r.text
        doc = check(r, "/scan/{scan_request_id}/report")
    items = {v["id"]: v for v in doc["vulnerabilities"]}
    v = items["CVE-2099-0007"]
    assert (v["package"], v["version"], v["fix_version"]) == ("bash", "5.2.15-2", "5.2.15-3")
    assert v["severity"] == "Critical" and doc["severity"] == "Critical"
    assert v["preferred_cvss"]["score_v3"] == 9.8
    assert "note" not in doc["vendor_attributes"]["imgscan"]
