"""Issue 15 item 4: the compact entry index. ``EntryTable`` keeps a layer's entries as
columns; the merged view over tables must see exactly what the object-per-entry view saw
(checked against that algorithm, kept here as the reference, on random layer stacks); the
store's index format 2 round-trips, format 1 is still read, and a corrupt index is a clear
error, never a traceback."""

from __future__ import annotations

import json
import os
import random

import pytest
import zstandard

from clihelp import imgscan
from imagebuild import F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan.analyzers.layered import LayeredView
from imgscan.entrytable import EntryTable, TableBuilder
from imgscan.errors import StoreError
from imgscan.fileinfo import FileInfo, FileKind
from imgscan.model import LayerRef
from imgscan.rowindex import RowIndex
from imgscan.store import layerindex
from imgscan.whiteouts import split_layer

K = FileKind


class ReferenceView:
    """The merged view as the object-per-entry LayeredView computed it (before this
    change): a replay of the layers bottom-up with a dict of entries and children sets."""

    def __init__(self, indexes, refs):
        self.final, self.children, self.hidden = {}, {"": set()}, []
        for ref, index in zip(refs, indexes, strict=True):
            opaque, deleted, content = split_layer(index)
            for d in opaque:
                for c in list(self.children.get(d, ())):
                    self._hide(f"{d}/{c}" if d else c, ref)
            for p in deleted:
                self._hide(p, ref)
            for info in content:
                old = self.final.get(info.path)
                if old is not None:
                    if old[0].kind == K.DIR and info.kind == K.DIR:
                        self.final[info.path] = (info, ref)
                        continue
                    self._hide(info.path, ref)
                self._parents(info.path, ref)
                self.final[info.path] = (info, ref)
                if info.kind == K.DIR:
                    self.children.setdefault(info.path, set())

    def _hide(self, path, by):
        e = self.final.pop(path, None)
        if e is None:
            return
        self.hidden.append((e[0], e[1], by))
        for c in list(self.children.pop(path, ())):
            self._hide(f"{path}/{c}" if path else c, by)
        parent, _, name = path.rpartition("/")
        if parent in self.children:
            self.children[parent].discard(name)

    def _parents(self, path, ref):
        parent, _, name = path.rpartition("/")
        if parent and parent not in self.final:
            self._parents(parent, ref)
            self.final[parent] = (FileInfo(parent, K.DIR, mode=0o755), ref)
        elif parent and self.final[parent][0].kind != K.DIR:
            self._hide(parent, ref)
            self._parents(parent, ref)
            self.final[parent] = (FileInfo(parent, K.DIR, mode=0o755), ref)
        self.children.setdefault(parent, set()).add(name)


NAMES = ["a", "b", "a-b", "a.b", "c"]


def _random_layer(rnd: random.Random) -> list[FileInfo]:
    out: dict[tuple[int, str], FileInfo] = {}
    for _ in range(rnd.randint(1, 14)):
        path = "/".join(rnd.choice(NAMES) for _ in range(rnd.randint(1, 3)))
        kind = rnd.choice([K.FILE, K.FILE, K.DIR, K.DIR, K.SYMLINK, K.HARDLINK, K.WHITEOUT,
                           K.OPAQUE])
        marker = kind in (K.WHITEOUT, K.OPAQUE)
        out[(int(marker), path)] = FileInfo(path, kind, mode=rnd.choice([0o644, 0o755, 0o4755]),
                                            linkname="a" if kind == K.SYMLINK else "")
    # no file with entries below it (no tar writes that), and every parent present, as a
    # directory: a layer index as extraction records it
    kept = [i for i in out.values()
            if i.kind == K.DIR or i.kind in (K.WHITEOUT, K.OPAQUE)
            or not any(j.path.startswith(i.path + "/") for j in out.values())]
    b = TableBuilder()
    for info in kept:
        b.add(info)
    return list(b.finish(dedupe=False, implicit_dirs=True))


