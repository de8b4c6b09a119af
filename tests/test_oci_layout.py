"""OCI layout directories: choosing an image, nested indexes, and every byte verified.

Expected values come from the fixtures built here (tests/imagebuild.py) and from skopeo and
umoci run on the same layouts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagebuild import (
    OCI_INDEX,
    OCI_MANIFEST,
    D,
    F,
    ImageSpec,
    Layer,
    layer_tar,
    sha256,
    write_oci_layout,
)
from imgscan.errors import BadReferenceError, DigestMismatch, ImageError
from imgscan.images.compression import open_decompressed
from imgscan.images.interface import Platform, SourceImage
from imgscan.images.oci_layout import open_oci_layout
from imgscan.images.open import open_image

AMD64 = Platform("linux", "amd64")


def spec(tag: str | None = "latest", arch: str = "amd64", variant: str = "",
         n_layers: int = 2, marker: str = "") -> ImageSpec:
    layers = [Layer(layer_tar([D("etc"), F("etc/os-release", f"ID=test{marker}\n")]), "gzip")]
    for i in range(1, n_layers):
        comp = ("zstd", None, "gzip")[i % 3]
        layers.append(Layer(layer_tar([F(f"l{i}{marker}", f"layer {i} {arch}")]), comp))
    return ImageSpec(layers=layers, architecture=arch, variant=variant, ref_name=tag)


def read_layer(img: SourceImage, i: int) -> bytes:
    with img.open_layer(img.layers[i]) as raw:
        return open_decompressed(raw).read()


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / digest.split(":")[1]


def put_blob(root: Path, data: bytes) -> str:
    d = sha256(data)
    blob_path(root, d).write_bytes(data)
    return d


def set_index(root: Path, entries: list[dict]) -> None:
    (root / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))


def index_entries(root: Path) -> list[dict]:
    return json.loads((root / "index.json").read_text())["manifests"]


def manifest_of(root: Path, i: int = 0) -> tuple[dict, dict]:
    desc = index_entries(root)[i]
    return desc, json.loads(blob_path(root, desc["digest"]).read_bytes())


def replace_manifest(root: Path, manifest: dict | bytes) -> None:
    """Point the layout's only entry at a new manifest blob."""
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    desc = index_entries(root)[0]
    desc.update(digest=put_blob(root, data), size=len(data))
    set_index(root, [desc])


@pytest.fixture
def single(tmp_path: Path) -> tuple[Path, ImageSpec]:
    s = spec()
    write_oci_layout(str(tmp_path), [s])
    return tmp_path, s


def test_single_image_fields(single) -> None:
    root, s = single
    img = open_oci_layout(str(root))
    desc, _ = manifest_of(root)
    assert img.manifest_digest == desc["digest"]
    assert img.image_id == sha256(s.config_json())
    assert img.diff_ids == [lay.diff_id for lay in s.layers]
    assert [lay.digest for lay in img.layers] == [sha256(lay.blob) for lay in s.layers]
    assert [lay.size for lay in img.layers] == [len(lay.blob) for lay in s.layers]
    assert img.names == ["latest"]
    assert img.index_digest is None
    assert img.platform == AMD64
    for i, lay in enumerate(s.layers):
        assert read_layer(img, i) == lay.tar


def test_matches_skopeo_inspect(single) -> None:
    root, _ = single
    img = open_image(f"oci:{root}:latest")
    out = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{root}:latest"],
                                    capture_output=True, check=True, text=True).stdout)
    assert out["Digest"] == img.manifest_digest
    assert out["Layers"] == [lay.digest for lay in img.layers]
    assert (out["Os"], out["Architecture"]) == (img.platform.os, img.platform.architecture)
    raw_config = subprocess.run(["skopeo", "inspect", "--raw", "--config", f"oci:{root}:latest"],
                                capture_output=True, check=True).stdout
    assert img.image_id == "sha256:" + hashlib.sha256(raw_config).hexdigest()


