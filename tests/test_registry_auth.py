"""Authentication and TLS against real ``docker-registry`` instances: htpasswd Basic, token
auth with a JWT token server run here, a self-signed TLS registry; and proof that secrets
never reach messages, reprs or logs."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import traceback

import pytest

import imagebuild as ib
import registry_fixtures as rf
from imgscan.images.registry import (
    RegistryAuthError,
    RegistryTLSError,
    open_registry_image,
    parse_reference,
)
from imgscan.images.registry.client import ClientOptions
from imgscan.images.registry.source import make_client

FAST = ClientOptions(connect_timeout=5, read_timeout=10, max_retries=2, max_retry_time=10,
                     backoff=0.05, max_backoff=0.5)
USER = "alice"
PASSWORD = "Pw-7f3a9c-sekrit"
WRONG = "Wrong-d41c8e-guess"
SECRETS = [PASSWORD, WRONG, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
           base64.b64encode(f"{USER}:{WRONG}".encode()).decode(), "Helper-9bd2-secret"]


class AuthWorld:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = str(tmp_path_factory.mktemp("registry-auth"))
    storage = os.path.join(tmp, "storage")
    w = AuthWorld()
    layout = os.path.join(tmp, "layout")
    os.makedirs(layout)
    spec = ib.ImageSpec([ib.Layer(ib.layer_tar([ib.F("etc/hello", "hi\n")]))],
                        config={"Env": ["A=1"]})
    ib.write_oci_layout(layout, [spec])
    w.spec = spec
    htpasswd = os.path.join(tmp, "htpasswd")
    with open(htpasswd, "w") as f:
        f.write(rf.htpasswd_line(USER, PASSWORD))
    tls_keys = rf.self_signed()
    w.tls_cert, tls_key = tls_keys.write(tmp, "tls")
    ts = rf.TokenServer(rf.self_signed("token-signer"), users={USER: PASSWORD})
    with rf.run_registry(tmp, storage) as anon, rf.run_token_server(ts):
        rf.skopeo_push(layout, f"{anon.host}/test/img:v1")
        w.spec_digest = open_registry_image(f"{anon.host}/test/img:v1", tls_verify=False,
                                            options=FAST).manifest_digest
        basic_auth = {"htpasswd": {"realm": "imgscan-test", "path": htpasswd}}
        token_auth = ts.registry_auth(os.path.join(tmp, "bundle.pem"))
        with rf.run_registry(tmp, storage, auth=basic_auth) as basic, \
                rf.run_registry(tmp, storage, auth=token_auth) as token, \
                rf.run_registry(tmp, storage, tls=(w.tls_cert, tls_key)) as tls:
            w.anon, w.basic, w.token, w.tls, w.ts, w.tmp = anon, basic, token, tls, ts, tmp
            yield w


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """An empty HOME and runtime dir, so no credentials of this machine are used."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path


@pytest.fixture
def token_server(world: AuthWorld):
    ts = world.ts
    ts.requests.clear()
    ts.anonymous_pull = False
    ts.use_access_token_key = False
    ts.expires_in = 300
    ts.grant_override = None
    yield ts


def _open(ref: str, **kw: object):
    kw.setdefault("tls_verify", False)
    kw.setdefault("options", FAST)
    return open_registry_image(ref, **kw)  # type: ignore[arg-type]


def _write(path, doc) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- Basic ------------------------------------------------------------------------------------


def test_basic_requires_and_accepts_credentials(world: AuthWorld, home) -> None:
    host = world.basic.host
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{host}/test/img:v1")
    assert str(e.value) == f"registry {host}: authentication required (401) for test/img:v1"
    img = _open(f"{host}/test/img:v1", creds=f"{USER}:{PASSWORD}")
    assert img.diff_ids == [world.spec.layers[0].diff_id]
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{host}/test/img:v1", creds=f"{USER}:{WRONG}")
    assert str(e.value) == f"registry {host}: authentication failed (401) for test/img:v1"