@pytest.mark.parametrize("seed", range(300))
def test_the_view_over_tables_equals_the_object_view(seed):
    rnd = random.Random(seed)
    layers = [_random_layer(rnd) for _ in range(rnd.randint(1, 4))]
    refs = [LayerRef(i, f"sha256:{i}", "") for i in range(len(layers))]
    ref = ReferenceView(layers, refs)
    view = LayeredView([""] * len(layers), layers, refs)
    got = {e.info.path: (e.info, e.layer.index) for e in view.entries()}
    want = {p: (i, r.index) for p, (i, r) in ref.final.items()}
    assert got == want
    hidden = sorted((e.info.path, e.layer.index, e.hidden_by.index)
                    for e in view.hidden_entries())
    assert hidden == sorted((i.path, r.index, b.index) for i, r, b in ref.hidden)
    for p in {i.path for layer in layers for i in layer} | {"nope", "a/nope"}:
        e = view.lookup(p)
        assert (None if e is None else (e.info, e.layer.index)) == want.get(p)


def test_a_complete_walk_of_a_small_view_is_kept_and_a_big_one_is_not(monkeypatch):
    """Image-wide analyzers walk the view several times: a small image's entries are built
    once; an early stop keeps nothing; over the bound every walk rebuilds (memory per table)."""
    rnd = random.Random(7)
    layers = [_random_layer(rnd) for _ in range(3)]
    refs = [LayerRef(i, f"sha256:{i}", "") for i in range(len(layers))]
    view = LayeredView([""] * len(layers), layers, refs)
    built = []
    real = EntryTable.info
    monkeypatch.setattr(EntryTable, "info", lambda t, r: built.append(r) or real(t, r))
    next(iter(view.entries()))
    assert view._memo is None
    first = list(view.entries())
    n = len(built)
    assert list(view.entries()) == first and len(built) == n  # nothing rebuilt
    big = LayeredView([""] * len(layers), layers, refs)
    monkeypatch.setattr(big, "MEMO_ENTRIES", len(first) - 1)
    assert list(big.entries()) == first and big._memo is None
    assert list(big.entries()) == first


def test_rows_are_sorted_by_components_and_found_by_bisection():
    infos = [FileInfo("a/b-x", K.FILE, size=3), FileInfo("a/b/c", K.FILE),
             FileInfo("a/b", K.DIR), FileInfo("z", K.SYMLINK, linkname="a"),
             FileInfo("x", K.CHAR, devmajor=1, devminor=3, xattrs={"user.a": b"\0\xff"}),
             FileInfo("n\udcff", K.FILE, uid=1 << 40, mtime=-5)]
    t = EntryTable.build(infos)
    assert [i.path for i in t] == ["a/b", "a/b/c", "a/b-x", "n\udcff", "x", "z"]
    assert sorted(t, key=lambda i: i.path) == sorted(infos, key=lambda i: i.path)
    assert t[t.find("x")] == infos[4] and t.find("a") == -1 and t.find("n\udcff") == 3
    assert [t[r].path for r in t.below("a/b")] == ["a/b/c"]
    assert [t[r].path for r in t.below("")] == [i.path for i in t]
    again = EntryTable.from_bytes(t.to_bytes())
    assert list(again) == list(t)


def test_a_layer_s_own_order_as_extraction_applies_it():
    b = TableBuilder()
    for info in [FileInfo("d/f", K.FILE, size=1), FileInfo("d/f", K.FILE, size=2),
                 FileInfo("gone", K.FILE), FileInfo("gone", K.WHITEOUT),
                 FileInfo("back", K.WHITEOUT), FileInfo("back", K.FILE, size=9),
                 FileInfo("o", K.OPAQUE)]:
        b.add(info)
    t = b.finish(dedupe=True, implicit_dirs=True)
    got = [(i.path, i.kind, i.size) for i in t]
    assert got == [("back", K.FILE, 9), ("back", K.WHITEOUT, 0), ("d", K.DIR, 0),
                   ("d/f", K.FILE, 2), ("gone", K.WHITEOUT, 0), ("o", K.DIR, 0),
                   ("o", K.OPAQUE, 0)]


