"""Reference parsing: Docker Hub normalisation and the distribution-spec grammar."""

from __future__ import annotations

import pytest

from imgscan.errors import UsageError
from imgscan.images.registry.reference import InvalidReference, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest", "api"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None, "registry-1.docker.io"),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None, "registry-1.docker.io"),
        ("user/app", "docker.io", "user/app", "latest", None, "registry-1.docker.io"),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None,
         "registry-1.docker.io"),
        ("index.docker.io/library/alpine", "docker.io", "library/alpine", "latest", None,
         "registry-1.docker.io"),
        ("registry-1.docker.io/x/y:z", "docker.io", "x/y", "z", None, "registry-1.docker.io"),
        ("docker://quay.io/org/repo:v1", "quay.io", "org/repo", "v1", None, "quay.io"),
        ("localhost/app", "localhost", "app", "latest", None, "localhost"),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None, "localhost:5000"),
        (f"127.0.0.1:5000/repo@{D}", "127.0.0.1:5000", "repo", None, D, "127.0.0.1:5000"),
        (f"quay.io/o/r:tag@{D}", "quay.io", "o/r", "tag", D, "quay.io"),
        ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None, "[::1]:5000"),
        ("Example/app", "Example", "app", "latest", None, "Example"),
        ("ghcr.io/a.b/c__d/e-f--g:T_1.x-y", "ghcr.io", "a.b/c__d/e-f--g", "T_1.x-y", None,
         "ghcr.io"),
    ],
)
def test_valid(text: str, registry: str, repo: str, tag: str | None, digest: str | None,
               api: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.api_host) == (
        registry, repo, tag, digest, api)
    assert ref.reference == (digest or tag)


def test_str_round_trip() -> None:
    assert str(parse_reference("alpine")) == "docker.io/library/alpine:latest"
    assert str(parse_reference(f"h.io/r@{D}")) == f"h.io/r@{D}"
    assert parse_reference("h.io:1/a/b:c").name == "h.io:1/a/b"


@pytest.mark.parametrize(
    "text",
    [
        "", "UPPER", "repo:", "repo:-bad", f"repo:{'t' * 129}", "repo@sha256:abc",
        "repo@md5:" + "0" * 32, "a//b", "h.io:123456/x", "h.io/a___b", "h.io/-a", "h.io/a-",
        "repo with space", "h.io/" + "x" * 300, "h.io/a/B", "h..io/x", "@" + D, "h.io/",
        "docker://", "h.io/a:b:c",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse_reference(text)
    assert isinstance(e.value, UsageError)
    assert "\n" not in str(e.value)