def test_authfile_most_specific_key_wins(world: AuthWorld, home) -> None:
    host = world.basic.host
    path = _write(home / "a.json", {"auths": {host: _auth(USER, WRONG),
                                              f"{host}/test": _auth(USER, PASSWORD)}})
    assert _open(f"{host}/test/img:v1", authfile=path).manifest_digest
    path = _write(home / "b.json", {"auths": {host: _auth(USER, PASSWORD),
                                              f"{host}/test/img": _auth(USER, WRONG)}})
    with pytest.raises(RegistryAuthError, match="authentication failed"):
        _open(f"{host}/test/img:v1", authfile=path)


def test_auth_file_search_order(world: AuthWorld, home, monkeypatch) -> None:
    host = world.basic.host
    ref = f"{host}/test/img:v1"
    docker = _write(home / "home" / ".docker" / "config.json",
                    {"auths": {f"https://{host}/v1/": _auth(USER, PASSWORD)}})
    assert _open(ref).manifest_digest  # URL-style key, normalised
    # the containers auth.json comes first and is wrong
    _write(home / "home" / ".config" / "containers" / "auth.json",
           {"auths": {host: _auth(USER, WRONG)}})
    with pytest.raises(RegistryAuthError, match="authentication failed"):
        _open(ref)
    _write(home / "run" / "containers" / "auth.json", {"auths": {host: _auth(USER, PASSWORD)}})
    assert _open(ref).manifest_digest
    env_file = _write(home / "env.json", {"auths": {host: _auth(USER, WRONG)}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", env_file)
    with pytest.raises(RegistryAuthError, match="authentication failed"):
        _open(ref)
    os.unlink(docker)
    os.unlink(env_file)
    _write(home / "home" / ".dockercfg", {host: _auth(USER, PASSWORD)})
    assert _open(ref).manifest_digest  # missing REGISTRY_AUTH_FILE, legacy file used


def test_credential_helper(world: AuthWorld, home, monkeypatch) -> None:
    host = world.basic.host
    bindir = home / "bin"
    bindir.mkdir()
    seen = home / "helper-stdin"
    helper = bindir / "docker-credential-imgtest"
    helper.write_text(
        "#!/bin/sh\n"
        f'cat > "{seen}"\n'
        f"echo '{{\"ServerURL\":\"x\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    _write(home / "home" / ".docker" / "config.json",
           {"auths": {host: _auth(USER, WRONG)}, "credHelpers": {host: "imgtest"}})
    assert _open(f"{host}/test/img:v1").manifest_digest
    assert seen.read_text() == host
    _write(home / "home" / ".docker" / "config.json", {"credHelpers": {host: "missing"}})
    with pytest.raises(RegistryAuthError, match="docker-credential-missing not found"):
        _open(f"{host}/test/img:v1")


def test_anonymous_registry_never_reads_credentials(world: AuthWorld, home) -> None:
    _write(home / "run" / "containers" / "auth.json", {"auths": "broken"})
    with open(home / "home" / ".dockercfg", "w") as f:
        f.write(f"{{not json {PASSWORD}")
    assert _open(f"{world.anon.host}/test/img:v1").manifest_digest
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{world.basic.host}/test/img:v1")
    assert ".dockercfg is not valid JSON" in str(e.value)
    assert PASSWORD not in str(e.value)


def test_redirect_to_other_host_drops_authorization(world: AuthWorld, home) -> None:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with rf.run_proxy(rf.Proxy(world.basic.host, redirect_auth=basic)) as px:
        img = _open(f"{px.host}/test/img:v1", creds=f"{USER}:{PASSWORD}")
        digest = img.layers[0].digest
        px.faults.append(rf.Fault(digest, "redirect", location=f"http://localhost:{px.port}"))
        with img.open_layer(img.layers[0]) as f:
            assert f.read()
            f.read()
        first, second = [r for r in px.log if digest in r["path"]]
        assert first["headers"].get("Authorization") == basic
        assert second["path"].startswith("/redirected/")
        assert second["host"] == f"localhost:{px.port}"
        assert "Authorization" not in second["headers"]


# -- Bearer tokens -----------------------------------------------------------------------------


def test_token_auth_with_credentials(world: AuthWorld, home, token_server) -> None:
    img = _open(f"{world.token.host}/test/img:v1", creds=f"{USER}:{PASSWORD}")
    with img.open_layer(img.layers[0]) as f:
        f.read()
        f.read()
    assert img.diff_ids == [world.spec.layers[0].diff_id]
    scoped = [r for r in token_server.requests if r["scope"]]
    # one token for the repository, reused for manifest, config and layer
    assert scoped == [{"scope": ["repository:test/img:pull"],
                       "service": [token_server.service], "account": [USER], "user": USER}]


def test_token_anonymous_refused_and_allowed(world: AuthWorld, home, token_server) -> None:
    host = world.token.host
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{host}/test/img:v1")
    assert str(e.value) == f"registry {host}: authentication required (401) for test/img:v1"
    token_server.anonymous_pull = True
    token_server.use_access_token_key = True
    token_server.expires_in = None
    assert _open(f"{host}/test/img:v1").manifest_digest
    assert all(r["user"] is None for r in token_server.requests)


def test_token_insufficient_scope_rechallenge(world: AuthWorld, home, token_server) -> None:
    calls = []

    def stingy(name: str, actions: list[str]) -> list[str]:
        calls.append(name)
        return [] if len(calls) == 1 else actions

    token_server.grant_override = stingy
    img = _open(f"{world.token.host}/test/img:v1", creds=f"{USER}:{PASSWORD}")
    assert img.manifest_digest
    assert calls == ["test/img", "test/img"]


def test_token_server_rejects_password(world: AuthWorld, home, token_server) -> None:
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{world.token.host}/test/img:v1", creds=f"{USER}:{WRONG}")
    assert str(e.value) == (f"registry {world.token.host}: token server: credentials "
                            "rejected (401)")


def test_credentials_to_plain_http_realm_need_tls_verify_off(world: AuthWorld, home,
                                                            token_server) -> None:
    client = make_client(parse_reference(f"{world.token.host}/test/img:v1"),
                         creds=f"{USER}:{PASSWORD}", tls_verify=True)
    client._base = f"http://{world.token.host}"  # as if the registry spoke TLS
    with pytest.raises(RegistryAuthError, match="refusing to send credentials to a plain-http"):
        client.get_manifest("test/img", "v1")
    assert not token_server.requests


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_self_signed(world: AuthWorld, home, tmp_path) -> None:
    ref = f"{world.tls.host}/test/img:v1"
    with pytest.raises(RegistryTLSError, match=r"TLS error: .*certificate verify failed"):
        _open(ref, tls_verify=True)
    certs = tmp_path / "certs.d"
    certs.mkdir()
    with open(world.tls_cert, "rb") as src, open(certs / "ca.crt", "wb") as dst:
        dst.write(src.read())
    img = _open(ref, tls_verify=True, cert_dir=str(certs))
    assert img.source.client.base_url() == f"https://{world.tls.host}"
    img = _open(ref, tls_verify=False)
    assert img.source.client.base_url() == f"https://{world.tls.host}"


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_never_in_errors_reprs_or_logs(world: AuthWorld, home, token_server,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    flows = [
        (world.basic.host, f"{USER}:{WRONG}"), (world.basic.host, f"{USER}:{PASSWORD}"),
        (world.token.host, f"{USER}:{WRONG}"), (world.token.host, f"{USER}:{PASSWORD}"),
    ]
    for host, creds in flows:
        try:
            img = _open(f"{host}/test/img:v1", creds=creds)
            texts += [repr(img.source), repr(img.source.client), repr(img.source.client.auth),
                      repr(img.source.client.auth._creds), str(img.source.client.auth._creds),
                      repr(vars(img.source.client.auth).get("_tokens", {}).keys())]
        except Exception as e:
            texts += [str(e), repr(e), "".join(traceback.format_exception(e))]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(r.args) for r in caplog.records]
    blob = "\n".join(texts)
    assert "authentication failed" in blob and "credentials rejected" in blob
    for secret in [*SECRETS, *token_server.issued]:
        assert secret not in blob


def test_parallel_blob_reads_share_one_token(world: AuthWorld, home, token_server) -> None:
    import concurrent.futures

    img = _open(f"{world.token.host}/test/img:v1", creds=f"{USER}:{PASSWORD}")
    source = img.source

    def read(digest: str) -> bytes:
        with source.open_blob(digest) as f:
            data = f.read()
            f.read()
        return data

    digests = [img.layers[0].digest, img.config_descriptor.digest] * 4
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read, digests))
    assert results[1] == img.raw_config
    assert len({len(r) for r in results[0::2]}) == 1
    assert len([r for r in token_server.requests if r["scope"]]) == 1