def test_umoci_built_image(tmp_path: Path) -> None:
    lay = tmp_path / "L"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=tmp_path)  # noqa: E731
    run("umoci", "init", "--layout", str(lay))
    run("umoci", "new", "--image", f"{lay}:t")
    run("umoci", "unpack", "--image", f"{lay}:t", "bundle")
    (tmp_path / "bundle" / "rootfs" / "hello").write_text("from umoci\n")
    run("umoci", "repack", "--image", f"{lay}:t", "bundle")
    img = open_image(f"oci:{lay}:t")
    raw_config = run("skopeo", "inspect", "--raw", "--config", f"oci:{lay}:t").stdout
    config = json.loads(raw_config)
    assert img.image_id == "sha256:" + hashlib.sha256(raw_config).hexdigest()
    assert img.diff_ids == config["rootfs"]["diff_ids"]
    assert img.names == ["t"]
    data = read_layer(img, len(img.layers) - 1)
    assert sha256(data) == img.diff_ids[-1]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.extractfile("hello")
        assert member is not None and member.read() == b"from umoci\n"


def test_multi_image_choice(tmp_path: Path) -> None:
    a, b = spec("v1", marker="a"), spec("v2", marker="b")
    write_oci_layout(str(tmp_path), [a, b])
    with pytest.raises(BadReferenceError, match=r"more than one image in oci layout .*choose one "
                       r"with :REF or @N; available: @0 v1 \(linux/amd64\), @1 v2"):
        open_oci_layout(str(tmp_path))
    assert open_oci_layout(str(tmp_path), ref="v2").image_id == sha256(b.config_json())
    assert open_oci_layout(str(tmp_path), index=0).image_id == sha256(a.config_json())
    assert open_image(f"oci:{tmp_path}:@1").names == ["v2"]
    with pytest.raises(BadReferenceError, match="no image named 'v3'; available: @0 v1"):
        open_oci_layout(str(tmp_path), ref="v3")
    with pytest.raises(BadReferenceError, match="@2 is out of range"):
        open_oci_layout(str(tmp_path), index=2)


def test_same_ref_twice_is_ambiguous(tmp_path: Path) -> None:
    write_oci_layout(str(tmp_path), [spec("dup", marker="a"), spec("dup", marker="b")])
    with pytest.raises(BadReferenceError, match="more than one image named 'dup'"):
        open_oci_layout(str(tmp_path), ref="dup")


def test_empty_index(tmp_path: Path) -> None:
    write_oci_layout(str(tmp_path), [])
    with pytest.raises(BadReferenceError, match=r"no image in index\.json"):
        open_oci_layout(str(tmp_path))


def test_unknown_media_types_skipped(single) -> None:
    root, s = single
    entries = index_entries(root)
    odd = {"mediaType": "application/vnd.example.thing+json",
           "digest": put_blob(root, b"{}"), "size": 2}
    set_index(root, [odd, *entries, {"mediaType": "x/y", "digest": "not a digest"}])
    assert open_oci_layout(str(root)).image_id == sha256(s.config_json())
    with pytest.raises(BadReferenceError, match="entry @0 is not an image or an index"):
        open_oci_layout(str(root), index=0)


def nested(tmp_path: Path) -> tuple[Path, list[ImageSpec]]:
    specs = [spec(None, "amd64"), spec(None, "arm64", "v8"), spec(None, "arm", "v7")]
    write_oci_layout(str(tmp_path), specs, index_images=True, index_ref="multi")
    return tmp_path, specs


def test_nested_index_platform_choice(tmp_path: Path) -> None:
    root, specs = nested(tmp_path)
    top = index_entries(root)[0]
    img = open_oci_layout(str(root), platform=Platform("linux", "arm64"))
    assert img.image_id == sha256(specs[1].config_json())
    assert img.index_digest == top["digest"]
    assert img.names == ["multi"]
    assert open_oci_layout(str(root), "multi", platform=AMD64).image_id == \
        sha256(specs[0].config_json())
    with pytest.raises(ImageError, match=r"no image for platform linux/s390x \(available: "
                       r"linux/amd64, linux/arm/v7, linux/arm64/v8\)"):
        open_oci_layout(str(root), platform=Platform("linux", "s390x"))


def add_to_nested(root: Path, extra: list[dict], first: bool = True) -> None:
    top = index_entries(root)[0]
    inner = json.loads(blob_path(root, top["digest"]).read_bytes())
    inner["manifests"] = extra + inner["manifests"] if first else inner["manifests"] + extra
    data = json.dumps(inner).encode()
    top.update(digest=put_blob(root, data), size=len(data))
    set_index(root, [top])


