"""oci-archive and docker-archive: real archives written by skopeo, legacy and Docker 25+
``docker save`` forms built by hand, and hostile archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

from imagebuild import (
    D,
    F,
    ImageSpec,
    Layer,
    compress,
    layer_tar,
    sha256,
    tar_directory,
    write_docker25_archive,
    write_docker_archive,
    write_oci_layout,
)
from imgscan.api import default_names
from imgscan.errors import BadReferenceError, DigestMismatch, ImageError, UnsafeLayerError
from imgscan.images import mediatypes as mt
from imgscan.images.archive import open_docker_archive, open_oci_archive
from imgscan.images.compression import open_decompressed
from imgscan.images.interface import Platform, SourceImage
from imgscan.images.open import open_image


def spec(marker: str = "", comps: tuple = ("gzip", None), tag: str | None = "latest") -> ImageSpec:
    layers = [Layer(layer_tar([D("etc"), F("etc/os-release", f"ID={marker}x\n")]), comps[0])]
    layers += [Layer(layer_tar([F(f"f{i}{marker}", f"data {i}")]), c)
               for i, c in enumerate(comps[1:])]
    return ImageSpec(layers=layers, ref_name=tag)


def layer_bytes(img: SourceImage, i: int) -> bytes:
    with img.open_layer(img.layers[i]) as raw:
        return open_decompressed(raw).read()


def check_layers(img: SourceImage) -> None:
    """Every layer reads back, verified, to a tar hashing to its diff_id."""
    for i, diff_id in enumerate(img.diff_ids):
        assert sha256(layer_bytes(img, i)) == diff_id


def skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def skopeo_archives(tmp_path_factory) -> tuple[Path, ImageSpec]:
    root = tmp_path_factory.mktemp("skopeo")
    s = spec("sk", ("gzip", None, "gzip"))
    write_oci_layout(str(root / "L"), [s])
    skopeo("copy", "-q", f"oci:{root}/L:latest", f"docker-archive:{root}/X.tar:example.com/app:1")
    skopeo("copy", "-q", f"oci:{root}/L:latest", f"oci-archive:{root}/Y.tar:v1")
    return root, s


def test_skopeo_docker_archive(skopeo_archives) -> None:
    root, s = skopeo_archives
    img = open_image(f"docker-archive:{root}/X.tar")
    raw_config = skopeo("inspect", "--raw", "--config", f"docker-archive:{root}/X.tar")
    assert img.image_id == "sha256:" + hashlib.sha256(raw_config).hexdigest()
    assert img.image_id == sha256(s.config_json())
    assert img.diff_ids == json.loads(raw_config)["rootfs"]["diff_ids"]
    assert img.names == ["example.com/app:1"]
    # skopeo writes plain layers: their blob digest is the diff_id, which skopeo lists
    assert [lay.digest for lay in img.layers] == json.loads(
        skopeo("inspect", f"docker-archive:{root}/X.tar"))["Layers"]
    assert {lay.media_type for lay in img.layers} == {mt.DOCKER_LAYER}
    check_layers(img)
    tagged = open_image(f"docker-archive:{root}/X.tar:example.com/app:1")
    assert tagged.image_id == img.image_id
    with pytest.raises(BadReferenceError, match="no image tagged 'app:1'"):
        open_image(f"docker-archive:{root}/X.tar:app:1")


def test_skopeo_oci_archive(skopeo_archives) -> None:
    root, s = skopeo_archives
    img = open_image(f"oci-archive:{root}/Y.tar:v1")
    inspect = json.loads(skopeo("inspect", f"oci-archive:{root}/Y.tar:v1"))
    raw_config = skopeo("inspect", "--raw", "--config", f"oci-archive:{root}/Y.tar:v1")
    assert img.image_id == "sha256:" + hashlib.sha256(raw_config).hexdigest()
    assert img.manifest_digest == inspect["Digest"]
    assert [lay.digest for lay in img.layers] == inspect["Layers"]
    assert (img.platform.os, img.platform.architecture) == (inspect["Os"],
                                                            inspect["Architecture"])
    assert img.diff_ids == [lay.diff_id for lay in s.layers]
    assert img.names == ["v1"]
    check_layers(img)
    with pytest.raises(ImageError, match="no oci-layout file; not an OCI archive"):
        open_oci_archive(f"{root}/X.tar")


def test_oci_archive_of_layout_matches_layout(tmp_path: Path) -> None:
    a, b = spec("a", ("zstd", "gzip", None), "v1"), spec("b", tag="v2")
    write_oci_layout(str(tmp_path / "L"), [a, b])
    tar_directory(str(tmp_path / "L"), str(tmp_path / "A.tar"))
    direct = open_image(f"oci:{tmp_path}/L:v1")
    arch = open_image(f"oci-archive:{tmp_path}/A.tar:v1")
    assert (arch.manifest_digest, arch.image_id, arch.layers) == (
        direct.manifest_digest, direct.image_id, direct.layers)
    check_layers(arch)
    assert open_oci_archive(str(tmp_path / "A.tar"), index=1).image_id == sha256(b.config_json())
    with pytest.raises(BadReferenceError, match="more than one image in oci-archive"):
        open_oci_archive(str(tmp_path / "A.tar"))


def test_oci_archive_multi_platform(tmp_path: Path) -> None:
    amd, arm = spec("a"), spec("b")
    arm.architecture = "arm64"
    write_oci_layout(str(tmp_path / "L"), [amd, arm], index_images=True, index_ref="m")
    tar_directory(str(tmp_path / "L"), str(tmp_path / "A.tar"))
    img = open_oci_archive(str(tmp_path / "A.tar"), "m", platform=Platform("linux", "arm64"))
    assert img.image_id == sha256(arm.config_json())
    assert img.index_digest is not None


def test_legacy_docker_archive_selection(tmp_path: Path) -> None:
    a, b = spec("a"), spec("b")
    path = str(tmp_path / "d.tar")
    write_docker_archive(path, [(a, ["alpine:3.19"]), (b, ["app:1", "quay.io/x/app:latest"])])
    with pytest.raises(BadReferenceError, match=r"more than one image in docker-archive .*"
                       r"available: @0 alpine:3\.19, @1 app:1,quay\.io/x/app:latest"):
        open_docker_archive(path)
    assert open_docker_archive(path, "docker.io/library/alpine:3.19").image_id == \
        sha256(a.config_json())
    img = open_image(f"docker-archive:{path}:quay.io/x/app")
    assert img.image_id == sha256(b.config_json())
    assert img.names == ["app:1", "quay.io/x/app:latest"]
    assert open_image(f"docker-archive:{path}:@1").image_id == img.image_id
    with pytest.raises(BadReferenceError, match="@2 is out of range"):
        open_docker_archive(path, index=2)
    check_layers(img)


def test_docker25_archive_prefers_manifest_json(tmp_path: Path) -> None:
    s = spec("d25", ("gzip", None, None))
    path = str(tmp_path / "d.tar")
    # Docker 25.0.0's OCI manifest listed no layers; manifest.json is right
    write_docker25_archive(path, [(s, ["alpine:3.19"])], oci_layers=False)
    img = open_image(f"docker-archive:{path}")
    assert img.image_id == sha256(s.config_json())
    assert img.names == ["alpine:3.19"]
    assert [lay.digest for lay in img.layers] == [lay.diff_id for lay in s.layers]
    check_layers(img)


def test_docker25_archive_without_manifest_json(tmp_path: Path) -> None:
    s = spec("d25")
    path = str(tmp_path / "d.tar")
    write_docker25_archive(path, [(s, ["alpine:3.19"])], with_manifest_json=False)
    img = open_image(f"docker-archive:{path}:3.19")
    assert img.image_id == sha256(s.config_json())
    assert img.names == ["3.19", "docker.io/library/alpine:3.19"]
    check_layers(img)


def add(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
        link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def docker_archive(path: Path, s: ImageSpec, layer_files: list[tuple[str, bytes]],
                   extra=None, config_name: str | None = None) -> None:
    """A manifest.json archive with layers stored under the given names and bytes."""
    config = s.config_json()
    cname = config_name or sha256(config).split(":")[1] + ".json"
    with tarfile.open(path, "w") as tf:
        add(tf, cname, config)
        for name, data in layer_files:
            add(tf, name, data)
        if extra:
            extra(tf)
        add(tf, "manifest.json", json.dumps([{
            "Config": cname, "RepoTags": None,
            "Layers": [n for n, _ in layer_files]}]).encode())


def test_docker_archive_compressed_layers(tmp_path: Path) -> None:
    s = spec("c", ("gzip", "zstd", "gzip"))
    blobs = [lay.blob for lay in s.layers]
    files = [("blobs/sha256/" + sha256(blobs[0]).split(":")[1], blobs[0]),  # containerd style
             ("x/layer.tar", blobs[1]), ("y/layer.tar", blobs[2])]
    docker_archive(tmp_path / "d.tar", s, files)
    img = open_docker_archive(str(tmp_path / "d.tar"))
    assert [lay.digest for lay in img.layers] == [sha256(b) for b in blobs]
    assert [lay.size for lay in img.layers] == [len(b) for b in blobs]
    assert [lay.media_type for lay in img.layers] == [
        mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_ZSTD, mt.DOCKER_LAYER_GZIP]
    assert img.names == []
    check_layers(img)


def test_docker_archive_shared_layer_symlink(tmp_path: Path) -> None:
    s = spec("s")
    tars = [lay.tar for lay in s.layers]
    files = [("aaa/layer.tar", tars[0]), ("bbb/layer.tar", tars[1])]

    def links(tf: tarfile.TarFile) -> None:
        add(tf, "ccc/layer.tar", kind=tarfile.SYMTYPE, link="../aaa/layer.tar")

    config = s.config_json()
    with tarfile.open(tmp_path / "d.tar", "w") as tf:
        add(tf, "c.json", config)
        for n, d in files:
            add(tf, n, d)
        links(tf)
        add(tf, "manifest.json", json.dumps([{"Config": "c.json", "RepoTags": ["a:b"],
                                              "Layers": ["ccc/layer.tar", "bbb/layer.tar"]}]
                                            ).encode())
    img = open_docker_archive(str(tmp_path / "d.tar"))
    check_layers(img)


def test_gzipped_archive(tmp_path: Path) -> None:
    s = spec("g")
    write_docker_archive(str(tmp_path / "d.tar"), [(s, ["a:1"])])
    (tmp_path / "d.tar.gz").write_bytes(gzip.compress((tmp_path / "d.tar").read_bytes()))
    img = open_image(f"docker-archive:{tmp_path}/d.tar.gz")
    assert img.image_id == sha256(s.config_json())
    check_layers(img)


def hostile(path: Path, build) -> str:
    with tarfile.open(path, "w") as tf:
        build(tf)
    return str(path)


def test_member_names_escaping_are_refused(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        p = hostile(tmp_path / "h.tar", lambda tf, b=bad: add(tf, b, b"x"))
        with pytest.raises(UnsafeLayerError, match=r"absolute or '\.\.' path"):
            open_oci_archive(p)


def test_symlink_blob_is_not_followed(tmp_path: Path) -> None:
    s = spec("h")
    write_oci_layout(str(tmp_path / "L"), [s])
    config_hex = sha256(s.config_json()).split(":")[1]
    (tmp_path / "L" / "blobs" / "sha256" / config_hex).unlink()
    tar_directory(str(tmp_path / "L"), str(tmp_path / "A.tar"))
    with tarfile.open(tmp_path / "A.tar", "a") as tf:
        add(tf, f"blobs/sha256/{config_hex}", kind=tarfile.SYMTYPE, link="/etc/passwd")
    with pytest.raises(ImageError, match="is a symlink, not a regular file; not followed"):
        open_oci_archive(str(tmp_path / "A.tar"))


def test_docker_links_may_not_leave_archive(tmp_path: Path) -> None:
    s = spec("l")
    config = s.config_json()
    for target, message in (("/etc/passwd", "is absolute"), ("../../x", "leaves the archive")):
        p = hostile(tmp_path / "h.tar", lambda tf, t=target: (
            add(tf, "c.json", config),
            add(tf, "a/layer.tar", s.layers[0].tar),
            add(tf, "b/layer.tar", kind=tarfile.SYMTYPE, link=t),
            add(tf, "manifest.json", json.dumps([{
                "Config": "c.json", "Layers": ["a/layer.tar", "b/layer.tar"]}]).encode())))
        with pytest.raises(UnsafeLayerError, match=message):
            open_docker_archive(p)


def test_duplicate_members_refused(tmp_path: Path) -> None:
    p = hostile(tmp_path / "h.tar", lambda tf: (add(tf, "oci-layout", b"{}"),
                                                 add(tf, "./oci-layout", b"{}")))
    with pytest.raises(ImageError, match="appears twice"):
        open_oci_archive(p)


def test_not_tar_truncated_and_empty(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(ImageError, match="not a valid tar archive"):
        open_docker_archive(str(tmp_path / "junk"))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ImageError, match=r"docker-archive .*empty"):
        open_docker_archive(str(tmp_path / "empty"))
    s = spec("t")
    write_docker_archive(str(tmp_path / "d.tar"), [(s, ["a:1"])])
    data = (tmp_path / "d.tar").read_bytes()
    with tarfile.open(tmp_path / "d.tar") as tf:
        manifest_at = tf.getmember("manifest.json").offset_data
    for cut in (600, len(data) // 2, manifest_at + 100):  # inside each kind of member
        (tmp_path / "cut.tar").write_bytes(data[:cut])
        with pytest.raises(ImageError, match="docker-archive"):
            img = open_docker_archive(str(tmp_path / "cut.tar"))
            check_layers(img)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-100])
    with pytest.raises(ImageError, match="truncated or corrupt gzip"):
        open_docker_archive(str(tmp_path / "cut.gz"))
    with pytest.raises(ImageError, match="cannot open"):
        open_docker_archive(str(tmp_path / "missing.tar"))
    with pytest.raises(ImageError, match="not a regular file"):
        open_docker_archive(str(tmp_path))


def test_docker_archive_content_checks(tmp_path: Path) -> None:
    s = spec("k")
    tars = [lay.tar for lay in s.layers]
    # a layer.tar changed after the fact (same size): caught as it is read
    bad = bytearray(tars[1])
    bad[600] ^= 1
    docker_archive(tmp_path / "d.tar", s, [("a/layer.tar", tars[0]), ("b/layer.tar", bytes(bad))])
    img = open_docker_archive(str(tmp_path / "d.tar"))
    layer_bytes(img, 0)
    with pytest.raises(DigestMismatch, match="layer 1"):
        layer_bytes(img, 1)
    # a config blob in blobs/sha256/ whose content is another digest: a corrupt blob store
    docker_archive(tmp_path / "d.tar", s, [("a/layer.tar", tars[0]), ("b/layer.tar", tars[1])],
                   config_name="blobs/sha256/" + "0" * 64)
    with pytest.raises(DigestMismatch, match="not the digest in its name"):
        open_docker_archive(str(tmp_path / "d.tar"))
    # one layer too few
    docker_archive(tmp_path / "d.tar", s, [("a/layer.tar", tars[0])])
    with pytest.raises(ImageError, match="lists 1 layers but the config has 2 diff_ids"):
        open_docker_archive(str(tmp_path / "d.tar"))


def test_config_named_by_another_digest_loads_with_a_warning(tmp_path: Path, caplog) -> None:
    """docker load and skopeo accept a ``<hex>.json`` config whose content hashes to another
    digest; the image id is the content's digest, and a warning says so."""
    s = spec("n")
    tars = [lay.tar for lay in s.layers]
    name = "0" * 64 + ".json"
    docker_archive(tmp_path / "d.tar", s, [("a/layer.tar", tars[0]), ("b/layer.tar", tars[1])],
                   config_name=name)
    with caplog.at_level("WARNING", logger="imgscan.images.archive"):
        img = open_docker_archive(str(tmp_path / "d.tar"))
    assert img.image_id == sha256(s.config_json())
    assert len(img.warnings) == 1
    assert name in img.warnings[0] and img.image_id in img.warnings[0]
    assert "not named by its digest" in img.warnings[0]
    assert [r.getMessage() for r in caplog.records] == img.warnings
    check_layers(img)
    # a config named by its own digest is no news
    docker_archive(tmp_path / "d.tar", s, [("a/layer.tar", tars[0]), ("b/layer.tar", tars[1])])
    assert open_docker_archive(str(tmp_path / "d.tar")).warnings == []