# -- registry tokens (issued elsewhere, e.g. by Harbor) -----------------------------------------


def _issued(world: AuthWorld, repo: str = "test/img") -> str:
    """A pull token as Harbor hands one to a scanner: issued by the registry's token service
    for ``repo``, before imgscan runs."""
    return world.ts.issue([f"repository:{repo}:pull"], USER)


def test_registry_token_is_sent_as_is(world: AuthWorld, home, token_server) -> None:
    img = _open(f"{world.token.host}/test/img:v1", registry_token=_issued(world))
    with img.open_layer(img.layers[0]) as f:
        assert f.read()
    assert img.diff_ids == [world.spec.layers[0].diff_id]
    assert token_server.requests == []  # no token-server round trip


def test_registry_token_refused_is_one_clear_error(world: AuthWorld, home,
                                                   token_server) -> None:
    host = world.token.host
    wrong = _issued(world, "other/repo")  # valid signature, no access to test/img
    with pytest.raises(RegistryAuthError) as e:
        _open(f"{host}/test/img:v1", registry_token=wrong)
    assert str(e.value) == f"registry {host}: authentication failed (401) for test/img:v1"
    assert wrong not in str(e.value)
    with pytest.raises(RegistryAuthError):  # a Basic-only registry: a token is no password
        _open(f"{world.basic.host}/test/img:v1", registry_token=_issued(world))


