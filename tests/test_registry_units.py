"""Offline parts of the registry client: challenges, credential files and helpers, header
parsing, and ``inspect_dict`` over a local (non-registry) image."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

import imagebuild as ib
from imgscan.errors import UsageError
from imgscan.images.inspect import go_time, inspect_dict
from imgscan.images.interface import BlobSource, SourceImage
from imgscan.images.registry.auth import parse_challenges
from imgscan.images.registry.client import _next_link, _retry_after
from imgscan.images.registry.credentials import (
    Credentials,
    find_credentials,
    lookup_keys,
    normalize_key,
    parse_creds,
)
from imgscan.images.registry.errors import RegistryAuthError


def test_parse_challenges() -> None:
    got = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push", Basic realm="x y", '
        'Bearer error="insufficient_scope" , realm=unquoted,scope="a \\"q\\""')
    assert [(c.scheme, c.params) for c in got] == [
        ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                    "scope": "repository:samalba/my-app:pull,push"}),
        ("basic", {"realm": "x y"}),
        ("bearer", {"error": "insufficient_scope", "realm": "unquoted", "scope": 'a "q"'}),
    ]


@pytest.mark.parametrize("header", ["", ",,,", "=", 'realm="x"', 'Bearer realm="unterminated',
                                    "Bearer ===", "\x00\xff" * 100])
def test_parse_challenges_hostile(header: str) -> None:
    for c in parse_challenges(header):
        assert isinstance(c.params, dict)


def test_normalize_and_lookup_keys() -> None:
    assert normalize_key("https://index.docker.io/v1/") == "docker.io"
    assert normalize_key("registry-1.docker.io") == "docker.io"
    assert normalize_key("http://quay.io/some/path") == "quay.io"
    assert normalize_key("quay.io/org/repo/") == "quay.io/org/repo"
    assert lookup_keys("quay.io", "a/b/c") == ["quay.io/a/b/c", "quay.io/a/b", "quay.io/a",
                                               "quay.io"]


def test_parse_creds() -> None:
    c = parse_creds("u:p:with:colons")
    assert (c.username, c.password) == ("u", "p:with:colons")
    for bad in ("nouser", ":p", ""):
        with pytest.raises(UsageError):
            parse_creds(bad)
    assert "p:with" not in repr(c) and "u" not in repr(c).replace("Credentials", "")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp / "h"), "XDG_RUNTIME_DIR": str(tmp / "r"),
            "PATH": os.environ["PATH"], **extra}


def _write(path: Path, doc: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_find_credentials_docker_hub_and_identity_token(tmp_path: Path) -> None:
    _write(tmp_path / "h/.docker/config.json", {"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hub:pw")},
        "ghcr.io": {"auth": "", "identitytoken": "refresh-me"}}})
    env = _env(tmp_path)
    c = find_credentials("docker.io", "library/alpine", env=env)
    assert (c.username, c.password) == ("hub", "pw")
    c = find_credentials("ghcr.io", "o/r", env=env)
    assert (c.username, c.identity_token) == ("<token>", "refresh-me")
    assert find_credentials("quay.io", "o/r", env=env) is None
    assert find_credentials("quay.io", "o/r", creds="a:b", env=env) == Credentials("a", "b")


@pytest.mark.parametrize("entry", [{"auth": "!!!not base64"}, {"auth": _b64("no-colon")}])
def test_malformed_entries_are_clear_errors(tmp_path: Path, entry: dict) -> None:
    path = _write(tmp_path / "auth.json", {"auths": {"h.io": entry}})
    with pytest.raises(RegistryAuthError) as e:
        find_credentials("h.io", "r", authfile=path, env=_env(tmp_path))
    assert path in str(e.value) and entry["auth"] not in str(e.value)


@pytest.mark.parametrize("content", ["[]", "{", "\x00" * 10])
def test_malformed_files(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "auth.json", content)
    with pytest.raises(RegistryAuthError, match="auth file"):
        find_credentials("h.io", "r", authfile=path, env=_env(tmp_path))


def _helper(tmp_path: Path, body: str) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    h = bindir / "docker-credential-t"
    h.write_text("#!/bin/sh\n" + body)
    h.chmod(h.stat().st_mode | stat.S_IEXEC)
    _write(tmp_path / "h/.docker/config.json", {"credHelpers": {"h.io": "t"},
                                                "auths": {"h.io": {"auth": _b64("file:pw")}}})
    return _env(tmp_path, PATH=f"{bindir}:{os.environ['PATH']}")


def test_helper_variants(tmp_path: Path) -> None:
    env = _helper(tmp_path, 'echo "credentials not found in native keychain"; exit 1\n')
    assert find_credentials("h.io", "r", env=env).username == "file"  # falls back to auths
    env = _helper(tmp_path, 'echo \'{"Username":"<token>","Secret":"idt"}\'\n')
    assert find_credentials("h.io", "r", env=env).identity_token == "idt"
    env = _helper(tmp_path, "echo garbage\n")
    with pytest.raises(RegistryAuthError, match="printed no credentials"):
        find_credentials("h.io", "r", env=env)
    env = _helper(tmp_path, "echo Helper-secret-out >&2; exit 3\n")
    with pytest.raises(RegistryAuthError) as e:
        find_credentials("h.io", "r", env=env)
    assert "exit 3" in str(e.value) and "Helper-secret-out" not in str(e.value)


def test_header_helpers() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None and _retry_after(None) is None
    assert _next_link('</v2/r/tags/list?n=2&last=b>; rel="next"') == "/v2/r/tags/list?n=2&last=b"
    assert _next_link('<https://x/y>; rel="prev", </z>; rel=next') == "/z"
    assert _next_link('</z>; rel="last"') is None


@pytest.mark.parametrize(("raw", "go"), [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05.500000000Z", "2024-01-02T03:04:05.5Z"),
    ("2024-01-02T03:04:05.1234567891Z", "2024-01-02T03:04:05.123456789Z"),
    ("2024-01-02t03:04:05.000+00:00", "2024-01-02T03:04:05Z"),
    ("2024-01-02T03:04:05+02:00", "2024-01-02T03:04:05+02:00"),
    (None, None), ("", None),
])
def test_go_time(raw: str | None, go: str | None) -> None:
    assert go_time(raw) == go


class DirSource(BlobSource):
    description = "test layout"

    def __init__(self, root: str) -> None:
        self.root = root

    def open_blob(self, digest: str):
        return open(os.path.join(self.root, "blobs", "sha256", digest.split(":")[1]), "rb")


def test_inspect_local_image_with_null_fields(tmp_path: Path) -> None:
    spec = ib.ImageSpec([ib.Layer(ib.layer_tar([ib.F("a", "b")]), compression=None)],
                        config={}, created="2024-05-06T07:08:09Z",
                        extra_history=[{"created_by": "CMD x", "empty_layer": True}])
    index = ib.write_oci_layout(str(tmp_path), [spec])
    desc = index["manifests"][0]
    raw = (tmp_path / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes()
    img = SourceImage(DirSource(str(tmp_path)), raw, desc["digest"], names=["local"])
    got = inspect_dict(img, "", None, [])
    layer = json.loads(raw)["layers"][0]
    assert got == {
        "Digest": desc["digest"], "RepoTags": [], "Created": "2024-05-06T07:08:09Z",
        "DockerVersion": "", "Labels": None, "Architecture": "amd64", "Os": "linux",
        "Layers": [layer["digest"]],
        "LayersData": [{"MIMEType": ib.LAYER_TYPES[None], "Digest": layer["digest"],
                        "Size": layer["size"], "Annotations": None}],
        "Env": None, "User": "", "ExposedPorts": [],
        "History": [{"created": "2024-05-06T07:08:09Z", "created_by": "layer 0"},
                    {"created_by": "CMD x", "empty_layer": True}],
        "CompressedSize": layer["size"],
    }


class _Fetch:
    def __init__(self, body: dict) -> None:
        self.body = body
        self.calls: list[tuple[str, str, dict, bytes | None]] = []

    def __call__(self, method, url, headers, body):
        self.calls.append((method, url, headers, body))
        return 200, json.dumps(self.body).encode()


def test_token_lifetime_floor_and_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgscan.images.registry import auth as auth_mod

    now = [1000.0]
    monkeypatch.setattr(auth_mod.time, "monotonic", lambda: now[0])
    fetch = _Fetch({"access_token": "T1", "expires_in": 10})
    a = auth_mod.Authenticator("h.io", lambda: None, fetch)
    assert a.on_unauthorized('Bearer realm="https://auth.h.io/t",service="svc"', (), 0)
    scope = ("repository:r:pull",)
    assert a.authorization(scope) == "Bearer T1"
    now[0] += 50  # expires_in 10 counts as 60: still cached
    assert a.authorization(scope) == "Bearer T1"
    now[0] += 10
    assert a.authorization(scope) == "Bearer T1" and len(fetch.calls) == 2
    method, url, headers, body = fetch.calls[0]
    assert (method, body) == ("GET", None) and "Authorization" not in headers
    assert url == "https://auth.h.io/t?service=svc&scope=repository%3Ar%3Apull"


def test_identity_token_posts_refresh_grant() -> None:
    from imgscan.images.registry.auth import Authenticator

    fetch = _Fetch({"token": "T"})
    a = Authenticator("h.io", lambda: Credentials("<token>", "", "RT"), fetch)
    a.on_unauthorized('Bearer realm="https://auth.h.io/t?x=1",service="svc"', (), 0)
    assert a.authorization(("repository:r:pull",)) == "Bearer T"
    method, url, headers, body = fetch.calls[0]
    assert (method, url) == ("POST", "https://auth.h.io/t?x=1")
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == (b"grant_type=refresh_token&refresh_token=RT&client_id=imgscan&service=svc"
                    b"&scope=repository%3Ar%3Apull")


@pytest.mark.parametrize("realm", ["ftp://x/t", "", "https://"])
def test_bad_realm(realm: str) -> None:
    from imgscan.images.registry.auth import Authenticator

    a = Authenticator("h.io", lambda: None, _Fetch({}))
    with pytest.raises(RegistryAuthError, match="token realm"):
        a.on_unauthorized(f'Bearer realm="{realm}"', (), 0)


@pytest.mark.parametrize("body", [{"token": 5}, {"access_token": ""}, [], "x", {"other": "t"}])
def test_token_server_garbage(body: object) -> None:
    from imgscan.images.registry.auth import Authenticator

    a = Authenticator("h.io", lambda: None, _Fetch(body))  # type: ignore[arg-type]
    a.on_unauthorized('Bearer realm="https://auth.h.io/t"', (), 0)
    with pytest.raises(RegistryAuthError, match="token server sent no token"):
        a.authorization(("repository:r:pull",))
