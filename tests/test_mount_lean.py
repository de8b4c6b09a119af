"""The lean ``imgscan mount``/``umount`` path (issues 13 and 14): what it imports, and that
its light parts (the store view, the JSON helper, the plain records) behave exactly as the
full store, ``json`` and dataclasses do."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from clihelp import SRC, imgscan
from imagebuild import D, F, ImageSpec, Layer, layer_tar, write_oci_layout
from imgscan import jsonlite
from imgscan.errors import ImgscanError
from imgscan.plainrecord import PlainRecord
from imgscan.store import view
from imgscan.store.records import ImageRecord, LayerRecord
from imgscan.store.store import Store
from imgscan.store.view import StoreView

#: stdlib and imgscan modules the mount path must not import: each was on it once and cost
#: milliseconds (runpy's own imports, for ``python -m``, are not listed)
HEAVY = {"typing", "dataclasses", "inspect", "ast", "json", "json.decoder", "re", "enum",
         "tempfile", "shutil", "random", "hashlib", "_hashlib", "zipfile", "ipaddress",
         "importlib.resources", "importlib.metadata", "base64", "tomllib", "secrets", "hmac",
         "pathlib", "click", "imgscan.api", "imgscan.cli", "imgscan.store.store",
         "imgscan.store.core", "imgscan.store.records", "imgscan.store.maintenance",
         "imgscan.store.importer", "imgscan.store.leases", "imgscan.images.digest",
         "imgscan.scanner", "imgscan.analyzers", "imgscan.reports"}
#: the imgscan modules of the lean path for imgscan's own store, all of them
OWN_STORE_PATH = {"imgscan", "imgscan._version", "imgscan.cli_fast", "imgscan.errors",
                  "imgscan.otherstores", "imgscan.mounting", "imgscan.mount",
                  "imgscan.mount.mounts", "imgscan.mount.overlay", "imgscan.atomic",
                  "imgscan.hexid", "imgscan.jsonlite", "imgscan.plainrecord", "imgscan.store",
                  "imgscan.store.view", "imgscan.store.lock", "imgscan.store.refs",
                  "imgscan.store.root", "imgscan.__main__"}


def _importtime(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("IMGSCAN_DEBUG", None)
    p = subprocess.run([sys.executable, "-X", "importtime", *args],
                       capture_output=True, text=True, env=env, timeout=120)
    mods = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    return p, mods


def _run_importtime(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``python -m imgscan ARGS``: its result and the modules it imported beyond what the
    interpreter imports before any code runs (a ``.pth`` hook of the machine's site
    packages may import ``re`` and more at every start-up: not the mount path's doing)."""
    p, mods = _importtime("-m", "imgscan", *args)
    return p, mods - _importtime("-c", "pass")[1]


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m in HEAVY or m.startswith(("imgscan.analyzers.",
                                                                   "imgscan.reports.")))


@pytest.fixture
def stored(tmp_path):  # type: ignore[no-untyped-def]
    root = str(tmp_path / "store")
    for n in ("one", "two"):
        layout = str(tmp_path / n)
        os.makedirs(layout)
        write_oci_layout(layout, [ImageSpec([Layer(layer_tar([D("etc"), F("etc/n", n)])),
                                             Layer(layer_tar([F(n, n)]))], ref_name="v1")])
        assert imgscan("pull", f"oci:{layout}:v1", root=root).code == 0
    yield root
    for n in ("one", "two"):
        imgscan("rmi", "--force", f"localhost/{n}:v1", root=root)


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel overlay mount needs root")
def test_mount_and_umount_import_only_the_lean_path(stored) -> None:  # type: ignore[no-untyped-def]
    p, mods = _run_importtime("mount", "localhost/one:v1", "--root", stored)
    assert p.returncode == 0, p.stderr
    path = p.stdout.strip()
    assert os.path.ismount(path)
    assert _heavy(mods) == []
    assert {m for m in mods if m.startswith("imgscan")} <= OWN_STORE_PATH
    p, mods = _run_importtime("umount", "localhost/one:v1", "--root", stored)
    assert p.returncode == 0 and p.stdout.strip() == f"unmounted {path}", p.stderr
    assert not os.path.ismount(path)
    assert _heavy(mods) == []
    assert {m for m in mods if m.startswith("imgscan")} <= OWN_STORE_PATH


@pytest.mark.skipif(shutil.which("podman") is None or os.geteuid() != 0,
                    reason="needs podman and root")