def manifest_archive(path: Path, s: ImageSpec, item: dict, layer_files: list[tuple[str, bytes]],
                     config_name: str = "c.json") -> str:
    """A docker-archive whose manifest.json item is exactly ``item`` (any key spelling)."""
    with tarfile.open(path, "w") as tf:
        add(tf, config_name, s.config_json())
        for name, data in layer_files:
            add(tf, name, data)
        add(tf, "manifest.json", json.dumps([item]).encode())
    return str(path)


def test_manifest_json_keys_in_any_case_as_jib_writes_them(tmp_path: Path) -> None:
    s = spec("j")
    files = [("l0.tar", s.layers[0].tar), ("l1.tar", s.layers[1].tar)]
    p = manifest_archive(tmp_path / "jib.tar", s, {
        "config": "c.json", "repoTags": ["registry.example/app:1.0"],
        "layers": ["l0.tar", "l1.tar"]}, files)
    img = open_docker_archive(p)
    assert img.image_id == sha256(s.config_json())
    assert img.names == ["registry.example/app:1.0"]
    check_layers(img)
    assert open_docker_archive(p, ref="registry.example/app:1.0").image_id == img.image_id
    # the exact spelling wins over another, as in Go's encoding/json
    p = manifest_archive(tmp_path / "both.tar", s, {
        "CONFIG": "missing.json", "Config": "c.json", "LAYERS": ["l0.tar", "l1.tar"]}, files)
    assert open_docker_archive(p).image_id == img.image_id