def test_attestation_never_chosen(tmp_path: Path) -> None:
    root, specs = nested(tmp_path)
    att = put_blob(root, json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.attestation.config.v1+json",
                   "digest": put_blob(root, b"{}"), "size": 2},
        "layers": []}).encode())
    add_to_nested(root, [{"mediaType": OCI_MANIFEST, "digest": att, "size": 1,
                          "platform": {"os": "unknown", "architecture": "unknown"},
                          "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}])
    assert open_oci_layout(str(root), platform=AMD64).image_id == sha256(specs[0].config_json())
    with pytest.raises(ImageError, match="no image for platform unknown/unknown"):
        open_oci_layout(str(root), platform=Platform("unknown", "unknown"))


def test_index_in_index(tmp_path: Path) -> None:
    root, specs = nested(tmp_path)
    top = index_entries(root)[0]
    for _ in range(2):
        wrapper = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_INDEX, "digest": top["digest"], "size": top["size"],
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]}).encode()
        top = {**top, "digest": put_blob(root, wrapper), "size": len(wrapper)}
    set_index(root, [top])
    img = open_oci_layout(str(root), platform=Platform("linux", "arm", "v7"))
    assert img.image_id == sha256(specs[2].config_json())
    assert img.index_digest == top["digest"]
    for _ in range(3):  # now 5 indexes deep
        wrapper = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_INDEX, "digest": top["digest"], "size": top["size"],
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]}).encode()
        top = {**top, "digest": put_blob(root, wrapper), "size": len(wrapper)}
    set_index(root, [top])
    with pytest.raises(ImageError, match="nested deeper than 4"):
        open_oci_layout(str(root), platform=Platform("linux", "arm", "v7"))


def test_missing_blobs(single) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    blob_path(root, manifest["layers"][1]["digest"]).unlink()
    img = open_oci_layout(str(root))  # layers are not read on open
    with pytest.raises(ImageError, match=r"blob sha256:[0-9a-f]{64} is missing$"):
        read_layer(img, 1)
    blob_path(root, manifest["config"]["digest"]).unlink()
    with pytest.raises(ImageError, match=f"blob {manifest['config']['digest']} is missing"):
        open_oci_layout(str(root))


def test_corrupted_blobs(single) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    layer = blob_path(root, manifest["layers"][0]["digest"])
    data = bytearray(layer.read_bytes())
    data[-1] ^= 1  # still the same size
    layer.write_bytes(bytes(data))
    img = open_oci_layout(str(root))
    with pytest.raises(DigestMismatch, match=r"layer 0 .*digest mismatch"), \
            img.open_layer(img.layers[0]) as raw:
        while raw.read(1 << 16):
            pass
    config = blob_path(root, manifest["config"]["digest"])
    config.write_bytes(config.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(DigestMismatch, match=r"config .*digest mismatch"):
        open_oci_layout(str(root))
    desc = index_entries(root)[0]
    blob_path(root, desc["digest"]).write_bytes(b"{}")
    with pytest.raises(DigestMismatch, match="manifest"):
        open_oci_layout(str(root))


def test_manifest_not_json(single) -> None:
    root, _ = single
    replace_manifest(root, b"\x00not json{")
    with pytest.raises(ImageError, match=r"manifest sha256:[0-9a-f]+ is not valid JSON"):
        open_oci_layout(str(root))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, r: m["config"].update(mediaType="application/vnd.example.sbom+json"),
         "is not an image config"),
        (lambda m, r: m["layers"].pop(), "manifest has 1 layers but the config lists 2"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b"not json"), size=8), "config is not valid JSON"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b'{"rootfs":{"type":"x"}}'), size=23),
         "rootfs.type is 'x', not 'layers'"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b'{"architecture":"amd64","os":"linux"}'), size=37),
         r"config has no rootfs \(the layers' diff_ids\); not an image config$"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b'{"rootfs":[]}'), size=13), "rootfs is not an object"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b'{"rootfs":{"diff_ids":[]}}'), size=26),
         r"rootfs has no type \(it must be 'layers'\)"),
        (lambda m, r: m["config"].update(
            digest=put_blob(r, b'{"rootfs":{"type":"layers"}}'), size=28),
         "rootfs has no diff_ids"),
        (lambda m, r: m.update(schemaVersion=1), "schema 1"),
        (lambda m, r: m["layers"][0].update(digest="sha256:../../etc/passwd"),
         r"^oci layout .*: malformed digest 'sha256:\.\./\.\./etc/passwd'"),
        (lambda m, r: m["layers"][0].update(mediaType="application/x-foo"),
         "unsupported media type"),
        (lambda m, r: m.update(layers={}), "layers is not a list"),
    ],
)
def test_bad_manifests(single, change, message: str) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    change(manifest, root)
    replace_manifest(root, manifest)
    with pytest.raises(ImageError, match=message):
        open_oci_layout(str(root))