def test_containers_storage_mount_imports_only_the_lean_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cstorage_fixtures as cf

    with cf.podman_store(tmp_path) as (cs, podman, _):
        ref = f"containers-storage:[overlay@{cs.graph_root}+{cs.run_root}]{cf.NAME}"
        p, mods = _run_importtime("mount", ref)
        assert p.returncode == 0, p.stderr
        path = p.stdout.strip()
        assert path in podman("image", "mount").stdout
        assert _heavy(mods) == []
        assert "imgscan.cstorage.mount" in mods
        p, mods = _run_importtime("umount", ref)
        assert p.returncode == 0 and p.stdout.strip() == f"unmounted {path}", p.stderr
        assert _heavy(mods) == []
        assert podman("image", "mount").stdout.strip() == ""


def test_options_click_refuses_for_containers_storage_still_reach_click() -> None:
    for args in (["--driver", "overlay"], ["--mountpoint", "/tmp"]):
        r = imgscan("mount", *args, "containers-storage:example.com/x:1")
        assert r.code == 2 and "--mountpoint and --driver do not apply" in r.err, r.err
    r = imgscan("mount", "docker-daemon:x")  # click's command, and its error
    assert r.code == 2 and "only containers-storage: images" in r.err, r.err


# -- the store view reads store.json as the store does -------------------------------------
def test_view_field_tables_are_the_record_dataclasses() -> None:
    for cls, known, required in ((ImageRecord, view.IMAGE_FIELDS, view.IMAGE_REQUIRED),
                                 (LayerRecord, view.LAYER_FIELDS, view.LAYER_REQUIRED)):
        fields = dataclasses.fields(cls)
        assert list(known) == [f.name for f in fields]
        assert required == {f.name for f in fields if f.default is dataclasses.MISSING
                            and f.default_factory is dataclasses.MISSING}
        for f in fields:
            if f.name not in required:
                default = f.default if f.default is not dataclasses.MISSING else \
                    f.default_factory()  # type: ignore[misc]
                assert known[f.name] == default, f.name


def _outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        rec = fn(*args)
    except ImgscanError as e:
        return type(e).__name__, str(e)
    return "ok", rec.id, tuple(rec.layers), rec.short_id


def test_view_resolves_references_as_the_store_does(stored) -> None:  # type: ignore[no-untyped-def]
    store, lean = Store(stored), StoreView(stored)
    ids = [i.id for i in store.images()]
    refs = ["localhost/one:v1", "one:v1", "two:v1", "one", ids[0], ids[0][7:19],
            ids[1][7:10], "sha256:" + ids[1][7:], "", "nosuch", "abc", "a b",
            store.images()[0].manifest_digest, "sha256:0"]
    for ref in refs:
        assert _outcome(lean.lookup, ref) == _outcome(store.lookup, ref), ref
    assert [i.id for i in lean.images()] == ids
    for img in store.images():
        for cid in img.layers:
            assert (lean.layer(cid).link, lean.layer(cid).whiteouts) == \
                (store.layer(cid).link, store.layer(cid).whiteouts)
    assert _outcome(lambda c: lean.layer(c), "sha256:00") == \
        _outcome(lambda c: store.layer(c), "sha256:00")


@pytest.mark.parametrize("damage", [
    lambda d: {**d, "version": 2},
    lambda d: {**d, "images": {k: {**v, "surprise": 1} for k, v in d["images"].items()}},
    lambda d: {**d, "images": {k: {f: x for f, x in v.items() if f != "layers"}
                               for k, v in d["images"].items()}},
    lambda d: {**d, "layers": {k: {**v, "extra": 0} for k, v in d["layers"].items()}},
    lambda d: {**d, "layers": []},
    lambda d: [d],
    lambda d: "{not json",
    lambda d: {**d, "images": {k: {f: x for f, x in v.items() if f != "os"}
                               for k, v in d["images"].items()}},  # a default: fine
])
def test_view_reports_a_damaged_store_json_as_the_store_does(stored, damage) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(stored, "store.json")
    with open(path) as f:
        doc = json.load(f)
    bad = damage(doc)
    with open(path, "w") as f:
        f.write(bad if isinstance(bad, str) else json.dumps(bad))
    for ref in ("one:v1", "nosuch"):
        assert _outcome(StoreView(stored).lookup, ref) == _outcome(Store(stored).lookup, ref)
    with open(path, "w") as f:
        json.dump(doc, f)