@pytest.mark.parametrize(
    ("repo_tag", "name"),
    [
        ("app", "app:latest"),
        ("registry.example:5000/team/app", "registry.example:5000/team/app:latest"),
        ("app:2", "app:2"),
        ("app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
    ],
)
def test_repo_tag_without_a_tag_is_latest(tmp_path: Path, repo_tag: str, name: str) -> None:
    s = spec("t")
    files = [("l0.tar", s.layers[0].tar), ("l1.tar", s.layers[1].tar)]
    p = manifest_archive(tmp_path / "my-image.tar", s, {
        "Config": "c.json", "RepoTags": [repo_tag], "Layers": ["l0.tar", "l1.tar"]}, files)
    img = open_docker_archive(p)
    assert img.names == [name]
    # a pull names it so, never localhost/<file name>:<repository>
    assert default_names(f"docker-archive:{p}", img) == [name]


def test_xz_layers_and_xz_archive(tmp_path: Path) -> None:
    """``docker save | xz`` and xz layers (docker load reads both) next to gzip, zstd, plain."""
    s = spec("x", ("zstd", None, "gzip"))
    tars = [lay.tar for lay in s.layers]
    files = [("a/layer.tar", s.layers[0].blob), ("b/layer.tar", lzma.compress(tars[1])),
             ("c/layer.tar", s.layers[2].blob)]
    docker_archive(tmp_path / "d.tar", s, files)
    img = open_docker_archive(str(tmp_path / "d.tar"))
    assert [lay.media_type for lay in img.layers] == [
        mt.OCI_LAYER_ZSTD, mt.DOCKER_LAYER, mt.DOCKER_LAYER_GZIP]
    # an xz layer is served decompressed: its digest is its diff_id, its size the tar's
    assert img.layers[1].digest == img.diff_ids[1]
    assert img.layers[1].size == len(tars[1])
    check_layers(img)
    with img.open_layer(img.layers[1]) as raw:
        assert raw.read() == tars[1]
    (tmp_path / "d.tar.xz").write_bytes(lzma.compress((tmp_path / "d.tar").read_bytes()))
    again = open_image(f"docker-archive:{tmp_path}/d.tar.xz")
    assert again.image_id == sha256(s.config_json())
    assert again.manifest_digest == img.manifest_digest
    check_layers(again)
    data = (tmp_path / "d.tar.xz").read_bytes()
    (tmp_path / "cut.xz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt xz"):
        open_docker_archive(str(tmp_path / "cut.xz"))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"{", "manifest.json is not valid JSON"),
        (b"{}", "not a list of objects"),
        (b"[]", "lists no image"),
        (b'[{"Layers": []}]', "has no Config"),
        (b'[{"Config": "c.json", "Layers": "x"}]', "Layers is not a list of strings"),
        (b'[{"Config": "c.json", "Layers": [], "RepoTags": [1]}]', "RepoTags"),
        (b'[{"Config": "nope.json", "Layers": []}]', "nope.json is missing"),
        (b'[{"Config": "../c.json", "Layers": []}]', "absolute or '..' path"),
        (b'[{"Config": "c.json", "Layers": ["gone/layer.tar"]}]', "gone/layer.tar is missing"),
        (b'[{"Config": "big.json", "Layers": []}]', "larger than"),
    ],
)
def test_bad_manifest_json(tmp_path: Path, manifest: bytes, message: str) -> None:
    s = ImageSpec(layers=[])
    p = hostile(tmp_path / "h.tar", lambda tf: (
        add(tf, "c.json", s.config_json()), add(tf, "big.json", b" " * ((32 << 20) + 1)),
        add(tf, "manifest.json", manifest)))
    with pytest.raises(ImageError, match=message):
        open_docker_archive(p)


def test_open_image_dispatch(tmp_path: Path, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("imgscan.images.registry")
    fake.open_registry_image = lambda ref, platform, **kw: calls.append((ref, platform, kw))
    monkeypatch.setitem(sys.modules, "imgscan.images.registry", fake)
    open_image("docker://quay.io/a/b:1", Platform("linux", "arm64"), insecure=True)
    assert calls == [("quay.io/a/b:1", Platform("linux", "arm64"), {"insecure": True})]
    with pytest.raises(ImageError, match="root filesystem, not an image"):
        open_image(f"dir:{tmp_path}")
    s = spec("z", ("zstd",))
    write_oci_layout(str(tmp_path / "L"), [s])
    assert open_image(f"oci:{tmp_path}/L").layers[0].digest == sha256(compress(
        s.layers[0].tar, "zstd"))