def test_oversized_manifest(single) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    manifest["annotations"] = {"pad": "x" * (5 << 20)}
    replace_manifest(root, manifest)
    with pytest.raises(ImageError, match="over the limit"):
        open_oci_layout(str(root))
    entries = index_entries(root)
    entries[0]["size"] = 100  # a lying size does not get the blob read past the limit either
    set_index(root, entries)
    with pytest.raises(ImageError, match=r"larger than the limit|size"):
        open_oci_layout(str(root))


def test_symlinks_are_not_followed(single, tmp_path_factory) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    outside = tmp_path_factory.mktemp("outside")
    cfg = blob_path(root, manifest["config"]["digest"])
    (outside / cfg.name).write_bytes(cfg.read_bytes())  # right content, wrong place
    cfg.unlink()
    cfg.symlink_to(outside / cfg.name)
    with pytest.raises(ImageError, match="symlink"):
        open_oci_layout(str(root))
    blobs = root / "blobs" / "sha256"
    os.rename(blobs, outside / "sha256")
    blobs.symlink_to(outside / "sha256")
    with pytest.raises(ImageError, match="blobs/sha256 is a symlink"):
        open_oci_layout(str(root))


def test_fifo_blob_does_not_hang(single) -> None:
    root, _ = single
    _, manifest = manifest_of(root)
    cfg = blob_path(root, manifest["config"]["digest"])
    cfg.unlink()
    os.mkfifo(cfg)
    with pytest.raises(ImageError, match="not a regular file"):
        open_oci_layout(str(root))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "oci-layout").unlink(), "oci-layout is missing"),
        (lambda r: (r / "oci-layout").write_text("[]"), "no imageLayoutVersion"),
        (lambda r: (r / "index.json").write_text("{"), "index.json is not valid JSON"),
        (lambda r: (r / "index.json").write_text('{"schemaVersion":2,"manifests":{}}'),
         "manifests is not a list"),
        (lambda r: (r / "index.json").write_text('{"schemaVersion":2,"manifests":[1]}'),
         r"manifests\[0\] is not an object"),
        (lambda r: (r / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": "sha256:ab", "size": 1}]})),
         "malformed sha256 digest"),
        (lambda r: (r / "index.json").unlink(), "index.json is missing"),
    ],
)
def test_broken_layouts(single, damage, message: str) -> None:
    root, _ = single
    damage(root)
    with pytest.raises(ImageError, match=message):
        open_oci_layout(str(root))


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="is not a directory"):
        open_oci_layout(str(tmp_path / "f"))
    with pytest.raises(ImageError, match="does not exist"):
        open_oci_layout(str(tmp_path / "nope"))


def test_hostile_index_json(single) -> None:
    root, s = single
    entries = index_entries(root)
    (root / "index.json").write_text('{"schemaVersion":2,"manifests":' + "[" * 100_000
                                     + "]" * 100_000 + "}")
    with pytest.raises(ImageError, match=r"nested too deeply|not valid JSON"):
        open_oci_layout(str(root))
    weird = [{"mediaType": ["a"], "digest": 5}, {"mediaType": {"x": 1}}, *entries]
    set_index(root, weird)
    assert open_oci_layout(str(root)).image_id == sha256(s.config_json())


@pytest.mark.parametrize(("arch", "variant"), [("arm64", ""), ("arm", "v7"), ("amd64", "")])
def test_platform_choice_matches_skopeo(tmp_path: Path, arch: str, variant: str) -> None:
    root, _ = nested(tmp_path)
    img = open_oci_layout(str(root), "multi", platform=Platform("linux", arch, variant))
    args = ["skopeo", "--override-os", "linux", "--override-arch", arch]
    if variant:
        args += ["--override-variant", variant]
    raw_config = subprocess.run([*args, "inspect", "--raw", "--config", f"oci:{root}:multi"],
                                capture_output=True, check=True).stdout
    assert img.image_id == "sha256:" + hashlib.sha256(raw_config).hexdigest()
    inspect = json.loads(subprocess.run([*args, "inspect", f"oci:{root}:multi"],
                                        capture_output=True, check=True).stdout)
    assert img.index_digest == inspect["Digest"]  # skopeo shows the index's digest
    assert [lay.digest for lay in img.layers] == inspect["Layers"]