# -- jsonlite is json ------------------------------------------------------------------------
DOCS = [{}, [], "", 0, -1.5e-300, None, True, {"b": [1, 2.5, {"x": None, "y": False}],
        "a": "é\"\\\n\t\u2028\U0001f600", "c": [], "d": {}}, [[[]]], [1e16, -0.0, 10**30],
        {"z": {"y": {"x": [{"w": ""}]}}}, ("tuple", 1)]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("kw", [{}, {"indent": 1, "sort_keys": True},
                                {"separators": (",", ":")}, {"indent": 2}])
def test_jsonlite_dumps_is_json_dumps(doc, kw) -> None:  # type: ignore[no-untyped-def]
    assert jsonlite.dumps(doc, **kw) == json.dumps(doc, **kw)


def test_jsonlite_leaves_other_values_to_json() -> None:
    assert jsonlite.dumps({1: "int key"}) == json.dumps({1: "int key"})
    assert jsonlite.dumps([math.nan, math.inf]) == json.dumps([math.nan, math.inf])
    with pytest.raises(TypeError):
        jsonlite.dumps({"x": object()})


@pytest.mark.parametrize("text", [json.dumps(d) for d in DOCS] + [
    " \n{\"a\": 1}\t", "NaN", "[-Infinity]", "", "{", "{} x", "[1,]", "\"\\ud800\"",
    "\ufeff{}", "{\"a\":1,\"a\":2}", "123abc"])
def test_jsonlite_loads_is_json_loads(text) -> None:  # type: ignore[no-untyped-def]
    for data in (text, text.encode(), text.encode("utf-16")):
        try:
            want = ("ok", repr(json.loads(data)))
        except Exception as e:
            want = (type(e).__name__, str(e))
        try:
            got = ("ok", repr(jsonlite.loads(data)))
        except Exception as e:
            got = (type(e).__name__, str(e))
        assert got == want, data


# -- PlainRecord is a dataclass without dataclasses -------------------------------------------
class Point(PlainRecord):
    _fields = ("x", "y")
    __slots__ = _fields
    _frozen = True
    x: int
    y: tuple[int, ...]

    def __init__(self, x: int, y: tuple[int, ...] = ()) -> None:
        self._init(x=x, y=y)


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: tuple[int, ...] = ()


def test_plain_records_behave_as_frozen_dataclasses() -> None:
    p, d = Point(1, (2,)), DPoint(1, (2,))
    assert repr(p) == repr(d).replace("DPoint", "Point")
    assert p == Point(1, (2,)) and p != Point(1) and p != d
    assert hash(p) == hash(Point(1, (2,)))
    assert p.as_dict() == dataclasses.asdict(d)
    assert p.replace(y=(3,)) == Point(1, (3,)) and p.y == (2,)
    with pytest.raises(AttributeError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Point(1, 2, 3)  # type: ignore[call-arg]


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel overlay mount needs root")
def test_mount_records_are_not_fsynced_but_store_metadata_is(stored, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """mounts.json does not outlive the boot its records name (a record of another boot is
    stale): a mount and an umount fsync nothing. store.json is still written durably."""
    from imgscan import mounting

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    rec = mounting.mount("localhost/one:v1", root=stored)
    assert os.path.ismount(rec.path) and rec.count == 1
    with open(os.path.join(stored, "run", "mounts.json")) as f:
        text = f.read()
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True)  # the same format
    assert mounting.unmount(rec.path, root=stored).count == 0  # type: ignore[union-attr]
    assert synced == [] and not os.path.ismount(rec.path)
    Store(stored).tag("localhost/one:v1", "again:1")
    assert synced  # the store's metadata: file and directory


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel overlay mount needs root")
def test_the_api_mounts_through_an_open_store_or_the_lean_view(stored) -> None:  # type: ignore[no-untyped-def]
    from imgscan import api

    store = Store(stored)
    first = api.mount("localhost/two:v1", root=stored)  # the lean view
    again = api.mount("two:v1", store=store)  # the open store: the same record, counted
    assert again.path == first.path and (first.count, again.count) == (1, 2)
    assert [r.count for r in api.list_mounts(store)] == [2]
    assert api.unmount(first.path, store=store).count == 1  # type: ignore[union-attr]
    assert api.unmount("two:v1", root=stored).count == 0  # type: ignore[union-attr]
    assert not os.path.ismount(first.path)
