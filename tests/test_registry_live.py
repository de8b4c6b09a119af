"""The registry client against a real ``docker-registry`` (anonymous), directly and through a
fault-injecting proxy; ``inspect_dict`` compared with ``skopeo inspect`` on the same images."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import threading
import time

import pytest

import imagebuild as ib
import registry_fixtures as rf
from imgscan.errors import DigestMismatch, ImageError
from imgscan.images import mediatypes as mt
from imgscan.images.inspect import inspect_dict
from imgscan.images.interface import Platform
from imgscan.images.registry import (
    RegistryAuthError,
    RegistryConnectionError,
    RegistryDigestMismatch,
    RegistryNotFound,
    RegistryProtocolError,
    RegistryTLSError,
    list_tags,
    open_registry_image,
    parse_reference,
)
from imgscan.images.registry.client import ClientOptions

FAST = ClientOptions(connect_timeout=5, read_timeout=10, max_retries=3, max_retry_time=20,
                     backoff=0.05, max_backoff=0.5)
SKOPEO_KEYS = ["Name", "Digest", "RepoTags", "Created", "DockerVersion", "Labels",
               "Architecture", "Os", "Layers", "Env"]


class World:
    """Images built here, pushed with skopeo: their expected values come from the builder."""

    def __init__(self, tmp: str, reg: rf.Registry) -> None:
        self.reg = reg
        self.tmp = tmp
        rnd = random.Random(7)
        self.big = bytes(rnd.getrandbits(8) for _ in range(600_000))  # incompressible
        self.spec = ib.ImageSpec(
            [ib.Layer(ib.layer_tar([ib.D("etc"), ib.F("etc/hello", "hi\n")]),
                      created_by="ADD hello"),
             ib.Layer(ib.layer_tar([ib.F("data/big.bin", self.big)]), created_by="ADD big")],
            config={"Env": ["PATH=/usr/bin", "A=1"], "Labels": {"org.example": "x"},
                    "User": "1000:1000", "ExposedPorts": {"80/tcp": {}, "53/udp": {}}},
            created="2024-01-02T03:04:05.500000000Z",
        )
        self.layout = self._layout("single", [self.spec])
        for tag in ("v1", "t1", "t2", "t3", "t4"):
            rf.skopeo_push(self.layout, f"{reg.host}/test/img:{tag}")
        rf.skopeo_push(self.layout, f"{reg.host}/test/img:docker", fmt="v2s2")
        amd = ib.ImageSpec([ib.Layer(ib.layer_tar([ib.F("arch", "amd64")]))],
                           architecture="amd64", config={"Env": ["X=amd"]})
        arm = ib.ImageSpec([ib.Layer(ib.layer_tar([ib.F("arch", "arm64")]))],
                           architecture="arm64", variant="v8", config={"Env": ["X=arm"]})
        self.multi_layout = self._layout("multi", [amd, arm], index_images=True)
        rf.skopeo_push(self.multi_layout, f"{reg.host}/test/multi:latest", all_images=True)
        self.amd, self.arm = amd, arm

    def _layout(self, name: str, specs: list[ib.ImageSpec], **kw: object) -> str:
        path = os.path.join(self.tmp, name)
        os.makedirs(path)
        ib.write_oci_layout(path, specs, **kw)
        return path

    def layout_manifest(self, layout: str) -> tuple[str, bytes]:
        with open(os.path.join(layout, "index.json")) as f:
            digest = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            return digest, f.read()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = str(tmp_path_factory.mktemp("registry-live"))
    with rf.run_registry(tmp) as reg:
        yield World(tmp, reg)


@pytest.fixture
def proxy(world: World):
    with rf.run_proxy(rf.Proxy(world.reg.host)) as px:
        yield px


def _open(ref: str, **kw: object):
    kw.setdefault("tls_verify", False)
    kw.setdefault("options", FAST)
    return open_registry_image(ref, **kw)  # type: ignore[arg-type]


def _read_layer(image, index: int) -> bytes:
    with image.open_layer(image.layers[index]) as f:
        data = f.read()
        assert f.read() == b""  # EOF runs the digest check
    return data


def test_oci_image_matches_what_was_pushed(world: World) -> None:
    digest, manifest = world.layout_manifest(world.layout)
    img = _open(f"{world.reg.host}/test/img:v1")
    try:
        assert img.manifest_digest == digest
        assert img.raw_manifest == manifest
        assert img.index_digest is None
        assert img.names == [f"{world.reg.host}/test/img:v1"]
        assert img.diff_ids == [lay.diff_id for lay in world.spec.layers]
        assert [lay.created_by for lay in img.layers] == ["ADD hello", "ADD big"]
        assert gzip.decompress(_read_layer(img, 1)) == world.spec.layers[1].tar
    finally:
        img.source.close()


def test_pull_by_digest_and_docker_manifest(world: World) -> None:
    digest, _ = world.layout_manifest(world.layout)
    img = _open(f"{world.reg.host}/test/img@{digest}")
    assert img.manifest_digest == digest
    docker = _open(f"{world.reg.host}/test/img:docker")
    assert docker.manifest_media_type == mt.DOCKER_MANIFEST
    assert docker.diff_ids == img.diff_ids
    assert gzip.decompress(_read_layer(docker, 0)) == world.spec.layers[0].tar


@pytest.mark.parametrize("tag", ["v1", "docker", "multi"])
def test_inspect_matches_skopeo(world: World, tag: str) -> None:
    repo = "test/multi" if tag == "multi" else "test/img"
    tag = "latest" if tag == "multi" else tag
    ref = f"{world.reg.host}/{repo}:{tag}"
    before = len(world.reg.requests())
    img = _open(ref, platform="linux/amd64")
    parsed = parse_reference(ref)
    tags = list_tags(ref, tls_verify=False, options=FAST)
    got = inspect_dict(img, parsed.name, parsed.tag, tags)
    ours = world.reg.requests()[before:]
    want = rf.skopeo_inspect(ref, "--override-arch=amd64", "--override-os=linux")
    assert [k for k in got if k in want] == [k for k in want]
    for key in SKOPEO_KEYS:
        if key in want:
            assert got[key] == want[key], key
    assert got["Tag"] == tag
    # LayersData and the extra keys, from the manifest and config that were pushed
    layers = img.manifest["layers"]
    assert got["LayersData"] == [{"MIMEType": d["mediaType"], "Digest": d["digest"],
                                  "Size": d["size"], "Annotations": None} for d in layers]
    assert got["CompressedSize"] == sum(d["size"] for d in layers)
    if repo == "test/img":
        assert got["User"] == "1000:1000"
        assert got["ExposedPorts"] == ["53/udp", "80/tcp"]
        assert [h["created_by"] for h in got["History"]] == ["ADD hello", "ADD big"]
    # no layer blob was requested by imgscan
    layer_digests = {d["digest"] for d in layers}
    assert ours and not [r for r in ours if any(d in r for d in layer_digests)]


def test_multi_arch_chooses_platform(world: World) -> None:
    ref = f"{world.reg.host}/test/multi:latest"
    top = rf.skopeo_inspect(ref, "--raw")
    arm = _open(ref, platform=Platform("linux", "arm64", "v8"))
    amd = _open(ref, platform="linux/amd64")
    assert arm.index_digest == amd.index_digest
    assert arm.config["architecture"] == "arm64"
    assert arm.config["config"]["Env"] == ["X=arm"]
    assert amd.config["config"]["Env"] == ["X=amd"]
    digests = {m["platform"]["architecture"]: m["digest"] for m in top["manifests"]}
    assert arm.manifest_digest == digests["arm64"]
    assert amd.manifest_digest == digests["amd64"]
    with pytest.raises(ImageError, match="no image for platform linux/s390x"):
        _open(ref, platform="linux/s390x")


def test_list_tags(world: World) -> None:
    tags = list_tags(f"{world.reg.host}/test/img", tls_verify=False, options=FAST)
    assert sorted(tags) == sorted(["v1", "t1", "t2", "t3", "t4", "docker"])


def test_list_tags_follows_relative_link_pagination(world: World, proxy: rf.Proxy) -> None:
    """registry 2.8 ignores ``n``: the proxy plays a paginating registry."""
    def page(tags: list[str], last: str | None) -> rf.Fault:
        headers = {"Content-Type": "application/json"}
        if last:
            headers["Link"] = f'</v2/test/img/tags/list?n=2&last={last}>; rel="next"'
        return rf.Fault("", "body", body=json.dumps({"name": "test/img", "tags": tags}).encode(),
                        headers=headers)

    p2, p3, p1 = page(["c", ""], "c"), page(["d"], None), page(["a", "b"], "b")
    p2.match, p3.match, p1.match = "last=b", "last=c", "tags/list?n=2"
    proxy.faults += [p2, p3, p1]
    tags = list_tags(f"{proxy.host}/test/img", tls_verify=False, options=FAST, page_size=2)
    assert tags == ["a", "b", "c", "d"]
    assert [r["path"] for r in _requests(proxy, "/tags/list")] == [
        "/v2/test/img/tags/list?n=2", "/v2/test/img/tags/list?n=2&last=b",
        "/v2/test/img/tags/list?n=2&last=c"]


def test_not_found_errors(world: World) -> None:
    host = world.reg.host
    with pytest.raises(RegistryNotFound) as e:
        _open(f"{host}/test/img:nope")
    assert str(e.value) == f"registry {host}: manifest unknown (404) for test/img:nope"
    missing = "sha256:" + "0" * 64
    with pytest.raises(RegistryNotFound, match=r"\(404\) for test/img@sha256:0+$"):
        _open(f"{host}/test/img@{missing}")
    with pytest.raises(RegistryNotFound, match=r"repository name not known \(404\)"):
        list_tags(f"{host}/no/such", tls_verify=False, options=FAST)


def test_connection_refused_and_tls_errors(world: World) -> None:
    port = rf.free_port()
    t = time.monotonic()
    with pytest.raises(RegistryConnectionError) as e:
        _open(f"127.0.0.1:{port}/test/img:v1")
    assert str(e.value) == f"registry 127.0.0.1:{port}: connection refused"
    assert time.monotonic() - t < 2
    with pytest.raises(RegistryTLSError, match=rf"registry {world.reg.host}: TLS error: "):
        _open(f"{world.reg.host}/test/img:v1", tls_verify=True)


# -- faults ----------------------------------------------------------------------------------


def _requests(px: rf.Proxy, fragment: str) -> list[dict]:
    return [r for r in px.log if fragment in r["path"]]


def test_retry_after_429_is_honoured(world: World, proxy: rf.Proxy) -> None:
    proxy.faults.append(rf.Fault("/manifests/v1", "status", status=429,
                                 headers={"Retry-After": "1"}))
    t = time.monotonic()
    img = _open(f"{proxy.host}/test/img:v1")
    assert time.monotonic() - t >= 1.0
    assert img.manifest_digest == world.layout_manifest(world.layout)[0]
    assert len(_requests(proxy, "/manifests/v1")) == 2


def test_5xx_and_reset_are_retried(world: World, proxy: rf.Proxy) -> None:
    proxy.faults += [rf.Fault("/manifests/v1", "status", status=503, times=2),
                     rf.Fault("/blobs/", "drop", times=1)]
    img = _open(f"{proxy.host}/test/img:v1")
    assert len(_requests(proxy, "/manifests/v1")) == 3
    assert img.config["config"]["User"] == "1000:1000"


def test_retries_are_bounded(world: World, proxy: rf.Proxy) -> None:
    proxy.faults.append(rf.Fault("/manifests/v1", "status", status=500, times=100))
    with pytest.raises(RegistryConnectionError, match=r"giving up after 4 attempts: HTTP 500"):
        _open(f"{proxy.host}/test/img:v1")
    assert len(_requests(proxy, "/manifests/v1")) == 4
    proxy.faults[-1].times = 100
    proxy.faults[-1].headers = {"Retry-After": "3600"}
    t = time.monotonic()
    with pytest.raises(RegistryConnectionError, match="giving up"):
        _open(f"{proxy.host}/test/img:v1")
    assert time.monotonic() - t < 2


def test_dropped_blob_resumes_with_range(world: World, proxy: rf.Proxy) -> None:
    img = _open(f"{proxy.host}/test/img:v1")
    big = img.layers[1]
    proxy.faults.append(rf.Fault(big.digest, "truncate"))
    assert gzip.decompress(_read_layer(img, 1)) == world.spec.layers[1].tar
    reqs = _requests(proxy, big.digest)
    assert len(reqs) == 2
    assert "Range" not in reqs[0]["headers"]
    assert reqs[1]["headers"]["Range"] == f"bytes={big.size // 2}-"


def test_corrupt_blob_and_config_are_rejected(world: World, proxy: rf.Proxy) -> None:
    img = _open(f"{proxy.host}/test/img:v1")
    proxy.faults.append(rf.Fault(img.layers[1].digest, "corrupt"))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        _read_layer(img, 1)
    proxy.faults.append(rf.Fault(img.config_descriptor.digest, "corrupt"))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        _open(f"{proxy.host}/test/img:v1")


def test_corrupt_manifest_is_rejected(world: World, proxy: rf.Proxy) -> None:
    digest, _ = world.layout_manifest(world.layout)
    proxy.faults.append(rf.Fault("/manifests/v1", "corrupt"))
    with pytest.raises(RegistryDigestMismatch, match="Docker-Content-Digest"):
        _open(f"{proxy.host}/test/img:v1")
    # by digest, a registry serving other (well-formed) bytes without a digest header
    _, other = world.layout_manifest(world.multi_layout)
    proxy.faults.append(rf.Fault(digest, "body", body=other,
                                 headers={"Content-Type": mt.OCI_INDEX}))
    with pytest.raises(RegistryDigestMismatch, match=f"expected {digest}"):
        _open(f"{proxy.host}/test/img@{digest}")


@pytest.mark.parametrize("chunked", [False, True])
def test_manifest_over_4mib(world: World, proxy: rf.Proxy, chunked: bool) -> None:
    body = b'{"schemaVersion":2,"pad":"' + b"x" * (4 << 20) + b'"}'
    proxy.faults.append(rf.Fault("/manifests/v1", "body", body=body, chunked=chunked,
                                 headers={"Content-Type": mt.OCI_MANIFEST}))
    with pytest.raises(RegistryProtocolError, match="manifest larger than 4 MiB"):
        _open(f"{proxy.host}/test/img:v1")


def test_unknown_media_type(world: World, proxy: rf.Proxy) -> None:
    _, manifest = world.layout_manifest(world.layout)
    proxy.faults.append(rf.Fault("/manifests/v1", "body", body=manifest,
                                 headers={"Content-Type": "application/vnd.example.thing+json"}))
    with pytest.raises(RegistryProtocolError,
                       match=r"unsupported media type application/vnd\.example\.thing"):
        _open(f"{proxy.host}/test/img:v1")
    schema1 = json.dumps({"schemaVersion": 1, "name": "test/img", "fsLayers": []}).encode()
    proxy.faults.append(rf.Fault("/manifests/v1", "body", body=schema1,
                                 headers={"Content-Type": mt.DOCKER_MANIFEST_V1_SIGNED}))
    with pytest.raises(RegistryProtocolError, match="schema 1"):
        _open(f"{proxy.host}/test/img:v1")


def test_garbage_answers_are_clear_errors(world: World, proxy: rf.Proxy) -> None:
    for body in (b"\x00\xff not json", b"[1,2]", b'{"schemaVersion":2,"layers":"x",'
                 b'"config":{}}'):
        proxy.faults.append(rf.Fault("/manifests/v1", "body", body=body,
                                     headers={"Content-Type": mt.OCI_MANIFEST}))
        with pytest.raises(ImageError):
            _open(f"{proxy.host}/test/img:v1")
    proxy.faults.append(rf.Fault("/tags/list", "body", body=b"<html>",
                                 headers={"Content-Type": "text/html"}))
    with pytest.raises(RegistryProtocolError, match="not a JSON object"):
        list_tags(f"{proxy.host}/test/img", tls_verify=False, options=FAST)
    proxy.faults.append(rf.Fault("/manifests/v1", "status", status=401, headers={}))
    with pytest.raises(RegistryAuthError, match=r"authentication required \(401\)"):
        _open(f"{proxy.host}/test/img:v1")


def test_parallel_blob_reads_are_independent(world: World, proxy: rf.Proxy) -> None:
    img = _open(f"{proxy.host}/test/img:v1")
    proxy.faults.append(rf.Fault(img.layers[1].digest, "truncate", times=2))
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = _read_layer(img, i % 2)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for i, data in results.items():
        assert gzip.GzipFile(fileobj=io.BytesIO(data)).read() == world.spec.layers[i % 2].tar
    assert len(results) == 6