def test_row_index_is_a_mapping_of_rows():
    ix = RowIndex()
    ix["b"] = FileInfo("b", K.FILE, size=1)
    ix["a"] = FileInfo("a", K.DIR)
    ix["b"] = FileInfo("b", K.FILE, size=2)
    ix["c"] = FileInfo("c", K.FILE)
    del ix["c"]
    assert "b" in ix and "c" not in ix and ix["b"].size == 2 and len(ix) == 2
    assert [(i.path, i.size) for i in ix.table()] == [("a", 0), ("b", 2)]


@pytest.mark.parametrize("cut", [0, 10, 81, -5, -1])
def test_truncated_or_corrupt_tables_are_value_errors(cut):
    raw = EntryTable.build([FileInfo(f"f{i}", K.FILE) for i in range(50)]).to_bytes()
    bad = raw[:cut] if cut >= 0 else raw[:cut] + b"\xff" * -cut
    with pytest.raises(ValueError):
        EntryTable.from_bytes(bad)


def _stored(tmp_path):
    layout = str(tmp_path / "layout")
    os.makedirs(layout)
    write_oci_layout(layout, [ImageSpec([Layer(layer_tar([F("etc/os-release", "ID=t\n"),
                                                          F("app/x.txt", "hi\n")]))],
                                        ref_name="v1")])
    root = str(tmp_path / "store")
    assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
    from imgscan.store.store import Store

    store = Store(root)
    chain = store.lookup("localhost/layout:v1").layers[0]
    return root, store.index_path(chain)


def test_an_index_of_format_1_is_still_read(tmp_path):
    root, path = _stored(tmp_path)
    table = layerindex.load_index(path)
    doc = {"version": 1, "entries": [layerindex.encode_v1(i) for i in table]}
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor().compress(json.dumps(doc).encode()))
    assert list(layerindex.load_index(path)) == list(table)
    r = imgscan("scan", "localhost/layout:v1", "--format", "json", "--fail-on", "none",
                root=root)
    assert r.code == 0, r.err
    assert json.loads(r.out)["layers"][0]["entries"] == len(table)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "version"])
def test_a_corrupt_index_is_a_one_line_error(tmp_path, damage):
    root, path = _stored(tmp_path)
    raw = open(path, "rb").read()
    data = {"truncate": raw[: len(raw) // 2], "garbage": b"\x28\xb5\x2f\xfd" + b"\x00" * 40,
            "version": zstandard.ZstdCompressor().compress(b'{"version": 9}')}[damage]
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(StoreError, match=r"layer index .* is unreadable"):
        layerindex.load_index(path)
    r = imgscan("scan", "localhost/layout:v1", "--format", "json", root=root)
    assert r.code == 3
    assert "is unreadable" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", range(40))
def test_row_index_behaves_as_a_dict(seed):
    """The open-addressing index against a dict, through inserts, replacements, deletions
    and growth; keys that are not their row's path (whiteout names) included."""
    rnd = random.Random(seed)
    ix, ref = RowIndex(), {}
    names = [f"d{rnd.randint(0, 30)}/f{rnd.randint(0, 30)}" for _ in range(60)]
    names += ["x/.wh.y", "n\udcff"]
    for _ in range(rnd.randint(1, 3000)):
        op, key = rnd.random(), rnd.choice(names)
        if op < 0.6:
            path = key if rnd.random() < 0.9 else "other/" + key
            info = FileInfo(path, rnd.choice([K.FILE, K.DIR, K.WHITEOUT]),
                            size=rnd.randint(0, 9))
            ix[key] = ref[key] = info
        elif op < 0.8:
            assert (key in ix) == (key in ref)
            if key in ref:
                del ix[key], ref[key]
        else:
            assert ix.get(key) == ref.get(key)
        assert len(ix) == len(ref)
    assert sorted(ix) == sorted(ref)
    got = sorted((i.path, i.kind, i.size) for i in ix.table())
    assert got == sorted((i.path, i.kind, i.size) for i in ref.values())
