"""The layer store through its Python API: import, sharing, names, removal, check, gc."""

from __future__ import annotations

import os
import subprocess

import pytest

from imagebuild import OPQ, WH, D, F, Layer, layer_tar
from imgscan.errors import BadReferenceError, DigestMismatch, ImageError, StoreError
from imgscan.store.store import Store, chain_ids


def du(path: str) -> int:
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def base_layer(size: int = 4 << 20) -> Layer:
    return Layer(layer_tar([D("usr"), F("usr/big", os.urandom(size)), F("etc/hostname", "b\n")]))


def test_import_names_and_lookup(store, make_image):
    img = make_image([base_layer(1000)])
    rec = store.import_image(img, ["app:1"])
    assert rec.id == img.image_id
    assert store.lookup("app:1").id == rec.id
    assert store.lookup(rec.id).id == rec.id
    assert store.lookup(rec.id[7:19]).id == rec.id  # unique prefix without sha256:
    assert store.lookup("sha256:" + rec.id[7:15]).id == rec.id
    with pytest.raises(BadReferenceError):
        store.lookup("nope:1")
    assert rec.layers == tuple(chain_ids(img.diff_ids))
    assert store.raw_config(rec) == img.raw_config


def test_shared_base_is_stored_once(store, make_image):
    base = base_layer()
    a = make_image([base, Layer(layer_tar([F("a", "a")]))])
    b = make_image([base, Layer(layer_tar([F("b", "b")]))], created="2024-02-02T00:00:00Z")
    store.import_image(a, ["a:1"])
    after_one = du(store.path("layers"))
    store.import_image(b, ["b:1"])
    after_two = du(store.path("layers"))
    assert after_one >= 4096  # the 4 MiB base is there
    assert after_two - after_one < 200  # the second image added only its small layer
    assert len(os.listdir(store.path("layers"))) == 3


def test_reimport_adds_names_only(store, make_image):
    img = make_image([base_layer(100)])
    store.import_image(img, ["x:1"])
    rec = store.import_image(img, ["x:2"])
    assert set(rec.names) == {"x:1", "x:2"}
    assert len(store.images()) == 1


def test_tag_moves_a_name(store, make_image):
    a = store.import_image(make_image([base_layer(10)]), ["n:1"])
    b = store.import_image(make_image([Layer(layer_tar([F("x", "y")]))]), ["m:1"])
    store.tag(b.id, "n:1")
    assert store.lookup("n:1").id == b.id
    assert "n:1" not in store.lookup(a.id).names
    store.tag("m:1", "plain")
    assert store.lookup("plain:latest").id == b.id


def test_rmi_removes_unshared_layers_only(store, make_image):
    base = base_layer(100)
    a = store.import_image(make_image([base, Layer(layer_tar([F("a", "a")]))]), ["a:1"])
    b = store.import_image(make_image([base, Layer(layer_tar([F("b", "b")]))]), ["b:1"])
    store.remove(["a:1"])
    assert len(os.listdir(store.path("layers"))) == 2
    assert os.path.isdir(store.diff_path(b.layers[0]))
    assert not os.path.exists(store.image_dir(a.id))
    store.remove([b.id])
    assert os.listdir(store.path("layers")) == [] and os.listdir(store.path("l")) == []
    assert store.check() == []


def _snapshot(store: Store) -> dict[str, list[str]]:
    return {d: sorted(os.listdir(store.path(d))) for d in ("layers", "l", "images", "staging")} \
        | {"meta": [open(store.path("store.json")).read()] if os.path.exists(
            store.path("store.json")) else []}


def test_bad_layers_leave_the_store_unchanged(store, make_image, tmp_path):
    good = store.import_image(make_image([base_layer(100)]), ["good:1"])
    before = _snapshot(store)
    # a layer whose diff_id is wrong: the config lies about the content
    img = make_image([Layer(layer_tar([F("x", "1")])), Layer(layer_tar([F("../escape", "x")]))])
    with pytest.raises(ImageError, match="climbs out"):
        store.import_image(img, ["bad:1"])
    assert _snapshot(store) == before
    # a corrupted blob: flip a byte of the layer blob on disk
    img = make_image([Layer(layer_tar([F("y", "2" * 5000)]), compression="gzip")])
    blob = os.path.join(img.source.root, "blobs", "sha256", img.layers[0].digest.split(":")[1])
    data = bytearray(open(blob, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(blob, "wb").write(bytes(data))
    with pytest.raises(ImageError):
        store.import_image(img, ["bad:2"])
    assert _snapshot(store) == before
    assert store.lookup("good:1").id == good.id


def test_diff_id_mismatch_is_detected(store, make_image):
    img = make_image([Layer(layer_tar([F("x", "1")]))])
    # swap the layer blob for another valid gzip tar, fixing only the manifest digest/size
    import gzip

    other = gzip.compress(layer_tar([F("x", "2")]))
    lay = img.layers[0]
    from dataclasses import replace

    from imgscan.images.digest import sha256_digest

    path = os.path.join(img.source.root, "blobs", "sha256", sha256_digest(other)[7:])
    open(path, "wb").write(other)
    img.layers = [replace(lay, digest=sha256_digest(other), size=len(other))]
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.import_image(img, ["x:1"])
    assert store.images() == []


def test_check_finds_and_repairs_leftovers(store, make_image):
    rec = store.import_image(make_image([base_layer(10)]), ["a:1"])
    os.makedirs(store.path("staging", "deadbeef", "abc"))  # an import whose process died
    os.makedirs(store.path("layers", "f" * 64, "diff"))  # renamed but never recorded
    os.symlink("../layers/none/diff", store.path("l", "ZZZZZZZZZZ"))
    kinds = {p.kind for p in store.check()}
    assert {"staging", "orphan-layer", "orphan-link"} <= kinds
    store.check(repair=True)
    assert store.check() == []
    assert store.lookup("a:1").id == rec.id


def test_gc_drops_unreferenced_layers(store, make_image):
    store.import_image(make_image([base_layer(10)]), ["a:1"])
    # simulate metadata that lost an image but kept its layer
    with store.writing() as meta:
        meta.images.clear()
    assert len(store.gc()) == 1
    assert os.listdir(store.path("layers")) == []


def test_corrupt_metadata_is_a_store_error(store, make_image):
    store.import_image(make_image([base_layer(10)]), ["a:1"])
    with open(store.path("store.json"), "w") as f:
        f.write("{not json")
    store.lock.record_write()  # make the cached metadata stale
    with pytest.raises(StoreError):
        store.images()


def test_whiteouts_recorded_in_the_index(store, make_image):
    from imgscan.analyzers.interface import FileKind
    from imgscan.store.layerindex import load_index

    rec = store.import_image(make_image([
        Layer(layer_tar([D("etc"), F("etc/a", "1"), D("opt"), F("opt/x", "x")])),
        Layer(layer_tar([WH("etc/a"), OPQ("opt")])),
    ]), ["w:1"])
    idx = load_index(store.index_path(rec.layers[1]))
    kinds = {(e.path, e.kind) for e in idx}
    assert ("etc/a", FileKind.WHITEOUT) in kinds and ("opt", FileKind.OPAQUE) in kinds
