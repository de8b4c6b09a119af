"""Reference parsing: transports, and the longest-existing-path rule for PATH[:REF|:@N]."""

from __future__ import annotations

import os

import pytest

from imgscan.errors import ImageError
from imgscan.images.reference import (
    ImageReference,
    is_valid_ref_name,
    normalize_docker_name,
    parse_reference,
)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "layout").mkdir()
    (tmp_path / "a:b").mkdir()
    (tmp_path / "a:b" / "l").mkdir()
    (tmp_path / "x").mkdir()
    (tmp_path / "x:y").mkdir()
    (tmp_path / "img.tar").write_bytes(b"")
    (tmp_path / "n@3").mkdir()
    return tmp_path


def test_plain_path(tree) -> None:
    p = str(tree / "layout")
    assert parse_reference(f"oci:{p}") == ImageReference("oci", path=p)


def test_ref_and_index(tree) -> None:
    p = str(tree / "layout")
    assert parse_reference(f"oci:{p}:latest") == ImageReference("oci", path=p, ref="latest")
    assert parse_reference(f"oci:{p}:@2") == ImageReference("oci", path=p, index=2)
    assert parse_reference(f"oci:{p}@2") == ImageReference("oci", path=p, index=2)


def test_ref_with_colon_and_slashes(tree) -> None:
    p = str(tree / "layout")
    r = parse_reference(f"oci:{p}:docker.io/library/alpine:3.19")
    assert (r.path, r.ref) == (p, "docker.io/library/alpine:3.19")


def test_path_with_colon_longest_existing_wins(tree) -> None:
    p = str(tree / "a:b" / "l")
    assert parse_reference(f"oci:{p}:v1") == ImageReference("oci", path=p, ref="v1")
    # both x and x:y exist: the longer existing path is taken whole
    assert parse_reference(f"oci:{tree}/x:y") == ImageReference("oci", path=f"{tree}/x:y")
    # a path that literally ends in @3 is a path, not an index
    assert parse_reference(f"oci:{tree}/n@3") == ImageReference("oci", path=f"{tree}/n@3")


def test_archive_transports(tree) -> None:
    f = str(tree / "img.tar")
    assert parse_reference(f"docker-archive:{f}:alpine:3.19") == ImageReference(
        "docker-archive", path=f, ref="alpine:3.19")
    assert parse_reference(f"docker-archive:{f}:@1").index == 1
    assert parse_reference(f"oci-archive:{f}:v2").ref == "v2"
    assert str(parse_reference(f"oci-archive:{f}:@0")) == f"oci-archive:{f}:@0"


def test_docker_and_dir() -> None:
    r = parse_reference("docker://quay.io/a/b:1@sha256:" + "0" * 64)
    assert r == ImageReference("docker", remote="quay.io/a/b:1@sha256:" + "0" * 64)
    assert str(r).startswith("docker://quay.io/")
    assert parse_reference("dir:/no/such/rootfs") == ImageReference("dir", path="/no/such/rootfs")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("alpine:3.19", "no known transport"),
        ("containers-storage:x", "no known transport"),
        ("docker:alpine", "docker://NAME"),
        ("docker://", "docker://NAME"),
        ("oci:", "missing path"),
        ("oci:/no/such/dir:latest", "no such file or directory"),
        ("oci:a\x00b", "control character"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_reference(text)


def test_invalid_ref_after_existing_path(tree) -> None:
    with pytest.raises(ImageError, match="neither a valid reference name"):
        parse_reference(f"oci:{tree}/layout:Bad Ref!")
    with pytest.raises(ImageError, match="neither a valid reference name"):
        parse_reference(f"oci:{tree}/layout:")


def test_relative_path(tree, monkeypatch) -> None:
    monkeypatch.chdir(tree)
    assert parse_reference("oci:layout:t") == ImageReference("oci", path="layout", ref="t")
    assert os.path.isdir("layout")


def test_ref_name_grammar() -> None:
    for good in ("latest", "v1.0", "a/b:c", "docker.io/library/alpine:3.19", "x--y", "a@b"):
        assert is_valid_ref_name(good), good
    for bad in ("", ":x", "a//b", "a b", "-a", "a-", "@0", "a:"):
        assert not is_valid_ref_name(bad), bad


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("library/alpine:3.19", "docker.io/library/alpine:3.19"),
        ("docker.io/library/alpine:3.19", "docker.io/library/alpine:3.19"),
        ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
        ("user/app:1", "docker.io/user/app:1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("quay.io/org/app:v2", "quay.io/org/app:v2"),
    ],
)
def test_normalize_docker_name(name: str, full: str) -> None:
    assert normalize_docker_name(name) == full