def test_registry_token_from_auth_file_and_cli(world: AuthWorld, home, token_server,
                                               tmp_path) -> None:
    import clihelp

    host = world.token.host
    token = _issued(world)
    authfile = _write(tmp_path / "auth.json", {"auths": {host: {"registrytoken": token}}})
    assert _open(f"{host}/test/img:v1", authfile=authfile).manifest_digest
    ref = f"docker://{host}/test/img:v1"
    root = str(tmp_path / "root")
    r = clihelp.imgscan("scan", ref, "--tls-verify", "false", "--format", "json",
                        env={"IMGSCAN_REGISTRY_TOKEN": token}, root=root)
    assert r.code in (0, 1), r.err
    assert json.loads(r.out)["image"]["digest"]
    assert token not in r.out + r.err
    r = clihelp.imgscan("scan", ref, "--tls-verify", "false", "--registry-token", "a b",
                        root=root)
    assert r.code == 2 and "registry token" in r.err
    r = clihelp.imgscan("scan", ref, "--creds", f"{USER}:{PASSWORD}", "--registry-token", token,
                        root=root)
    assert r.code == 2 and "--creds and --registry-token" in r.err


def test_harbor_bearer_pull_credential_reaches_the_scan(world: AuthWorld, home, token_server,
                                                       tmp_path) -> None:
    from imgscan.server import harbor
    from imgscan.server.jobs import ScanSettings, new_job, scan_report

    token = _issued(world)
    req = harbor.parse_scan_request({
        "registry": {"url": f"http://{world.token.host}", "authorization": f"Bearer {token}"},
        "artifact": {"repository": "test/img", "digest": world.spec_digest}})
    assert req.registry_token == token and req.creds is None and token not in repr(req)
    job = new_job(req.ref, req.digest, ["json"], registry_token=req.registry_token,
                  tls_verify=False)
    report = scan_report(job, ScanSettings(root=str(tmp_path / "root")))
    assert report.image.digest == world.spec_digest
    assert token_server.requests == []
    with pytest.raises(harbor.RequestError, match="one word"):
        harbor.parse_scan_request({
            "registry": {"url": f"http://{world.token.host}", "authorization": "Bearer a b"},
            "artifact": {"repository": "test/img", "digest": world.spec_digest}})
